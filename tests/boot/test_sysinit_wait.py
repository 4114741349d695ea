"""`up`'s wait for sysinit (boot/sysinit.py) on a real tree through the tree connection:
the booted case is tests/tasks/test_modules_guest.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from provision9p.boot.sysinit import UNIT_PATH, after_ssh_timeout, wait_for_sysinit
from provision9p.connect.tree import TreeConnection
from provision9p.errors import BootError
from provision9p.rootfs.guest_setup import SYSINIT_MARK
from provision9p.rootfs.metadata.stores import PlainStore


def _tree(tmp_path: Path, *, unit: bool) -> TreeConnection:
    (tmp_path / "run").mkdir()
    if unit:
        (tmp_path / UNIT_PATH.lstrip("/")).parent.mkdir(parents=True)
        (tmp_path / UNIT_PATH.lstrip("/")).write_text("[Unit]\n")
    return TreeConnection(tmp_path, PlainStore(tmp_path), "g")


def test_a_tree_without_the_unit_is_not_waited_for(tmp_path: Path) -> None:
    assert wait_for_sysinit(_tree(tmp_path, unit=False), "g", timeout=5) == 0.0


def test_waits_until_the_mark_appears(tmp_path: Path) -> None:
    conn = _tree(tmp_path, unit=True)
    mark = tmp_path / SYSINIT_MARK.lstrip("/")
    timer = threading.Timer(0.3, mark.touch)
    timer.start()
    try:
        waited = wait_for_sysinit(conn, "g", timeout=10)
    finally:
        timer.cancel()
    assert 0.25 <= waited < 10 and mark.exists()


def test_no_mark_in_time_is_a_boot_error_saying_where_to_look(tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(BootError) as err:
        wait_for_sysinit(_tree(tmp_path, unit=True), "web", timeout=0.2)
    assert time.monotonic() - start < 5
    assert "web: the boot did not get past sysinit.target in 0 s" in str(err.value)
    assert "provision9p ssh web" in (err.value.hint or "")


def test_the_timeout_scales_with_a_slow_boot() -> None:
    assert after_ssh_timeout(9.0) == 60.0
    assert after_ssh_timeout(150.0) == 300.0
