"""The cache's per-entry lock: a second run waits for the first, a killed holder frees it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from provision9p.errors import HostError
from provision9p.host.mirror import cache_entry_lock, check_space

HOLD = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from provision9p.host.mirror import cache_entry_lock\n"
    "with cache_entry_lock(Path(sys.argv[1]), 'x'):\n"
    "    print('held', flush=True)\n"
    "    time.sleep(float(sys.argv[2]))\n"
)


def _holder(target: Path, seconds: float, env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(target), str(seconds)],
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "held\n"
    return proc


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("PROVISION9P_CACHE", str(tmp_path / "cache"))
    return dict(os.environ)


def test_second_taker_waits_for_the_first(tmp_path: Path, env: dict[str, str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "cache" / "trees" / "t"
    proc = _holder(target, 1.0, env)
    started = time.monotonic()
    with cache_entry_lock(target, "the base tree t"):
        waited = time.monotonic() - started
    proc.wait()
    assert waited > 0.5
    assert f"waiting for the base tree t: pid {proc.pid} is making it" in capsys.readouterr().err
    # the cache directory lists only its entries
    assert not (tmp_path / "cache" / "trees").exists()


def test_killed_holder_frees_the_lock(tmp_path: Path, env: dict[str, str]) -> None:
    target = tmp_path / "cache" / "debs" / "k.deb"
    proc = _holder(target, 60, env)
    proc.kill()
    proc.wait()
    started = time.monotonic()
    with cache_entry_lock(target, "k"):
        assert time.monotonic() - started < 1


def test_check_space_names_the_place_and_the_need(tmp_path: Path) -> None:
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    check_space(tmp_path, 1, "nothing")
    with pytest.raises(HostError) as info:
        check_space(tmp_path, free + (1 << 40), "a big thing")
    assert info.value.message.startswith(f"not enough space in {tmp_path} for a big thing: "
                                         "it needs ")
    assert "PROVISION9P_CACHE" in (info.value.hint or "")


def test_what_a_killed_debootstrap_left_running_is_reaped(tmp_path: Path) -> None:
    from provision9p.rootfs.debootstrap import _reap_orphans

    target = tmp_path / "trees" / "t"
    dead = subprocess.Popen(["true"])
    dead.wait()
    staging = tmp_path / "trees" / f".t.staging-{dead.pid}"
    (staging / "var").mkdir(parents=True)
    # an orphan working in the staging dir (a dpkg the killed debootstrap started)
    orphan = subprocess.Popen(["sleep", "60"], cwd=staging / "var")
    bystander = subprocess.Popen(["sleep", "60"], cwd=tmp_path)
    try:
        _reap_orphans(target)
        assert orphan.wait(timeout=5) == -9
        assert bystander.poll() is None
    finally:
        for proc in (orphan, bystander):
            proc.kill()
            proc.wait()
