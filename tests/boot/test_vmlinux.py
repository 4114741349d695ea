"""Extracting the uncompressed, PVH-bootable kernel from a bzImage (and not using one
that QEMU could not start)."""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import lzma
import os
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from provision9p import paths
from provision9p.boot.vmlinux import bootable_kernel, extract, has_pvh_note, install_beside


def elf_with_notes(notes: list[tuple[bytes, int]], filler: int = 4096) -> bytes:
    """A minimal ELF64 LE: header, one PT_NOTE program header, the notes, padding."""
    body = b""
    for name, kind in notes:
        n = name + b"\0"
        body += struct.pack("<III", len(n), 4, kind) + n.ljust((len(n) + 3) // 4 * 4, b"\0")
        body += b"\x00\x10\x00\x01"  # the entry address, 4 bytes
    phoff, notes_at = 64, 64 + 56
    header = (b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9
              + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0x1000000, phoff, 0, 0, 64, 56, 1,
                            64, 0, 0))
    phdr = struct.pack("<IIQQQQQQ", 4, 4, notes_at, 0, 0, len(body), len(body), 4)
    return header + phdr + body + b"\xcc" * filler


PVH = elf_with_notes([(b"Linux", 6), (b"Xen", 18)])
NO_PVH = elf_with_notes([(b"Linux", 6), (b"Xen", 5)])
# what precedes the payload in a bzImage: the setup code, with bytes that look like
# magic but do not decompress
PREFIX = b"MZ" + b"\0" * 510 + b"HdrS" + b"\x1f\x8b\x08junk" + b"\xfd7zXZ\x00bad" + b"\x90" * 3000

COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "xz": lambda d: lzma.compress(d, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32),
    "gzip": lambda d: gzip.compress(d, mtime=0),
    "bzip2": bz2.compress,
    "lzma": lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE),
}


def test_pvh_note_found_only_with_xen_phys32_entry() -> None:
    assert has_pvh_note(PVH)
    assert not has_pvh_note(NO_PVH)
    assert not has_pvh_note(b"MZ" + PVH)


@pytest.mark.parametrize("name", sorted(COMPRESSORS))
def test_extract_finds_the_payload_behind_false_magics(name: str) -> None:
    bzimage = PREFIX + COMPRESSORS[name](PVH) + b"\0" * 100  # trailing bytes, like the real one
    assert extract(bzimage) == PVH


def test_no_pvh_note_means_no_vmlinux() -> None:
    assert extract(PREFIX + COMPRESSORS["xz"](NO_PVH)) is None
    assert extract(PREFIX + b"\x02\x21\x4c\x18lz4 is not read") is None


@pytest.mark.tree
def test_bootable_kernel_extracts_once_and_remembers_failure(tmp_path: Path) -> None:
    good = tmp_path / "good" / "vmlinuz"
    good.parent.mkdir()
    good.write_bytes(PREFIX + COMPRESSORS["xz"](PVH))
    assert bootable_kernel(good, "x86_64") == good.with_name("vmlinux")
    assert good.with_name("vmlinux").read_bytes() == PVH
    # current: not rewritten (a changed file in place would be noticed by its mtime)
    good.with_name("vmlinux").write_bytes(b"kept")
    os.utime(good.with_name("vmlinux"), ns=(good.stat().st_mtime_ns,) * 2)
    assert bootable_kernel(good, "x86_64").read_bytes() == b"kept"
    # a new kernel in place: extracted again
    good.write_bytes(PREFIX + COMPRESSORS["gzip"](PVH))
    os.utime(good, ns=(good.stat().st_mtime_ns + 10**9,) * 2)
    assert bootable_kernel(good, "x86_64").read_bytes() == PVH
    assert bootable_kernel(good, "aarch64") == good

    bad = tmp_path / "bad" / "vmlinuz"
    bad.parent.mkdir()
    bad.write_bytes(PREFIX + COMPRESSORS["xz"](NO_PVH))
    assert bootable_kernel(bad, "x86_64") == bad
    assert bad.with_name(".vmlinux-none").exists()
    assert not bad.with_name("vmlinux").exists()


@pytest.mark.tree
def test_install_beside_extracts_in_the_cache_and_links(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISION9P_CACHE", str(tmp_path / "cache"))
    source = paths.cache_home() / "kernels" / "k" / "boot" / "vmlinuz-6.1"
    source.parent.mkdir(parents=True)
    source.write_bytes(PREFIX + COMPRESSORS["xz"](PVH))
    guest = tmp_path / "guest" / "vmlinuz"
    guest.parent.mkdir()
    shutil.copy2(source, guest)
    install_beside(source, guest, "x86_64")
    cached, linked = source.with_name("vmlinux"), guest.with_name("vmlinux")
    assert cached.read_bytes() == PVH
    assert linked.stat().st_ino == cached.stat().st_ino
    assert bootable_kernel(guest, "x86_64") == linked  # current, nothing extracted again

    # the lab's own kernel: nothing written next to it
    own = tmp_path / "own" / "vmlinuz-6.1"
    own.parent.mkdir()
    own.write_bytes(PREFIX + COMPRESSORS["xz"](PVH))
    guest2 = tmp_path / "guest2" / "vmlinuz"
    guest2.parent.mkdir()
    shutil.copy2(own, guest2)
    install_beside(own, guest2, "x86_64")
    assert sorted(p.name for p in own.parent.iterdir()) == ["vmlinuz-6.1"]
    assert guest2.with_name("vmlinux").read_bytes() == PVH


DEBIAN = sorted(Path("/var/cache/provision9p/kernels").glob("linux-image-*amd64*/boot/vmlinuz-*"))


@pytest.mark.tree
@pytest.mark.skipif(not DEBIAN, reason="no Debian amd64 kernel in the shared cache")
def test_debian_bzimage_yields_a_pvh_vmlinux() -> None:
    elf = extract(DEBIAN[0].read_bytes())
    assert elf is not None and has_pvh_note(elf) and len(elf) > 4 * DEBIAN[0].stat().st_size


@pytest.mark.tree
def test_boot_files_vmlinux_and_tcg_options(tmp_path: Path) -> None:
    """The golden argv with the extracted kernel: -kernel names vmlinux, nothing else
    changes (an x86_64 guest; an aarch64 one keeps its image)."""
    from provision9p.boot import supervisor
    from provision9p.boot.qemu_argv import qemu_argv
    from provision9p.lab import validate_text
    from provision9p.target import resolve

    lab = validate_text("name: t\nguests:\n  g: {}\n  a: {arch: aarch64}\n",
                        str(tmp_path / "lab.yml"), tmp_path)
    x86, arm = (resolve(lab, g) for g in lab.guests)
    x86.state.boot_dir.mkdir(parents=True)
    x86.state.kernel.write_bytes(PREFIX + COMPRESSORS["xz"](PVH))
    files = supervisor.boot_files(x86, "tcg", 10022)
    after = qemu_argv(x86.guest, files)
    before = qemu_argv(x86.guest, dataclasses.replace(files, kernel=x86.state.kernel))
    assert after[after.index("-kernel") + 1] == str(x86.state.boot_dir / "vmlinux")
    assert [a for a in after if not a.endswith("/vmlinux")] == [
        a for a in before if not a.endswith("/vmlinuz")]
    arm.state.boot_dir.mkdir(parents=True)
    arm.state.kernel.write_bytes(PREFIX + COMPRESSORS["xz"](PVH))
    assert supervisor.boot_files(arm, "tcg", 10022).kernel == arm.state.kernel
    # the IO-APIC timer check is skipped on x86_64 whatever the accelerator
    assert " no_timer_check" in after[after.index("-append") + 1]
    assert supervisor.boot_files(x86, "kvm", 10022).extra_cmdline == ""
    assert supervisor.boot_files(arm, "tcg", 10022).extra_cmdline == ""
