"""`up`: the whole pipeline, lab spec -> tree -> boot -> connection -> roles -> verify.

Each stage is its own package; this file only sequences them (for `up`, and for the
commands that run one stage on resolved targets: down, status, apply, verify) and keeps
the promise that a second `up` on an unchanged, running lab changes nothing and says so
within seconds. It takes Targets resolved by the command and hands them down.

`up` and `down` run a job per guest (jobs.py), several at once; lab-wide work has its
place before and after the guests' jobs (`_before_guests`, `_after_guests`).
"""

from __future__ import annotations

import functools
import os
import tempfile
import threading
import time
from pathlib import Path

from provision9p import lab_pass, ui
from provision9p.boot import supervisor, switch, sysinit
from provision9p.connect.base import Connection
from provision9p.connect.openssh import Master
from provision9p.connect.ssh import connect
from provision9p.errors import UsageError
from provision9p.jobs import Cancelled, Job, Outcome, default_jobs, run_jobs
from provision9p.lab.model import LabSpec
from provision9p.outcomes import GuestOutcome, UpRun, first_line
from provision9p.rootfs import build, keys
from provision9p.state import lab_lock, write_json
from provision9p.target import Target
from provision9p.tasks.engine import Play, load_play
from provision9p.tasks.phases import ssh_phase, tree_hook
from provision9p.verify.preflight import check_share_access, share_warnings
from provision9p.verify.report import CheckResult
from provision9p.verify.runner import verify_guest

# Lines a guest's job prints once it ends (the plain log's last word about it).
_END_WORDS = {"up": "up", "failed": "FAILED", "checks failed": "up, checks FAILED",
              "cancelled": "cancelled"}
# verify runs pytest in-process (global plugin state, the working directory): one at a time
_VERIFY_LOCK = threading.Lock()


def up(lab: LabSpec, targets: list[Target], *, rebuild: bool = False,
       verify: bool = True, jobs: int | None = None) -> UpRun:
    """Bring the targets up, at most `jobs` at a time (default: the host's cores).

    One guest failing does not stop the others; the UpRun says how each one ended.
    Bad input found before any guest starts (a broken role) raises at once."""
    start = time.monotonic()
    guests = {t.name: GuestOutcome(t.name) for t in targets}
    with lab_lock(lab, "up"):
        # Every role is loaded and checked first: a broken one stops before any build.
        plays = {t.name: load_play(t.guest, t.lab) for t in targets}
        for t in targets:
            for w in share_warnings(t.guest):
                ui.warn(w)
        _before_guests(lab, targets)
        for t in targets:  # before any build or boot: what QEMU's user cannot use
            check_share_access(t.guest, t.run_as)
        with switch.serving(lab, targets) as restarted:
            work = [Job(t.name, functools.partial(_up_guest, t, plays[t.name], guests[t.name],
                                                  rebuild=rebuild, verify=verify))
                    for t in targets]
            with ui.board([t.name for t in targets]):
                results = run_jobs(work, limit=jobs or default_jobs(),
                                   on_end=functools.partial(_guest_ended, guests))
            lab_wide = _after_guests(lab, guests, restarted, verify)
    return UpRun(lab.name, results, guests, time.monotonic() - start, lab_wide)


def _before_guests(lab: LabSpec, targets: list[Target]) -> None:
    """Lab-wide work before any guest starts; what the guests' jobs share is made here,
    once, so no two jobs race to make it (QEMU's account, the lab's SSH client key)."""
    for t in targets:
        _ = t.run_as  # may create the account: once, here, not in two threads at once
    if targets:
        keys.lab_client_key(targets[0].client_key)


def _after_guests(lab: LabSpec, guests: dict[str, GuestOutcome], restarted: bool,
                  verify: bool) -> GuestOutcome | None:
    """Lab-wide work once every guest's job has ended (also when some failed): the lab
    network's /etc/hosts in every running guest, its shared directories across guests."""
    if not (lab.network.enabled or len(lab.guests) > 1):
        return None
    return _lab_pass(lab, list(guests.values()), restarted, verify)


def _guest_ended(guests: dict[str, GuestOutcome], result: Outcome[GuestOutcome]) -> None:
    g = guests[result.name]
    failed = result.error is not None
    word = "cancelled" if isinstance(result.error, Cancelled) else \
        "failed" if failed else "checks failed" if g.checks_failed else "up"
    ui.guest_finished(result.name, _END_WORDS[word], not failed and not g.checks_failed)
    with ui.guest(result.name):
        if failed:
            assert result.error is not None
            ui.info(f"{_END_WORDS[word]} after {result.seconds:.1f} s: "
                    f"{first_line(result.error)}")
        else:
            ui.info(f"{_END_WORDS[word]} in {result.seconds:.1f} s")


def _up_guest(target: Target, play: Play, out: GuestOutcome, *, rebuild: bool,
              verify: bool) -> GuestOutcome:
    lab, guest = target.lab, target.guest
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
            out.pid, out.ssh_port = target.running_pid(), target.ssh_port()
            # Roles are not build inputs: they are applied again, over SSH.
            conn = connect(target)
            try:
                # booted long ago, as a rule; but an `up` killed after SSH answered left
                # a boot that may still be in sysinit
                _wait_for_sysinit(target, conn, out, boot_seconds=0.0)
                if play:
                    _roles_over_ssh(target, conn, play, out)
                hosts_changed = _lab_hosts(target, conn, out, boot_seconds=0.0)  # booted before
                # over SFTP, not `cat`: no command for the guest to start (seconds in TCG)
                mounts = conn.read_file("/proc/self/mounts").decode(errors="replace")
            finally:
                conn.close()
            missing = [s.mount for s in guest.all_shares
                       if f" {s.mount} 9p " not in mounts]
            if missing:
                out.checks_failed.append(f"not mounted: {', '.join(missing)}")
            elif not out.roles_changed and not hosts_changed:
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
        out.timings.update(build=result.stages, build_total=round(result.seconds, 2))
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
    out.pid, out.ssh_port = target.running_pid(), boot.ssh_port
    out.timings.update(boot=boot.stages, boot_total=round(boot.seconds, 2), accel=boot.accel)
    ui.info(f"booted ({boot.accel}) in {boot.seconds:.1f} s")
    out.notes.append(f"booted ({boot.accel}) to SSH in {boot.seconds:.1f} s; "
                     f"ssh port 127.0.0.1:{boot.ssh_port}")
    kept = boot.take_connection()
    # opened alongside the roles, so the first `provision9p ssh` after up has no handshake
    master = Master.open(target)
    try:
        conn = kept or connect(target)
        try:
            _wait_for_sysinit(target, conn, out, boot.seconds)
            if play:
                _roles_over_ssh(target, conn, play, out)
            _lab_hosts(target, conn, out, boot.seconds)
        finally:
            conn.close()
    finally:
        master.join()
    if verify:
        with _VERIFY_LOCK:
            plugin = verify_guest(target)
        out.checks_passed = plugin.passed
        out.checks_failed = plugin.failed
        out.checks = plugin.checks
    return out


def _lab_pass(lab: LabSpec, outcomes: list[GuestOutcome], restarted: bool,
              verify: bool) -> GuestOutcome:
    """The lab as a whole: its network's /etc/hosts, its shared directories."""
    out = GuestOutcome(f"lab {lab.name}", lab_wide=True)
    with ui.step(f"lab {lab.name}: names and shares across guests"):
        out.notes, out.checks_failed = lab_pass.settle(
            lab, booted={o.name for o in outcomes if o.booted}, switch_restarted=restarted,
            verify=verify, hosts_done={o.name for o in outcomes if o.hosts_written})
    return out


def _wait_for_sysinit(target: Target, conn: Connection, out: GuestOutcome,
                      boot_seconds: float) -> None:
    """The roles and whoever logs in after `up` see the guest past sysinit, as behind a
    stock sshd (boot/sysinit.py)."""
    waited = sysinit.wait_for_sysinit(conn, target.name,
                                      sysinit.after_ssh_timeout(boot_seconds))
    out.timings["sysinit_wait"] = round(waited, 2)
    if waited >= 0.1:
        ui.info(f"    {target.name}: sysinit reached {waited:.1f} s after SSH")


def _lab_hosts(target: Target, conn: Connection, out: GuestOutcome,
               boot_seconds: float) -> bool:
    """The lab's /etc/hosts block on the connection the roles used: no log-in of its own
    in the lab's pass (the guests this `up` did not touch still get one there). Whether
    the block had to be rewritten."""
    if not target.lab.network.enabled:
        return False
    lab_pass.wait_for_address(conn, target.guest, lab_pass.address_timeout(boot_seconds))
    changed = lab_pass.write_block(conn, target.lab)
    if changed:
        out.notes.append("/etc/hosts names the lab's guests again")
    out.hosts_written = True
    return changed


def _roles_over_ssh(target: Target, conn: Connection, play: Play, out: GuestOutcome) -> None:
    with ui.step(f"{target.name}: roles over SSH"):
        recap = ssh_phase(target.lab, target.guest, conn, play)
    out.roles_changed = recap.changed
    if recap.changed:
        out.notes.append(f"roles over SSH: {recap.changed} task(s) changed")


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


def down(lab: LabSpec, targets: list[Target], timeout: float,
         jobs: int | None = None) -> list[Outcome[bool]]:
    """Power the targets off, all at once (by default); per guest whether it was running.

    A guest that fails to stop does not keep the others running."""
    def stop(t: Target) -> bool:
        ui.status("stopping")
        return supervisor.stop(t, timeout)

    with lab_lock(lab, "down"), ui.board([t.name for t in targets]):
        results = run_jobs([Job(t.name, functools.partial(stop, t)) for t in targets],
                           limit=jobs or max(len(targets), 1))
        if not switch.any_guest_running(lab) and switch.stop(lab):
            ui.info(f"lab {lab.name}: no guest runs; its network's switch is stopped")
    return results


def status(target: Target) -> str:
    """`status`: one line per guest (more for a crashed one: its console's tail)."""
    return f"{target.name}: {supervisor.status(target).describe()}"


def network_status(lab: LabSpec) -> str | None:
    """`status`: the lab network's switch while it runs or should (nothing to say when
    the lab has no network, or it and every guest are stopped)."""
    if not lab.network.enabled:
        return None
    st = switch.status(lab, switch.guests_running(lab))
    return st.describe() if st.state in ("running", "down") else None


def connect_guest(target: Target) -> Connection:
    """SSH when the guest runs; otherwise its root tree, in its security model."""
    if target.running_pid() is not None:
        return connect(target)
    target.require_built()
    from provision9p.connect.tree import TreeConnection
    from provision9p.rootfs.metadata import open_store
    from provision9p.rootfs.overlay import ensure_mounted

    root = target.guest.root
    ensure_mounted(root.path)
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


def verify(targets: list[Target]) -> list[CheckResult]:
    """`verify`: the share checks and the lab's own files, every guest's outcome."""
    for t in targets:
        t.require_running()
    checks = [c for t in targets for c in verify_guest(t).checks]
    from provision9p.verify import cross_guest

    if targets:
        checks += cross_guest.results(lab_pass.running_targets(targets[0].lab))
    return checks


def export(target: Target, output: Path) -> None:
    """`rootfs export`: the guest's tree with real owners, to a new directory or a .tar."""
    from provision9p.rootfs.overlay import ensure_mounted
    from provision9p.rootfs.security import model_of

    root = target.guest.root
    target.require_built()
    ensure_mounted(root.path)
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
