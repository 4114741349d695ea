"""The uncompressed kernel inside an x86 bzImage, so QEMU boots it without decompressing.

Under TCG the kernel's own decompressor takes ~2 s of every boot (Debian's 6.1 bzImage:
Linux banner at 2.4 s from the bzImage, 0.3 s from the ELF). The bzImage carries its
payload as one compressed stream; we find the stream by its magic bytes, decompress it,
and keep the result only when it is an ELF with a PVH entry note (Xen's
XEN_ELFNOTE_PHYS32_ENTRY), the one way QEMU's x86 `-kernel` starts an ELF.
Extracted once per kernel file, next to it; when anything fails the bzImage is booted.
"""

from __future__ import annotations

import bz2
import contextlib
import lzma
import os
import shutil
import struct
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path

from provision9p import paths

ELF_MAGIC = b"\x7fELF"
PT_NOTE = 4
XEN_ELFNOTE_PHYS32_ENTRY = 18
# Far above any kernel seen (Debian's 6.1 vmlinux: ~66 MB); a bound against a bad stream.
MAX_VMLINUX = 512 << 20


def _xz(data: bytes) -> bytes:
    return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data, MAX_VMLINUX)


def _lzma(data: bytes) -> bytes:
    return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(data, MAX_VMLINUX)


def _gzip(data: bytes) -> bytes:
    return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, MAX_VMLINUX)


def _bzip2(data: bytes) -> bytes:
    return bz2.BZ2Decompressor().decompress(data, MAX_VMLINUX)


def _zstd(data: bytes) -> bytes:
    # no zstd in Python's standard library before 3.14; the zstd tool is a set-up package
    if shutil.which("zstd") is None:
        return b""
    proc = subprocess.run(["zstd", "-dcq"], input=data, capture_output=True)
    # trailing bytes after the frame make zstd complain; what it wrote is still the frame
    return proc.stdout[:MAX_VMLINUX]


# magic -> decompressor, the formats Linux's x86 boot code knows (lz4 and lzo left out:
# no distribution kernel seen uses them, and Python has no decoder for them).
MAGICS: tuple[tuple[bytes, Callable[[bytes], bytes]], ...] = (
    (b"\xfd7zXZ\x00", _xz),
    (b"\x28\xb5\x2f\xfd", _zstd),
    (b"\x1f\x8b\x08", _gzip),
    (b"BZh", _bzip2),
    (b"\x5d\x00\x00", _lzma),
)


def has_pvh_note(elf: bytes) -> bool:
    """Whether a 64-bit little-endian ELF has a PT_NOTE holding Xen's PHYS32_ENTRY note."""
    if len(elf) < 64 or not elf.startswith(ELF_MAGIC) or elf[4] != 2 or elf[5] != 1:
        return False
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        at = phoff + i * phentsize
        if at + 56 > len(elf):
            return False
        p_type, = struct.unpack_from("<I", elf, at)
        if p_type != PT_NOTE:
            continue
        offset, = struct.unpack_from("<Q", elf, at + 8)
        size, = struct.unpack_from("<Q", elf, at + 32)
        if _notes_have_pvh(elf[offset:offset + size]):
            return True
    return False


def _notes_have_pvh(notes: bytes) -> bool:
    pos = 0
    while pos + 12 <= len(notes):
        namesz, descsz, kind = struct.unpack_from("<III", notes, pos)
        name = notes[pos + 12:pos + 12 + namesz].rstrip(b"\0")
        if name == b"Xen" and kind == XEN_ELFNOTE_PHYS32_ENTRY:
            return True
        pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


def extract(bzimage: bytes) -> bytes | None:
    """The PVH-bootable ELF inside a bzImage, or None when there is none we can read."""
    if bzimage.startswith(ELF_MAGIC):
        return bzimage if has_pvh_note(bzimage) else None
    for magic, decompress in MAGICS:
        start = bzimage.find(magic)
        while start != -1:
            with contextlib.suppress(lzma.LZMAError, zlib.error, OSError, EOFError,
                                     ValueError):
                elf = decompress(bzimage[start:])
                if elf.startswith(ELF_MAGIC):
                    return elf if has_pvh_note(elf) else None
            start = bzimage.find(magic, start + 1)
    return None


def bootable_kernel(image: Path, arch: str) -> Path:
    """What to hand to QEMU's -kernel: the extracted vmlinux beside `image` when it
    exists or can be made, else `image` itself.

    The copy is current when its mtime equals the image's (set on writing); a kernel
    without a usable payload leaves a `.vmlinux-none` marker so the scan runs once.
    """
    if arch != "x86_64" or not image.is_file():
        return image
    out = image.with_name("vmlinux")
    none = image.with_name(".vmlinux-none")
    stamp = image.stat().st_mtime_ns
    for path in (out, none):
        with contextlib.suppress(OSError):
            if path.stat().st_mtime_ns == stamp:
                return out if path == out else image
    elf = extract(image.read_bytes())
    tmp = image.with_name(f".vmlinux.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(elf or b"")
        tmp.chmod(0o644)
        os.utime(tmp, ns=(stamp, stamp))
        os.replace(tmp, out if elf else none)
    except OSError:
        tmp.unlink(missing_ok=True)
        return image  # a read-only boot dir: boot the bzImage, as before
    for stale in (none if elf else out,):
        stale.unlink(missing_ok=True)
    return out if elf else image


def install_beside(source: Path, kernel: Path, arch: str) -> None:
    """At build time: extract once beside the source kernel (the download cache), then
    link the result next to the guest's copy `kernel`, which must carry the source's
    mtime (shutil.copy2), so `bootable_kernel(kernel)` finds it current. A kernel from
    outside the cache (the lab's own image) is extracted beside the guest's copy only:
    nothing is written next to a user's file."""
    if not source.resolve().is_relative_to(paths.cache_home().resolve()):
        bootable_kernel(kernel, arch)
        return
    elf = bootable_kernel(source, arch)
    if elf == source:
        return
    dest = kernel.with_name("vmlinux")
    tmp = kernel.with_name(f".vmlinux.tmp-{os.getpid()}")
    try:
        tmp.unlink(missing_ok=True)
        try:
            os.link(elf, tmp)
        except OSError:
            shutil.copy2(elf, tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
