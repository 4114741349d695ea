"""What a guest of another architecture needs from the build besides its tree.

The tree itself needs nothing special here: mmdebstrap and every later chroot run its
programs through qemu-user (host/binfmt.py). The initramfs is different: it runs before
any library exists, so its busybox must be a static one of the guest's architecture, and
the host's busybox-static is of the host's. Debian's busybox-static for the guest's arch
is fetched through the same verified mirror path as the kernel.
"""

from __future__ import annotations

from pathlib import Path

from provision9p import paths, ui
from provision9p.errors import BuildError
from provision9p.host.binfmt import host_arch
from provision9p.host.mirror import cache_entry_lock, fetch_package
from provision9p.kernel import extract_deb
from provision9p.rootfs.safe_fs import clean_stale_staging, staged

BUSYBOX_PACKAGE = "busybox-static"


def is_foreign(debian_arch: str) -> bool:
    return debian_arch != host_arch()


def guest_busybox(debian_arch: str, *, suite: str, mirror: str) -> Path:
    """A static busybox that runs on `debian_arch` (a foreign one; the caller keeps the
    host's for its own arch), from the suite's busybox-static package, extracted once."""
    deb = fetch_package(BUSYBOX_PACKAGE, arch=debian_arch, suite=suite, mirror=mirror)
    target = paths.cache_home() / "busybox" / deb.stem
    with cache_entry_lock(target, f"the extracted {deb.name}"):
        clean_stale_staging(target)
        if not (target / ".complete").exists():
            with ui.step(f"extracting {deb.name}"), staged(target) as staging:
                extract_deb(deb, staging)
                (staging / ".complete").touch()
    for candidate in (target / "bin/busybox", target / "usr/bin/busybox"):
        if candidate.is_file():
            return candidate
    raise BuildError(f"{deb.name} holds no bin/busybox",
                     hint=f"check the suite's {BUSYBOX_PACKAGE} package for {debian_arch}")
