"""Lab file -> LabSpec, in one pass that collects every problem.

Each problem reads `lab.yml:12:5 guests.web.shares[1].fmode: expected ..., got ...`.
Values from `defaults:` are merged into each guest first, and a problem in a
merged value points at the line where it was written.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from provision9p import paths
from provision9p.errors import LabError
from provision9p.lab import yamlpos
from provision9p.lab.model import (
    ARCHES,
    CACHE_MODES,
    MAPPED_MODELS,
    MULTIDEVS,
    SECURITY_MODELS,
    TRANSPORTS,
    VERSIONS,
    VIRTIO_MSIZE_CAP,
    GuestSpec,
    KernelSpec,
    LabSpec,
    MountOptions,
    RoleRef,
    RootfsSpec,
    Share,
    default_transport,
)
from provision9p.lab.units import parse_octal, parse_size

P = yamlpos.Path_

MAX_TAG_BYTES = 31  # QEMU's MAX_TAG_LEN is 32 including the NUL (hw/9pfs/9p.h)
MSIZE_MIN = 4096
MSIZE_MAX = 128 << 20
HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
ROOT_TAG = "rootfs"

TOP_KEYS = ("name", "state_dir", "allow_passthrough", "roles_path", "defaults", "guests")
GUEST_KEYS = (
    "arch", "machine", "memory", "cpus", "accel", "kernel", "rootfs", "shares",
    "network", "boot_timeout", "roles", "vars", "verify",
)
KERNEL_KEYS = ("package", "image", "modules", "initramfs", "cmdline")
# Share keys use QEMU's own option names where one exists.
SHARE_KEYS = (
    "path", "mount_tag", "security_model", "readonly", "fmode", "dmode", "multidevs",
    "writeout", "fsdriver", "socket", "sock_fd", "transport",
    "mount", "msize", "cache", "access", "posixacl", "version",
)
ROOTFS_KEYS = (
    "suite", "variant", "components", "packages", "mirror", "capabilities",
    *(k for k in SHARE_KEYS if k != "mount"),
)
NETWORK_KEYS = ("ssh_port",)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return repr(value)


class _Checker:
    """Collects problems; `origin` maps a merged guest path back to where it was written."""

    def __init__(self, loc: yamlpos.Located) -> None:
        self.loc = loc
        self.problems: list[str] = list(loc.problems)
        self.warnings: list[str] = []
        self.origin: dict[P, P] = {}

    def _real(self, path: P) -> P:
        p = tuple(path)
        for cut in range(len(p), 0, -1):
            if p[:cut] in self.origin:
                return self.origin[p[:cut]] + p[cut:]
        return p

    def err(self, path: P, message: str) -> None:
        real = self._real(path)
        self.problems.append(f"{self.loc.where(real)} {yamlpos.dotted(real)}: {message}")

    def warn(self, path: P, message: str) -> None:
        real = self._real(path)
        self.warnings.append(f"{self.loc.where(real)} {yamlpos.dotted(real)}: {message}")

    def raw(self, path: P) -> str | None:
        return self.loc.raw.get(self._real(path))

    # typed getters: return the value, or None after recording a problem

    def mapping(self, data: Any, path: P, allowed: tuple[str, ...]) -> dict[str, Any]:
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.err(path, f"expected a mapping, got {_show(data)}")
            return {}
        for key in data:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.err((*path, key), f"unknown key{hint}; known: {', '.join(allowed)}")
        return data

    def string(self, data: Mapping[str, Any], path: P, key: str, default: str | None = None,
               choices: tuple[str, ...] | None = None) -> str | None:
        value = data.get(key, default)
        if value is None:
            return None
        if not isinstance(value, str):
            self.err((*path, key), f"expected a string, got {_show(value)}")
            return default
        if choices is not None and value not in choices:
            self.err((*path, key), f"expected one of {', '.join(choices)}, got {_show(value)}")
            return default
        return value

    def boolean(self, data: Mapping[str, Any], path: P, key: str, default: bool) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            self.err((*path, key), f"expected true or false, got {_show(value)}")
            return default
        return value

    def integer(self, data: Mapping[str, Any], path: P, key: str, default: int,
                lo: int, hi: int, parse: Callable[[Any], int] | None = None,
                what: str = "an integer") -> int:
        value = data.get(key, default)
        try:
            if parse is not None:
                number = parse(value)
            elif isinstance(value, int) and not isinstance(value, bool):
                number = value
            else:
                raise ValueError
        except ValueError:
            self.err((*path, key), f"expected {what}, got {_show(value)}")
            return default
        if not lo <= number <= hi:
            self.err((*path, key), f"expected {what} from {lo} to {hi}, got {_show(value)}")
            return default
        return number

    def strings(self, data: Mapping[str, Any], path: P, key: str) -> tuple[str, ...]:
        value = data.get(key, [])
        if value is None:
            return ()
        if not isinstance(value, list):
            self.err((*path, key), f"expected a list of strings, got {_show(value)}")
            return ()
        out = []
        for i, item in enumerate(value):
            if isinstance(item, str) and item:
                out.append(item)
            else:
                self.err((*path, key, i), f"expected a string, got {_show(item)}")
        return tuple(out)

    def host_path(self, data: Mapping[str, Any], path: P, key: str, base: Path) -> Path | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            self.err((*path, key), f"expected a host path, got {_show(value)}")
            return None
        if "\0" in value:
            self.err((*path, key), "a path cannot contain a NUL byte")
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else base / p


def _merge(defaults: Any, guest: Any, dpath: P, gpath: P, rel: P,
           origin: dict[P, P]) -> Any:
    """Deep-merge mappings (guest wins); record where each merged value came from."""
    if isinstance(defaults, dict) and isinstance(guest, dict):
        out = {}
        for key in {**defaults, **guest}:
            if key in guest and key in defaults:
                out[key] = _merge(defaults[key], guest[key], (*dpath, key), (*gpath, key),
                                  (*rel, key), origin)
            elif key in guest:
                out[key] = guest[key]
                origin[(*rel, key)] = (*gpath, key)
            else:
                out[key] = defaults[key]
                origin[(*rel, key)] = (*dpath, key)
        return out
    origin[rel] = gpath
    return guest


def load_lab(path: Path | None) -> LabSpec:
    """Read and validate a lab file, or the built-in default lab when `path` is None."""
    if path is None:
        text = (Path(__file__).parent / "default.yml").read_text()
        source = "<built-in default lab>"
        base = paths.data_home() / "default"
    else:
        try:
            text = path.read_text()
        except OSError as exc:
            raise LabError([f"{path}: cannot read the lab file: {exc.strerror}"]) from None
        source = str(path)
        base = path.resolve().parent
    return validate_text(text, source, base)


def validate_text(text: str, source: str, base: Path) -> LabSpec:
    loc = yamlpos.load(text, source)
    check = _Checker(loc)
    spec = _lab(loc.data, check, source, base)
    if check.problems or spec is None:
        # a bad value in `defaults:` is found once per guest; say it once
        problems = list(dict.fromkeys(check.problems))
        raise LabError(problems or [f"{source}: empty lab"],
                       hint="fix these and run `provision9p validate` again")
    return spec


def _lab(data: Any, check: _Checker, source: str, base: Path) -> LabSpec | None:
    top = check.mapping(data, (), TOP_KEYS)
    name = check.string(top, (), "name", default=Path(source).stem.strip("<>").split()[-1])
    assert name is not None
    allow_pt = check.boolean(top, (), "allow_passthrough", False)
    state = check.host_path(top, (), "state_dir", base) or base / ".provision9p"
    roles_path = tuple(
        (Path(p) if Path(p).is_absolute() else base / p)
        for p in check.strings(top, (), "roles_path")
    ) or (base / "roles",)
    roles_path = (*roles_path, paths.shipped_roles_dir())

    defaults = top.get("defaults") or {}
    if not isinstance(defaults, dict):
        check.err(("defaults",), f"expected a mapping, got {_show(defaults)}")
        defaults = {}
    guests_raw = top.get("guests")
    if not isinstance(guests_raw, dict) or not guests_raw:
        check.err(("guests",), f"expected a mapping of guest names to settings, got "
                               f"{_show(guests_raw)}")
        return None

    guests = []
    for gname, graw in guests_raw.items():
        gpath: P = ("guests", gname)
        if not HOSTNAME.match(gname):
            check.err(gpath, "a guest name becomes its hostname: lower-case letters, digits "
                             "and inner hyphens, at most 63")
        check.origin = {}
        merged = _merge(defaults, graw if graw is not None else {}, ("defaults",), gpath,
                        gpath, check.origin)
        guest = _guest(gname, merged, gpath, check, base, allow_pt, roles_path)
        if guest is not None:
            guests.append(guest)
    check.origin = {}
    ports = [g.ssh_port for g in guests if g.ssh_port is not None]
    for g in guests:
        if g.ssh_port is not None and ports.count(g.ssh_port) > 1:
            check.err(("guests", g.name, "network", "ssh_port"),
                      f"port {g.ssh_port} is used by more than one guest")
    return LabSpec(
        name=name, source=source, base_dir=base, state_dir=state,
        allow_passthrough=allow_pt, guests=tuple(guests), roles_path=roles_path,
        warnings=tuple(dict.fromkeys(check.warnings)),
    )


def _guest(name: str, data: Any, path: P, check: _Checker, base: Path, allow_pt: bool,
           roles_path: tuple[Path, ...]) -> GuestSpec | None:
    g = check.mapping(data, path, GUEST_KEYS)
    arch = check.string(g, path, "arch", "x86_64", tuple(ARCHES)) or "x86_64"
    debian_arch, default_machine, default_kernel = ARCHES[arch]
    machine = check.string(g, path, "machine", default_machine) or default_machine
    memory = check.integer(g, path, "memory", 1024, 128, 1 << 20,
                           parse=lambda v: parse_size(v, "M") >> 20 if isinstance(v, str)
                           else parse_size(v), what="a size in MiB (1024, 2G)")
    cpus = check.integer(g, path, "cpus", 2, 1, 64)
    accel = check.string(g, path, "accel", "auto", ("auto", "kvm", "tcg")) or "auto"
    timeout = check.integer(g, path, "boot_timeout", 300, 10, 3600, what="seconds")

    kpath = (*path, "kernel")
    k = check.mapping(g.get("kernel"), kpath, KERNEL_KEYS)
    image = check.host_path(k, kpath, "image", base)
    kernel = KernelSpec(
        package=check.string(k, kpath, "package", None if image else default_kernel),
        image=image,
        modules=check.host_path(k, kpath, "modules", base),
        initramfs=check.string(k, kpath, "initramfs", "auto", ("auto", "always", "never"))
        or "auto",
        cmdline=check.string(k, kpath, "cmdline", "") or "",
    )
    if kernel.package and image:
        check.err((*kpath, "package"), "give either a kernel package or an image, not both")
    if kernel.package and "cloud" in kernel.package:
        check.err((*kpath, "package"), "Debian's cloud kernel flavour has no 9P support "
                                       "(CONFIG_9P_FS unset) and cannot boot a 9P root; "
                                       f"use {default_kernel}")

    rpath = (*path, "rootfs")
    r = check.mapping(g.get("rootfs"), rpath, ROOTFS_KEYS)
    rootfs = RootfsSpec(
        suite=check.string(r, rpath, "suite", "bookworm") or "bookworm",
        variant=check.string(r, rpath, "variant", "minbase",
                             ("minbase", "buildd", "fakechroot", "-")) or "minbase",
        components=check.strings(r, rpath, "components") or ("main",),
        packages=check.strings(r, rpath, "packages"),
        mirror=check.string(r, rpath, "mirror", None),
        capabilities=check.string(r, rpath, "capabilities", "drop", ("drop", "fail")) or "drop",
    )
    if rootfs.mirror and not re.match(r"^(https?|file)://", rootfs.mirror):
        check.err((*rpath, "mirror"), f"expected an http://, https:// or file:// URL, got "
                                      f"{_show(rootfs.mirror)}")
    transport = default_transport(arch, machine)
    root_raw = {k: v for k, v in r.items() if k in SHARE_KEYS}
    root_raw.setdefault("path", f"guests/{name}/root")
    root_raw.setdefault("mount_tag", ROOT_TAG)
    root_raw["mount"] = "/"
    root = _share(root_raw, rpath, check, base, allow_pt, transport, is_root=True)

    shares: list[tuple[int, Share]] = []
    spath = (*path, "shares")
    raw_shares = g.get("shares", [])
    if raw_shares is None:
        raw_shares = []
    if not isinstance(raw_shares, list):
        check.err(spath, f"expected a list of shares, got {_show(raw_shares)}")
        raw_shares = []
    for i, sraw in enumerate(raw_shares):
        share = _share(sraw, (*spath, i), check, base, allow_pt, transport, is_root=False)
        if share is not None:
            shares.append((i, share))
    _unique_shares(root, shares, spath, check)

    npath = (*path, "network")
    n = check.mapping(g.get("network"), npath, NETWORK_KEYS)
    port: int | None = None
    if n.get("ssh_port", "auto") != "auto":
        port = check.integer(n, npath, "ssh_port", 0, 1024, 65535, what="a port (or auto)")

    roles = _roles(g.get("roles"), (*path, "roles"), check, roles_path)
    gvars = g.get("vars") or {}
    if not isinstance(gvars, dict):
        check.err((*path, "vars"), f"expected a mapping, got {_show(gvars)}")
        gvars = {}
    verify = []
    for i, v in enumerate(check.strings(g, path, "verify")):
        p = Path(v) if Path(v).is_absolute() else base / v
        if not p.is_file():
            check.err((*path, "verify", i), f"no such test file: {p}")
        verify.append(p)
    if root is None:
        return None
    return GuestSpec(
        name=name, arch=arch, debian_arch=debian_arch, machine=machine, memory_mib=memory,
        cpus=cpus, accel=accel, kernel=kernel, rootfs=rootfs, root=root,
        shares=tuple(sh for _, sh in shares), ssh_port=port, boot_timeout=timeout,
        roles=roles, vars=gvars, verify=tuple(verify),
    )


def _share(data: Any, path: P, check: _Checker, base: Path, allow_pt: bool,
           transport_default: str, is_root: bool) -> Share | None:
    s = check.mapping(data, path, SHARE_KEYS)
    if not s:
        if not isinstance(data, dict):
            return None
        check.err(path, "a share needs at least path, mount_tag and mount")
        return None
    fsdriver = check.string(s, path, "fsdriver", "local")
    if fsdriver == "proxy":
        check.err((*path, "fsdriver"), "the proxy driver is refused: it is not production "
                  "grade, not considered safe, slow, and removed from QEMU 9.2; use local")
    elif fsdriver == "synth":
        check.err((*path, "fsdriver"), "synth is QEMU's test driver and serves no host "
                                       "files; use local")
    elif fsdriver not in (None, "local"):
        check.err((*path, "fsdriver"), f"expected local, got {_show(fsdriver)}")
    for key in ("socket", "sock_fd"):
        if key in s:
            check.err((*path, key), f"{key} belongs to the proxy driver, which is refused; "
                                    "remove it")

    host = check.host_path(s, path, "path", base)
    if host is None and "path" not in s:
        check.err(path, "missing key path (the host directory to share)")

    tag = check.string(s, path, "mount_tag")
    if tag is None and "mount_tag" not in s:
        check.err(path, "missing key mount_tag (the name the guest mounts it by)")
    elif tag is not None:
        if not tag:
            check.err((*path, "mount_tag"), "a mount tag cannot be empty")
        elif len(tag.encode()) > MAX_TAG_BYTES:
            check.err((*path, "mount_tag"), f"at most {MAX_TAG_BYTES} bytes (QEMU's "
                      f"MAX_TAG_LEN), got {len(tag.encode())}")
        elif re.search(r"[\s\x00-\x1f]", tag):
            check.err((*path, "mount_tag"), "a mount tag cannot contain spaces or control "
                      "characters (it goes on the kernel command line and into fstab)")

    model = check.string(s, path, "security_model", "mapped-xattr")
    if model == "mapped":
        model = "mapped-xattr"
    if model not in SECURITY_MODELS:
        check.err((*path, "security_model"),
                  f"expected one of {', '.join(SECURITY_MODELS)}, got {_show(model)}")
        model = "mapped-xattr"
    if model == "passthrough":
        if not allow_pt:
            check.err((*path, "security_model"), "passthrough needs QEMU to run as root and "
                      "lets the guest set host owners; say `allow_passthrough: true` at the "
                      "top of the lab to allow it, or use mapped-xattr")
        else:
            check.warn((*path, "security_model"), "passthrough: QEMU will run as root")
    if model == "none" and is_root:
        check.warn((*path, "security_model"), "with none, the guest sees host owners and "
                   "cannot chown: a Debian root tree will misbehave; use mapped-xattr")

    modes: dict[str, int | None] = {"fmode": None, "dmode": None}
    for key in modes:
        if key not in s:
            continue
        if model not in MAPPED_MODELS:
            check.err((*path, key), f"{key} works only with mapped-xattr or mapped-file, "
                                    f"not {model}")
            continue
        try:
            value = parse_octal(check.raw((*path, key)), s[key])
        except ValueError:
            check.err((*path, key), f"expected an octal mode like 0644, got {_show(s[key])}")
            continue
        if value > 0o777:
            check.err((*path, key), f"expected permission bits up to 0777, got {oct(value)}")
            continue
        modes[key] = value

    writeout = check.string(s, path, "writeout", None, ("immediate",))
    multidevs = check.string(s, path, "multidevs", None, MULTIDEVS)
    transport = check.string(s, path, "transport", transport_default, TRANSPORTS)
    readonly = check.boolean(s, path, "readonly", False)
    if is_root and readonly:
        check.err((*path, "readonly"), "the root share cannot be read-only")

    mount = check.string(s, path, "mount")
    if not is_root:
        if mount is None and "mount" not in s:
            check.err(path, "missing key mount (where the guest mounts the share)")
        elif mount is not None and (not mount.startswith("/") or mount.rstrip("/") == ""):
            check.err((*path, "mount"), f"expected an absolute guest path other than /, got "
                                        f"{_show(mount)}")
        elif mount is not None and re.search(r"\s", mount):
            check.err((*path, "mount"), "a mount point cannot contain white space")

    options = _mount_options(s, path, check, model, is_root)
    if host is None or tag is None or mount is None:
        return None
    return Share(
        path=host, mount_tag=tag, security_model=model, mount=mount, readonly=readonly,
        fmode=modes["fmode"], dmode=modes["dmode"], multidevs=multidevs, writeout=writeout,
        transport=transport or transport_default, options=options,
    )


def _mount_options(s: Mapping[str, Any], path: P, check: _Checker, model: str,
                   is_root: bool) -> MountOptions:
    version = check.string(s, path, "version", "9p2000.L", VERSIONS) or "9p2000.L"
    if is_root and version != "9p2000.L":
        check.err((*path, "version"), "a 9P root needs 9p2000.L (owners, modes, symlinks "
                                      "and devices)")
    msize = check.integer(s, path, "msize", MountOptions.msize, MSIZE_MIN, MSIZE_MAX,
                          parse=parse_size, what="a size in bytes (512K, 1M, 104857600)")
    if msize > VIRTIO_MSIZE_CAP:
        check.warn((*path, "msize"), f"the Linux virtio transport clamps msize to "
                                     f"{VIRTIO_MSIZE_CAP}; the effective value is reported")
    cache = check.string(s, path, "cache", "mmap" if is_root else "none", CACHE_MODES)
    access_raw = s.get("access", "client")
    access = str(access_raw)
    if isinstance(access_raw, bool) or not (
        access in ("user", "any", "client") or access.isdigit()
    ):
        check.err((*path, "access"), f"expected user, any, client or a uid, got "
                                     f"{_show(access_raw)}")
        access = "client"
    posixacl = check.boolean(s, path, "posixacl", model in MAPPED_MODELS)
    if posixacl and version != "9p2000.L":
        check.err((*path, "posixacl"), "posixacl needs version 9p2000.L")
    return MountOptions(version=version, msize=msize, cache=cache or "none", access=access,
                        posixacl=posixacl)


def _unique_shares(root: Share | None, shares: list[tuple[int, Share]], spath: P,
                   check: _Checker) -> None:
    tags = {root.mount_tag: "the root share"} if root else {}
    mounts: dict[str, int] = {}
    for i, share in shares:
        if share.mount_tag in tags:
            check.err((*spath, i, "mount_tag"), f"mount tag {share.mount_tag!r} is already "
                      f"used by {tags[share.mount_tag]}; tags must be unique per guest")
        tags.setdefault(share.mount_tag, f"shares[{i}]")
        mp = share.mount.rstrip("/")
        if mp in mounts:
            check.err((*spath, i, "mount"), f"{mp} is already the mount point of "
                                            f"shares[{mounts[mp]}]")
        mounts.setdefault(mp, i)
        if root and (share.path == root.path or root.path in share.path.parents):
            check.err((*spath, i, "path"), "an extra share cannot be the root tree or "
                                           "inside it")


def _roles(data: Any, path: P, check: _Checker, roles_path: tuple[Path, ...]
           ) -> tuple[RoleRef, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        check.err(path, f"expected a list of roles, got {_show(data)}")
        return ()
    out = []
    for i, item in enumerate(data):
        if isinstance(item, str):
            item = {"role": item}
        if not isinstance(item, dict) or not isinstance(item.get("role"), str):
            check.err((*path, i), f"expected a role name or {{role: NAME, vars: ...}}, got "
                                  f"{_show(item)}")
            continue
        check.mapping(item, (*path, i), ("role", "vars", "tags"))
        name = item["role"]
        if not any((d / name).is_dir() for d in roles_path):
            where = ", ".join(str(d) for d in roles_path)
            check.err((*path, i), f"no role named {name!r} in {where}")
        rvars = item.get("vars") or {}
        if not isinstance(rvars, dict):
            check.err((*path, i, "vars"), f"expected a mapping, got {_show(rvars)}")
            rvars = {}
        out.append(RoleRef(name=name, vars=rvars, tags=check.strings(item, (*path, i), "tags")))
    return tuple(out)
