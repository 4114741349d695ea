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
    """A mode written as 0644, 644, 0o644 or "0644"; ValueError otherwise."""
    text = raw if raw is not None else str(value)
    text = text.strip().strip("'\"")
    if text.lower().startswith("0o"):
        text = text[2:]
    if not text or any(c not in "01234567" for c in text):
        raise ValueError("not octal")
    return int(text, 8)
