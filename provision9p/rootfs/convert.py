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

import xattr

from provision9p import ui
from provision9p.errors import BuildError
from provision9p.rootfs.metadata.stores import (
    HOST_DIR_MODE,
    HOST_FILE_MODE,
    MappedStore,
    write_new,
)


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


def convert_in_place(store: MappedStore, model: str, *, capabilities: str = "drop",
                     overlay_upper: bool = False) -> ConvertReport:
    """Convert the real tree at `store.root` (as the builder made it) to the store's layout.

    `model` names the security model in messages. `overlay_upper`: the tree is an
    overlayfs upper layer; its whiteouts and opaque/redirect marks stay overlay's.
    """
    report = ConvertReport()
    start = time.monotonic()
    seen: dict[tuple[int, int], os.stat_result] = {}
    root = os.fsencode(store.root)
    hidden = {os.fsencode(n) for n in store.hidden}
    last = start
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in hidden]
        for name in [*filenames, *dirnames]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if overlay_upper and _is_whiteout(st):
                continue
            _convert_one(store, path, st, root, capabilities, report, seen, overlay_upper)
        now = time.monotonic()
        if now - last > 5:
            ui.info(f"    {sum(report.counts.values())} objects converted")
            last = now
    _convert_one(store, root, os.lstat(root), root, capabilities, report, seen, overlay_upper)
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


def _convert_one(store: MappedStore, path: bytes, st: os.stat_result, root: bytes,
                 capabilities: str, report: ConvertReport,
                 seen: dict[tuple[int, int], os.stat_result],
                 overlay_upper: bool = False) -> None:
    kind = stat.S_IFMT(st.st_mode)
    label = _KINDS.get(kind, "other")
    report.counts[label] = report.counts.get(label, 0) + 1
    rel = os.fsdecode(os.path.relpath(path, root)) if path != root else ""
    inode = (st.st_dev, st.st_ino)
    if kind not in (stat.S_IFDIR, stat.S_IFLNK) and st.st_nlink > 1:
        if inode in seen:
            # A hard link: the inode is done; stamp this name with the metadata the inode
            # had before its first name was converted (mapped-file keeps it per name).
            first = seen[inode]
            store.record(rel, first.st_mode, first.st_uid, first.st_gid, _rdev(first),
                         host=path)
            return
        seen[inode] = st
    uid, gid = store.host_uid, store.host_gid
    if kind == stat.S_IFLNK:
        target = os.readlink(path)
        os.unlink(path)
        write_new(path, target, uid, gid, HOST_FILE_MODE)
    elif kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
        os.unlink(path)
        write_new(path, b"", uid, gid, HOST_FILE_MODE)
    else:
        keep = _move_xattrs(store, path, rel, capabilities, report, overlay_upper)
        os.chown(path, uid, gid)
        os.chmod(path, HOST_DIR_MODE if kind == stat.S_IFDIR else HOST_FILE_MODE)
        for name, value in keep.items():  # chmod rewrote the ACL's mask; put it back
            xattr.set(path, name, value, nofollow=True)
    store.record(rel, st.st_mode, st.st_uid, st.st_gid, _rdev(st), host=path)


def _rdev(st: os.stat_result) -> int | None:
    return st.st_rdev if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else None


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


# overlayfs's own marks: a dir hiding the lower one, a renamed dir's origin. The rest
# (origin, impure) point at the plain base's inodes, which the converted base is not.
_OVERLAY_KEEP = (b"trusted.overlay.opaque", b"trusted.overlay.redirect")


def _move_xattrs(store: MappedStore, path: bytes, rel: str, capabilities: str,
                 report: ConvertReport, overlay_upper: bool = False) -> dict[bytes, bytes]:
    """ACLs to where the store keeps them; what QEMU's mapped models cannot carry, dropped.

    Returns the ACLs that stay where they are (mapped-file), to restore after chmod.
    """
    keep: dict[bytes, bytes] = {}
    try:
        names = xattr.list(path, nofollow=True)
    except OSError:
        return keep
    for name in names:
        if name.startswith(b"user.") or (overlay_upper and name in _OVERLAY_KEEP):
            continue
        if overlay_upper and name.startswith(b"trusted.overlay."):
            xattr.remove(path, name, nofollow=True)
            continue
        if name in store.acl_names:
            value = xattr.get(path, name, nofollow=True)
            host_name = store.acl_names[name]
            if host_name == name:
                keep[name] = value
                continue
            xattr.set(path, host_name, value, nofollow=True)
            xattr.remove(path, name, nofollow=True)
        elif name == b"security.capability":
            report.dropped_capabilities.append("/" + rel)
            if capabilities != "fail":
                xattr.remove(path, name, nofollow=True)
        else:
            report.dropped_xattrs.append(f"/{rel} ({name.decode(errors='replace')})")
            xattr.remove(path, name, nofollow=True)
    return keep
