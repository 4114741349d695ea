"""Lab file -> LabSpec, in one pass that collects every problem.

Each problem reads `lab.yml:12:5 guests.web.shares[1].fmode: expected ..., got ...`.
Values from `defaults:` are merged into each guest first, and a problem in a
merged value points at the line where it was written.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision9p import paths
from provision9p.errors import LabError
from provision9p.lab import yamlpos
from provision9p.lab.checker import Checker, P, show
from provision9p.lab.model import (
    ARCHES,
    GROUP_NAME,
    IMPLICIT_GROUPS,
    MACHINES,
    GuestSpec,
    KernelSpec,
    LabSpec,
    RoleRef,
    RootfsSpec,
    Share,
    default_transport,
)
from provision9p.lab.netcheck import NetGuest, guest_address, lab_network
from provision9p.lab.shares import (
    SHARE_KEYS,
    GuestShares,
    ShareContext,
    ShareKeys,
    check_share,
    shared_across_guests,
    unique_shares,
)
from provision9p.lab.units import parse_size

HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
ROLE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
ROOT_TAG = "rootfs"
# Debian suites whose kernel predates Linux 6.4, which added cache=readahead; a
# backports suite carries the next release's kernel, updates and security the same one.
OLD_KERNELS = {"buster": "4.19", "bullseye": "5.10", "bookworm": "6.1",
               "buster-backports": "5.10", "bullseye-backports": "6.1"}


def old_kernel(suite: str) -> str | None:
    """The Linux version of an old suite's kernel, or None when it has readahead."""
    for suffix in ("-proposed-updates", "-updates", "-security"):
        suite = suite.removesuffix(suffix)
    return OLD_KERNELS.get(suite)
# provision9p writes these from the root share; a second copy on the command line wins.
ROOT_CMDLINE = ("root", "rootfstype", "rootflags")

TOP_KEYS = ("name", "state_dir", "allow_passthrough", "roles_path", "defaults", "guests",
            "network")
GUEST_KEYS = (
    "arch", "machine", "memory", "cpus", "accel", "kernel", "rootfs", "shares",
    "network", "boot_timeout", "roles", "vars", "verify", "gather_facts", "gather_subset",
    "groups",
)
KERNEL_KEYS = ("package", "image", "modules", "initramfs", "cmdline", "suite")
# A Debian suite or codename as it appears in a mirror's dists/ (bookworm-backports).
SUITE_NAME = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")
ROOTFS_KEYS = (
    "suite", "variant", "components", "packages", "mirror", "capabilities", "layout", "image",
    *(k for k in SHARE_KEYS if k != "mount"),
)
NETWORK_KEYS = ("ssh_port", "address")


def _merge(defaults: Any, guest: Any, dpath: P, gpath: P, rel: P,
           origin: dict[P, P]) -> Any:
    """Deep-merge mappings (guest wins); record where each merged value came from.

    An empty guest section (`rootfs:` with nothing under it) keeps the defaults.
    """
    if isinstance(defaults, dict) and guest is None:
        origin[rel] = dpath
        return defaults
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
        text = _read_lab(path)
        source = str(path)
        base = path.resolve().parent
    return validate_text(text, source, base)


# A lab file is a few KB; anything past this is the wrong file (or /dev/zero).
MAX_LAB_BYTES = 4 << 20


def _read_lab(path: Path) -> str:
    """The lab's text; a file that is not UTF-8 is a lab error saying where it breaks."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_LAB_BYTES + 1)
    except OSError as exc:
        raise LabError([f"{path}: cannot read the lab file: {exc.strerror}"],
                       hint="give the path of a lab file (YAML)") from None
    if len(data) > MAX_LAB_BYTES:
        raise LabError([f"{path}: larger than {MAX_LAB_BYTES >> 20} MiB; not a lab file"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        col = len(data[line_start:exc.start].decode("utf-8", errors="replace")) + 1
        raise LabError([f"{path}:{line}:{col} not UTF-8: byte 0x{data[exc.start]:02x} at "
                        f"offset {exc.start} cannot be decoded; save the lab file as UTF-8"],
                       hint="re-save it as UTF-8, e.g. `iconv -f latin1 -t utf-8`") from None


def validate_text(text: str, source: str, base: Path) -> LabSpec:
    """Validate lab text; relative paths resolve against `base`. Raises LabError with all."""
    loc = yamlpos.load(text, source)
    check = Checker(loc)
    # after a YAML syntax error there is nothing sound to check further
    spec = None if loc.data is None else _lab(loc.data, check, source, base)
    if check.problems or spec is None:
        # a bad value in `defaults:` is found once per guest; say it once, in file order
        problems = sorted(dict.fromkeys(check.problems), key=lambda p: _line_col(p, source))
        raise LabError(problems or [f"{source}: empty lab"],
                       hint="fix these and run `provision9p validate` again")
    return spec


def _line_col(problem: str, source: str) -> tuple[int, int]:
    m = re.match(r"(\d+):(\d+) ", problem.removeprefix(f"{source}:"))
    return (int(m[1]), int(m[2])) if m else (0, 0)


@dataclass(frozen=True)
class _Checked:
    """A valid guest and where it was written, for the checks across guests."""

    spec: GuestSpec
    origin: dict[P, P]
    shares: tuple[tuple[int, ShareKeys], ...]  # index in the lab's list, its valid keys
    pinned: ipaddress.IPv4Address | None = None  # network.address, on the lab network


def _lab(data: Any, check: Checker, source: str, base: Path) -> LabSpec | None:
    if not isinstance(data, dict):
        check.err((), f"expected a mapping with a guests: key, got {show(data)}")
        return None
    # x-* keys are free, so YAML anchors (`x-common: &common`) have somewhere to live
    top = check.mapping(data, (), TOP_KEYS, extensions=True)
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
        check.err(("defaults",), f"expected a mapping, got {show(defaults)}")
        defaults = {}
    guests_raw = top.get("guests")
    if not isinstance(guests_raw, dict) or not guests_raw:
        check.err(("guests",), f"expected a mapping of guest names to settings, got "
                               f"{show(guests_raw)}")
        return None

    guests: list[_Checked] = []
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
    _across_guests(guests, check)
    network, addresses = lab_network(
        top, [NetGuest(g.spec.name, g.pinned, g.origin) for g in guests], check, name)
    specs = [dataclasses.replace(g.spec, address=addresses[g.spec.name][0],
                                 mac=addresses[g.spec.name][1])
             if g.spec.name in addresses else g.spec for g in guests]
    check.origin = {}
    return LabSpec(
        name=name, source=source, base_dir=base, state_dir=state,
        allow_passthrough=allow_pt, guests=tuple(specs),
        roles_path=roles_path, warnings=tuple(dict.fromkeys(check.warnings)),
        network=network,
    )


def _across_guests(guests: list[_Checked], check: Checker) -> None:
    """SSH ports and root trees belong to one guest each; report where they were written.

    Overlaps are found through each path's ancestors (a dict lookup per level), not by
    comparing every pair: linear in the number of guests (1,000 guests validate in well
    under a second)."""
    ports: dict[int, str] = {}
    first: dict[Path, tuple[int, Path, str]] = {}  # a root -> its first guest
    under: dict[Path, tuple[int, Path, str]] = {}  # an ancestor -> the first root under it
    for index, g in enumerate(guests):
        check.origin = g.origin
        gpath: P = ("guests", g.spec.name)
        port = g.spec.ssh_port
        if port is not None and port in ports:
            check.err((*gpath, "network", "ssh_port"),
                      f"port {port} is used by more than one guest ({ports[port]} too)")
        elif port is not None:
            ports[port] = g.spec.name
        root = g.spec.root.path
        hits = [first[a] for a in (root, *root.parents) if a in first]
        if root in under:
            hits.append(under[root])
        if hits:  # the earliest guest whose root overlaps, as a pairwise scan finds it
            _, other, owner = min(hits)
            check.err((*gpath, "rootfs", "path"), f"{root} overlaps the root tree of "
                      f"guest {owner} ({other}); each guest needs its own root tree")
        first.setdefault(root, (index, root, g.spec.name))
        for parent in root.parents:
            under.setdefault(parent, (index, root, g.spec.name))
    shared_across_guests([GuestShares(g.spec.name, _indexed(g), g.origin) for g in guests],
                         check)
    roots: dict[Path, list[int]] = {}  # a root -> its guests
    below: dict[Path, list[int]] = {}  # an ancestor -> the guests whose root is below it
    for index, g in enumerate(guests):
        roots.setdefault(g.spec.root.path, []).append(index)
        for parent in g.spec.root.path.parents:
            below.setdefault(parent, []).append(index)
    for index, g in enumerate(guests):
        check.origin = g.origin
        for i, share in g.shares:
            if share.path is None:
                continue
            overlapping = {h for a in (share.path, *share.path.parents) for h in roots.get(a, ())}
            overlapping.update(below.get(share.path, ()))
            for h in sorted(overlapping - {index}):
                check.err(("guests", g.spec.name, "shares", i, "path"),
                          f"{share.path} overlaps the root tree of guest "
                          f"{guests[h].spec.name}; a root tree belongs to its own guest only")


def _indexed(g: _Checked) -> tuple[tuple[int, Share], ...]:
    """The guest's valid extra shares with their index in its `shares:` list."""
    valid = iter(g.spec.shares)
    out = []
    for i, keys in g.shares:
        if keys.path is None or keys.mount_tag is None or keys.mount is None:
            continue  # check_share returned no Share for it
        share = next(valid, None)
        if share is not None:
            out.append((i, share))
    return tuple(out)


def _mib(value: Any) -> int:
    """Memory in MiB: a bare number is MiB, a string may carry a unit (2G, 1536M)."""
    if isinstance(value, str):
        size = parse_size(value, "M")
        if size % (1 << 20):
            raise ValueError("not a whole number of MiB")
        return size >> 20
    return parse_size(value)


def _guest(name: str, data: Any, path: P, check: Checker, base: Path, allow_pt: bool,
           roles_path: tuple[Path, ...]) -> _Checked | None:
    g = check.mapping(data, path, GUEST_KEYS)
    arch = check.string(g, path, "arch", "x86_64", tuple(ARCHES)) or "x86_64"
    debian_arch, default_machine, default_kernel = ARCHES[arch]
    machine = check.string(g, path, "machine", default_machine) or default_machine
    if not any(fnmatch.fnmatchcase(machine, pattern) for pattern in MACHINES[arch]):
        check.err((*path, "machine"), f"expected a {arch} machine type "
                  f"({', '.join(MACHINES[arch])}), got {show(machine)}")
        machine = default_machine
    memory = check.integer(g, path, "memory", 1024, 128, 1 << 20, parse=_mib,
                           what="a size in MiB (1024, 2G)")
    cpus = check.integer(g, path, "cpus", 2, 1, 64)
    accel = check.string(g, path, "accel", "auto", ("auto", "kvm", "tcg")) or "auto"
    timeout = check.integer(g, path, "boot_timeout", 300, 10, 3600, what="seconds")
    gather = check.boolean(g, path, "gather_facts", True)
    subset = check.strings(g, path, "gather_subset") or ("all",)

    kernel = _kernel(g, (*path, "kernel"), check, base, default_kernel)

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
        layout=check.string(r, rpath, "layout", "copy", ("copy", "overlay")) or "copy",
        image=_image_ref(check.string(r, rpath, "image", None), base),
    )
    if rootfs.mirror and not re.match(r"^(https?|file)://", rootfs.mirror):
        check.err((*rpath, "mirror"), f"expected an http://, https:// or file:// URL, got "
                                      f"{show(rootfs.mirror)}")
    kernel_suite = kernel.suite or rootfs.suite
    old = old_kernel(kernel_suite) if kernel.image is None else None
    ctx = ShareContext(base=base, allow_pt=allow_pt, arch=arch, machine=machine,
               transport=default_transport(arch, machine),
               old_kernel=f"{kernel_suite}'s kernel ({old})" if old else None)
    root_raw = {k: v for k, v in r.items() if k in SHARE_KEYS}
    root_raw.setdefault("path", f"guests/{name}/root")
    root_raw.setdefault("mount_tag", ROOT_TAG)
    root_raw["mount"] = "/"
    root, _ = check_share(root_raw, rpath, check, ctx, is_root=True)

    shares: list[tuple[int, Share]] = []
    keys: list[tuple[int, ShareKeys]] = []
    spath = (*path, "shares")
    raw_shares = g.get("shares", [])
    if raw_shares is None:
        raw_shares = []
    if not isinstance(raw_shares, list):
        check.err(spath, f"expected a list of shares, got {show(raw_shares)}")
        raw_shares = []
    for i, sraw in enumerate(raw_shares):
        share, share_keys = check_share(sraw, (*spath, i), check, ctx, is_root=False)
        keys.append((i, share_keys))
        if share is not None:
            shares.append((i, share))
    unique_shares(root, keys, spath, check)

    npath = (*path, "network")
    n = check.mapping(g.get("network"), npath, NETWORK_KEYS)
    port: int | None = None
    if n.get("ssh_port", "auto") != "auto":
        port = check.integer(n, npath, "ssh_port", 0, 1024, 65535, what="a port (or auto)")
    pinned = guest_address(n, npath, check)

    roles = _roles(g.get("roles"), (*path, "roles"), check, roles_path)
    gvars = g.get("vars") or {}
    if not isinstance(gvars, dict):
        check.err((*path, "vars"), f"expected a mapping, got {show(gvars)}")
        gvars = {}
    verify = []
    for i, v in enumerate(check.strings(g, path, "verify")):
        p = Path(v) if Path(v).is_absolute() else base / v
        if not p.is_file():
            check.err((*path, "verify", i), f"no such test file: {p}")
        verify.append(p)
    groups = _groups(g, path, check)
    if root is None:
        return None
    spec = GuestSpec(
        name=name, arch=arch, debian_arch=debian_arch, machine=machine, memory_mib=memory,
        cpus=cpus, accel=accel, kernel=kernel, rootfs=rootfs, root=root,
        shares=tuple(sh for _, sh in shares), ssh_port=port, boot_timeout=timeout,
        roles=roles, vars=gvars, verify=tuple(verify), gather_facts=gather,
        gather_subset=subset, groups=groups,
    )
    return _Checked(spec=spec, origin=dict(check.origin), shares=tuple(keys), pinned=pinned)


def _groups(g: Mapping[str, Any], path: P, check: Checker) -> tuple[str, ...]:
    """Inventory group names Ansible takes without a warning; `all`/`ungrouped` are its own."""
    out = []
    for i, group in enumerate(check.strings(g, path, "groups")):
        if group in IMPLICIT_GROUPS:
            check.err((*path, "groups", i), f"{group!r} is a group Ansible makes itself")
        elif not re.match(GROUP_NAME, group):
            check.err((*path, "groups", i), f"expected a group name (letters, digits, _; "
                      f"not starting with a digit), got {show(group)}")
        elif group not in out:
            out.append(group)
    return tuple(out)


def _kernel(g: Mapping[str, Any], kpath: P, check: Checker, base: Path,
            default_kernel: str) -> KernelSpec:
    k = check.mapping(g.get("kernel"), kpath, KERNEL_KEYS)
    image = check.host_path(k, kpath, "image", base)
    kernel = KernelSpec(
        package=check.string(k, kpath, "package", None if image else default_kernel),
        image=image,
        modules=check.host_path(k, kpath, "modules", base),
        initramfs=check.string(k, kpath, "initramfs", "auto", ("auto", "always", "never"))
        or "auto",
        cmdline=check.string(k, kpath, "cmdline", "") or "",
        suite=check.string(k, kpath, "suite", None),
    )
    if kernel.suite is not None and not SUITE_NAME.match(kernel.suite):
        check.err((*kpath, "suite"), f"expected a Debian suite such as bookworm-backports, "
                                     f"got {show(kernel.suite)}")
    if kernel.suite is not None and image:
        check.err((*kpath, "suite"), "a suite goes with a kernel package; an image is used "
                                     "as it is")
    if kernel.package and image:
        check.err((*kpath, "package"), "give either a kernel package or an image, not both")
    if kernel.package and "cloud" in kernel.package:
        check.err((*kpath, "package"), "Debian's cloud kernel flavour has no 9P support "
                                       "(CONFIG_9P_FS unset) and cannot boot a 9P root; "
                                       f"use {default_kernel}")
    elif kernel.package and not image and kernel.initramfs == "never":
        check.err((*kpath, "initramfs"), "Debian's kernel packages build 9P and virtio as "
                  "modules, so they cannot mount a 9P root without an initramfs; use auto")
    if kernel.modules and not image:
        check.err((*kpath, "modules"), "modules go with a kernel image; a kernel package "
                                       "brings its own")
    for word in kernel.cmdline.split():
        if word.split("=", 1)[0] in ROOT_CMDLINE:
            check.err((*kpath, "cmdline"), f"provision9p sets root=, rootfstype= and "
                      f"rootflags= from the root share; remove {word}")
            break
    return kernel


def _roles(data: Any, path: P, check: Checker, roles_path: tuple[Path, ...]
           ) -> tuple[RoleRef, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        check.err(path, f"expected a list of roles, got {show(data)}")
        return ()
    out = []
    for i, item in enumerate(data):
        if isinstance(item, str):
            item = {"role": item}
        if not isinstance(item, dict) or not isinstance(item.get("role"), str):
            check.err((*path, i), f"expected a role name or {{role: NAME, vars: ...}}, got "
                                  f"{show(item)}")
            continue
        check.mapping(item, (*path, i), ("role", "vars", "tags"))
        name = item["role"]
        if not ROLE_NAME.match(name):
            check.err((*path, i), f"a role name is a directory name under roles_path, not a "
                                  f"path, got {show(name)}")
            continue
        if not any((d / name).is_dir() for d in roles_path):
            where = ", ".join(str(d) for d in roles_path)
            check.err((*path, i), f"no role named {name!r} in {where}")
        rvars = item.get("vars") or {}
        if not isinstance(rvars, dict):
            check.err((*path, i, "vars"), f"expected a mapping, got {show(rvars)}")
            rvars = {}
        out.append(RoleRef(name=name, vars=rvars, tags=check.strings(item, (*path, i), "tags")))
    return tuple(out)


def _image_ref(ref: str | None, base: Path) -> str | None:
    """rootfs.image: a digest stays as it is; a path resolves against the lab's directory."""
    if ref is None or re.fullmatch(r"(sha256:)?[0-9a-f]{4,64}", ref):
        return ref
    return str(base / ref)
