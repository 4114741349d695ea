"""Sizes, modes and YAML positions: the small parsers the validator stands on."""

from __future__ import annotations

import pytest

from provision9p.lab import yamlpos
from provision9p.lab.units import parse_octal, parse_size


@pytest.mark.parametrize(("value", "unit", "expected"), [
    (104857600, "", 104857600),
    ("512K", "", 512 << 10),
    ("1M", "", 1 << 20),
    ("1MiB", "", 1 << 20),
    ("2g", "", 2 << 30),
    (" 3 G ", "", 3 << 30),
    ("1024", "M", 1 << 30),
    (2, "M", 2 << 20),
])
def test_parse_size(value: object, unit: str, expected: int) -> None:
    assert parse_size(value, unit) == expected


@pytest.mark.parametrize("value", [True, None, "1.5M", "-1", "1P", "M", "", 1.0, []])
def test_parse_size_refuses(value: object) -> None:
    with pytest.raises(ValueError):
        parse_size(value)


@pytest.mark.parametrize(("raw", "value", "expected"), [
    ("0644", 420, 0o644),       # YAML 1.1 reads 0644 as octal already
    ("0o644", "0o644", 0o644),  # YAML 1.1 leaves 0o644 a string
    (None, "0755", 0o755),
    ("0", 0, 0),
    (None, 0o600, 0o600),       # a number from code, not from YAML text
])
def test_parse_octal(raw: str | None, value: object, expected: int) -> None:
    assert parse_octal(raw, value) == expected


@pytest.mark.parametrize(("raw", "value", "fragment"), [
    ("644", 644, "decimal"),
    ("420", 420, "decimal"),
    ("0x1a4", 420, "not an octal mode"),
    ("0999", "0999", "not an octal mode"),
    ("0o", "0o", "not an octal mode"),
    ("true", True, "not an octal mode"),
    (None, True, "not an octal mode"),
    (None, None, "not an octal mode"),
])
def test_parse_octal_refuses(raw: str | None, value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_octal(raw, value)


def test_positions_point_at_keys() -> None:
    loc = yamlpos.load("a:\n  b: 1\n  c:\n    - x\n    - {d: 2}\n", "f.yml")
    assert loc.positions[("a", "b")] == (2, 3)
    assert loc.positions[("a", "c", 1, "d")] == (5, 8)
    assert loc.where(("a", "c", 1, "missing")) == "f.yml:5:7"  # the item, where "missing" would be
    assert loc.raw[("a", "b")] == "1"


def test_keys_are_read_as_written() -> None:
    """`no:` and `1:` are names in a lab file, not a boolean and an integer."""
    loc = yamlpos.load("no: 1\nyes: 2\n1: 3\nnull: 4\n", "f.yml")
    assert list(loc.data) == ["no", "yes", "1", "null"]


def test_merge_keys_own_keys_win() -> None:
    loc = yamlpos.load("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3\n", "f.yml")
    assert loc.data["c"] == {"x": 1, "y": 3}
    assert loc.problems == []
    assert loc.positions[("c", "y")] == (4, 3)
    assert loc.positions[("c", "x")] == (1, 11)  # where the anchor wrote it


def test_duplicate_keys_reported() -> None:
    loc = yamlpos.load("a: 1\nb: 2\na: 3\n", "f.yml")
    assert loc.problems == ["f.yml:3:1 a: duplicate key"]


def test_syntax_error_is_a_problem() -> None:
    loc = yamlpos.load("a: [1,\n", "f.yml")
    assert loc.data is None
    assert len(loc.problems) == 1 and "YAML syntax" in loc.problems[0]


def test_dotted() -> None:
    assert yamlpos.dotted(("guests", "web", "shares", 1, "fmode")) == "guests.web.shares[1].fmode"
    assert yamlpos.dotted(()) == "(top level)"
