"""Read a kernel's configuration from wherever it is: a .config, config.gz,
/boot/config-<release>, a kernel image with the config built in (IKCONFIG), or a
Debian linux-image .deb.

For an image the approach is the kernel's scripts/extract-ikconfig: find the
`IKCFG_ST` marker and gunzip what follows; a bzImage's payload is itself compressed,
so first try every compression magic found in the file and look inside the result.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
import shutil
import struct
import subprocess
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from provision9p.errors import KernelError
from provision9p.kernel.deb import AR_MAGIC, DebKernel, read_kernel_deb

IKCFG_ST = b"IKCFG_ST"
IKCFG_ED = b"IKCFG_ED"
# Offsets of a compression magic tried per kind; a real payload is near the start.
MAX_TRIES = 16


@dataclass(frozen=True)
class KernelConfig:
    text: str
    release: str  # uname -r when known, else the version from the config header
    origin: str  # how it was read: config, config.gz, ikconfig (xz payload), deb
    deb: DebKernel | None = None


def read_config(source: Path) -> KernelConfig:
    """The configuration of `source`, whatever kind of file it is."""
    try:
        with source.open("rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise KernelError(f"cannot read {source}: {exc.strerror}",
                          hint="give a .config, config.gz, kernel image or .deb") from exc
    if head == AR_MAGIC:
        deb = read_kernel_deb(source)
        return KernelConfig(deb.config, deb.release, "deb", deb)
    data = source.read_bytes()
    if head[:2] == b"\x1f\x8b":
        try:
            text = gzip.decompress(data).decode(errors="replace")
        except (OSError, EOFError, zlib.error) as exc:
            raise KernelError(f"{source} is not a valid gzip file: {exc}") from exc
        return KernelConfig(text, _release_from_text(text, source), "config.gz")
    if _looks_like_config(data):
        text = data.decode(errors="replace")
        return KernelConfig(text, _release_from_text(text, source), "config")
    if b"\0" not in data[:4096]:
        raise KernelError(f"{source} is a text file without kernel options",
                          hint="give a .config, config.gz, kernel image or linux-image .deb")
    text, how = extract_ikconfig(data, what=str(source))
    release = image_release(data) or _release_from_text(text, source)
    return KernelConfig(text, release, f"ikconfig ({how})")


def _looks_like_config(data: bytes) -> bool:
    sample = data[:4096]
    if b"\0" in sample:
        return False
    return bool(re.search(rb"^(CONFIG_[A-Za-z0-9_]+=|# CONFIG_[A-Za-z0-9_]+ is not set)",
                          data[:65536], re.M))


def _release_from_text(text: str, source: Path) -> str:
    """config-<release> names the release; else `# Linux/x86 6.1.176 Kernel Configuration`
    plus CONFIG_LOCALVERSION is the best guess."""
    if source.name.startswith("config-") and not source.name.endswith(".gz"):
        return source.name.removeprefix("config-")
    m = re.search(r"^# Linux/\S+ (\S+) Kernel Configuration", text, re.M)
    local = re.search(r'^CONFIG_LOCALVERSION="([^"]*)"', text, re.M)
    return (m.group(1) if m else "") + (local.group(1) if local else "")


def image_release(data: bytes) -> str:
    """uname -r of a kernel image: the x86 boot header's kernel_version string, else the
    `Linux version ...` banner in the (decompressed) image."""
    if data[0x202:0x206] == b"HdrS" and len(data) > 0x210:
        ptr, = struct.unpack_from("<H", data, 0x20E)
        start = ptr + 0x200
        if ptr and start < len(data):
            word = data[start:data.find(b"\0", start)].split(b" ", 1)[0]
            if re.fullmatch(rb"[0-9][0-9A-Za-z.+_~-]*", word):
                return word.decode()
    m = re.search(rb"Linux version (\S+) \(", data)
    return m.group(1).decode(errors="replace") if m else ""


def _gunzip_prefix(data: bytes) -> bytes:
    """Decompress one gzip member, ignoring whatever follows it."""
    return zlib.decompressobj(wbits=31).decompress(data)


def _unxz(data: bytes) -> bytes:
    return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data)


def _unlzma(data: bytes) -> bytes:
    return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(data)


def _unbz2(data: bytes) -> bytes:
    return bz2.BZ2Decompressor().decompress(data)


def _with_program(argv: list[str]) -> Callable[[bytes], bytes]:
    def run(data: bytes) -> bytes:
        if shutil.which(argv[0]) is None:
            return b""
        # Trailing bytes after the stream make these exit non-zero; the output counts.
        return subprocess.run(argv, input=data, capture_output=True, check=False).stdout
    return run


# (magic, name, decompress), the kernel's list in scripts/extract-ikconfig.
PAYLOADS: tuple[tuple[bytes, str, Callable[[bytes], bytes]], ...] = (
    (b"\x1f\x8b\x08", "gzip", _gunzip_prefix),
    (b"\xfd7zXZ\x00", "xz", _unxz),
    (b"BZh", "bzip2", _unbz2),
    (b"\x5d\x00\x00\x00", "lzma", _unlzma),
    (b"\x02\x21\x4c\x18", "lz4", _with_program(["lz4", "-dcq"])),
    (b"\x28\xb5\x2f\xfd", "zstd", _with_program(["zstd", "-dcq"])),
)


def _config_after_marker(data: bytes) -> str | None:
    """The gzip after an `IKCFG_ST` marker; the string can occur elsewhere too, so each
    occurrence is tried."""
    start = 0
    for _ in range(MAX_TRIES):
        at = data.find(IKCFG_ST, start)
        if at < 0:
            return None
        start = at + 1
        try:
            return _gunzip_prefix(data[at + len(IKCFG_ST):]).decode(errors="replace")
        except zlib.error:
            continue
    return None


def extract_ikconfig(data: bytes, *, what: str) -> tuple[str, str]:
    """(config text, how it was found) from a kernel image built with CONFIG_IKCONFIG."""
    text = _config_after_marker(data)
    if text is not None:
        return text, "plain image"
    for magic, name, decompress in PAYLOADS:
        start, tries = 0, 0
        while tries < MAX_TRIES and (at := data.find(magic, start)) >= 0:
            start, tries = at + 1, tries + 1
            try:
                payload = decompress(data[at:])
            except (lzma.LZMAError, OSError, EOFError, ValueError, zlib.error):
                continue
            text = _config_after_marker(payload)
            if text is not None:
                return text, f"{name} payload"
    raise KernelError(
        f"{what} has no embedded configuration (built without CONFIG_IKCONFIG)",
        hint="give its config instead: /boot/config-<release>, /proc/config.gz, the "
             ".config it was built from, or its linux-image .deb",
    )
