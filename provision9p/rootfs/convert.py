"""Apply a mapped security model to a real tree, in place, so QEMU serves it unprivileged.

Every object keeps, in the guest's eyes, its owner, group, mode (setuid/setgid/sticky
and file type), device numbers, hard links, user.* xattrs and POSIX ACLs. On the host
everything becomes QEMU's user's, 0600 files and 0700 dirs as QEMU creates them;
symlinks, devices, FIFOs and sockets become regular files (DESIGN.md: QEMU refuses host
special files and cannot read host symlinks through a mapped model).
File capabilities (security.capability) cannot cross: QEMU's mapped model carries only
user.* xattrs and ACLs. They are dropped with a warning, or refused.
Runs on a staging tree: a failure half-way leaves nothing a later run would use.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

import xattr

from provision9p import ui
from provision9p.errors import BuildError
from provision9p.rootfs.metadata.stores import (
    HOST_DIR_MODE,
    HOST_FILE_MODE,
    MappedFileStore,
    XattrStore,
    write_new,
)

ACL_NAMES = (b"system.posix_acl_access", b"system.posix_acl_default")


@dataclass
class ConvertReport:
    counts: dict[str, int] = field(default_factory=dict)
    dropped_capabilities: list[str] = field(default_factory=list)
    dropped_xattrs: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def __str__(self) -> str:
        total = sum(self.counts.values())
        kinds = ", ".join(f"{v} {k}" for k, v in sorted(self.counts.items()))
        return f"{total} objects in {self.seconds:.1f} s ({kinds})"


_KINDS = {stat.S_IFREG: "files", stat.S_IFDIR: "dirs", stat.S_IFLNK: "symlinks",
          stat.S_IFCHR: "char devices", stat.S_IFBLK: "block devices", stat.S_IFIFO: "fifos",
          stat.S_IFSOCK: "sockets"}


def convert_in_place(tree: Path, model: str, *, host_uid: int, host_gid: int,
                     capabilities: str = "drop") -> ConvertReport:
    """Convert `tree` (a real tree, as debootstrap made it) to `model`'s host layout."""
    if model not in ("mapped-xattr", "mapped", "mapped-file"):
        raise ValueError(f"{model} keeps the tree as it is")
    report = ConvertReport()
    start = time.monotonic()
    seen: dict[tuple[int, int], os.stat_result] = {}
    mapped_file = model == "mapped-file"
    root = os.fsencode(tree)
    last = start
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != b".virtfs_metadata"]
        for name in [*filenames, *dirnames]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            _convert_one(path, st, root, mapped_file, host_uid, host_gid, capabilities,
                         report, seen)
        now = time.monotonic()
        if now - last > 5:
            ui.info(f"    {sum(report.counts.values())} objects converted")
            last = now
    _convert_one(root, os.lstat(root), root, mapped_file, host_uid, host_gid, capabilities,
                 report, seen)
    report.seconds = time.monotonic() - start
    if report.dropped_capabilities:
        names = ", ".join(report.dropped_capabilities[:8])
        more = len(report.dropped_capabilities) - 8
        msg = (f"file capabilities cannot be carried by QEMU's {model} model: {names}"
               + (f" and {more} more" if more > 0 else ""))
        if capabilities == "fail":
            raise BuildError(msg, hint="set rootfs.capabilities: drop to build without "
                             "them (those programs then need root in the guest)")
        ui.warn(msg + " (dropped; rootfs.capabilities: fail refuses instead)")
    return report


def _convert_one(path: bytes, st: os.stat_result, root: bytes, mapped_file: bool,
                 host_uid: int, host_gid: int, capabilities: str, report: ConvertReport,
                 seen: dict[tuple[int, int], os.stat_result]) -> None:
    kind = stat.S_IFMT(st.st_mode)
    label = _KINDS.get(kind, "other")
    report.counts[label] = report.counts.get(label, 0) + 1
    rel = os.fsdecode(os.path.relpath(path, root)) if path != root else ""
    inode = (st.st_dev, st.st_ino)
    if kind not in (stat.S_IFDIR, stat.S_IFLNK) and st.st_nlink > 1:
        if inode in seen:
            # A hard link: the inode (and its xattrs) is done; mapped-file needs its own file,
            # from the metadata the inode had before its first name was converted.
            first = seen[inode]
            if mapped_file:
                _meta_store(root, host_uid, host_gid).write_meta(
                    rel, first.st_mode, first.st_uid, first.st_gid, first.st_rdev or None)
            return
        seen[inode] = st
    if kind == stat.S_IFLNK:
        target = os.readlink(path)
        os.unlink(path)
        write_new(path, target, host_uid, host_gid, HOST_FILE_MODE)
    elif kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
        os.unlink(path)
        write_new(path, b"", host_uid, host_gid, HOST_FILE_MODE)
    else:
        keep = _move_xattrs(path, rel, mapped_file, capabilities, report)
        os.chown(path, host_uid, host_gid)
        os.chmod(path, HOST_DIR_MODE if kind == stat.S_IFDIR else HOST_FILE_MODE)
        for name, value in keep.items():  # chmod rewrote the ACL's mask; put it back
            xattr.set(path, name, value, nofollow=True)
    rdev = st.st_rdev if kind in (stat.S_IFCHR, stat.S_IFBLK) else None
    if mapped_file:
        _meta_store(root, host_uid, host_gid).write_meta(rel, st.st_mode, st.st_uid,
                                                         st.st_gid, rdev)
    else:
        XattrStore.set_attrs(os.fsdecode(path), st.st_mode, st.st_uid, st.st_gid, rdev)


_stores: dict[tuple[bytes, int, int], MappedFileStore] = {}


def _meta_store(root: bytes, uid: int, gid: int) -> MappedFileStore:
    key = (root, uid, gid)
    if key not in _stores:
        _stores[key] = MappedFileStore(Path(os.fsdecode(root)), uid, gid)
    return _stores[key]


def _move_xattrs(path: bytes, rel: str, mapped_file: bool, capabilities: str,
                 report: ConvertReport) -> dict[bytes, bytes]:
    """ACLs to where QEMU's mapped model reads them; what it cannot carry, dropped.

    Returns the ACLs that stay on the host file (mapped-file) to restore after chmod.
    """
    keep: dict[bytes, bytes] = {}
    try:
        names = xattr.list(path, nofollow=True)
    except OSError:
        return keep
    for name in names:
        if name.startswith(b"user."):
            continue
        if name in ACL_NAMES:
            if mapped_file:  # mapped-file passes xattrs (ACLs included) straight through
                keep[name] = xattr.get(path, name, nofollow=True)
                continue
            value = xattr.get(path, name, nofollow=True)
            xattr.set(path, b"user.virtfs." + name, value, nofollow=True)
            xattr.remove(path, name, nofollow=True)
        elif name == b"security.capability":
            report.dropped_capabilities.append("/" + rel)
            if capabilities != "fail":
                xattr.remove(path, name, nofollow=True)
        else:
            report.dropped_xattrs.append(f"/{rel} ({name.decode(errors='replace')})")
            xattr.remove(path, name, nofollow=True)
    return keep
