"""MetadataStore implementations, one per place QEMU keeps a guest's metadata.

- XattrStore (mapped-xattr): `user.virtfs.{uid,gid,mode,rdev}` xattrs, little-endian
  (4 bytes; rdev 8). Symlinks, devices, FIFOs and sockets are regular files whose mode
  xattr carries the real type; a symlink's content is its target.
- MappedFileStore (mapped-file): the same fields as `virtfs.uid=N` lines in
  `<dir>/.virtfs_metadata/<name>` (the share root's in `.virtfs_metadata_root`).
- PlainStore (passthrough, none): the host's own owners, modes, links and nodes.

The two mapped stores differ only in where the fields live (`_fields`, `_set_fields`,
`_forget`); every operation is written once in MappedStore. Host-side they create files
0600 and dirs 0700 owned by QEMU's user, as QEMU does itself. No path is followed through
a symlink out of the share.
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import xattr

from provision9p.rootfs.metadata.base import GuestStat

HOST_FILE_MODE = 0o600
HOST_DIR_MODE = 0o700
META_DIR = ".virtfs_metadata"
META_ROOT = ".virtfs_metadata_root"
# POSIX ACLs as Linux names them; mapped-xattr keeps them under user.virtfs.<name>
# (QEMU 9p-posix-acl.c), every other model as they are.
ACL_NAMES = (b"system.posix_acl_access", b"system.posix_acl_default")
QEMU_XATTR_PREFIX = b"user.virtfs."
# Each field's xattr (mapped-xattr) and little-endian width: rdev is a dev_t.
_XATTR_FIELDS = {"uid": (b"user.virtfs.uid", "<I"), "gid": (b"user.virtfs.gid", "<I"),
                 "mode": (b"user.virtfs.mode", "<I"), "rdev": (b"user.virtfs.rdev", "<Q")}
_FIELD_ORDER = ("uid", "gid", "mode", "rdev")


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


def _host_stat(st: os.stat_result) -> GuestStat:
    return GuestStat(st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_rdev, st.st_nlink,
                     st.st_mtime)


class _Store:
    """What every store shares: paths inside the share, reading, listing, removing."""

    hidden: tuple[str, ...] = ()  # the model's own bookkeeping, never shown to the guest
    # ACL xattr as the guest names it -> where this model keeps it on the host.
    acl_names: Mapping[bytes, bytes] = MappingProxyType({n: n for n in ACL_NAMES})

    def __init__(self, root: Path, host_uid: int = -1, host_gid: int = -1) -> None:
        # host_uid/gid: QEMU's user, who owns what a mapped model creates (-1: unknown)
        self.root, self.host_uid, self.host_gid = root, host_uid, host_gid

    def path(self, rel: str) -> str:
        return _host_path(self.root, rel)

    def read_bytes(self, rel: str) -> bytes:
        return _read_nofollow(self.path(rel))

    def listdir(self, rel: str) -> list[str]:
        return sorted(n for n in os.listdir(self.path(rel)) if n not in self.hidden)

    def unlink(self, rel: str) -> None:
        os.unlink(self.path(rel))
        self._forget(rel)

    def rmdir(self, rel: str) -> None:
        p = self.path(rel)
        for name in self.hidden:  # an empty bookkeeping dir would keep rmdir from working
            inner = os.path.join(p, name)
            if os.path.isdir(inner) and not os.listdir(inner):
                os.rmdir(inner)
        os.rmdir(p)
        self._forget(rel)

    def _forget(self, rel: str) -> None:
        """Drop what the model keeps about `rel` apart from the object itself."""

    def guest_xattrs(self, rel: str) -> dict[bytes, bytes]:
        """user.* xattrs (less QEMU's own fields) and ACLs under the names the guest knows."""
        p = self.path(rel)
        out: dict[bytes, bytes] = {}
        try:
            names = xattr.list(p, nofollow=True)
        except OSError:
            return out
        guest_name = {host: guest for guest, host in self.acl_names.items()}
        for name in names:
            if name in guest_name:
                out[guest_name[name]] = xattr.get(p, name, nofollow=True)
            elif name.startswith(b"user.") and not name.startswith(QEMU_XATTR_PREFIX):
                out[name] = xattr.get(p, name, nofollow=True)
        return out


class MappedStore(_Store):
    """Both mapped models: QEMU's user owns every host object; symlinks, devices, FIFOs
    and sockets are regular files; the guest's fields are kept beside the data."""

    def _fields(self, rel: str, host: str) -> dict[str, int]:
        """The guest fields kept for `rel` (whose object is at `host`)."""
        raise NotImplementedError

    def _set_fields(self, rel: str, host: str, fields: Mapping[str, int]) -> None:
        """Keep `fields` for `rel`, whose object is (for now) at `host`; others stay."""
        raise NotImplementedError

    def lstat(self, rel: str) -> GuestStat:
        p = self.path(rel)
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):  # a real host symlink (user data): QEMU shows it as is
            return _host_stat(st)
        f = self._fields(rel, p)
        return GuestStat(f.get("mode", st.st_mode), f.get("uid", st.st_uid),
                         f.get("gid", st.st_gid), st.st_size, f.get("rdev", 0), st.st_nlink,
                         st.st_mtime)

    def readlink(self, rel: str) -> str:
        p = self.path(rel)
        if os.path.islink(p):  # a real host symlink (user data): QEMU shows it as it is
            return os.readlink(p)
        if not stat.S_ISLNK(self.lstat(rel).mode):
            raise OSError(22, "not a symlink", p)
        return os.fsdecode(_read_nofollow(p))

    def record(self, rel: str, mode: int, uid: int, gid: int, rdev: int | None = None, *,
               host: str | bytes | None = None) -> None:
        fields = {"mode": mode, "uid": uid, "gid": gid}
        if rdev:
            fields["rdev"] = rdev
        self._set_fields(rel, os.fsdecode(host) if host else self.path(rel), fields)

    def _create(self, rel: str, data: bytes, mode: int, uid: int, gid: int,
                rdev: int | None = None, *, replace: bool = False) -> None:
        """A host file holding `data` for a new object (or, with `replace`, a new version).

        A replacement is stamped before it takes the name, so readers never see it half
        made; a new object fails, as symlink(2) and mknod(2) do, if the name is taken.
        """
        p = self.path(rel)
        fields = {"mode": mode, "uid": uid, "gid": gid}
        if rdev:
            fields["rdev"] = rdev
        made = _tmp_name(p) if replace else p
        write_new(made, data, self.host_uid, self.host_gid, HOST_FILE_MODE)
        try:
            self._set_fields(rel, made, fields)
            if replace:
                os.replace(made, p)
        except BaseException:
            os.unlink(made)
            raise

    def write_bytes(self, rel: str, data: bytes, mode: int, uid: int, gid: int) -> None:
        self._create(rel, data, stat.S_IFREG | stat.S_IMODE(mode), uid, gid, replace=True)

    def symlink(self, target: str, rel: str, uid: int, gid: int) -> None:
        self._create(rel, os.fsencode(target), stat.S_IFLNK | 0o777, uid, gid)

    def mknod(self, rel: str, mode: int, rdev: int, uid: int, gid: int) -> None:
        self._create(rel, b"", mode, uid, gid, rdev)

    def mkdir(self, rel: str, mode: int, uid: int, gid: int) -> None:
        p = self.path(rel)
        os.mkdir(p, HOST_DIR_MODE)
        os.chown(p, self.host_uid, self.host_gid)
        self._set_fields(rel, p, {"mode": stat.S_IFDIR | stat.S_IMODE(mode), "uid": uid,
                                  "gid": gid})

    def chown(self, rel: str, uid: int, gid: int) -> None:
        self._set_fields(rel, self.path(rel), {"uid": uid, "gid": gid})

    def chmod(self, rel: str, perm: int) -> None:
        st = self.lstat(rel)
        self._set_fields(rel, self.path(rel), {"mode": stat.S_IFMT(st.mode) | (perm & 0o7777)})


class XattrStore(MappedStore):
    """mapped-xattr: guest metadata in user.virtfs.* xattrs on the object's inode."""

    acl_names = MappingProxyType({n: QEMU_XATTR_PREFIX + n for n in ACL_NAMES})

    def _fields(self, rel: str, host: str) -> dict[str, int]:
        out = {}
        for key, (name, fmt) in _XATTR_FIELDS.items():
            try:
                value = xattr.get(host, name, nofollow=True)
            except OSError:
                continue
            out[key] = int(struct.unpack(fmt, value[:struct.calcsize(fmt)])[0])
        return out

    def _set_fields(self, rel: str, host: str, fields: Mapping[str, int]) -> None:
        for key in _FIELD_ORDER:
            if key in fields:
                name, fmt = _XATTR_FIELDS[key]
                xattr.set(host, name, struct.pack(fmt, fields[key]), nofollow=True)


class MappedFileStore(MappedStore):
    """mapped-file: guest metadata in .virtfs_metadata files beside the objects."""

    hidden = (META_DIR, META_ROOT)

    def meta_path(self, rel: str) -> str:
        rel = rel.strip("/")
        if not rel:
            return os.path.join(self.root, META_ROOT)
        d, name = os.path.split(self.path(rel))
        return os.path.join(d, META_DIR, name)

    def _fields(self, rel: str, host: str) -> dict[str, int]:
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

    def _set_fields(self, rel: str, host: str, fields: Mapping[str, int]) -> None:
        meta = {**self._fields(rel, host), **fields}
        path = self.meta_path(rel)
        d = os.path.dirname(path)
        if rel.strip("/") and not os.path.isdir(d):
            os.mkdir(d, HOST_DIR_MODE)
            os.chown(d, self.host_uid, self.host_gid)
        text = "".join(f"virtfs.{k}={meta[k]}\n" for k in _FIELD_ORDER if k in meta)
        tmp = _tmp_name(path)
        write_new(tmp, text.encode(), self.host_uid, self.host_gid, HOST_FILE_MODE)
        os.replace(tmp, path)

    def _forget(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.meta_path(rel))


class PlainStore(_Store):
    """passthrough / none: the host's metadata is the guest's."""

    def lstat(self, rel: str) -> GuestStat:
        return _host_stat(os.lstat(self.path(rel)))

    def readlink(self, rel: str) -> str:
        return os.readlink(self.path(rel))

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

    def record(self, rel: str, mode: int, uid: int, gid: int, rdev: int | None = None, *,
               host: str | bytes | None = None) -> None:
        # The object is already what it is on the host; only owner and mode can change.
        self.chown(rel, uid, gid)
        self.chmod(rel, stat.S_IMODE(mode))
