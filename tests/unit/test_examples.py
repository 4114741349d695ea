"""The labs in examples/ stay valid as the lab model changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision9p.lab import validate_text
from provision9p.tasks.engine import load_play

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_lab_is_valid(path: Path) -> None:
    lab = validate_text(path.read_text(), str(path), path.parent)
    assert lab.guests
    assert not lab.warnings


def test_there_are_examples() -> None:
    assert EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_roles_load(path: Path) -> None:
    lab = validate_text(path.read_text(), str(path), path.parent)
    for guest in lab.guests:
        load_play(guest, lab)  # raises RoleError naming role, file, line and task
