"""MetadataStore implementations, one per place QEMU keeps a guest's metadata.

- XattrStore (mapped-xattr): `user.virtfs.{uid,gid,mode,rdev}` xattrs, little-endian
  (4 bytes; rdev 8). Symlinks, devices, FIFOs and sockets are regular files whose mode
  xattr carries the real type; a symlink's content is its target.
- MappedFileStore (mapped-file): the same fields as `virtfs.uid=N` lines in
  `<dir>/.virtfs_metadata/<name>` (the share root's in `.virtfs_metadata_root`).
- PlainStore (passthrough, none): the host's own owners, modes, links and nodes.

Host-side, the mapped stores create files 0600 and dirs 0700 owned by QEMU's user,
as QEMU does itself. No path is followed through a symlink out of the share.
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
from pathlib import Path

import xattr

from provision9p.rootfs.metadata.base import GuestStat

UID, GID, MODE, RDEV = (b"user.virtfs.uid", b"user.virtfs.gid", b"user.virtfs.mode",
                        b"user.virtfs.rdev")
HOST_FILE_MODE = 0o600
HOST_DIR_MODE = 0o700
META_DIR = ".virtfs_metadata"
META_ROOT = ".virtfs_metadata_root"


def _host_path(root: Path, rel: str) -> str:
    """root/rel as bytes-safe str, refusing a symlink in any parent component."""
    rel = rel.strip("/")
    if not rel:
        return str(root)
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"not a plain relative path: {rel!r}")
    cur = str(root)
    for part in parts[:-1]:
        cur = os.path.join(cur, part)
        if stat.S_ISLNK(os.lstat(cur).st_mode):
            raise PermissionError(f"{cur} is a symlink; not following it out of the share")
    return os.path.join(cur, parts[-1])


def write_new(path: str | bytes, data: bytes, host_uid: int, host_gid: int, mode: int) -> None:
    """Create a file that must not exist yet, never through a symlink, owned as given."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.write(fd, data)
        os.fchown(fd, host_uid, host_gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _read_nofollow(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _tmp_name(path: str) -> str:
    d, name = os.path.split(path)
    return os.path.join(d, f".{name}.p9tmp-{os.getpid()}")


class _MappedStore:
    """What both mapped models share: QEMU's user owns everything; a symlink is a file."""

    def __init__(self, root: Path, host_uid: int, host_gid: int) -> None:
        self.root, self.host_uid, self.host_gid = root, host_uid, host_gid

    def path(self, rel: str) -> str:
        return _host_path(self.root, rel)

    def lstat(self, rel: str) -> GuestStat:
        raise NotImplementedError

    def readlink(self, rel: str) -> str:
        p = self.path(rel)
        if os.path.islink(p):  # a real host symlink (user data): QEMU shows it as it is
            return os.readlink(p)
        if not stat.S_ISLNK(self.lstat(rel).mode):
            raise OSError(22, "not a symlink", p)
        return os.fsdecode(_read_nofollow(p))

    def read_bytes(self, rel: str) -> bytes:
        return _read_nofollow(self.path(rel))


class XattrStore(_MappedStore):
    """mapped-xattr: guest metadata in user.virtfs.* xattrs."""

    @staticmethod
    def set_attrs(path: str, mode: int | None, uid: int | None, gid: int | None,
                  rdev: int | None = None) -> None:
        if uid is not None:
            xattr.set(path, UID, struct.pack("<I", uid), nofollow=True)
        if gid is not None:
            xattr.set(path, GID, struct.pack("<I", gid), nofollow=True)
        if mode is not None:
            xattr.set(path, MODE, struct.pack("<I", mode), nofollow=True)
        if rdev is not None:
            xattr.set(path, RDEV, struct.pack("<Q", rdev), nofollow=True)

    @staticmethod
    def _get(path: str, name: bytes, fmt: str) -> int | None:
        try:
            value = xattr.get(path, name, nofollow=True)
        except OSError:
            return None
        return int(struct.unpack(fmt, value[:struct.calcsize(fmt)])[0])

    def lstat(self, rel: str) -> GuestStat:
        p = self.path(rel)
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):  # a real host symlink: QEMU shows the host's view
            return GuestStat(st.st_mode, st.st_uid, st.st_gid, st.st_size, 0, st.st_nlink,
                             st.st_mtime)
        mode = self._get(p, MODE, "<I")
        uid = self._get(p, UID, "<I")
        gid = self._get(p, GID, "<I")
        rdev = self._get(p, RDEV, "<Q")
        return GuestStat(mode if mode is not None else st.st_mode,
                         uid if uid is not None else st.st_uid,
                         gid if gid is not None else st.st_gid,
                         st.st_size, rdev or 0, st.st_nlink, st.st_mtime)


    def write_bytes(self, rel: str, data: bytes, mode: int, uid: int, gid: int) -> None:
        p = self.path(rel)
        tmp = _tmp_name(p)
        write_new(tmp, data, self.host_uid, self.host_gid, HOST_FILE_MODE)
        try:
            self.set_attrs(tmp, stat.S_IFREG | stat.S_IMODE(mode), uid, gid)
            os.replace(tmp, p)
        except BaseException:
            os.unlink(tmp)
            raise

    def mkdir(self, rel: str, mode: int, uid: int, gid: int) -> None:
        p = self.path(rel)
        os.mkdir(p, HOST_DIR_MODE)
        os.chown(p, self.host_uid, self.host_gid)
        self.set_attrs(p, stat.S_IFDIR | stat.S_IMODE(mode), uid, gid)

    def symlink(self, target: str, rel: str, uid: int, gid: int) -> None:
        p = self.path(rel)
        write_new(p, os.fsencode(target), self.host_uid, self.host_gid, HOST_FILE_MODE)
        self.set_attrs(p, stat.S_IFLNK | 0o777, uid, gid)

    def mknod(self, rel: str, mode: int, rdev: int, uid: int, gid: int) -> None:
        p = self.path(rel)
        write_new(p, b"", self.host_uid, self.host_gid, HOST_FILE_MODE)
        self.set_attrs(p, mode, uid, gid, rdev if rdev else None)

    def chown(self, rel: str, uid: int, gid: int) -> None:
        self.set_attrs(self.path(rel), None, uid, gid)

    def chmod(self, rel: str, perm: int) -> None:
        st = self.lstat(rel)
        self.set_attrs(self.path(rel), stat.S_IFMT(st.mode) | (perm & 0o7777), None, None)

    def unlink(self, rel: str) -> None:
        os.unlink(self.path(rel))

    def rmdir(self, rel: str) -> None:
        os.rmdir(self.path(rel))

    def listdir(self, rel: str) -> list[str]:
        return sorted(os.listdir(self.path(rel)))


class MappedFileStore(_MappedStore):
    """mapped-file: guest metadata in .virtfs_metadata files beside the objects."""

    def meta_path(self, rel: str) -> str:
        rel = rel.strip("/")
        if not rel:
            return os.path.join(self.root, META_ROOT)
        d, name = os.path.split(self.path(rel))
        return os.path.join(d, META_DIR, name)

    def read_meta(self, rel: str) -> dict[str, int]:
        out: dict[str, int] = {}
        try:
            with open(self.meta_path(rel), "rb") as f:
                for line in f.read().decode(errors="replace").splitlines():
                    key, _, value = line.partition("=")
                    if key.startswith("virtfs.") and value.strip().lstrip("-").isdigit():
                        out[key[7:]] = int(value)
        except FileNotFoundError:
            pass
        return out

    def write_meta(self, rel: str, mode: int | None, uid: int | None, gid: int | None,
                   rdev: int | None = None) -> None:
        meta = self.read_meta(rel)
        for key, value in (("uid", uid), ("gid", gid), ("mode", mode), ("rdev", rdev)):
            if value is not None:
                meta[key] = value
        path = self.meta_path(rel)
        d = os.path.dirname(path)
        if rel.strip("/") and not os.path.isdir(d):
            os.mkdir(d, HOST_DIR_MODE)
            os.chown(d, self.host_uid, self.host_gid)
        text = "".join(f"virtfs.{k}={meta[k]}\n" for k in ("uid", "gid", "mode", "rdev")
                       if k in meta).encode()
        tmp = _tmp_name(path)
        write_new(tmp, text, self.host_uid, self.host_gid, HOST_FILE_MODE)
        os.replace(tmp, path)

    def lstat(self, rel: str) -> GuestStat:
        st = os.lstat(self.path(rel))
        m = self.read_meta(rel)
        return GuestStat(m.get("mode", st.st_mode), m.get("uid", st.st_uid),
                         m.get("gid", st.st_gid), st.st_size, m.get("rdev", 0), st.st_nlink,
                         st.st_mtime)


    def write_bytes(self, rel: str, data: bytes, mode: int, uid: int, gid: int) -> None:
        p = self.path(rel)
        tmp = _tmp_name(p)
        write_new(tmp, data, self.host_uid, self.host_gid, HOST_FILE_MODE)
        os.replace(tmp, p)
        self.write_meta(rel, stat.S_IFREG | stat.S_IMODE(mode), uid, gid)

    def mkdir(self, rel: str, mode: int, uid: int, gid: int) -> None:
        p = self.path(rel)
        os.mkdir(p, HOST_DIR_MODE)
        os.chown(p, self.host_uid, self.host_gid)
        self.write_meta(rel, stat.S_IFDIR | stat.S_IMODE(mode), uid, gid)

    def symlink(self, target: str, rel: str, uid: int, gid: int) -> None:
        write_new(self.path(rel), os.fsencode(target), self.host_uid, self.host_gid,
                   HOST_FILE_MODE)
        self.write_meta(rel, stat.S_IFLNK | 0o777, uid, gid)

    def mknod(self, rel: str, mode: int, rdev: int, uid: int, gid: int) -> None:
        write_new(self.path(rel), b"", self.host_uid, self.host_gid, HOST_FILE_MODE)
        self.write_meta(rel, mode, uid, gid, rdev if rdev else None)

    def chown(self, rel: str, uid: int, gid: int) -> None:
        self.write_meta(rel, None, uid, gid)

    def chmod(self, rel: str, perm: int) -> None:
        st = self.lstat(rel)
        self.write_meta(rel, stat.S_IFMT(st.mode) | (perm & 0o7777), None, None)

    def unlink(self, rel: str) -> None:
        os.unlink(self.path(rel))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.meta_path(rel))

    def rmdir(self, rel: str) -> None:
        p = self.path(rel)
        meta_dir = os.path.join(p, META_DIR)
        if os.path.isdir(meta_dir) and not os.listdir(meta_dir):
            os.rmdir(meta_dir)
        os.rmdir(p)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.meta_path(rel))

    def listdir(self, rel: str) -> list[str]:
        return sorted(n for n in os.listdir(self.path(rel)) if n not in (META_DIR, META_ROOT))


class PlainStore:
    """passthrough / none: the host's metadata is the guest's."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, rel: str) -> str:
        return _host_path(self.root, rel)

    def lstat(self, rel: str) -> GuestStat:
        st = os.lstat(self.path(rel))
        return GuestStat(st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_rdev,
                         st.st_nlink, st.st_mtime)

    def readlink(self, rel: str) -> str:
        return os.readlink(self.path(rel))

    def read_bytes(self, rel: str) -> bytes:
        return _read_nofollow(self.path(rel))

    def write_bytes(self, rel: str, data: bytes, mode: int, uid: int, gid: int) -> None:
        p = self.path(rel)
        tmp = _tmp_name(p)
        write_new(tmp, data, uid, gid, stat.S_IMODE(mode))
        try:
            os.chmod(tmp, stat.S_IMODE(mode))  # after chown, which clears setuid bits
            os.replace(tmp, p)
        except BaseException:
            os.unlink(tmp)
            raise

    def mkdir(self, rel: str, mode: int, uid: int, gid: int) -> None:
        p = self.path(rel)
        os.mkdir(p, stat.S_IMODE(mode))
        os.chown(p, uid, gid)
        os.chmod(p, stat.S_IMODE(mode))

    def symlink(self, target: str, rel: str, uid: int, gid: int) -> None:
        p = self.path(rel)
        os.symlink(target, p)
        os.lchown(p, uid, gid)

    def mknod(self, rel: str, mode: int, rdev: int, uid: int, gid: int) -> None:
        p = self.path(rel)
        os.mknod(p, mode, rdev)
        os.chown(p, uid, gid)
        os.chmod(p, stat.S_IMODE(mode))

    def chown(self, rel: str, uid: int, gid: int) -> None:
        p = self.path(rel)
        mode = os.lstat(p).st_mode
        os.lchown(p, uid, gid)
        if not stat.S_ISLNK(mode) and stat.S_IMODE(mode) & 0o6000:
            os.chmod(p, stat.S_IMODE(mode))  # chown cleared setuid/setgid; keep them

    def chmod(self, rel: str, perm: int) -> None:
        p = self.path(rel)
        if not os.path.islink(p):  # a symlink's mode means nothing on Linux
            os.chmod(p, perm & 0o7777)

    def unlink(self, rel: str) -> None:
        os.unlink(self.path(rel))

    def rmdir(self, rel: str) -> None:
        os.rmdir(self.path(rel))

    def listdir(self, rel: str) -> list[str]:
        return sorted(os.listdir(self.path(rel)))
