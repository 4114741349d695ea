"""Sizes with units, as people write them in lab files: 512K, 1M, 2G, 104857600."""

from __future__ import annotations

import re

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)


def parse_size(value: object, default_unit: str = "") -> int:
    """Bytes (or `default_unit`s) in `value`; ValueError when it is not a size."""
    if isinstance(value, bool):
        raise ValueError("not a size")
    if isinstance(value, int):
        return value * _UNITS[default_unit]
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m:
            unit = m.group(2).upper() or default_unit
            return int(m.group(1)) * _UNITS[unit]
    raise ValueError("not a size")


def parse_octal(raw: str | None, value: object) -> int:
    """A mode written with an octal prefix: 0644, 0o644 or "0644"; ValueError otherwise.

    A bare 644 is refused rather than guessed: YAML reads it as the decimal 644, and
    QEMU's own number parser would too (fmode=644 is 0o1204, which QEMU masks to 0o204).
    """
    if raw is None:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if not isinstance(value, str):
            raise ValueError("not an octal mode")
        raw = value
    text = raw.strip()
    digits = text[2:] if text[:2].lower() == "0o" else text
    if text.isascii() and text.isdigit() and not text.startswith("0"):
        raise ValueError(f"{text} has no leading 0, so it is a decimal number; "
                         f"write 0{text} or 0o{text} for an octal mode")
    if not digits or any(c not in "01234567" for c in digits):
        raise ValueError("not an octal mode")
    return int(digits, 8)
