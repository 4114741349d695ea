"""The problem collector the lab validation passes around.

It knows where each value was written (through `yamlpos`), including values merged
in from `defaults:`, so every problem reads `file:line:col dotted.path: message`.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from provision9p.lab import yamlpos

P = yamlpos.Path_


def show(value: Any) -> str:
    """A value as a problem message quotes it."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    if isinstance(value, int) and value.bit_length() > 64:
        # repr() of an int past 4300 digits raises; nobody needs to read it back anyway
        return f"an integer of {value.bit_length()} bits"
    return repr(value)


def did_you_mean(word: str, known: tuple[str, ...]) -> str:
    """` (did you mean 'x'?)` when `word` is close to one of `known`."""
    close = difflib.get_close_matches(word, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Checker:
    """Collects problems; `origin` maps a merged guest path back to where it was written."""

    def __init__(self, loc: yamlpos.Located) -> None:
        self.loc = loc
        self.problems: list[str] = list(loc.problems)
        self.warnings: list[str] = []
        self.origin: dict[P, P] = {}

    def _real(self, path: P) -> P:
        p = tuple(path)
        for cut in range(len(p), 0, -1):
            if p[:cut] in self.origin:
                return self.origin[p[:cut]] + p[cut:]
        return p

    def err(self, path: P, message: str) -> None:
        """A problem at `path`, or at the `defaults:` line it was merged from."""
        real = self._real(path)
        self.problems.append(f"{self.loc.where(real)} {yamlpos.dotted(real)}: {message}")

    def warn(self, path: P, message: str) -> None:
        """Like err, but the lab stays valid; the CLI prints these."""
        real = self._real(path)
        self.warnings.append(f"{self.loc.where(real)} {yamlpos.dotted(real)}: {message}")

    def raw(self, path: P) -> str | None:
        """The scalar as written, before YAML 1.1 turned it into something else."""
        return self.loc.raw.get(self._real(path))

    # typed getters: return the value, or None after recording a problem

    def mapping(self, data: Any, path: P, allowed: tuple[str, ...],
                extensions: bool = False) -> dict[str, Any]:
        """`data` as a mapping; unknown keys are problems (`x-*` ones too unless `extensions`)."""
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.err(path, f"expected a mapping, got {show(data)}")
            return {}
        for key in data:
            if key in allowed or (extensions and key.startswith("x-")):
                continue
            self.err((*path, key), f"unknown key{did_you_mean(key, allowed)}; known: "
                                   f"{', '.join(allowed)}")
        return data

    def string(self, data: Mapping[str, Any], path: P, key: str, default: str | None = None,
               choices: tuple[str, ...] | None = None) -> str | None:
        """A string setting; an explicit empty value is a problem when there is a default."""
        value = data.get(key, default)
        if value is None:
            if key in data and default is not None:
                want = f"one of {', '.join(choices)}" if choices else "a string"
                self.err((*path, key), f"expected {want}, got nothing")
            return default
        if not isinstance(value, str):
            self.err((*path, key), f"expected a string, got {show(value)}")
            return default
        if choices is not None and value not in choices:
            self.err((*path, key), f"expected one of {', '.join(choices)}, got {show(value)}"
                                   f"{did_you_mean(value, choices)}")
            return default
        return value

    def boolean(self, data: Mapping[str, Any], path: P, key: str, default: bool) -> bool:
        """A true/false setting; YAML strings like "yes" in quotes are problems."""
        value = data.get(key, default)
        if not isinstance(value, bool):
            self.err((*path, key), f"expected true or false, got {show(value)}")
            return default
        return value

    def integer(self, data: Mapping[str, Any], path: P, key: str, default: int,
                lo: int, hi: int, parse: Callable[[Any], int] | None = None,
                what: str = "an integer") -> int:
        """An integer in lo..hi; `parse` reads units (sizes) when given."""
        value = data.get(key, default)
        try:
            if parse is not None:
                number = parse(value)
            elif isinstance(value, int) and not isinstance(value, bool):
                number = value
            else:
                raise ValueError
        except ValueError:
            self.err((*path, key), f"expected {what}, got {show(value)}")
            return default
        if not lo <= number <= hi:
            self.err((*path, key), f"expected {what} from {lo} to {hi}, got {show(value)}")
            return default
        return number

    def strings(self, data: Mapping[str, Any], path: P, key: str) -> tuple[str, ...]:
        """A list of non-empty strings; each bad item is its own problem."""
        value = data.get(key, [])
        if value is None:
            return ()
        if not isinstance(value, list):
            self.err((*path, key), f"expected a list of strings, got {show(value)}")
            return ()
        out = []
        for i, item in enumerate(value):
            if isinstance(item, str) and item:
                out.append(item)
            else:
                self.err((*path, key, i), f"expected a string, got {show(item)}")
        return tuple(out)

    def host_path(self, data: Mapping[str, Any], path: P, key: str, base: Path) -> Path | None:
        """A host path, relative ones against `base`, normalised so paths compare."""
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            self.err((*path, key), f"expected a host path, got {show(value)}")
            return None
        if "\0" in value:
            self.err((*path, key), "a path cannot contain a NUL byte")
            return None
        p = Path(value).expanduser()
        # normalised, so that a/../b and b compare equal when shares are compared
        return Path(os.path.normpath(p if p.is_absolute() else base / p))
