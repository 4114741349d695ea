"""An aarch64 guest's boot files from the real bookworm arm64 packages (through the mirror):
the kernel checked against the arm64 `virt` fragment, and the initramfs's busybox."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from provision9p.host.doctor import is_static_elf
from provision9p.kernel import check_kernel
from provision9p.kernel.config import read_config
from provision9p.kernel.fragments import parse_config
from provision9p.rootfs.foreign import guest_busybox

from .conftest import SUITE

pytestmark = pytest.mark.network

EM_AARCH64 = 0xB7


@pytest.fixture(scope="module")
def arm64_deb(mirror: str) -> Path:
    from provision9p.host.mirror import fetch_package

    return fetch_package("linux-image-arm64", arch="arm64", suite=SUITE, mirror=mirror)


def test_debian_arm64_boots_a_9p_root_from_our_initramfs(arm64_deb: Path) -> None:
    report = check_kernel(arm64_deb)
    assert (report.verdict, report.arch, report.missing) == ("initramfs", "aarch64", ())
    assert report.release.endswith("-arm64")
    # virtio and virtio_ring are built in on arm64 (not on amd64): the stack starts at PCI
    assert report.modules == ("virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
                              "virtio_mmio", "9pnet", "9pnet_virtio", "netfs", "fscache", "9p")


def test_the_virt_board_needs_are_built_in(arm64_deb: Path) -> None:
    """What the arm64 fragment wants built in: the board's PCIe bridge and its console."""
    config = parse_config(read_config(arm64_deb).text)
    for option in ("CONFIG_PCI", "CONFIG_PCI_HOST_GENERIC", "CONFIG_SERIAL_AMBA_PL011",
                   "CONFIG_SERIAL_AMBA_PL011_CONSOLE"):
        assert config.get(option) == "y", option


def test_the_initramfs_busybox_is_a_static_arm64_one(mirror: str) -> None:
    busybox = guest_busybox("arm64", suite=SUITE, mirror=mirror)
    head = busybox.read_bytes()[:20]
    assert head[:4] == b"\x7fELF"
    assert struct.unpack_from("<H", head, 18)[0] == EM_AARCH64
    assert is_static_elf(busybox)
    assert guest_busybox("arm64", suite=SUITE, mirror=mirror) == busybox  # extracted once
