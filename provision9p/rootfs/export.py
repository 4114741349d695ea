"""The way back: a mapped tree as a real tree or a tar archive with the true metadata.

Reads every object through the share's MetadataStore (the guest's view) and writes
real owners, modes, symlinks, device nodes, hard links, user xattrs and POSIX ACLs,
so a tree built for 9P can become an image for anything else.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import stat
import struct
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import xattr

from provision9p.errors import BuildError
from provision9p.rootfs.metadata.base import GuestStat, MetadataStore
from provision9p.rootfs.metadata.stores import ACL_NAMES


def _walk(store: MetadataStore, rel: str = "") -> Iterator[tuple[str, GuestStat]]:
    for name in store.listdir(rel):
        child = f"{rel}/{name}" if rel else name
        st = store.lstat(child)
        yield child, st
        if stat.S_ISDIR(st.mode):
            yield from _walk(store, child)


def export_tree(store: MetadataStore, dest: Path) -> None:
    """Write the store's tree to a new directory `dest` with the real metadata."""
    if dest.exists():
        raise BuildError(f"{dest} exists; export never overwrites")
    root_st = store.lstat("")
    dest.mkdir(parents=True)
    links: dict[tuple[int, int], str] = {}
    dirs: list[tuple[str, GuestStat]] = [("", root_st)]
    for rel, st in _walk(store):
        out = os.path.join(str(dest), rel)
        host_st = os.lstat(store.path(rel))
        kind = stat.S_IFMT(st.mode)
        key = (host_st.st_dev, host_st.st_ino)
        if kind not in (stat.S_IFDIR,) and host_st.st_nlink > 1 and key in links:
            os.link(links[key], out)
            continue
        links[key] = out
        if kind == stat.S_IFDIR:
            os.mkdir(out, 0o700)
            dirs.append((rel, st))
            continue
        if kind == stat.S_IFLNK:
            os.symlink(store.readlink(rel), out)
            os.lchown(out, st.uid, st.gid)
            continue
        if kind == stat.S_IFREG:
            with open(out, "wb") as f:
                f.write(store.read_bytes(rel))
        elif kind == stat.S_IFSOCK:
            with socket.socket(socket.AF_UNIX) as s:
                s.bind(out)
        else:
            os.mknod(out, kind | 0o600, st.rdev)
        _finish(out, st, store.guest_xattrs(rel))
    for rel, st in reversed(dirs):  # dirs last: their modes may forbid writing into them
        out = os.path.join(str(dest), rel) if rel else str(dest)
        _finish(out, st, store.guest_xattrs(rel))


def _finish(path: str, st: GuestStat, xattrs: dict[bytes, bytes]) -> None:
    os.chown(path, st.uid, st.gid)
    os.chmod(path, stat.S_IMODE(st.mode))
    for name, value in xattrs.items():
        xattr.set(path, name, value, nofollow=True)


def export_tar(store: MetadataStore, out: Path) -> None:
    """A PAX tar of the store's tree with the true metadata (xattrs as SCHILY.xattr.*)."""
    if out.exists():
        raise BuildError(f"{out} exists; export never overwrites")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for entry in tar_entries(store):
                data = entry.data
                tar.addfile(entry.info, io.BytesIO(data) if data is not None else None)
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@dataclass
class TarEntry:
    """One object of a tree as a tar member: `rel` is its path in the store ('' the root)."""

    rel: str
    info: tarfile.TarInfo
    data: bytes | None  # a regular file's content; None for every other kind


def tar_entries(store: MetadataStore) -> Iterator[TarEntry]:
    """The store's tree as tar members in walk order (names sorted per directory), with the
    guest's owners, modes, devices and xattrs; a socket is skipped (tar cannot hold one).

    Shared by `rootfs export` and image builds, which filter this stream."""
    links: dict[tuple[int, int], str] = {}
    for rel, st in [("", store.lstat("")), *_walk(store)]:
        name = f"./{rel}" if rel else "."
        host_st = os.lstat(store.path(rel))
        info = tarfile.TarInfo(name)
        info.uid, info.gid = st.uid, st.gid
        info.mode = stat.S_IMODE(st.mode)
        info.mtime = int(st.mtime)
        kind = stat.S_IFMT(st.mode)
        key = (host_st.st_dev, host_st.st_ino)
        data: bytes | None = None
        if kind != stat.S_IFDIR and host_st.st_nlink > 1 and key in links:
            info.type, info.linkname = tarfile.LNKTYPE, links[key]
        else:
            links[key] = name
            if kind == stat.S_IFDIR:
                info.type = tarfile.DIRTYPE
            elif kind == stat.S_IFLNK:
                info.type, info.linkname = tarfile.SYMTYPE, store.readlink(rel)
            elif kind == stat.S_IFREG:
                data = store.read_bytes(rel)
                info.size = len(data)
            elif kind in (stat.S_IFCHR, stat.S_IFBLK):
                info.type = tarfile.CHRTYPE if kind == stat.S_IFCHR else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(st.rdev), os.minor(st.rdev)
            elif kind == stat.S_IFIFO:
                info.type = tarfile.FIFOTYPE
            else:
                continue  # tar cannot hold a socket
        info.pax_headers = _pax_xattrs(store.guest_xattrs(rel))
        yield TarEntry(rel, info, data)


_ACL_TAGS = {0x01: "user:", 0x02: "user:", 0x04: "group:", 0x08: "group:", 0x10: "mask:",
             0x20: "other:"}
_TAR_ACL = dict(zip(ACL_NAMES, ("SCHILY.acl.access", "SCHILY.acl.default"), strict=True))


def acl_text(value: bytes) -> str:
    """A POSIX ACL xattr (version 2 binary) as text, the form GNU tar's SCHILY.acl.* holds."""
    entries = []
    for off in range(4, len(value) - 7, 8):
        tag, perm, ident = struct.unpack_from("<HHI", value, off)
        who = str(ident) if tag in (0x02, 0x08) else ""
        rwx = "".join(c if perm & bit else "-" for c, bit in (("r", 4), ("w", 2), ("x", 1)))
        entries.append(f"{_ACL_TAGS.get(tag, 'other:')}{who}:{rwx}")
    return ",".join(entries)


def _pax_xattrs(xattrs: dict[bytes, bytes]) -> dict[str, str]:
    out = {}
    for name, value in xattrs.items():
        if name in _TAR_ACL:
            out[_TAR_ACL[name]] = acl_text(value)
        else:
            out["SCHILY.xattr." + name.decode()] = value.decode("utf-8", "surrogateescape")
    return out
