"""Staging never leaves something half-made in place."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provision9p.rootfs.safe_fs import clean_stale_staging, staged


def test_success_replaces_target(tmp_path: Path) -> None:
    target = tmp_path / "tree"
    target.mkdir()
    (target / "old").write_text("old")
    with staged(target) as staging:
        (staging / "new").write_text("new")
        assert not (target / "new").exists()
    assert sorted(p.name for p in target.iterdir()) == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["tree"]


def test_failure_leaves_old_target_and_no_staging(tmp_path: Path) -> None:
    target = tmp_path / "tree"
    target.mkdir()
    (target / "old").write_text("old")
    with pytest.raises(RuntimeError), staged(target) as staging:
        (staging / "half").write_text("half")
        raise RuntimeError("debootstrap died")
    assert sorted(p.name for p in target.iterdir()) == ["old"]
    assert [p.name for p in tmp_path.iterdir()] == ["tree"]


def test_stale_staging_of_a_dead_pid_is_removed(tmp_path: Path) -> None:
    target = tmp_path / "tree"
    dead = tmp_path / ".tree.staging-999999999"
    alive = tmp_path / f".tree.staging-{os.getpid()}"
    dead.mkdir()
    alive.mkdir()
    clean_stale_staging(target)
    assert not dead.exists()
    assert alive.exists()
