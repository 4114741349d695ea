"""Shared helpers for the lab tests: validate a text and split its problems."""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from provision9p.errors import LabError
from provision9p.lab import LabSpec, validate_text

SOURCE = "lab.yml"
_PROBLEM = re.compile(r"^lab\.yml:(\d+):(\d+) (\(top level\)|YAML syntax|\S+): (.*)$")


@dataclass(frozen=True)
class Problem:
    line: int
    column: int
    path: str
    message: str


def valid(text: str, base: Path) -> LabSpec:
    """The LabSpec of `text`; fails the test with every problem when it is invalid."""
    try:
        return validate_text(textwrap.dedent(text), SOURCE, base)
    except LabError as exc:
        pytest.fail(f"expected a valid lab, got:\n{exc}")


def problems(text: str, base: Path) -> list[Problem]:
    """Every problem validation reports for `text`; fails the test when it is valid."""
    with pytest.raises(LabError) as info:
        validate_text(textwrap.dedent(text), SOURCE, base)
    out = []
    for raw in info.value.problems:
        m = _PROBLEM.match(raw)
        assert m, f"problem not in `file:line:col path: message` form: {raw!r}"
        out.append(Problem(int(m[1]), int(m[2]), m[3], m[4]))
    return out
