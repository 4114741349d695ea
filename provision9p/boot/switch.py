"""The lab network's switch: one `vde_switch` per lab, run as QEMU's user.

Why vde rather than a bridge: a bridge with taps needs root (/dev/net/tun is root-only
and qemu-bridge-helper is not setuid on Debian) and a network namespace of our own to
keep addresses off the host; vde_switch is an unprivileged process with a unix socket
that QEMU's own `vde` netdev joins, so QEMU stays unprivileged and the host has no
interface for the lab at all.

The switch daemonizes (it reads commands from stdin otherwise, and exits at EOF); its
pidfile, control directory and management socket live in the lab's `net/` directory.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from provision9p.errors import BootError, HostError
from provision9p.lab.model import LabSpec
from provision9p.qemu_user import RunAs, check_reachable
from provision9p.state import pid_alive
from provision9p.target import Target

PROGRAM = "vde_switch"
_REPLY_END = re.compile(rb"(^|\n)1\d{3} [^\n]*\n")
PORTS = 64  # vde_switch's default is 32; a port per guest is all it needs


@dataclass(frozen=True)
class SwitchPaths:
    """Where one lab's switch keeps its sockets and pid."""

    dir: Path

    @classmethod
    def of(cls, lab: LabSpec) -> SwitchPaths:
        return cls(lab.state_dir / "net")

    @property
    def ctl(self) -> Path:
        """The control directory QEMU's `-netdev vde,sock=` names."""
        return self.dir / "switch.ctl"

    @property
    def mgmt(self) -> Path:
        return self.dir / "switch.mgmt"

    @property
    def pidfile(self) -> Path:
        return self.dir / "switch.pid"

    @property
    def log(self) -> Path:
        return self.dir / "switch.log"


def socket_dir(lab: LabSpec) -> Path | None:
    """What QEMU's second NIC joins; None when the lab has no network."""
    return SwitchPaths.of(lab).ctl if lab.network.enabled else None


def running_pid(lab: LabSpec) -> int | None:
    """The switch's pid when it runs; a pidfile naming a dead or reused pid is stale."""
    paths = SwitchPaths.of(lab)
    try:
        pid = int(paths.pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if os.fsencode(str(paths.ctl)) in cmdline.split(b"\0") else None


def ensure(lab: LabSpec, run_as: RunAs, *, timeout: float = 10.0) -> tuple[int, bool]:
    """Start the lab's switch unless it runs; (pid, whether it was started now)."""
    pid = running_pid(lab)
    if pid is not None:
        return pid, False
    program = shutil.which(PROGRAM)
    if program is None:
        raise HostError(f"the lab network needs {PROGRAM}, which is not installed",
                        hint="apt-get install vde2")
    paths = SwitchPaths.of(lab)
    paths.dir.mkdir(parents=True, exist_ok=True)
    os.chown(paths.dir, run_as.uid, run_as.gid)
    os.chmod(paths.dir, 0o750)
    check_reachable(paths.dir, run_as)
    # what a dead switch left behind; vde_switch refuses a control dir with a live socket
    shutil.rmtree(paths.ctl, ignore_errors=True)
    for stale in (paths.mgmt, paths.pidfile):
        stale.unlink(missing_ok=True)
    as_user = run_as.uid != os.geteuid()
    argv = [program, "--daemon", "--sock", str(paths.ctl), "--mgmt", str(paths.mgmt),
            "--pidfile", str(paths.pidfile), "--numports", str(PORTS),
            "--dirmode", "0770", "--mode", "0660", "--mgmtmode", "0600"]
    with open(paths.log, "wb") as log:
        proc = subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=paths.dir, start_new_session=True, check=False,
            user=run_as.uid if as_user else None, group=run_as.gid if as_user else None,
            extra_groups=os.getgrouplist(run_as.name, run_as.gid) if as_user else None)
    deadline = time.monotonic() + timeout
    while proc.returncode == 0 and time.monotonic() < deadline:
        pid = running_pid(lab)
        if pid is not None and (paths.ctl / "ctl").exists():
            return pid, True
        time.sleep(0.05)
    stop(lab)
    said = paths.log.read_text(errors="replace").strip()[-500:]
    raise BootError(f"the lab's {PROGRAM} did not start (exit {proc.returncode})"
                    + (f": {said}" if said else ""),
                    hint=f"see {paths.log}; run `{' '.join(argv[:1] + argv[2:4])}` by hand")


def stop(lab: LabSpec, timeout: float = 5.0) -> bool:
    """Stop the lab's switch; False when it was not running. Its files go too."""
    paths = SwitchPaths.of(lab)
    pid = running_pid(lab)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.05)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    shutil.rmtree(paths.ctl, ignore_errors=True)
    for name in (paths.mgmt, paths.pidfile):
        name.unlink(missing_ok=True)
    return pid is not None



def ports_in_use(lab: LabSpec, timeout: float = 2.0) -> int | None:
    """How many ports of the switch are taken (one per connected guest), from its
    management socket; None when it cannot be asked."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(SwitchPaths.of(lab).mgmt))
            s.sendall(b"port/print\n")
            data = b""
            # the reply ends with a status line: "1000 Success", or 1xxx and an error
            while not _REPLY_END.search(data):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    return sum(1 for line in data.decode(errors="replace").splitlines()
               if line.startswith("Port ") and "ACTIVE" in line)


@dataclass(frozen=True)
class SwitchStatus:
    """What `status` says about the lab network."""

    enabled: bool
    pid: int | None
    guests_running: int
    ports: int | None = None
    subnet: str = ""

    @property
    def state(self) -> str:
        if not self.enabled:
            return "none"
        if self.pid is not None:
            return "running"
        return "down" if self.guests_running else "stopped"

    def describe(self) -> str:
        head = f"lab network {self.subnet}: switch"
        if self.state == "running":
            ports = f", {self.ports} guest(s) connected" if self.ports is not None else ""
            return f"{head} running (pid {self.pid}{ports})"
        if self.state == "down":
            return (f"{head} down while {self.guests_running} guest(s) run: it died or was "
                    "killed; `provision9p up` restarts it and reconnects them")
        return f"{head} stopped"


def status(lab: LabSpec, running_guests: int) -> SwitchStatus:
    pid = running_pid(lab) if lab.network.enabled else None
    ports = ports_in_use(lab) if pid is not None else None
    return SwitchStatus(lab.network.enabled, pid, running_guests, ports,
                        str(lab.network.subnet))


def switch_user(targets: Sequence[Target]) -> RunAs:
    """Who runs the switch: QEMU's unprivileged user when any guest has one (a QEMU as
    root can join its socket too), else root."""
    users = [t.run_as for t in targets]
    return next((u for u in users if not u.is_root), users[0])


@contextlib.contextmanager
def serving(lab: LabSpec, targets: Sequence[Target]) -> Iterator[bool]:
    """The switch runs while `up` boots guests; yields whether it was (re)started now.

    On the way out it is stopped again when no guest of the lab runs (a failed `up`
    leaves no switch behind)."""
    if not lab.network.enabled or not targets:
        yield False
        return
    _, started = ensure(lab, switch_user(targets))
    try:
        yield started
    finally:
        if not any_guest_running(lab):
            stop(lab)


def guests_running(lab: LabSpec) -> int:
    """How many of the lab's guests have a live QEMU."""
    from provision9p.state import GuestState

    return sum(1 for g in lab.guests if GuestState.of(lab, g).running_pid() is not None)


def any_guest_running(lab: LabSpec) -> bool:
    return guests_running(lab) > 0


LAB_NIC_ID = "labnic"  # the -device id qemu_argv gives the second NIC
LAB_NETDEV_ID = "net1"


def reconnect(target: Target, *, timeout: float = 20.0) -> None:
    """Plug a running guest's lab NIC into a switch started after it (a dead switch's
    port is gone for good: QEMU's vde netdev never reconnects, and a NIC cannot change
    its backend). The NIC is unplugged and plugged again with the same MAC, which the
    guest's networkd matches; on a machine without hotplug (microvm) this fails."""
    from provision9p.boot.qmp import QMP, QMPError

    guest, lab = target.guest, target.lab
    ctl = socket_dir(lab)
    if ctl is None or guest.mac is None:
        return
    net = "virtio-net-device" if guest.machine == "microvm" else "virtio-net-pci"
    try:
        with QMP(target.state.qmp, timeout=timeout) as q:
            q.execute("device_del", id=LAB_NIC_ID)
            deadline = time.monotonic() + timeout
            while _has_device(q.execute("qom-list", path="/machine/peripheral")):
                if time.monotonic() > deadline:
                    raise QMPError("the guest did not release its lab NIC "
                                   f"within {timeout:.0f} s")
                time.sleep(0.2)
            q.execute("netdev_del", id=LAB_NETDEV_ID)
            q.execute("netdev_add", type="vde", id=LAB_NETDEV_ID, sock=str(ctl))
            extra = {} if net == "virtio-net-device" else {"romfile": ""}
            q.execute("device_add", driver=net, id=LAB_NIC_ID, netdev=LAB_NETDEV_ID,
                      mac=guest.mac, **extra)
    except QMPError as exc:
        raise BootError(f"{guest.name}: cannot reconnect its lab NIC to the new switch: "
                        f"{exc}", hint=f"restart the guest: `provision9p down {guest.name} "
                                       f"&& provision9p up {guest.name}`") from None


def _has_device(children: object) -> bool:
    return isinstance(children, list) and any(
        isinstance(c, dict) and c.get("name") == LAB_NIC_ID for c in children)
