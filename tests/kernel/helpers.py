"""Small real artefacts for the kernel tests: ELF modules with a .modinfo section, and
kernel-image-like blobs with an embedded configuration."""

from __future__ import annotations

import gzip
import struct


def make_ko(name: str, depends: list[str], *, big_endian: bool = False) -> bytes:
    """A minimal ELF64 relocatable object with .modinfo, as modpost writes it."""
    e = ">" if big_endian else "<"
    modinfo = b"license=GPL\0" + f"depends={','.join(depends)}\0".encode() + \
        f"name={name}\0vermagic=6.1.0 SMP\0".encode()
    shstrtab = b"\0.modinfo\0.shstrtab\0"
    body = modinfo + shstrtab
    shoff = 64 + len(body)
    shoff += (-shoff) % 8
    header = b"\x7fELF" + bytes([2, 2 if big_endian else 1, 1, 0]) + b"\0" * 8
    header += struct.pack(e + "HHIQQQIHHHHHH", 1, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, 3, 2)
    out = bytearray(header + body)
    out += b"\0" * (shoff - len(out))

    def sh(name_off: int, typ: int, off: int, size: int) -> bytes:
        return struct.pack(e + "IIQQQQIIQQ", name_off, typ, 0, 0, off, size, 0, 0, 1, 0)

    out += sh(0, 0, 0, 0)
    out += sh(1, 1, 64, len(modinfo))
    out += sh(10, 3, 64 + len(modinfo), len(shstrtab))
    return bytes(out)


def ikconfig_blob(config: str) -> bytes:
    """What CONFIG_IKCONFIG puts in the kernel: a gzip of the .config between markers."""
    return b"IKCFG_ST" + gzip.compress(config.encode()) + b"IKCFG_ED"
