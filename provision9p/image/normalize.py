"""What an image leaves out or makes fixed, so two builds of one lab and lock agree.

Applied to the archive stream, never to the guest's tree: the built guest keeps its
machine-id, host key and logs; only the image is free of what differs by time or chance.
"""

from __future__ import annotations

import fnmatch
import tarfile
from dataclasses import dataclass

# Removed outright: made per machine or per boot, or caches rebuilt when missing.
DROP = (
    "etc/ssh/ssh_host_*",  # made when a guest is created from the image, then pinned
    "var/lib/dbus/machine-id",  # a regular file here would pin a machine id
    "var/lib/systemd/random-seed", "var/lib/urandom/random-seed",
    "var/lib/systemd/catalog/database",  # journalctl --update-catalog remakes it
    "var/cache/ldconfig/aux-cache",
    "var/lib/dpkg/*-old", "var/cache/debconf/*-old",
    "etc/passwd-", "etc/group-", "etc/shadow-", "etc/gshadow-", "etc/subuid-", "etc/subgid-",
)
# Directories whose files go; the directories below them stay (packages expect them).
EMPTIED = ("var/log", "var/lib/apt/lists", "var/cache/apt", "var/cache/man", "tmp", "var/tmp",
           "var/lib/systemd/timers")
# A directory of this name goes with everything in it, wherever it is.
DROPPED_DIRS = ("__pycache__",)
EMPTY_FILES = ("etc/machine-id",)  # empty: systemd makes the id at first boot


@dataclass(frozen=True)
class Rules:
    """The fixed points of one image: every time is clamped to `epoch`."""

    epoch: int  # SOURCE_DATE_EPOCH

    def dropped(self, rel: str, info: tarfile.TarInfo) -> bool:
        if any(part in DROPPED_DIRS for part in rel.split("/")):
            return True
        if any(fnmatch.fnmatchcase(rel, pattern) for pattern in DROP):
            return not (rel == "var/lib/dbus/machine-id" and info.issym())
        return not info.isdir() and any(rel.startswith(d + "/") for d in EMPTIED)

    def content(self, rel: str, data: bytes) -> bytes:
        """A kept regular file's content as the image holds it."""
        if rel in EMPTY_FILES:
            return b""
        if rel == "etc/shadow":
            return fixed_shadow(data, self.epoch // 86400)
        return data

    def clamp(self, info: tarfile.TarInfo) -> None:
        """Every time no later than the epoch; no names, only numeric owners."""
        info.mtime = min(int(info.mtime), self.epoch)
        info.uname = info.gname = ""
        info.pax_headers = {k: v for k, v in sorted(info.pax_headers.items())
                            if k not in ("atime", "ctime", "mtime")}


def fixed_shadow(data: bytes, day: int) -> bytes:
    """/etc/shadow with every set last-change day (field 3) replaced by `day`.

    useradd and passwd write today's day number; an image must not depend on the day.
    """
    lines = []
    for line in data.split(b"\n"):
        fields = line.split(b":")
        if len(fields) >= 3 and fields[2]:
            fields[2] = str(day).encode()
        lines.append(b":".join(fields))
    return b"\n".join(lines)
