"""kill -9 of `up` in each build stage, two labs' `up` at once on one cache, and a cache
on a full file system. The module has its own cache, so the kernel download and the
debootstrap really happen (debootstrap's .debs are linked in from the shared cache, so
it does not download them again).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provision9p import paths

from .conftest import Lab, argv, make_lab, processes_mentioning, run, spawn, tear_down

pytestmark = [pytest.mark.vm, pytest.mark.network]

# The tests on the module's own, cold cache download a kernel and build a base tree each
# time (minutes on a CI host): the slow ring's. The CI ring's kill -9 proof of the build is
# the rebuild-stage kill on the shared cache; of one debootstrap for two takers, the cache
# lock's own test.
COLD = pytest.mark.slow(covered_by="tests/faults/test_build_faults.py::"
                                   "test_kill_during_rebuild_stage")


@pytest.fixture(scope="module")
def cache() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="p9-faults-cache-", dir="/var/tmp"))
    path.chmod(0o755)
    shared = paths.cache_home() / "mmdebstrap-debs"
    if shared.is_dir():
        subprocess.run(["cp", "-al", str(shared), str(path / "mmdebstrap-debs")], check=True)
    yield path
    for line in processes_mentioning(str(path)):
        os.kill(int(line.split(":")[0]), 9)
    subprocess.run(["umount", "-R", "-l", str(path)], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def labs() -> Iterator[tuple[Lab, Lab]]:
    a, b = make_lab("fa"), make_lab("fb")
    yield a, b
    tear_down(a)
    tear_down(b)


def _left_over(cache: Path) -> list[str]:
    """Half-made things in the cache: staging dirs and partial downloads."""
    return sorted(str(p.relative_to(cache)) for p in cache.rglob(".*")
                  if ".staging-" in p.name or p.name.endswith(".part"))


def _quiet(where: Path, seconds: float = 10) -> list[str]:
    """Processes still working in `where` after a grace period (a killed run's children
    finishing the command they were in)."""
    deadline = time.monotonic() + seconds
    while (left := processes_mentioning(str(where))) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def test_full_cache_filesystem_is_a_clear_error(labs: tuple[Lab, Lab]) -> None:
    lab = labs[0]
    mnt = Path(tempfile.mkdtemp(prefix="p9-faults-full-", dir="/var/tmp"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], check=True)
    try:
        res = run(argv("rootfs build", lab.file), timeout=300, PROVISION9P_CACHE=str(mnt))
        assert res.returncode == 1, res.stdout + res.stderr
        # the kernel (debs/) and the base tree (trees/) are fetched side by side; the
        # base's error is the one shown when both run out of space
        assert (f"not enough space in {mnt}/debs for linux-image-" in res.stderr
                or f"not enough space in {mnt}/trees for a base root tree" in res.stderr), \
            res.stderr
        assert "it needs " in res.stderr and "MiB free" in res.stderr
        assert "Traceback" not in res.stderr
        assert _left_over(mnt) == []
        assert not list((mnt / "debs").glob("*.deb"))
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
        mnt.rmdir()


@COLD
def test_kill_during_kernel_download(cache: Path, labs: tuple[Lab, Lab],
                                     tmp_path: Path) -> None:
    up = spawn(argv("up", labs[0].file), tmp_path / "up.log", PROVISION9P_CACHE=str(cache))
    up.wait_for(r"downloading linux-image-\S+")
    up.kill9()
    for deb in (cache / "debs").glob("*.deb"):
        # On a quiet host the download can end before the kill lands: a .deb under its
        # own name must then be whole (a cut one fails to decompress to its end).
        whole = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert whole.returncode == 0, f"a half download taken for whole: {deb.name}"
    assert _quiet(cache) == []


@COLD
def test_kill_during_debootstrap_leaves_no_orphan(cache: Path, labs: tuple[Lab, Lab],
                                                  tmp_path: Path) -> None:
    up = spawn(argv("up", labs[0].file), tmp_path / "up.log", PROVISION9P_CACHE=str(cache))
    up.wait_for(r"mmdebstrap bookworm")
    time.sleep(8)
    up.kill9()
    assert _quiet(cache) == []
    assert not list((cache / "trees").glob("bookworm-*")), "a half tree taken for whole"


@pytest.mark.slow(covered_by="tests/host/test_cache_lock.py::"
                             "test_second_taker_waits_for_the_first")
def test_two_labs_at_once_share_one_debootstrap(cache: Path, labs: tuple[Lab, Lab],
                                                tmp_path: Path) -> None:
    a = spawn(argv("up", labs[0].file), tmp_path / "a.log", PROVISION9P_CACHE=str(cache))
    time.sleep(1)
    b = spawn(argv("up", labs[1].file), tmp_path / "b.log", PROVISION9P_CACHE=str(cache))
    rc_a, rc_b = a.finish(), b.finish()
    out = a.text() + b.text()
    assert (rc_a, rc_b) == (0, 0), out[-6000:]
    assert out.count("mmdebstrap bookworm") == 1, out
    assert "waiting for the base tree" in out
    assert "fa: ok" in a.text() and "fb: ok" in b.text()
    assert _left_over(cache) == []
    assert not labs[0].orphans() and not labs[1].orphans()


@pytest.mark.parametrize("stage", [
    "guest setup on a copy",
    # the same recovery from a later stage: the slow ring's
    pytest.param("mapped-xattr metadata", marks=pytest.mark.slow(
        covered_by="tests/faults/test_build_faults.py::test_kill_during_rebuild_stage"))])
def test_kill_during_rebuild_stage(stage: str, labs: tuple[Lab, Lab], tmp_path: Path) -> None:
    """On the shared cache (its base tree is there): this is about the guest's own tree."""
    lab = labs[1]
    up = spawn(argv("up", lab.file, extra=("--rebuild",)), tmp_path / "up.log")
    up.wait_for(stage)
    time.sleep(1)
    up.kill9()
    assert _quiet(lab.dir) == []
    # The killed rebuild worked on a staging copy: the tree in place is the last whole
    # one, still current, so `up` boots it, and removes the half-made copy.
    res = run(argv("up", lab.file))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "fb: ok" in res.stdout
    assert list((lab.dir / "guests" / lab.guest).glob(".root.*")) == []
    assert not lab.orphans()
