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
# Where the build put the lab's own client key; a guest made from the image gets its lab's.
CLIENT_KEY_FILE = "root/.ssh/authorized_keys"


@dataclass(frozen=True)
class Rules:
    """The fixed points of one image: every time is clamped to `epoch`."""

    epoch: int  # SOURCE_DATE_EPOCH
    # the building lab's client keys ("ssh-ed25519 AAAA..."): made per lab and machine,
    # so they leave root's authorized_keys (keys the roles put there stay)
    client_keys: tuple[str, ...] = ()

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
        if rel == CLIENT_KEY_FILE and self.client_keys:
            return without_keys(data, self.client_keys)
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


def _key_id(line: bytes | str) -> tuple[str, ...]:
    """A public key line's type and key, without options or comment."""
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    words = text.split()
    for i, word in enumerate(words):
        if word.startswith(("ssh-", "ecdsa-", "sk-")) and i + 1 < len(words):
            return (word, words[i + 1])
    return ()


def without_keys(data: bytes, keys: tuple[str, ...]) -> bytes:
    """authorized_keys content less the lines of the given public keys."""
    drop = {_key_id(k) for k in keys} - {()}
    lines = data.split(b"\n")
    return b"\n".join(line for line in lines if _key_id(line) not in drop)
