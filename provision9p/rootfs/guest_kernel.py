"""The guest's kernel: Debian's package for the suite (or the user's image), checked for 9P.

A Debian kernel package is fetched through the mirror once and extracted into the
cache; its modules go into every tree that boots it, and the checker's verdict
decides whether an initramfs is needed.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from provision9p import paths, ui
from provision9p.errors import BuildError, KernelError
from provision9p.host.mirror import cache_entry_lock, check_space, fetch_package
from provision9p.kernel import KernelReport, check_kernel, extract_deb, module_load_order
from provision9p.lab.model import ARCHES, MMIO_MACHINES, GuestSpec
from provision9p.rootfs import contain
from provision9p.rootfs.safe_fs import clean_stale_staging, staged


@dataclass(frozen=True)
class GuestKernel:
    image: Path
    release: str
    modules_dir: Path | None  # .../lib/modules/<release> on the host, when known
    report: KernelReport
    source: str  # what it came from, for the build record

    @property
    def needs_initramfs(self) -> bool:
        return self.report.verdict == "initramfs"


def prepare_kernel(guest: GuestSpec, mirror: str, *, deb: Path | None = None) -> GuestKernel:
    """Fetch or locate the guest's kernel and refuse one that cannot boot a 9P root.

    `deb`: the kernel package's file, already at hand (a lock's kernel from the .deb
    store); else it is fetched from the mirror."""
    spec = guest.kernel
    if spec.image is not None:
        report = check_kernel(_config_of(spec.image))
        release = report.release or (spec.modules.name if spec.modules else "")
        kernel = GuestKernel(spec.image, release, spec.modules, report, str(spec.image))
    else:
        package = spec.package or ARCHES[guest.arch][2]
        deb = deb or fetch_package(package, arch=guest.debian_arch,
                                   suite=guest.kernel_suite, mirror=mirror)
        root = _extracted(deb)
        configs = sorted((root / "boot").glob("config-*"))
        images = sorted((root / "boot").glob("vmlinu[xz]-*"))
        if not configs or not images:
            raise KernelError(f"{deb.name} has no kernel image or config in /boot",
                              hint="name a linux-image-* package in kernel.package")
        report = check_kernel(configs[0])
        release = configs[0].name.removeprefix("config-")
        mods = root / "usr/lib/modules" / release
        if not mods.is_dir():
            mods = root / "lib/modules" / release
        kernel = GuestKernel(images[0], release, mods if mods.is_dir() else None, report,
                             deb.name)
    if report.verdict == "unbootable":
        fixes = sorted({str(f) for f in report.fixes.values()})
        raise KernelError(
            f"the kernel {kernel.source} cannot boot a 9P root: missing "
            + ", ".join(report.missing),
            hint="use a kernel built with " + (", ".join(fixes) or "the kernel-configs/ "
                                                "fragments") + " merged into its config",
        )
    if guest.machine in MMIO_MACHINES and "CONFIG_VIRTIO_MMIO" in report.lacking_optional:
        raise KernelError(f"the kernel {kernel.source} has no virtio-mmio transport, which "
                          f"the {guest.machine} machine's devices need",
                          hint="set `machine: pc` for this guest, or use a kernel with "
                               "x86_64-guest.config merged")
    if report.verdict == "initramfs" and spec.initramfs == "never":
        raise KernelError(f"the kernel {kernel.source} has 9P only as modules, and the lab "
                          "says kernel.initramfs: never",
                          hint="set kernel.initramfs to auto, or use a kernel with 9P built in")
    if report.verdict == "initramfs" and kernel.modules_dir is None:
        raise KernelError(f"the kernel {kernel.source} needs an initramfs of its 9P modules, "
                          "but no modules directory is known",
                          hint="set kernel.modules to the kernel's lib/modules/<release>")
    return kernel


def _config_of(image: Path) -> Path:
    """The image itself when it embeds its config, else the config-<release> beside it
    (how Debian's /boot and a kernel build's install both lay them out)."""
    try:
        check_kernel(image)
    except KernelError:
        release = image.name.split("-", 1)[1] if "-" in image.name else ""
        beside = image.with_name(f"config-{release}")
        if release and beside.is_file():
            return beside
        raise
    return image


def _extracted(deb: Path) -> Path:
    """The .deb's files, extracted once into the cache (staged, so never half there)."""
    target = paths.cache_home() / "kernels" / deb.stem
    with cache_entry_lock(target, f"the extracted {deb.name}"):
        clean_stale_staging(target)
        if not (target / ".complete").exists():
            # unpacked, the kernel and its modules take about 6 times the .deb
            check_space(target.parent, 6 * deb.stat().st_size, f"{deb.name} unpacked")
            with ui.step(f"extracting {deb.name}"), staged(target) as staging:
                extract_deb(deb, staging)
                (staging / ".complete").touch()
    return target


def install_modules(kernel: GuestKernel, tree: Path, *, copy: bool = True) -> None:
    """Copy the kernel's modules into a plain tree and index them with the tree's depmod.

    `copy=False`: the modules are there already (an overlay's shared layer); index only.
    """
    if kernel.modules_dir is None:
        return
    if copy:
        copy_modules(kernel, tree)
    # Debian's package ships no modules.dep; the guest's modprobe needs one.
    proc = contain.run(tree, ["/sbin/depmod", "-a", kernel.release])
    if proc.returncode != 0:
        raise BuildError("depmod in the root tree failed: "
                         f"{proc.stderr.decode(errors='replace').strip()}",
                         hint="the tree needs the kmod package (it is in the base set)")


def copy_modules(kernel: GuestKernel, tree: Path) -> None:
    """The kernel's modules at the tree's usr/lib/modules/<release>, not indexed."""
    assert kernel.modules_dir is not None
    dest = tree / "usr/lib/modules" / kernel.release
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        shutil.rmtree(dest)
    proc = subprocess.run(["cp", "-a", "--reflink=auto", str(kernel.modules_dir), str(dest)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"copying the kernel modules failed: {proc.stderr.strip()}")


def initramfs_modules(kernel: GuestKernel, tree: Path) -> list[Path]:
    """The .ko files the initramfs loads, in load order, taken from the tree's copy."""
    mods = tree / "usr/lib/modules" / kernel.release
    mods = mods if mods.is_dir() else kernel.modules_dir or mods
    wanted = list(kernel.report.modules)
    # The network device too, so /init can configure eth0 before systemd starts.
    if any(mods.glob("kernel/drivers/net/virtio_net.ko*")):
        wanted.append("virtio_net")
    return module_load_order(mods, kernel.release, wanted)
