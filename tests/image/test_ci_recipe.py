"""The CI recipe of examples/ci run as written: its script, unchanged, on a copy of the
directory, as a developer's first run (writes the lock, names the digest) and then as
CI's run (image by the committed digest, guests from it, verify). One boot. The slow ring
adds another machine's run, on an empty cache."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from provision9p.lab import validate_text

ROOT = Path(__file__).parents[2]
CI = ROOT / "examples" / "ci"


def test_ci_labs_are_valid_and_the_readme_points_at_the_script() -> None:
    for name in ("build.yml", "ci.yml"):
        lab = validate_text((CI / name).read_text(), str(CI / name), CI)
        assert lab.guests and not lab.warnings
    readme = (ROOT / "README.md").read_text()
    assert "examples/ci/ci.sh" in readme and "examples/ci/github-actions.yml" in readme
    job = (CI / "github-actions.yml").read_text()
    assert "examples/ci/ci.sh" in job and "hashFiles('examples/ci/build.yml', " \
        "'examples/ci/build.lock')" in job
    assert os.access(CI / "ci.sh", os.X_OK)


@pytest.fixture()
def workdir() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("this test needs root (the tree build), as CI has")
    # not under /tmp/pytest-of-root (0700): QEMU runs as another user and must get in
    path = Path(tempfile.mkdtemp(prefix="p9-ci-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _run(script: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(script)], capture_output=True, text=True, env=env, timeout=1500)


def _developer_then_ci(workdir: Path, env: dict[str, str]) -> tuple[Path, str]:
    """The script's first run (writes the lock, names the digest), the developer's commit
    (the digest into ci.yml), then CI's run (image by the committed digest, guests from it,
    verify). The repository and the digest."""
    repo = workdir / "ci"
    shutil.copytree(CI, repo)
    first = _run(repo / "ci.sh", env)
    assert first.returncode == 1, first.stdout + first.stderr
    m = re.search(r"put ([0-9a-f]{64}) into ci\.yml", first.stderr)
    assert m, first.stderr
    digest = m.group(1)
    assert (repo / "build.lock").is_file()
    # what the developer commits: the lock, and the digest in ci.yml
    ci_yml = repo / "ci.yml"
    ci_yml.write_text(re.sub(r"image: sha256:0{64}", f"image: sha256:{digest}",
                             ci_yml.read_text()))
    record = repo / ".provision9p" / "guests" / "base" / "build.json"
    built_at = record.stat().st_mtime_ns

    second = _run(repo / "ci.sh", env)
    out = second.stdout + second.stderr
    assert second.returncode == 0, out
    assert "matches the lab" in second.stdout  # the committed lock was checked
    # the image came from the cache (the store): build.yml's tree was not built again
    assert record.stat().st_mtime_ns == built_at
    report = (repo / "report.xml").read_text()
    assert 'failures="0"' in report and "<testcase" in report
    assert re.search(r"app\s+data\s+.*ok", second.stdout), second.stdout
    return repo, digest


def _env(workdir: Path) -> dict[str, str]:
    # a clean home; the shared cache (base trees, .debs, kernels) is allowed
    return {**os.environ, "PROVISION9P_HOME": str(workdir / "home"),
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def _clean_up(runs: list[tuple[Path, dict[str, str]]], digest: str,
              env: dict[str, str]) -> None:
    for where, run_env in runs:
        if where.is_dir():
            subprocess.run([str(Path(sys.executable).parent / "provision9p"), "-f",
                            str(where / "ci.yml"), "down", "--timeout", "5"],
                           env=run_env, capture_output=True)
    if digest:  # the image store is the shared cache's
        subprocess.run([str(Path(sys.executable).parent / "provision9p"), "image", "rm",
                        digest], env=env, capture_output=True)


@pytest.mark.vm
@pytest.mark.network
# Slow: two runs of the script (image build, guests from it, verify), ~1.5 minutes; the CI
# ring boots a guest from a built image in test_image_root and rebuilds to one digest in
# test_reproducible.
@pytest.mark.slow(covered_by="tests/integration/test_image_root.py::"
                             "test_guest_boots_from_an_image")
def test_the_ci_recipe_as_written(workdir: Path) -> None:
    env = _env(workdir)
    digest = ""
    try:
        _, digest = _developer_then_ci(workdir, env)
    finally:
        _clean_up([(workdir / "ci", env)], digest, env)


@pytest.mark.vm
@pytest.mark.network
@pytest.mark.slow(covered_by="tests/integration/test_image_root.py::"
                             "test_guest_boots_from_an_image")
@pytest.mark.timeout(2400)
def test_the_ci_recipe_on_another_machine_with_an_empty_cache(workdir: Path) -> None:
    """Another machine: a clean clone of what was committed (lab, lock, digest), an empty
    cache and home. No cache holds the image, so the branch that builds it runs: a build
    pinned by the lock must give the digest the first, unpinned build gave. Only the
    downloaded .debs are carried over (as a CI cache of them would), to spare the mirror;
    no base tree, kernel, image or .deb store. Slow: a cold base tree and kernel."""
    env = _env(workdir)
    digest = ""
    cold: dict[str, str] = {}
    try:
        repo, digest = _developer_then_ci(workdir, env)
        clone = workdir / "clone"
        shutil.copytree(CI, clone)
        for name in ("build.lock", "ci.yml"):
            shutil.copy(repo / name, clone / name)
        cache = workdir / "cache"
        _seed_downloads(cache)
        cold = {**env, "PROVISION9P_CACHE": str(cache), "PROVISION9P_HOME": str(workdir / "h2")}
        third = _run(clone / "ci.sh", cold)
        out = third.stdout + third.stderr
        assert third.returncode == 0, out
        assert "package versions from build.lock" in out, out  # the build was pinned
        assert (clone / ".provision9p" / "guests" / "base" / "build.json").is_file()
        assert 'failures="0"' in (clone / "report.xml").read_text()
    finally:
        _clean_up([(workdir / "ci", env), (workdir / "clone", cold)], digest, env)


def _seed_downloads(cache: Path) -> None:
    """The shared cache's downloaded .debs (hard links), nothing built from them."""
    from provision9p import paths

    shared = paths.cache_home()
    (cache / "debs").mkdir(parents=True)
    for sub in ("mmdebstrap-debs",):
        if (shared / sub).is_dir():
            subprocess.run(["cp", "-al", str(shared / sub), str(cache / sub)], check=True)
    for deb in (shared / "debs").glob("*.deb"):
        os.link(deb, cache / "debs" / deb.name)
