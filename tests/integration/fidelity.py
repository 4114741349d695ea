"""A tree with every kind of object, and the same view of it from the host and a guest.

Used by test_up.py: the tree is converted to mapped-xattr, served as an extra share,
and the guest's lstat / readlink / content hash / ACL of every object must equal the
source's.
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import subprocess
from pathlib import Path

NAMES_ODD = [b"with space", "caf\u00e9".encode("latin-1"), b"new\nline", b"tab\there"]


def make_source(root: Path) -> None:
    """Every kind the issue names, owned by several users, as root."""
    root.mkdir()
    os.chmod(root, 0o755)
    d = root / "d"
    d.mkdir()
    (d / "plain").write_text("plain file\n")
    (root / "suid").write_bytes(b"#!/bin/sh\necho suid\n")
    os.chmod(root / "suid", 0o4755)
    (root / "sgid").mkdir()
    os.chown(root / "sgid", 0, 50)
    os.chmod(root / "sgid", 0o2775)
    (root / "sticky").mkdir()
    os.chmod(root / "sticky", 0o1777)
    os.symlink("d/plain", root / "rel")
    os.symlink("/etc/hostname", root / "abs")
    os.symlink("nowhere/at/all", root / "dangling")
    (root / "hl1").write_text("linked twice\n")
    os.link(root / "hl1", root / "hl2")
    os.mkfifo(root / "fifo", 0o620)
    os.mknod(root / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(root / "blk", 0o660 | stat.S_IFBLK, os.makedev(7, 0))
    os.chown(root / "blk", 0, 6)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(root / "sock"))
    (root / "owned").write_text("someone else's\n")
    os.chown(root / "owned", 1234, 5678)
    os.chmod(root / "owned", 0o600)
    os.lchown(root / "rel", 1234, 5678)
    for name in NAMES_ODD:
        p = os.path.join(os.fsencode(root), name)
        with open(p, "wb") as f:
            f.write(name + b"\n")
    (root / "acl").write_text("with an ACL\n")
    subprocess.run(["setfacl", "-m", "u:1234:rw,g:5678:r", str(root / "acl")], check=True)
    subprocess.run(["setfacl", "-d", "-m", "u:1234:rwx", str(root / "sticky")], check=True)
    os.chmod(root / "acl", 0o640)


def _acl(path: bytes) -> str:
    out = subprocess.run(["getfacl", "-cpn", "--", os.fsdecode(path)], capture_output=True,
                         text=True, errors="surrogateescape")
    return ",".join(sorted(line for line in out.stdout.splitlines() if line))


def host_view(root: Path) -> dict[bytes, str]:
    """name -> 'mode uid gid size rdev-major rdev-minor nlink | link-or-hash | acl'."""
    view: dict[bytes, str] = {}
    base = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(base):
        for name in [*dirnames, *filenames]:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, base)
            st = os.lstat(full)
            size = 0 if stat.S_ISDIR(st.st_mode) else st.st_size
            fields = (f"{st.st_mode:x} {st.st_uid} {st.st_gid} {size} "
                      f"{os.major(st.st_rdev):x} {os.minor(st.st_rdev):x} {st.st_nlink}")
            if stat.S_ISLNK(st.st_mode):
                extra = os.fsdecode(os.readlink(full))
                acl = ""
            else:
                extra = ""
                if stat.S_ISREG(st.st_mode):
                    with open(full, "rb") as f:
                        extra = hashlib.sha256(f.read()).hexdigest()
                acl = _acl(full) if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) \
                    else ""
            view[rel] = f"{fields}|{extra}|{acl}"
    return view


# Runs in the guest (bash + coreutils + acl): the same fields, NUL-separated records.
GUEST_SCRIPT = r"""
export LC_ALL=C  # bytes, not characters: names need not be UTF-8
cd "$1" || exit 3
find . -mindepth 1 -printf '%P\0' | while IFS= read -r -d '' p; do
  printf '%s\0' "$p"
  size=$(stat -c %s -- "$p"); [ -d "$p" ] && [ ! -L "$p" ] && size=0
  stat -c "%f %u %g $size %t %T %h" -- "$p" | tr -d '\n'
  printf '|'
  if [ -L "$p" ]; then readlink -- "$p" | tr -d '\n'
  elif [ -f "$p" ]; then sha256sum < "$p" | cut -d' ' -f1 | tr -d '\n'; fi
  printf '|'
  if [ ! -L "$p" ] && { [ -f "$p" ] || [ -d "$p" ]; }; then
    getfacl -cpn -- "$p" 2>/dev/null | grep -v '^$' | sort | paste -sd, | tr -d '\n'
  fi
  printf '\0'
done
"""


def parse_guest(out: bytes) -> dict[bytes, str]:
    parts = out.split(b"\0")
    return {parts[i]: parts[i + 1].decode(errors="surrogateescape")
            for i in range(0, len(parts) - 1, 2)}


def without_dir_nlink(record: str) -> str:
    """The record with a directory's link count blanked (mapped-file adds one)."""
    fields, rest = record.split("|", 1)
    parts = fields.split()
    if stat.S_ISDIR(int(parts[0], 16)):
        parts[6] = "-"
    return " ".join(parts) + "|" + rest
