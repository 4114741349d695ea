"""A module's lab file, in a directory of its own that QEMU's unprivileged user can reach."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def lab_file(lab_dir: Path, name: str, text: str,
             p9: Callable[..., Any]) -> Iterator[Path]:
    """`<lab_dir>/<name>/lab.yml` holding `text`; its guests are stopped afterwards."""
    path = lab_dir / name / "lab.yml"
    path.parent.mkdir()
    path.parent.chmod(0o755)
    path.write_text(text)
    try:
        yield path
    finally:
        p9("-f", str(path), "down", "--timeout", "5")
