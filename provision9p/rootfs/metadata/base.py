"""What the guest will see of a file, and the store that reads and writes it on the host.

A security model (mapped-xattr, mapped-file, passthrough/none) decides where owner,
mode, file type and device numbers live on the host. A `MetadataStore` hides that,
so the offline `tree` connection and the conversion code speak in guest terms.
All paths are relative to the share's root and are never followed out of it.
"""

from __future__ import annotations

import stat as stat_mod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class GuestStat:
    """The lstat fields the guest sees for one object."""

    mode: int  # full st_mode, file type bits included
    uid: int
    gid: int
    size: int
    rdev: int = 0
    nlink: int = 1
    mtime: float = 0.0

    @property
    def is_dir(self) -> bool:
        return stat_mod.S_ISDIR(self.mode)

    @property
    def is_link(self) -> bool:
        return stat_mod.S_ISLNK(self.mode)

    @property
    def is_reg(self) -> bool:
        return stat_mod.S_ISREG(self.mode)

    @property
    def perm(self) -> int:
        return stat_mod.S_IMODE(self.mode)


class MetadataStore(Protocol):
    """Guest-view access to a share's files, in the share's security model."""

    # ACL xattr as the guest names it -> where the model keeps it on the host.
    acl_names: Mapping[bytes, bytes]

    def path(self, rel: str) -> str:
        """The host path of `rel`, refusing any symlink on the way there."""
        ...

    def lstat(self, rel: str) -> GuestStat:
        """Raise FileNotFoundError when there is nothing at `rel`."""
        ...

    def readlink(self, rel: str) -> str: ...

    def read_bytes(self, rel: str) -> bytes: ...

    def write_bytes(self, rel: str, data: bytes, mode: int, uid: int, gid: int) -> None:
        """Create or replace a regular file atomically, with the given guest metadata."""
        ...

    def mkdir(self, rel: str, mode: int, uid: int, gid: int) -> None: ...

    def symlink(self, target: str, rel: str, uid: int, gid: int) -> None: ...

    def mknod(self, rel: str, mode: int, rdev: int, uid: int, gid: int) -> None:
        """A device, FIFO or socket node: `mode` carries the file type bits."""
        ...

    def chown(self, rel: str, uid: int, gid: int) -> None: ...

    def chmod(self, rel: str, perm: int) -> None:
        """Change the permission bits (07777) and keep the file type."""
        ...

    def unlink(self, rel: str) -> None: ...

    def rmdir(self, rel: str) -> None: ...

    def listdir(self, rel: str) -> list[str]:
        """Names in a directory, without the model's own bookkeeping (.virtfs_metadata)."""
        ...

    def record(self, rel: str, mode: int, uid: int, gid: int, rdev: int | None = None, *,
               host: str | bytes | None = None) -> None:
        """Every guest field of an object already there (how a conversion stamps it).

        `host`: its host path, when the caller has walked there without following links.
        """
        ...

    def guest_xattrs(self, rel: str) -> dict[bytes, bytes]:
        """The xattrs the guest sees: user.* and ACLs, under the guest's names."""
        ...
