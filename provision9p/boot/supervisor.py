"""Start guests detached, wait for SSH while showing boot progress, stop them cleanly.

QEMU runs in its own session (it outlives `provision9p up`) as the user the root
share's security model allows; its pidfile, QMP socket and console log live in the
guest's run dir. A guest that does not come up in time is stopped, and the console's
tail and a likely cause are reported.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import paramiko

from provision9p import ui
from provision9p.boot import accel as accel_mod
from provision9p.boot.console import ConsoleWatch, likely_cause
from provision9p.boot.probe import BannerProbe
from provision9p.boot.qemu_argv import BootFiles, qemu_argv, spanning_shares
from provision9p.boot.qmp import QMP, QMPError
from provision9p.boot.switch import socket_dir
from provision9p.boot.timing import host_tsc_khz
from provision9p.boot.vmlinux import bootable_kernel
from provision9p.connect.ssh import HostKeyMismatch, SSHConnection, open_client, ssh_banner
from provision9p.errors import BootError, ConnectError
from provision9p.lab.model import MMIO_MACHINES, GuestSpec
from provision9p.qemu_user import RunAs, check_reachable
from provision9p.state import BootRecord, GuestState, pid_alive
from provision9p.target import Target


@dataclass
class BootReport:
    guest: str
    accel: str
    accel_reason: str
    ssh_port: int
    seconds: float
    stages: dict[str, float] = field(default_factory=dict)  # milestone -> s since start
    # the login that saw SSH answer, kept for the roles: one handshake less per `up`
    client: paramiko.SSHClient | None = field(default=None, repr=False, compare=False)

    def take_connection(self) -> SSHConnection | None:
        """The kept login as a connection (the caller closes it), once."""
        client, self.client = self.client, None
        return SSHConnection(client, self.guest, self.ssh_port) if client else None


# The wait loop's beat: a milestone on the console or SSH answering is seen this late
# at most (plus the time a read of the console takes).
POLL_SECONDS = 0.05


class _NoProgressUnderKVM(BootError):
    """KVM on trial printed nothing past early boot: fall back to TCG."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def boot_files(target: Target, accel: str, port: int) -> BootFiles:
    st = target.state
    kernel = bootable_kernel(st.kernel, target.guest.arch)
    spanning = spanning_shares(target.guest)
    for share in target.guest.all_shares:
        if share.mount_tag in spanning and not share.multidevs:
            ui.info(f"  share {share.mount_tag}: other file systems are mounted inside "
                    f"{share.path}: multidevs=remap, so their inode numbers stay apart in "
                    "the guest (set `multidevs` on the share to choose)")
    return BootFiles(kernel=kernel, initrd=st.initrd if st.initrd.is_file() else None,
                     ssh_port=port, console_log=st.console, qmp_socket=st.qmp,
                     pidfile=st.pidfile, accel=accel, lab_switch=socket_dir(target.lab),
                     spanning=spanning,
                     extra_cmdline=tcg_cmdline(target.guest.arch, target.guest.machine,
                                               accel, host_tsc_khz()))


def tcg_cmdline(arch: str, machine: str, accel: str, tsc_khz: int | None) -> str:
    """Kernel options for an emulated x86 guest only: microvm has no timer to calibrate
    the TSC against, so it is told the host's rate (boot/timing.py). (no_timer_check is
    in every x86_64 command line: qemu_argv.kernel_cmdline.)"""
    if arch != "x86_64" or accel != "tcg" or machine not in MMIO_MACHINES or not tsc_khz:
        return ""
    return f"tsc_early_khz={tsc_khz}"


def start(target: Target) -> BootReport:
    """Boot the guest and wait until SSH answers with its pinned key."""
    guest = target.guest
    choice = accel_mod.choose(guest.accel, guest.arch, target.run_as)
    try:
        return _boot(target, choice)
    except _NoProgressUnderKVM as exc:
        # QEMU could not use KVM, or the guest made no progress under it.
        accel_mod.record(False, str(exc).splitlines()[0])
        ui.warn(f"{exc}; falling back to TCG (remembered for this host)")
        return _boot(target, accel_mod.AccelChoice("tcg", "KVM did not work here"))


def _boot(target: Target, choice: accel_mod.AccelChoice) -> BootReport:
    guest, st, run_as = target.guest, target.state, target.run_as
    port = guest.ssh_port or free_port()
    _prepare_run_dir(st, run_as)
    argv = qemu_argv(guest, boot_files(target, choice.accel, port))
    if shutil.which(argv[0]) is None:
        raise BootError(f"{argv[0]} is not installed",
                        hint="apt-get install qemu-system-x86 (or `provision9p doctor --install`)")
    ui.info(f"    {guest.name}: QEMU ({choice.accel}: {choice.reason}) as {run_as.name}, "
            f"SSH on 127.0.0.1:{port}")
    started = time.monotonic()
    as_user = run_as.uid != os.geteuid()
    # A boot record from an earlier boot must not describe this QEMU, even for the moment
    # between its start and the new record (a kill -9 can land there).
    st.boot_json.unlink(missing_ok=True)
    with open(st.run_dir / "qemu.log", "wb") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=st.run_dir, start_new_session=True,
            user=run_as.uid if as_user else None, group=run_as.gid if as_user else None,
            extra_groups=os.getgrouplist(run_as.name, run_as.gid) if as_user else None,
        )
    st.write_boot(BootRecord(
        ssh_port=port, accel=choice.accel, accel_reason=choice.reason, argv=argv,
        run_as=run_as.name, qemu_pid=proc.pid, started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        started_at=time.time() - (time.monotonic() - started)))
    try:
        stages, client = _wait_for_ssh(target, proc.poll, port, started, choice)
    except BaseException:
        _kill(proc.pid)
        proc.wait()
        raise
    _mark_ready(st)
    if choice.probe:
        accel_mod.record(True, "a guest booted to SSH under KVM")
    return BootReport(guest.name, choice.accel, choice.reason, port,
                      time.monotonic() - started, stages, client)


def _mark_ready(st: GuestState) -> None:
    """SSH answered: from now on the guest is up, not booting (see `boot_in_progress`)."""
    boot = st.read_boot()
    if boot is not None:
        st.write_boot(replace(boot, ssh_ready=time.strftime("%Y-%m-%dT%H:%M:%S%z")))


def boot_in_progress(target: Target) -> bool:
    """QEMU runs but no `up` saw SSH answer yet: the `up` that started it was killed (or
    is still waiting, which the lab lock rules out for another `up`)."""
    st = target.state
    if st.running_pid() is None:
        return False
    boot = st.read_boot()
    return boot is None or boot.ssh_ready is None


def resume_boot(target: Target) -> BootReport | None:
    """Wait for a boot another (killed) `up` started, showing its milestones.

    Returns None after stopping a QEMU whose boot cannot be followed (no boot record for
    it): the caller boots the guest afresh. A boot that fails is stopped, like `start`.
    """
    guest, st = target.guest, target.state
    pid = st.running_pid()
    boot = st.read_boot()
    if pid is None:
        return None
    if boot is None or boot.qemu_pid != pid or not boot.ssh_port:
        ui.info(f"    {guest.name}: a QEMU without a boot record runs; stopping it")
        stop(target, timeout=0)
        return None
    # records written before `started_at` existed: QEMU wrote its pidfile as it started
    started_at = boot.started_at or st.pidfile.stat().st_mtime
    elapsed = max(0.0, time.time() - started_at)
    started = time.monotonic() - elapsed
    ui.info(f"    {guest.name}: a boot started {elapsed:.1f} s ago is in progress "
            f"(pid {pid}); waiting for it")
    choice = accel_mod.AccelChoice(boot.accel or "tcg", boot.accel_reason)
    port = boot.ssh_port

    def exited() -> int | None:
        return None if pid_alive(pid) else -1

    try:
        stages, client = _wait_for_ssh(target, exited, port, started, choice)
    except BaseException:
        _kill(pid)
        raise
    _mark_ready(st)
    return BootReport(guest.name, choice.accel, choice.reason, port,
                      time.monotonic() - started, stages, client)


def _prepare_run_dir(st: GuestState, run_as: RunAs) -> None:
    st.run_dir.mkdir(parents=True, exist_ok=True)
    os.chown(st.run_dir, run_as.uid, run_as.gid)
    os.chmod(st.run_dir, 0o750)
    for name in ("console.log", "qmp.sock", "qemu.pid", "qemu.log"):
        (st.run_dir / name).unlink(missing_ok=True)
    check_reachable(st.run_dir, run_as)


def _wait_for_ssh(target: Target, exited: Callable[[], int | None], port: int,
                  started: float, choice: accel_mod.AccelChoice
                  ) -> tuple[dict[str, float], paramiko.SSHClient]:
    """Milestones (s since QEMU started) until SSH answers with the pinned key, and the
    client logged in then.

    `exited` is QEMU's exit status once it has exited (Popen.poll, or a pid check for a
    QEMU another `up` started)."""
    guest, st = target.guest, target.state
    watch = ConsoleWatch(st.console)
    stages: dict[str, float] = {}
    deadline = started + guest.boot_timeout
    next_login = 0.0
    with BannerProbe(port) as probe:
        while True:
            now = time.monotonic()
            watch.poll()
            for name in watch.reached():
                if name not in stages:
                    stages[name] = round(now - started, 2)
                    ui.info(f"    {guest.name}: {name} after {stages[name]:.1f} s")
            status = exited()
            if status is not None:
                raise _exited(guest, st, watch, choice, status)
            if choice.probe and now - started > accel_mod.KVM_PROBE_SECONDS and \
                    accel_mod.KVM_PROGRESS_MARK not in watch.text:
                raise _NoProgressUnderKVM("a guest made no progress on its console under KVM")
            if now >= next_login and probe.poll():
                # the banner came: log in once to check the pinned host key
                try:
                    client = open_client(target, port, attempts=1,
                                         sock=probe.take_socket())
                except HostKeyMismatch:
                    raise
                except ConnectError:
                    next_login = time.monotonic() + 0.2  # sshd still starting
                    probe.close()
                else:
                    stages["ssh"] = round(time.monotonic() - started, 2)
                    return stages, client
            if now > deadline:
                raise _failure(guest, watch, f"no SSH after {guest.boot_timeout} s "
                               "(boot_timeout)")
            time.sleep(POLL_SECONDS)


def _exited(guest: GuestSpec, st: GuestState, watch: ConsoleWatch,
            choice: accel_mod.AccelChoice, status: int) -> BootError:
    try:
        qemu_log = (st.run_dir / "qemu.log").read_text(errors="replace").strip()
    except OSError:
        qemu_log = ""
    if choice.probe and "kvm" in qemu_log.lower():
        return _NoProgressUnderKVM(f"QEMU could not use KVM: {qemu_log[-300:]}")
    how = f"with status {status}" if status >= 0 else "(it was not ours to wait for)"
    return _failure(guest, watch, f"QEMU exited {how}"
                    + (f":\n{qemu_log[-2000:]}" if qemu_log else ""))


def _failure(guest: GuestSpec, watch: ConsoleWatch, what: str) -> BootError:
    watch.poll()
    cause = likely_cause(watch.text)
    msg = f"{guest.name} did not come up: {what}"
    if cause:
        msg += f"\n  likely cause: {cause}"
    msg += f"\n  last console lines ({watch.path}):\n" + "\n".join(
        "    " + line for line in watch.tail().splitlines())
    return BootError(msg, hint="see the console log; `provision9p kernel check` tells "
                               "whether the kernel can boot a 9P root")


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def stop(target: Target, timeout: float = 30.0) -> bool:
    """Power the guest off: poweroff over SSH or QMP, then kill after `timeout`.

    Returns False when it was not running.
    """
    st = target.state
    pid = st.running_pid()
    if pid is None:
        # a pidfile naming a dead QEMU (it crashed): `down` acknowledges it
        st.pidfile.unlink(missing_ok=True)
        return False
    # A guest still booting has no sshd to ask, and ignores ACPI until systemd runs: a
    # clean shutdown would only wait out the timeout. Nothing in it is worth saving yet.
    asked = False if boot_in_progress(target) else _ask_poweroff(target)
    deadline = time.monotonic() + (timeout if asked else 0)
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.2)
    if pid_alive(pid):
        try:
            with QMP(st.qmp) as q:
                q.execute("quit")
        except QMPError:
            pass  # no QMP (yet): the kill below
        else:
            end = time.monotonic() + 5
            while time.monotonic() < end and pid_alive(pid):
                time.sleep(0.1)
    if pid_alive(pid):
        _kill(pid)
        end = time.monotonic() + 5
        while time.monotonic() < end and pid_alive(pid):
            time.sleep(0.1)
    st.pidfile.unlink(missing_ok=True)
    boot = st.read_boot()
    if boot is not None:
        st.write_boot(replace(boot, stopped=time.strftime("%Y-%m-%dT%H:%M:%S%z")))
    return True


def _ask_poweroff(target: Target) -> bool:
    """A clean shutdown: systemd over SSH, else ACPI through QMP."""
    st = target.state
    boot = target.boot_record()
    port = boot.ssh_port if boot else 0
    if port and ssh_banner(port):
        try:
            client = open_client(target, port, timeout=5)
            try:
                _, out, _ = client.exec_command("systemctl poweroff --no-block", timeout=10)
                out.channel.recv_exit_status()  # closing first could cancel the request
            finally:
                client.close()
            return True
        except (ConnectError, OSError):
            pass
    try:
        with QMP(st.qmp) as q:
            q.execute("system_powerdown")
        return True
    except QMPError:
        return False



@dataclass(frozen=True)
class GuestStatus:
    """What `status` says about one guest."""

    state: str  # running | booting | stopped | crashed | not built
    pid: int | None = None
    ssh_port: int | None = None
    accel: str | None = None
    since: float | None = None  # seconds since QEMU started
    console_tail: str = ""  # for crashed: what the guest printed last

    def describe(self) -> str:
        if self.state in ("running", "booting"):
            what = "running" if self.state == "running" else "booting (no SSH yet)"
            up = f", up {self.since:.0f} s" if self.since is not None else ""
            return (f"{what} (pid {self.pid}, {self.accel or '?'}, ssh 127.0.0.1:"
                    f"{self.ssh_port or '?'}{up})")
        if self.state == "crashed":
            tail = "\n".join(f"    {line}" for line in self.console_tail.splitlines())
            return ("crashed: QEMU died without shutting down (killed, or it failed); "
                    "`provision9p up` starts it again" + (f"\n  last console lines:\n{tail}"
                                                          if tail else ""))
        return self.state


def status(target: Target) -> GuestStatus:
    """Running, booting, stopped, or crashed: QEMU removes its pidfile when it exits
    normally and `stop` removes it too, so a pidfile naming a dead QEMU means it died
    (kill -9, a crash, the host's OOM killer)."""
    st = target.state
    boot = st.read_boot()
    pid = st.running_pid()
    if pid is not None:
        started = boot.started_at if boot else None
        # a record without `started_at` predates the booting/running distinction
        booting = boot is not None and boot.ssh_ready is None and started is not None
        return GuestStatus(
            "booting" if booting else "running", pid=pid,
            ssh_port=boot.ssh_port if boot else None, accel=boot.accel if boot else None,
            since=time.time() - started if started is not None else None)
    if st.pidfile.exists() and (boot is None or boot.stopped is None):
        watch = ConsoleWatch(st.console)
        watch.poll()
        return GuestStatus("crashed", console_tail=watch.tail(10))
    built = st.read_build()
    return GuestStatus("stopped" if built is not None else "stopped, not built")
