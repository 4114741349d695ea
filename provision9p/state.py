"""The per-lab state directory: what was built, what runs, and the lab's lock.

Layout (under LabSpec.state_dir):
  lock                      held by `up`/`down`/`rootfs build` while they change things
  ssh/id_ed25519            the lab's client key
  guests/<name>/build.json  the inputs of the last successful build
  guests/<name>/host_key.pub  the guest's SSH host key, pinned by every connection
  guests/<name>/boot/       kernel and initramfs QEMU boots
  guests/<name>/run/        written by QEMU itself (its user owns it): pidfile, QMP, console
  guests/<name>/boot.json   how the running QEMU was started (port, accel, argv)
  guests/<name>/known_hosts the pinned host key, for the `ssh` program

build.json and boot.json are typed records (BuildRecord, BootRecord); GuestState is their
one reader and writer, so no stage parses another stage's JSON.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from provision9p.errors import StateError
from provision9p.lab.model import GuestSpec, LabSpec

_R = TypeVar("_R", "BuildRecord", "BootRecord")


@dataclass(frozen=True)
class BuildRecord:
    """What the last successful build was made from (rootfs/build.py writes it)."""

    fingerprint: str
    kernel: str
    release: str
    verdict: str
    initrd: bool
    run_as: str
    client_key: str
    stages: dict[str, float] = field(default_factory=dict)
    built: str = ""


@dataclass(frozen=True)
class BootRecord:
    """How the running QEMU was started (boot/supervisor.py writes it)."""

    ssh_port: int
    accel: str
    accel_reason: str
    argv: list[str]
    run_as: str
    qemu_pid: int
    started: str = ""
    #: time.time() when QEMU started (a boot another `up` follows counts from it)
    started_at: float | None = None
    #: when SSH first answered: until then the guest is booting
    ssh_ready: str | None = None
    #: when `down` stopped it: a pidfile left without this means QEMU died
    stopped: str | None = None


@dataclass(frozen=True)
class GuestState:
    """Where one guest's state lives; nothing here touches the disk until asked."""

    dir: Path

    @classmethod
    def of(cls, lab: LabSpec, guest: GuestSpec) -> GuestState:
        return cls(lab.state_dir / "guests" / guest.name)

    @property
    def build_json(self) -> Path:
        return self.dir / "build.json"

    @property
    def host_key(self) -> Path:
        return self.dir / "host_key.pub"

    @property
    def boot_dir(self) -> Path:
        return self.dir / "boot"

    @property
    def kernel(self) -> Path:
        return self.boot_dir / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.boot_dir / "initrd.img"

    @property
    def run_dir(self) -> Path:
        return self.dir / "run"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "qemu.pid"

    @property
    def qmp(self) -> Path:
        return self.run_dir / "qmp.sock"

    @property
    def console(self) -> Path:
        return self.run_dir / "console.log"

    @property
    def boot_json(self) -> Path:
        return self.dir / "boot.json"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    def read_build(self) -> BuildRecord | None:
        """The last build's record; None when never built (or the record is unreadable)."""
        return _read_record(self.build_json, BuildRecord)

    def write_build(self, record: BuildRecord) -> None:
        write_json(self.build_json, asdict(record))

    def read_host_key(self) -> tuple[str, str] | None:
        """The pinned host key as (type, base64), or None when there is none."""
        try:
            kind, data = self.host_key.read_text().split()[:2]
        except (OSError, ValueError):
            return None
        return kind, data

    def write_host_key(self, public_line: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host_key.write_text(public_line + "\n")

    def read_boot(self) -> BootRecord | None:
        """How QEMU was last started; None when it never was (or the record is unreadable)."""
        return _read_record(self.boot_json, BootRecord)

    def write_boot(self, record: BootRecord) -> None:
        write_json(self.boot_json, asdict(record))

    def running_pid(self) -> int | None:
        """QEMU's pid when it is alive; a pidfile of a dead (or reused) pid is stale."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        # The pid may have been reused by another program: ours names its pidfile.
        return pid if os.fsencode(str(self.pidfile)) in cmdline else None


def _read_record(path: Path, kind: type[_R]) -> _R | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    names = {f.name for f in fields(kind)}
    try:
        # Unknown keys are dropped: a record written by an older version still reads.
        record = kind(**{k: v for k, v in data.items() if k in names})
    except TypeError:  # a key it needs is missing: as good as no record
        return None
    return record


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically, so a crash never leaves half a state file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


@contextmanager
def lab_lock(lab: LabSpec, what: str) -> Iterator[None]:
    """Hold the lab's lock; a second `up` on the same lab is refused, not queued."""
    lab.state_dir.mkdir(parents=True, exist_ok=True)
    path = lab.state_dir / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another run"
            raise StateError(f"the lab {lab.name!r} is busy: {holder}",
                             hint="wait for it to finish, or stop it with Ctrl-C") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"`provision9p {what}` (pid {os.getpid()}) is running\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether a process runs (a zombie, reaped by nobody yet, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
