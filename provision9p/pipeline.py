"""`up`: the whole pipeline, lab spec -> tree -> boot -> connection -> roles -> verify.

Each stage is its own package; this file only sequences them and keeps the
promise that a second `up` on an unchanged, running lab changes nothing and
says so within seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from provision9p import ui
from provision9p.boot import supervisor
from provision9p.connect.base import Connection
from provision9p.connect.ssh import connect
from provision9p.errors import VerifyError
from provision9p.host.mirror import host_mirror
from provision9p.lab.model import GuestSpec, LabSpec
from provision9p.qemu_user import qemu_user
from provision9p.rootfs.build import build_guest, fingerprint, is_current
from provision9p.state import GuestState, lab_lock, write_json
from provision9p.tasks.engine import Play, load_play
from provision9p.tasks.phases import ssh_phase, tree_hook
from provision9p.verify.preflight import share_warnings
from provision9p.verify.runner import verify_guest


@dataclass
class GuestOutcome:
    name: str
    built: bool = False
    booted: bool = False
    roles_changed: int = 0
    checks_passed: int = 0
    checks_failed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def up(lab: LabSpec, *, rebuild: bool = False, verify: bool = True,
       limit: list[str] | None = None) -> int:
    """Bring every guest of the lab up; 0 only when everything checked out."""
    guests = [lab.guest(n) for n in limit] if limit else list(lab.guests)
    start = time.monotonic()
    outcomes = []
    with lab_lock(lab, "up"):
        # Every role is loaded and checked first: a broken one stops before any build.
        plays = {guest.name: load_play(guest, lab) for guest in guests}
        for guest in guests:
            for w in share_warnings(guest):
                ui.warn(w)
        for guest in guests:
            outcomes.append(_up_guest(lab, guest, plays[guest.name], rebuild=rebuild,
                                      verify=verify))
    return _report(outcomes, time.monotonic() - start)


def _up_guest(lab: LabSpec, guest: GuestSpec, play: Play, *, rebuild: bool,
              verify: bool) -> GuestOutcome:
    out = GuestOutcome(guest.name)
    st = GuestState.of(lab, guest)
    running = st.running_pid() is not None
    resumed = None
    if running and supervisor.boot_in_progress(lab, guest):
        # an `up` killed while it waited for this boot: wait for it rather than SSH too soon
        with ui.step(f"{guest.name}: boot in progress"):
            resumed = supervisor.resume_boot(lab, guest)
        running = resumed is not None
    if running and not rebuild and resumed is None:
        # Unchanged and running: a quick check that it still answers, nothing else.
        fp = fingerprint(lab, guest, guest.rootfs.mirror or host_mirror(),
                         qemu_user(guest.root, create=False), {"hooks": ""})
        if is_current(lab, guest, fp):
            # Roles are not build inputs: they are applied again, over SSH.
            conn = connect(lab, guest)
            try:
                if play:
                    _roles_over_ssh(lab, guest, conn, play, out)
                res = conn.run("cat /proc/self/mounts")
            finally:
                conn.close()
            missing = [s.mount for s in guest.all_shares
                       if f" {s.mount} 9p " not in res.stdout]
            if missing:
                out.checks_failed.append(f"not mounted: {', '.join(missing)}")
            elif not out.roles_changed:
                out.notes.append("running and unchanged; nothing to do")
            return out
        ui.info(f"==> {guest.name}: its build inputs changed; stopping it to rebuild")
        supervisor.stop(lab, guest)
        running = False
    if running and rebuild:
        ui.info(f"==> {guest.name}: stopping it to rebuild")
        supervisor.stop(lab, guest)
        resumed = None
    if resumed is None:
        result = build_guest(lab, guest, force=rebuild, tree_hook=tree_hook(lab, guest, play))
        out.built = result.changed
        if result.changed:
            stages = ", ".join(f"{k} {v:.1f} s" for k, v in result.stages.items())
            out.notes.append(f"built in {result.seconds:.1f} s ({stages})")
        with ui.step(f"{guest.name}: boot"):
            boot = supervisor.start(lab, guest)
        write_json(st.dir / "timings.json", {
            "build": result.stages, "build_total": round(result.seconds, 2),
            "boot": boot.stages, "boot_total": round(boot.seconds, 2), "accel": boot.accel,
        })
    else:
        boot = resumed
    out.booted = True
    out.notes.append(f"booted ({boot.accel}) to SSH in {boot.seconds:.1f} s; "
                     f"ssh port 127.0.0.1:{boot.ssh_port}")
    if play:
        conn = connect(lab, guest)
        try:
            _roles_over_ssh(lab, guest, conn, play, out)
        finally:
            conn.close()
    if verify:
        plugin = verify_guest(lab, guest)
        out.checks_passed = plugin.passed
        out.checks_failed = plugin.failed
    return out


def _roles_over_ssh(lab: LabSpec, guest: GuestSpec, conn: Connection, play: Play,
                    out: GuestOutcome) -> None:
    with ui.step(f"{guest.name}: roles over SSH"):
        recap = ssh_phase(lab, guest, conn, play)
    out.roles_changed = recap.changed
    if recap.changed:
        out.notes.append(f"roles over SSH: {recap.changed} task(s) changed")


def _report(outcomes: list[GuestOutcome], seconds: float) -> int:
    print()
    failed = False
    for o in outcomes:
        status = "FAILED" if o.checks_failed else "ok"
        failed = failed or bool(o.checks_failed)
        checks = f", {o.checks_passed} checks passed" if o.checks_passed else ""
        print(f"{o.name}: {status}{checks}")
        for note in o.notes:
            print(f"  {note}")
        for f in o.checks_failed:
            print(f"  failed: {f}")
    changed = any(o.built or o.booted or o.roles_changed for o in outcomes)
    print(f"{'changed' if changed else 'no change'}; {len(outcomes)} guest(s) in {seconds:.1f} s")
    if failed:
        raise VerifyError("some checks failed (see above)",
                          hint="`provision9p verify` reruns them; `provision9p console GUEST` "
                               "shows the boot log")
    return 0
