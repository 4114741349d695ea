"""One small interface to a guest, whether it is a tree on the host or a booted guest.

Modules (provision9p.tasks) and checks speak only this. The `tree` connection acts on
the root tree before boot, storing owner and mode the way the root share's security
model does; the `ssh` connection runs over one paramiko session per guest.
Paths are absolute guest paths ("/etc/hostname").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from provision9p.rootfs.metadata.base import GuestStat


@dataclass(frozen=True)
class RunResult:
    """What a command did in the guest."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Connection(Protocol):
    """A guest, as the roles engine and verify see it."""

    #: "tree" (offline, before boot) or "ssh" (booted guest)
    phase: str
    #: the guest's name, for messages
    guest: str

    def run(self, command: str | list[str], *, stdin: bytes | None = None,
            cwd: str | None = None, env: dict[str, str] | None = None) -> RunResult:
        """Run a command in the guest (a string goes to /bin/sh -c; a list is exec'd)."""
        ...

    def stat(self, path: str) -> GuestStat | None:
        """lstat in the guest's terms; None when nothing is there."""
        ...

    def readlink(self, path: str) -> str: ...

    def read_file(self, path: str) -> bytes: ...

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644,
                   uid: int = 0, gid: int = 0) -> None:
        """Create or replace a regular file atomically, with this owner and mode."""
        ...

    def mkdir(self, path: str, *, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        """Create one directory (the parent must exist)."""
        ...

    def symlink(self, target: str, path: str) -> None: ...

    def chown(self, path: str, uid: int, gid: int) -> None: ...

    def chmod(self, path: str, mode: int) -> None:
        """Permission bits only (07777)."""
        ...

    def remove(self, path: str) -> None:
        """Remove a file, symlink or an (empty) directory."""
        ...

    def listdir(self, path: str) -> list[str]: ...

    def close(self) -> None: ...
