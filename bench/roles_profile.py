"""Where the roles' pass over SSH spends its time: per task, per round trip, per function.

    .venv/bin/python bench/roles_profile.py [-f LAB] [GUEST] [--boot] [--passes N]
        [--profile FILE] [--top N]

--boot: stop the guest if it runs, boot it again (the tree as built) and profile the pass
that `up` runs on the connection the boot's wait opened, while the guest is still
settling, as in `up`; without it the guest must run already. --passes: more passes on
the same connection afterwards (a settled guest). Each pass prints its wall time, the
fact gathering, each task's wall time with its round trips to the guest (commands run,
SFTP requests) and the time they took, then cProfile's top functions (cumulative).
Not a test: numbers depend on the machine and its load (printed with them).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from provision9p.boot import supervisor  # noqa: E402
from provision9p.connect.ssh import SSHConnection, connect  # noqa: E402
from provision9p.lab import load_lab  # noqa: E402
from provision9p.target import Target, resolve  # noqa: E402
from provision9p.tasks import facts as facts_mod  # noqa: E402
from provision9p.tasks.engine import load_play, run_play  # noqa: E402
from provision9p.tasks.model import Task  # noqa: E402
from provision9p.tasks.report import Recap, Reporter  # noqa: E402


class Probe:
    """Counts and times the connection's round trips, by the task that made them."""

    def __init__(self) -> None:
        self.current = "(before the first task)"
        self.order: list[str] = []
        self.wall: dict[str, float] = defaultdict(float)
        self.calls: dict[str, list[tuple[str, float]]] = defaultdict(list)
        self._since = time.monotonic()

    def switch(self, name: str) -> None:
        now = time.monotonic()
        self.wall[self.current] += now - self._since
        self._since = now
        self.current = name
        if name not in self.order:
            self.order.append(name)

    def record(self, what: str, seconds: float) -> None:
        self.calls[self.current].append((what, seconds))


#: paramiko's private method every SFTP request and its reply pass through.
_SFTP_REQUEST = "_request"


def instrument(conn: SSHConnection, probe: Probe) -> Callable[[], None]:
    """Wrap the connection's exec channel, the opening of its SFTP channel (inside the
    pass, as in `up`, wherever the engine opens it) and each SFTP request; returns the
    undo."""
    run = conn.run
    client = conn.client
    open_sftp = client.open_sftp
    patched: list[Any] = []

    def timed_run(command: Any, **kw: Any) -> Any:
        start = time.monotonic()
        try:
            return run(command, **kw)
        finally:
            text = command if isinstance(command, str) else " ".join(command)
            probe.record(f"exec {text.strip().splitlines()[0][:60]}",
                         time.monotonic() - start)

    def watch(sftp: Any) -> Any:
        request = getattr(sftp, _SFTP_REQUEST)  # every SFTP request and reply pass here

        def timed_request(t: int, *args: Any) -> Any:
            start = time.monotonic()
            try:
                return request(t, *args)
            finally:
                probe.record(f"sftp {t}", time.monotonic() - start)

        setattr(sftp, _SFTP_REQUEST, timed_request)
        patched.append(sftp)
        return sftp

    def timed_open() -> Any:
        start = time.monotonic()
        try:
            return watch(open_sftp())
        finally:
            probe.record("sftp open (starts sftp-server)", time.monotonic() - start)

    conn.run = timed_run  # type: ignore[method-assign]
    client.open_sftp = timed_open  # type: ignore[method-assign]
    if conn._sftp is not None:
        watch(conn._sftp)

    def undo() -> None:
        del conn.run
        del client.open_sftp
        for sftp in patched:
            delattr(sftp, _SFTP_REQUEST)
    return undo


class ProbeReporter(Reporter):
    def __init__(self, probe: Probe) -> None:
        super().__init__(out=open(os.devnull, "w"))  # noqa: SIM115
        self.probe = probe

    def task(self, task: Task) -> None:
        self.probe.switch(f"{task.role.name} : {task.name}")

    def recap(self, guest: str, recap: Recap) -> None:
        self.probe.switch("(after the last task)")


def one_pass(target: Target, conn: SSHConnection, label: str, profile: Path | None,
             top: int) -> None:
    probe = Probe()
    undo = instrument(conn, probe)
    gather = facts_mod.gather_facts

    def timed_gather(*a: Any, **kw: Any) -> Any:
        probe.switch("(facts)")
        return gather(*a, **kw)

    facts_mod.gather_facts = timed_gather
    prof = cProfile.Profile()
    load = os.getloadavg()[0]
    start = time.monotonic()
    try:
        prof.enable()
        recap = run_play(conn, target.guest, target.lab, play=load_play(target.guest, target.lab),
                         reporter=ProbeReporter(probe))
        prof.disable()
    finally:
        facts_mod.gather_facts = gather
        undo()
    total = time.monotonic() - start
    probe.switch("(end)")
    trips = sum(len(v) for v in probe.calls.values())
    trip_s = sum(s for v in probe.calls.values() for _, s in v)
    print(f"\n== {label}: {total:.2f} s, load {load:.1f}; ok={recap.ok} "
          f"changed={recap.changed} skipped={recap.skipped}; {trips} round trips "
          f"taking {trip_s:.2f} s")
    for name in ["(before the first task)", *probe.order]:
        calls = probe.calls.get(name, [])
        spent = sum(s for _, s in calls)
        print(f"  {probe.wall[name]:6.3f} s  {len(calls):3d} trips {spent:6.3f} s  {name}")
        for what, s in sorted(calls, key=lambda c: -c[1])[:4]:
            if s > 0.05:
                print(f"           {s:6.3f} s  {what}")
    stats = pstats.Stats(prof).sort_stats("cumulative")
    if profile:
        stats.dump_stats(str(profile))
    stats.print_stats(top)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-f", "--lab", type=Path)
    ap.add_argument("guest", nargs="?")
    ap.add_argument("--boot", action="store_true")
    ap.add_argument("--passes", type=int, default=1)
    ap.add_argument("--profile", type=Path)
    ap.add_argument("--top", type=int, default=25)
    opts = ap.parse_args()
    lab = load_lab(opts.lab)
    guest = lab.guest(opts.guest) if opts.guest else lab.guests[0]
    target = resolve(lab, guest)
    conn: SSHConnection | None = None
    if opts.boot:
        if target.running_pid() is not None:
            supervisor.stop(target)
        report = supervisor.start(target)
        print(f"booted in {report.seconds:.1f} s: {report.stages}")
        conn = report.take_connection()
    conn = conn or connect(target)
    try:
        for n in range(opts.passes):
            one_pass(target, conn, f"pass {n + 1}" + (" (right after boot)" if opts.boot
                                                      and n == 0 else ""),
                     opts.profile if n == 0 else None, opts.top)
    finally:
        conn.close()


if __name__ == "__main__":
    main()
