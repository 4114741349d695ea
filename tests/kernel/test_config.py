"""Reading a configuration from each kind of source (synthetic sources; the real
Debian ones are in test_debian_kernels.py)."""

from __future__ import annotations

import gzip
import lzma
import os
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from provision9p.errors import KernelError
from provision9p.kernel import check_kernel
from provision9p.kernel.config import image_release, read_config
from provision9p.kernel.fragments import fragments_for

from .helpers import ikconfig_blob

# A small x86_64 configuration with every fragment option built in, plus one module.
BUILTIN = "".join(f.read_text() for f in fragments_for("x86_64"))
CONFIG = ("#\n# Linux/x86 6.1.99 Kernel Configuration\n#\nCONFIG_X86_64=y\n"
          'CONFIG_LOCALVERSION="-test"\nCONFIG_EXT4_FS=m\n' + BUILTIN)


def fake_bzimage(payload: bytes, release: str = "6.1.99-test") -> bytes:
    """A bzImage-shaped file: setup header with `HdrS` and kernel_version, then the
    compressed payload, then trailing bytes, like arch/x86/boot/compressed does."""
    head = bytearray(os.urandom(0x1000))
    head[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", head, 0x20E, 0x400 - 0x200)
    version = f"{release} (builder@host) #1 SMP\0".encode()
    head[0x400:0x400 + len(version)] = version
    return bytes(head) + payload + os.urandom(512)


def _zstd(data: bytes) -> bytes:
    return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True,
                          check=True).stdout


def _lz4(data: bytes) -> bytes:
    return subprocess.run(["lz4", "-l", "-q", "-c"], input=data, capture_output=True,
                          check=True).stdout


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "plain": lambda d: d,
    "gzip": gzip.compress,
    "xz": lambda d: lzma.compress(d, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32),
    "zstd": _zstd,
    "lz4": _lz4,
}


@pytest.mark.parametrize("kind", list(COMPRESSORS))
def test_ikconfig_in_a_compressed_image(tmp_path: Path, kind: str) -> None:
    if kind in ("zstd", "lz4") and shutil.which(kind) is None:
        pytest.fail(f"{kind} is required for this test (apt-get install {kind})")
    # Compressible code around the config, and the marker string once before it (as in
    # a string table), so the compressed payload holds the real marker only as a
    # back-reference: only decompressing the payload finds the config.
    code = b"".join(b"mov %d, %%eax; call printk\n" % i for i in range(3000))
    code += b"IKCFG_ST marks the config\0"
    vmlinux = code + ikconfig_blob(CONFIG) + code
    image = tmp_path / "bzImage"
    image.write_bytes(fake_bzimage(COMPRESSORS[kind](vmlinux)))
    kc = read_config(image)
    assert kc.text == CONFIG
    assert kc.release == "6.1.99-test"
    assert kc.origin == ("ikconfig (plain image)" if kind == "plain"
                         else f"ikconfig ({kind} payload)")
    report = check_kernel(image)
    assert (report.verdict, report.release, report.arch) == ("builtin", "6.1.99-test",
                                                             "x86_64")


def test_image_without_ikconfig_says_what_to_give(tmp_path: Path) -> None:
    image = tmp_path / "vmlinuz"
    image.write_bytes(fake_bzimage(gzip.compress(os.urandom(20000))))
    with pytest.raises(KernelError, match="built without CONFIG_IKCONFIG") as exc:
        check_kernel(image)
    assert exc.value.hint is not None and "/boot/config-" in exc.value.hint


def test_plain_and_gzipped_config(tmp_path: Path) -> None:
    dot = tmp_path / ".config"
    dot.write_text(CONFIG)
    gz = tmp_path / "config.gz"
    gz.write_bytes(gzip.compress(CONFIG.encode()))
    boot = tmp_path / "boot"
    boot.mkdir()
    named = boot / "config-6.1.0-7-amd64"
    named.write_text(CONFIG)
    assert [(k.origin, k.release) for k in map(read_config, (dot, gz, named))] == [
        ("config", "6.1.99-test"), ("config.gz", "6.1.99-test"),
        ("config", "6.1.0-7-amd64")]
    assert check_kernel(gz).verdict == "builtin"


def test_modules_beside_a_boot_config_give_the_order(tmp_path: Path) -> None:
    from .helpers import make_ko

    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "config-6.1.0-7-amd64").write_text(CONFIG.replace("CONFIG_9P_FS=y",
                                                              "CONFIG_9P_FS=m"))
    mods = tmp_path / "usr/lib/modules/6.1.0-7-amd64/kernel"
    mods.mkdir(parents=True)
    (mods / "9p.ko").write_bytes(make_ko("9p", ["netfs"]))
    (mods / "netfs.ko").write_bytes(make_ko("netfs", []))
    report = check_kernel(boot / "config-6.1.0-7-amd64")
    assert (report.verdict, report.modules) == ("initramfs", ("netfs", "9p"))
    # a needed module that the tree does not ship makes the kernel unbootable
    (mods / "9p.ko").unlink()
    report = check_kernel(boot / "config-6.1.0-7-amd64")
    assert report.verdict == "unbootable" and report.missing == ("CONFIG_9P_FS",)


def test_unreadable_and_empty_sources(tmp_path: Path) -> None:
    with pytest.raises(KernelError, match="cannot read"):
        read_config(tmp_path / "absent")
    (tmp_path / "empty.config").write_text("# CONFIG_X86_64 is not set\n")
    with pytest.raises(KernelError, match="no options"):
        check_kernel(tmp_path / "empty.config")
    (tmp_path / "notes.txt").write_text("no options here\n")
    with pytest.raises(KernelError, match="text file without kernel options"):
        check_kernel(tmp_path / "notes.txt")
    (tmp_path / "arm32.config").write_text("CONFIG_ARM=y\n")
    with pytest.raises(KernelError, match="architecture"):
        check_kernel(tmp_path / "arm32.config")


def test_release_from_banner() -> None:
    assert image_release(b"\0junk Linux version 6.1.0-9-arm64 (gcc) #1\0") == "6.1.0-9-arm64"
    assert image_release(b"\0" * 100) == ""


def test_virtio_mmio_is_optional_and_reported_when_lacking(tmp_path: Path) -> None:
    """microvm's transport: never makes a kernel unbootable, loaded early when a module,
    and named in lacking_optional when absent (the build refuses microvm then)."""
    without = tmp_path / "without.config"
    without.write_text(CONFIG.replace("CONFIG_VIRTIO_MMIO=y\n", ""))
    report = check_kernel(without)
    assert report.verdict == "builtin" and report.lacking_optional == ("CONFIG_VIRTIO_MMIO",)
    assert check_kernel(tmp_path / "without.config").as_json()["lacking_optional"] == [
        "CONFIG_VIRTIO_MMIO"]
    with_mod = tmp_path / "module.config"
    with_mod.write_text(CONFIG.replace("CONFIG_VIRTIO_MMIO=y\n", "CONFIG_VIRTIO_MMIO=m\n"))
    report = check_kernel(with_mod)
    assert report.verdict == "initramfs" and "virtio_mmio" in report.modules
    assert report.lacking_optional == ()
