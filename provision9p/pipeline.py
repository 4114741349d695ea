"""`up`: the whole pipeline, lab spec -> tree -> boot -> connection -> roles -> verify.

Each stage is its own package; this file only sequences them (for `up`, and for the
commands that run one stage on resolved targets: down, status, apply, verify) and keeps
the promise that a second `up` on an unchanged, running lab changes nothing and says so
within seconds. It takes Targets resolved by the command and hands them down.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from provision9p import ui
from provision9p.boot import supervisor
from provision9p.connect.base import Connection
from provision9p.connect.ssh import connect
from provision9p.errors import UsageError, VerifyError
from provision9p.lab.model import LabSpec
from provision9p.rootfs import build
from provision9p.state import lab_lock, write_json
from provision9p.target import Target
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


def up(lab: LabSpec, targets: list[Target], *, rebuild: bool = False,
       verify: bool = True) -> int:
    """Bring the targets up; 0 only when everything checked out."""
    start = time.monotonic()
    outcomes = []
    with lab_lock(lab, "up"):
        # Every role is loaded and checked first: a broken one stops before any build.
        plays = {t.name: load_play(t.guest, t.lab) for t in targets}
        for t in targets:
            for w in share_warnings(t.guest):
                ui.warn(w)
        for t in targets:
            outcomes.append(_up_guest(t, plays[t.name], rebuild=rebuild, verify=verify))
    return _report(outcomes, time.monotonic() - start)


def _up_guest(target: Target, play: Play, *, rebuild: bool, verify: bool) -> GuestOutcome:
    lab, guest = target.lab, target.guest
    out = GuestOutcome(guest.name)
    running = target.running_pid() is not None
    resumed = None
    if running and supervisor.boot_in_progress(target):
        # an `up` killed while it waited for this boot: wait for it rather than SSH too soon
        with ui.step(f"{guest.name}: boot in progress"):
            resumed = supervisor.resume_boot(target)
        running = resumed is not None
    if running and not rebuild and resumed is None:
        # Unchanged and running: a quick check that it still answers, nothing else.
        if build.plan(target).current:
            # Roles are not build inputs: they are applied again, over SSH.
            conn = connect(target)
            try:
                if play:
                    _roles_over_ssh(target, conn, play, out)
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
        supervisor.stop(target)
        running = False
    if running and rebuild:
        ui.info(f"==> {guest.name}: stopping it to rebuild")
        supervisor.stop(target)
        resumed = None
    if resumed is None:
        result = build.build_guest(target, force=rebuild,
                                   tree_hook=tree_hook(lab, guest, play))
        out.built = result.changed
        if result.changed:
            stages = ", ".join(f"{k} {v:.1f} s" for k, v in result.stages.items())
            out.notes.append(f"built in {result.seconds:.1f} s ({stages})")
        with ui.step(f"{guest.name}: boot"):
            boot = supervisor.start(target)
        write_json(target.state.dir / "timings.json", {
            "build": result.stages, "build_total": round(result.seconds, 2),
            "boot": boot.stages, "boot_total": round(boot.seconds, 2), "accel": boot.accel,
        })
    else:
        boot = resumed
    out.booted = True
    out.notes.append(f"booted ({boot.accel}) to SSH in {boot.seconds:.1f} s; "
                     f"ssh port 127.0.0.1:{boot.ssh_port}")
    kept = boot.take_connection()
    if play:
        conn = kept or connect(target)
        try:
            _roles_over_ssh(target, conn, play, out)
        finally:
            conn.close()
    elif kept is not None:
        kept.close()
    if verify:
        plugin = verify_guest(target)
        out.checks_passed = plugin.passed
        out.checks_failed = plugin.failed
    return out


def _roles_over_ssh(target: Target, conn: Connection, play: Play, out: GuestOutcome) -> None:
    with ui.step(f"{target.name}: roles over SSH"):
        recap = ssh_phase(target.lab, target.guest, conn, play)
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



# --- the commands that run one stage on resolved targets ----------------------------


def build_trees(lab: LabSpec, targets: list[Target], *,
                force: bool = False) -> list[build.BuildResult]:
    """`rootfs build`: each target's tree (roles' tree phase included), never under QEMU."""
    results = []
    with lab_lock(lab, "rootfs build"):
        for t in targets:
            t.require_stopped("its tree cannot be rebuilt under it")
        for t in targets:
            hook = tree_hook(t.lab, t.guest, load_play(t.guest, t.lab))
            results.append(build.build_guest(t, force=force, tree_hook=hook))
    return results


def down(lab: LabSpec, targets: list[Target], timeout: float) -> dict[str, float | None]:
    """Power the targets off; per guest the seconds it took, None when it was not running."""
    took: dict[str, float | None] = {}
    with lab_lock(lab, "down"):
        for t in targets:
            start = time.monotonic()
            took[t.name] = time.monotonic() - start if supervisor.stop(t, timeout) else None
    return took


def status(target: Target) -> str:
    """`status`: one line per guest (more for a crashed one: its console's tail)."""
    return f"{target.name}: {supervisor.status(target).describe()}"


def connect_guest(target: Target) -> Connection:
    """SSH when the guest runs; otherwise its root tree, in its security model."""
    if target.running_pid() is not None:
        return connect(target)
    target.require_built()
    from provision9p.connect.tree import TreeConnection
    from provision9p.rootfs.metadata import open_store

    root = target.guest.root
    st = os.stat(root.path)
    store = open_store(root.security_model, root.path, st.st_uid, st.st_gid)
    return TreeConnection(root.path, store, target.name)


def apply(targets: list[Target], *, check: bool = False, diff: bool = False,
          tags: set[str] | None = None, skip_tags: set[str] | None = None) -> None:
    """`apply`: the guests' roles, over SSH when running, else on the stopped tree."""
    from provision9p.tasks.engine import run_play

    plays = {t.name: load_play(t.guest, t.lab) for t in targets}  # all checked first
    for t in targets:
        if t.running_pid() is None:
            t.require_built()  # before any guest is touched
    for t in targets:
        conn = connect_guest(t)
        try:
            run_play(conn, t.guest, t.lab, check=check, diff=diff, tags=tags,
                     skip_tags=skip_tags, play=plays[t.name])
        finally:
            conn.close()


def verify(targets: list[Target]) -> None:
    """`verify`: the share checks and the lab's own files; VerifyError when any failed."""
    for t in targets:
        t.require_running()
    failed: list[str] = []
    for t in targets:
        failed += verify_guest(t).failed
    if failed:
        raise VerifyError(f"{len(failed)} check(s) failed:\n" + "\n".join(f"  {f}" for f in failed))


def export(target: Target, output: Path) -> None:
    """`rootfs export`: the guest's tree with real owners, to a new directory or a .tar."""
    from provision9p.rootfs.security import model_of

    root = target.guest.root
    target.require_built()
    if output.exists() or output.is_symlink():
        raise UsageError(f"{output} exists; export never overwrites",
                         hint="name a new directory, or a file ending in .tar")
    _check_writable_dir(output.parent)
    with ui.step(f"exporting {root.path} ({root.security_model}) to {output}"):
        model_of(root).export(root.path, output)


def _check_writable_dir(parent: Path) -> None:
    """Refuse an output place that cannot take a new file, before any work is done."""
    if not parent.is_dir():
        raise UsageError(f"{parent} is not a directory",
                         hint="create it first, or name an output in an existing directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".provision9p-probe-", dir=parent)
    except OSError as exc:
        raise UsageError(f"cannot write in {parent}: {exc.strerror}",
                         hint="name an output in a writable directory") from None
    os.close(fd)
    os.unlink(probe)
