"""One 9P share, checked against QEMU's -fsdev/-device rules and the guest's mount options.

The root share and the extra shares go through the same checks; `is_root` adds the
few rules only a root file system has.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from provision9p.lab.checker import Checker, P, show
from provision9p.lab.model import (
    CACHE_MODES,
    MAPPED_MODELS,
    MULTIDEVS,
    SECURITY_MODELS,
    TRANSPORTS,
    VERSIONS,
    VIRTIO_MSIZE_CAP,
    MountOptions,
    SecurityModelName,
    Share,
    transport_fits,
)
from provision9p.lab.units import parse_octal, parse_size

# QEMU's MAX_TAG_LEN is 32 including the NUL (hw/9pfs/9p.h); QEMU 7.2 says "mount tag
# ... (32 bytes) is longer than maximum (31 bytes)" and refuses to start.
MAX_TAG_BYTES = 31
# The tag lands in QEMU's -device option string (a comma splits options), on the kernel
# command line and in fstab (white space splits both), so keep to a safe alphabet.
TAG = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*$")
MSIZE_MIN = 4096  # both the Linux client and QEMU refuse a smaller msize
MSIZE_MAX = 128 << 20
MAX_UID = 0xFFFFFFFE  # access=<uid> is a u32; (u32)-1 is "no uid"

# Share keys use QEMU's own option names where one exists.
SHARE_KEYS = (
    "path", "mount_tag", "security_model", "readonly", "fmode", "dmode", "multidevs",
    "writeout", "fsdriver", "socket", "sock_fd", "transport",
    "mount", "msize", "cache", "access", "posixacl", "version",
)
SECURITY_NAMES = (*SECURITY_MODELS, "mapped")  # mapped is QEMU's alias of mapped-xattr


@dataclass(frozen=True)
class ShareContext:
    """What every share of one guest is checked against."""

    base: Path
    allow_pt: bool
    arch: str
    machine: str
    transport: str
    old_kernel: str | None  # "bookworm's kernel (6.1)" when it predates Linux 6.4


@dataclass(frozen=True)
class ShareKeys:
    """The keys that identify a share, each one kept when it is valid even if another key
    is missing or bad, so the checks across shares (unique tags and mount points, overlaps)
    still report on that share."""

    path: Path | None
    mount_tag: str | None
    mount: str | None


def nested(a: Path, b: Path) -> bool:
    """Whether one of two host paths is, or is inside, the other."""
    return a == b or a in b.parents or b in a.parents


def _present(s: Mapping[str, Any], path: P, key: str, what: str, check: Checker) -> bool:
    """A required share key with a value; a problem otherwise."""
    if key not in s:
        check.err(path, f"missing key {key} ({what})")
        return False
    if s[key] is None:
        check.err((*path, key), f"missing value ({what})")
        return False
    return True


def check_share(data: Any, path: P, check: Checker, ctx: ShareContext,
                is_root: bool) -> tuple[Share | None, ShareKeys]:
    """The Share `data` describes, or None after recording why it is not one; and the
    identifying keys that were valid either way."""
    none = ShareKeys(None, None, None)
    if data is None:
        check.err(path, "an empty share; give at least path, mount_tag and mount")
        return None, none
    s = check.mapping(data, path, SHARE_KEYS)
    if not isinstance(data, dict):
        return None, none
    if not s:
        check.err(path, "a share needs at least path, mount_tag and mount")
        return None, none
    fsdriver = check.string(s, path, "fsdriver", "local")
    if fsdriver == "proxy":
        check.err((*path, "fsdriver"), "the proxy driver is refused: it is not production "
                  "grade, not considered safe, slow, and removed from QEMU 9.2; use local")
    elif fsdriver == "synth":
        check.err((*path, "fsdriver"), "synth is QEMU's test driver and serves no host "
                                       "files; use local")
    elif fsdriver != "local":
        check.err((*path, "fsdriver"), f"expected local, got {show(fsdriver)}")
    for key in ("socket", "sock_fd"):
        if key in s:
            check.err((*path, key), f"{key} belongs to the proxy driver, which is refused; "
                                    "remove it")

    host = None
    if _present(s, path, "path", "the host directory to share", check):
        host = check.host_path(s, path, "path", ctx.base)
        if host is not None and host.exists() and not host.is_dir():
            check.err((*path, "path"), f"{host} is not a directory; a 9P share exports a "
                      "directory (share the directory that holds it)")
            host = None
    tag = None
    if _present(s, path, "mount_tag", "the name the guest mounts it by", check):
        tag = _mount_tag(s, path, check)

    name = check.string(s, path, "security_model", "mapped-xattr", SECURITY_NAMES)
    # From here on only canonical names: QEMU's `mapped` is its alias of mapped-xattr.
    model = cast(SecurityModelName, "mapped-xattr" if name in (None, "mapped") else name)
    if model == "passthrough":
        if not ctx.allow_pt:
            check.err((*path, "security_model"), "passthrough needs QEMU to run as root and "
                      "lets the guest set host owners; say `allow_passthrough: true` at the "
                      "top of the lab to allow it, or use mapped-xattr")
        else:
            check.warn((*path, "security_model"), "passthrough: QEMU will run as root")
    if model == "none" and is_root:
        check.warn((*path, "security_model"), "with none, the guest sees host owners and "
                   "cannot chown: a Debian root tree will misbehave; use mapped-xattr")

    modes = {key: _mode(s, path, key, model, check) for key in ("fmode", "dmode")}
    writeout = check.string(s, path, "writeout", None, ("immediate",))
    multidevs = check.string(s, path, "multidevs", None, MULTIDEVS)
    transport = check.string(s, path, "transport", ctx.transport, TRANSPORTS) or ctx.transport
    if not transport_fits(transport, ctx.arch, ctx.machine):
        check.err((*path, "transport"), f"{transport} does not plug into a {ctx.arch} "
                  f"{ctx.machine} machine; use {ctx.transport}")
    readonly = check.boolean(s, path, "readonly", False)
    if is_root and readonly:
        check.err((*path, "readonly"), "the root share cannot be read-only")

    mount = "/" if is_root else None
    if not is_root and _present(s, path, "mount", "where the guest mounts the share", check):
        mount = _mount_point(s, path, check)

    options = _mount_options(s, path, check, model, is_root, ctx)
    keys = ShareKeys(host, tag, mount)
    if host is None or tag is None or mount is None:
        return None, keys
    return Share(
        path=host, mount_tag=tag, security_model=model, mount=mount, readonly=readonly,
        fmode=modes["fmode"], dmode=modes["dmode"], multidevs=multidevs, writeout=writeout,
        transport=transport, options=options,
    ), keys


def _mount_tag(s: Mapping[str, Any], path: P, check: Checker) -> str | None:
    tag = check.string(s, path, "mount_tag")
    if tag is None:
        return None
    size = len(tag.encode())
    if not tag:
        check.err((*path, "mount_tag"), "a mount tag cannot be empty")
    elif size > MAX_TAG_BYTES:
        check.err((*path, "mount_tag"), f"at most {MAX_TAG_BYTES} bytes (QEMU's "
                  f"MAX_TAG_LEN), got {size}")
    elif not TAG.match(tag):
        check.err((*path, "mount_tag"), f"expected letters, digits, '.', '_' and inner '-', "
                  f"got {show(tag)}: a comma splits QEMU's -device options, white space the "
                  "kernel command line and fstab")
    else:
        return tag
    return None


def _mount_point(s: Mapping[str, Any], path: P, check: Checker) -> str | None:
    mount = check.string(s, path, "mount")
    if mount is None:
        return None
    clean = posixpath.normpath(mount) if mount.startswith("/") else ""
    if not clean or clean == "/":
        check.err((*path, "mount"), f"expected an absolute guest path other than /, got "
                                    f"{show(mount)}")
    elif re.search(r"\s", mount):
        check.err((*path, "mount"), "a mount point cannot contain white space")
    elif clean != mount.rstrip("/"):
        check.err((*path, "mount"), f"write the mount point as {clean}, got {show(mount)}")
    else:
        return clean
    return None


def _mode(s: Mapping[str, Any], path: P, key: str, model: str, check: Checker) -> int | None:
    """fmode/dmode: QEMU takes them only with the mapped models and masks them to 0777."""
    if key not in s:
        return None
    if model not in MAPPED_MODELS:
        check.err((*path, key), f"{key} works only with mapped-xattr or mapped-file, "
                                f"not {model}")
        return None
    try:
        value = parse_octal(check.raw((*path, key)), s[key])
    except ValueError as exc:
        decimal = "decimal" in str(exc)
        check.err((*path, key), str(exc) if decimal
                  else f"expected an octal mode like 0644, got {show(s[key])}")
        return None
    if not 0 <= value <= 0o777:
        check.err((*path, key), f"expected permission bits from 0 to 0777, got {oct(value)} "
                                "(QEMU would drop the bits above 0777)")
        return None
    return value


def _mount_options(s: Mapping[str, Any], path: P, check: Checker, model: str,
                   is_root: bool, ctx: ShareContext) -> MountOptions:
    version = check.string(s, path, "version", "9p2000.L", VERSIONS) or "9p2000.L"
    dotl = version == "9p2000.L"
    if is_root and not dotl:
        check.err((*path, "version"), "a 9P root needs 9p2000.L (owners, modes, symlinks "
                                      "and devices)")
    msize = check.integer(s, path, "msize", MountOptions.msize, MSIZE_MIN, MSIZE_MAX,
                          parse=parse_size, what="a size in bytes (512K, 1M, 104857600)")
    if msize > VIRTIO_MSIZE_CAP:
        check.warn((*path, "msize"), f"the Linux virtio transport clamps msize to "
                                     f"{VIRTIO_MSIZE_CAP}; the effective value is reported")
    # The root tree changes only through the guest while it runs (the tree phase is before
    # boot), so the root can cache: loose boots ~25% faster than mmap under TCG (bench/).
    cache = check.string(s, path, "cache", "loose" if is_root else "none", CACHE_MODES)
    if cache == "readahead" and ctx.old_kernel:
        check.err((*path, "cache"), f"cache=readahead came with Linux 6.4; {ctx.old_kernel} "
                                    "refuses the mount; use mmap")
    access = _access(s, path, check, dotl)
    if is_root and access not in ("client", "user"):
        check.warn((*path, "access"), f"with access={access} every guest user acts as one "
                   "user on the root tree, so owners and permissions stop meaning much")
    acl_default = dotl and access == "client" and model in MAPPED_MODELS
    posixacl = check.boolean(s, path, "posixacl", acl_default)
    if posixacl and not dotl:
        check.err((*path, "posixacl"), "posixacl needs version 9p2000.L")
    elif posixacl and access != "client":
        check.err((*path, "posixacl"), f"the kernel drops posixacl unless access=client "
                                       f"(here access={access}); remove one of them")
    return MountOptions(version=version, msize=msize, cache=cache or "none", access=access,
                        posixacl=posixacl)


def _access(s: Mapping[str, Any], path: P, check: Checker, dotl: bool) -> str:
    """access=user|any|client|<uid>; client only over 9p2000.L (else the kernel uses user)."""
    default = "client" if dotl else "user"
    if "access" not in s:
        return default
    raw = s["access"]
    text = str(raw) if isinstance(raw, (str, int)) and not isinstance(raw, bool) else ""
    uid = re.fullmatch(r"[0-9]+", text) is not None and int(text) <= MAX_UID
    if not (text in ("user", "any", "client") or uid):
        check.err((*path, "access"), f"expected user, any, client or a uid, got {show(raw)}")
        return default
    if text == "client" and not dotl:
        check.err((*path, "access"), "access=client needs version 9p2000.L; other versions "
                                     "quietly fall back to access=user")
        return default
    return text


def unique_shares(root: Share | None, shares: list[tuple[int, ShareKeys]], spath: P,
                  check: Checker) -> None:
    """Tags and mount points are per guest; no extra share may overlap the root tree.

    A share with a bad or missing key is still compared on the keys it has."""
    tags = {root.mount_tag: "the root share"} if root else {}
    mounts: dict[str, int] = {}
    for i, share in shares:
        if share.mount_tag is not None:
            if share.mount_tag in tags:
                check.err((*spath, i, "mount_tag"), f"mount tag {share.mount_tag!r} is "
                          f"already used by {tags[share.mount_tag]}; tags must be unique "
                          "per guest")
            tags.setdefault(share.mount_tag, f"shares[{i}]")
        if share.mount is not None:
            if share.mount in mounts:
                check.err((*spath, i, "mount"), f"{share.mount} is already the mount point "
                                                f"of shares[{mounts[share.mount]}]")
            mounts.setdefault(share.mount, i)
        if root and share.path is not None and nested(share.path, root.path):
            check.err((*spath, i, "path"), "an extra share cannot be the root tree, be inside "
                                           "it or contain it")


# Cache modes that keep file data or metadata in the guest without asking the server
# again (Linux Documentation/filesystems/9p.rst: loose is "intended for exclusive,
# read-only mounts", fscache is a persistent read cache). mmap caches only pages of
# mmap()ed files, like none otherwise, so plain reads and writes stay coherent.
STALE_CACHES = ("loose", "fscache")


@dataclass(frozen=True)
class GuestShares:
    """One guest's extra shares with their index in its `shares:` list."""

    guest: str
    shares: tuple[tuple[int, Share], ...]
    origin: dict[P, P]


def shared_across_guests(guests: list[GuestShares], check: Checker) -> None:
    """A host directory in several guests' shares: the same security model everywhere
    (else one guest's owners are another's garbage), and a warning for a cache mode
    that would show a guest stale data written by another."""
    # the shares seen so far by their path, and by every ancestor of it: the overlapping
    # ones are found a dict lookup per level, not by comparing every pair
    at: dict[Path, list[tuple[int, str, int, Share]]] = {}
    under: dict[Path, list[tuple[int, str, int, Share]]] = {}
    origins = {g.guest: g.origin for g in guests}
    order = 0
    for g in guests:
        for i, share in g.shares:
            path = share.path
            found = [*(x for a in (path, *path.parents) for x in at.get(a, ())),
                     *under.get(path, ())]
            others = [(name, j, s) for _, name, j, s in sorted(found, key=lambda x: x[0])
                      if name != g.guest]
            entry = (order, g.guest, i, share)
            order += 1
            at.setdefault(path, []).append(entry)
            for parent in path.parents:
                under.setdefault(parent, []).append(entry)
            if not others:
                continue
            check.origin = g.origin
            spath: P = ("guests", g.guest, "shares", i)
            first = others[0]
            if share.security_model != first[2].security_model:
                check.err((*spath, "security_model"), f"{share.path} is shared with guest "
                          f"{first[0]} as {first[2].security_model}; a directory several "
                          "guests share needs one security model")
            for name, j, s in [(g.guest, i, share), *others]:
                if s.options.cache in STALE_CACHES:
                    where = ("guests", name, "shares", j, "cache")
                    check.origin = origins[name]
                    check.warn(where, f"cache={s.options.cache} never revalidates, and "
                               f"{s.path} is shared by several guests: one guest may not see "
                               "another's writes; use cache=none (or mmap)")
    check.origin = {}
