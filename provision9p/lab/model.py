"""The validated lab: frozen dataclasses that every later stage reads.

Nothing here parses or checks; `provision9p.lab.validate` builds these from a
lab file once, and stages after it trust them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from provision9p.lab.network import LabNetwork

# QEMU's security models by their canonical names; the lab folds the alias `mapped` into
# mapped-xattr. What each one means lives in one object each (rootfs/security.py).
SecurityModelName = Literal["mapped-xattr", "mapped-file", "passthrough", "none"]
SECURITY_MODELS: tuple[SecurityModelName, ...] = get_args(SecurityModelName)
MAPPED_MODELS: tuple[SecurityModelName, ...] = ("mapped-xattr", "mapped-file")
TRANSPORTS = ("virtio-9p-pci", "virtio-9p-device", "virtio-9p-ccw")
MULTIDEVS = ("remap", "forbid", "warn")
# The kernel's cache= shortcuts (fs/9p/v9fs.c). There is no "writeback" shortcut: the
# writeback bit exists only inside the numeric bitmask. "readahead" came with Linux 6.4.
CACHE_MODES = ("none", "loose", "fscache", "mmap", "readahead")
VERSIONS = ("9p2000.L", "9p2000.u", "9p2000")
# Inventory groups: Ansible warns about names outside this pattern, and makes these two.
GROUP_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
IMPLICIT_GROUPS = ("all", "ungrouped")
# Linux's virtio 9P transport clamps msize to this on the 6.1 guest kernel (DESIGN.md).
VIRTIO_MSIZE_CAP = 512000

# arch -> (Debian architecture, default machine, default kernel package)
ARCHES: dict[str, tuple[str, str, str]] = {
    "x86_64": ("amd64", "pc", "linux-image-amd64"),
    "aarch64": ("arm64", "virt", "linux-image-arm64"),
    "s390x": ("s390x", "s390-ccw-virtio", "linux-image-s390x"),
}
# Machine types each arch can boot a 9P root on (versioned names like pc-q35-7.2 too).
MACHINES: dict[str, tuple[str, ...]] = {
    "x86_64": ("pc", "q35", "microvm", "pc-i440fx-*", "pc-q35-*"),
    "aarch64": ("virt", "virt-*"),
    "s390x": ("s390-ccw-virtio", "s390-ccw-virtio-*"),
}
# Machines whose virtio devices sit on virtio-mmio rather than PCI.
MMIO_MACHINES = ("microvm",)


def default_transport(arch: str, machine: str) -> str:
    """The 9P transport device a machine type offers."""
    if arch == "s390x" or machine.startswith("s390"):
        return "virtio-9p-ccw"
    if machine in MMIO_MACHINES:
        return "virtio-9p-device"
    return "virtio-9p-pci"


def transport_fits(transport: str, arch: str, machine: str) -> bool:
    """Whether QEMU can plug `transport` into `machine` (QEMU 7.2, tried).

    pc/q35 have no virtio-mmio bus ("No 'virtio-bus' bus found"), microvm has no PCI
    bus, ccw exists only in qemu-system-s390x; arm64 `virt` has both PCI and mmio.
    """
    if transport == "virtio-9p-ccw":
        return arch == "s390x"
    if transport == "virtio-9p-device":
        return machine in MMIO_MACHINES or arch == "aarch64"
    return machine not in MMIO_MACHINES


@dataclass(frozen=True)
class MountOptions:
    """Guest-side 9P mount options (the client half; QEMU never sees them)."""

    version: str = "9p2000.L"
    msize: int = VIRTIO_MSIZE_CAP
    cache: str = "none"
    access: str = "client"
    posixacl: bool = True

    def as_string(self, readonly: bool = False) -> str:
        """`trans=virtio,version=...` as mount(8) and rootflags= take it."""
        opts = ["trans=virtio", f"version={self.version}", f"msize={self.msize}"]
        opts.append(f"cache={self.cache}")
        opts.append(f"access={self.access}")
        if self.posixacl:
            opts.append("posixacl")
        if readonly:
            opts.append("ro")
        return ",".join(opts)


@dataclass(frozen=True)
class Share:
    """One 9P export: QEMU's -fsdev options plus how the guest mounts it."""

    path: Path
    mount_tag: str
    security_model: SecurityModelName = "mapped-xattr"
    mount: str = "/"
    readonly: bool = False
    # Permission bits (0..0o777) for files/dirs the guest creates; QEMU reads its number
    # options with base 0, so write them to argv as f"0{mode:o}" (fmode=0644), never "0o".
    fmode: int | None = None
    dmode: int | None = None
    multidevs: str | None = None
    writeout: str | None = None
    transport: str = "virtio-9p-pci"
    options: MountOptions = field(default_factory=MountOptions)


@dataclass(frozen=True)
class KernelSpec:
    """Which kernel boots the guest: a Debian package, or the user's own image."""

    package: str | None = None
    image: Path | None = None
    modules: Path | None = None
    initramfs: str = "auto"  # auto | always | never
    cmdline: str = ""
    #: the suite the package comes from (bookworm-backports: a newer kernel under
    #: bookworm's userspace); None: the root's suite
    suite: str | None = None


@dataclass(frozen=True)
class RootfsSpec:
    """What debootstrap puts in the root tree."""

    suite: str = "bookworm"
    variant: str = "minbase"
    components: tuple[str, ...] = ("main",)
    packages: tuple[str, ...] = ()
    mirror: str | None = None  # None: the host's apt sources decide
    capabilities: str = "drop"  # drop | fail: file capabilities cannot cross mapped 9P
    layout: str = "copy"  # copy | overlay (rootfs/overlay.py: one base, a layer per guest)
    # An image (`image build`) to create the tree from: a digest (or a unique prefix) in the
    # store, or an absolute path; no debootstrap and no roles' tree phase then.
    image: str | None = None


@dataclass(frozen=True)
class RoleRef:
    name: str
    vars: Mapping[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class GuestSpec:
    name: str
    arch: str
    debian_arch: str
    machine: str
    memory_mib: int
    cpus: int
    accel: str  # auto | kvm | tcg
    kernel: KernelSpec
    rootfs: RootfsSpec
    root: Share
    shares: tuple[Share, ...]
    ssh_port: int | None  # None: a free port is chosen at boot
    boot_timeout: int
    roles: tuple[RoleRef, ...]
    vars: Mapping[str, Any]
    verify: tuple[Path, ...]
    #: Ansible's play keywords: gather facts once at the start of a run, which subsets.
    gather_facts: bool = True
    gather_subset: tuple[str, ...] = ("all",)
    #: Ansible inventory groups besides `all` and the lab's own (provision9p/inventory.py).
    groups: tuple[str, ...] = ()
    #: on the lab network (lab/network.py): None when the lab has none
    address: ipaddress.IPv4Interface | None = None
    mac: str | None = None

    @property
    def all_shares(self) -> tuple[Share, ...]:
        return (self.root, *self.shares)

    @property
    def kernel_suite(self) -> str:
        """The Debian suite whose Packages index the kernel package is taken from."""
        return self.kernel.suite or self.rootfs.suite


@dataclass(frozen=True)
class LabSpec:
    name: str
    source: str  # file path, or "<built-in default lab>"
    base_dir: Path  # relative paths in the lab resolve against this
    state_dir: Path
    allow_passthrough: bool
    guests: tuple[GuestSpec, ...]
    roles_path: tuple[Path, ...]
    warnings: tuple[str, ...] = ()
    network: LabNetwork = field(default_factory=LabNetwork)

    def guest(self, name: str) -> GuestSpec:
        for g in self.guests:
            if g.name == name:
                return g
        from provision9p.errors import UsageError

        names = ", ".join(g.name for g in self.guests)
        raise UsageError(f"no guest named {name!r} in {self.source}", hint=f"guests: {names}")
