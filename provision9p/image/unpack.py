"""An image back into a tree, straight in a security model's form.

For mapped-xattr the owners, modes and devices of the tar headers go straight into
QEMU's `user.virtfs.*` xattrs of files the given host user owns: no chown of the guest's
owners and no second pass, so it works for a non-root user too. Every member has been
checked by the Reader before it is created, and the stores never follow a symlink.

Only xattrs a guest can hold over 9P are restored: user.* and POSIX ACLs. QEMU 7.2 passes
no other namespace in any security model (hw/9pfs/9p-xattr.c: EOPNOTSUPP), so a
`security.capability` in an archive not made by `image build` is left out with a warning
naming the files: no guest of this tool could see it, and a non-root user cannot set it.
A `user.virtfs.*` xattr is refused: it would overwrite QEMU's own owner and mode fields.
"""

from __future__ import annotations

import os
import shutil
import stat
import struct
import tarfile
from pathlib import Path
from typing import Any

import xattr

from provision9p import ui
from provision9p.errors import UsageError
from provision9p.image.archive import Member, Reader
from provision9p.image.errors import ImageError
from provision9p.rootfs.metadata.base import MetadataStore
from provision9p.rootfs.metadata.stores import QEMU_XATTR_PREFIX
from provision9p.rootfs.security import SecurityModel

_ACL_TAGS = {"user": (0x01, 0x02), "group": (0x04, 0x08), "mask": (0x10, 0x10),
             "other": (0x20, 0x20)}
_ACL_NAMES = {"SCHILY.acl.access": b"system.posix_acl_access",
              "SCHILY.acl.default": b"system.posix_acl_default"}
_UNDEFINED_ID = 0xFFFFFFFF


def acl_binary(text: str) -> bytes:
    """GNU tar's SCHILY.acl.* text (`user::rw-,user:1000:r--,...`) as the kernel's
    version-2 xattr value; the inverse of rootfs.export.acl_text."""
    out = [struct.pack("<I", 2)]
    for entry in filter(None, text.split(",")):
        kind, who, perms = [*entry.split(":"), "", ""][:3]
        if kind not in _ACL_TAGS or len(perms) != 3:
            raise ValueError(f"not an ACL entry: {entry!r}")
        tag = _ACL_TAGS[kind][1 if who else 0]
        perm = sum(bit for c, bit in zip(perms, (4, 2, 1), strict=True) if c != "-")
        out.append(struct.pack("<HHI", tag, perm, int(who) if who else _UNDEFINED_ID))
    return b"".join(out)


def unpack(archive: Path, dest: Path, model: SecurityModel, host_uid: int,
           host_gid: int) -> int:
    """Create `dest` (a new directory) from the image; the number of objects made.

    Built in a staging directory beside `dest` and renamed into place, so a refused or
    failed unpack leaves nothing behind."""
    if dest.exists() or dest.is_symlink():
        raise UsageError(f"{dest} exists; unpack never overwrites", hint="name a new directory")
    staging = dest.with_name(f".{dest.name}.unpacking-{os.getpid()}")
    staging.mkdir(0o700)
    try:
        count, _ = unpack_into(archive, staging, model, host_uid, host_gid)
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return count


def unpack_into(archive: Path, root: Path, model: SecurityModel, host_uid: int,
                host_gid: int) -> tuple[int, dict[str, Any]]:
    """Fill the empty directory `root` from the image: (objects made, the manifest).
    The caller removes `root` when this fails."""
    if model.mapped:
        os.chown(root, host_uid, host_gid)
    store = model.store(root, host_uid, host_gid)
    dirs: list[Member] = []
    left_out: list[str] = []  # "path (xattr name)" a 9P guest cannot hold
    count = 0
    reader = Reader(archive)
    for m in reader:
        if m.info.isdir():
            if m.path:
                store.mkdir(m.path, m.info.mode, m.info.uid, m.info.gid)
            dirs.append(m)
        else:
            _make(store, m)
            _finish(store, m, left_out)
        count += 1
    for m in reversed(dirs):  # last: making their entries changed their times
        store.record(m.path, stat.S_IFDIR | m.info.mode, m.info.uid, m.info.gid)
        _finish(store, m, left_out)
    if left_out:
        more = f" and {len(left_out) - 8} more" if len(left_out) > 8 else ""
        ui.warn(f"{archive}: left out xattrs a guest cannot see over 9P (QEMU passes only "
                f"user.* and ACLs): {', '.join(left_out[:8])}{more}")
    return count, reader.manifest


def _make(store: MetadataStore, m: Member) -> None:
    info, path = m.info, m.path
    if info.isreg():
        store.write_bytes(path, m.data or b"", info.mode, info.uid, info.gid)
    elif info.issym():
        store.symlink(info.linkname, path, info.uid, info.gid)
    elif info.islnk():
        os.link(store.path(info.linkname.removeprefix("./")), store.path(path))
        # mapped-file keeps metadata per name: the new name needs its own copy
        store.record(path, stat.S_IFREG | info.mode, info.uid, info.gid)
    elif info.type in (tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE):
        kind = {tarfile.CHRTYPE: stat.S_IFCHR, tarfile.BLKTYPE: stat.S_IFBLK,
                tarfile.FIFOTYPE: stat.S_IFIFO}[info.type]
        store.mknod(path, kind | info.mode, os.makedev(info.devmajor, info.devminor),
                    info.uid, info.gid)
    else:
        raise ImageError(f"cannot unpack {path!r}: unknown member type {info.type!r}")


def _finish(store: MetadataStore, m: Member, left_out: list[str]) -> None:
    """The member's xattrs, ACLs and time on the host object; what a guest cannot hold
    goes to `left_out`."""
    host = store.path(m.path)
    is_host_link = os.path.islink(host)
    for key, value in m.info.pax_headers.items():
        if is_host_link:
            break  # Linux refuses user.* xattrs on a symlink; a passthrough one has none
        if key in _ACL_NAMES:
            try:
                acl = acl_binary(value)
            except ValueError as exc:
                raise ImageError(f"{m.path}: {key} is not an ACL ({exc}); nothing was kept",
                                 hint="this archive was not made by `image build`") from exc
            xattr.set(host, store.acl_names[_ACL_NAMES[key]], acl, nofollow=True)
        elif key.startswith("SCHILY.xattr."):
            name = key.removeprefix("SCHILY.xattr.").encode("utf-8", "surrogateescape")
            if name.startswith(QEMU_XATTR_PREFIX):
                raise ImageError(f"{m.path}: carries {name.decode()}, QEMU's own field; "
                                 "nothing was kept",
                                 hint="this archive was not made by `image build`")
            if not name.startswith(b"user."):
                left_out.append(f"{m.path or '/'} ({name.decode(errors='replace')})")
                continue
            xattr.set(host, name, value.encode("utf-8", "surrogateescape"), nofollow=True)
    os.utime(host, (m.info.mtime, m.info.mtime), follow_symlinks=False)
