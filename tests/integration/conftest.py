"""Real guests: a lab in a directory QEMU's unprivileged user can reach.

Most test labs' rootfs ask for the same packages (acl, python3, python3-apt), so the
suite builds few base trees and every guest build after a base's first reuses it
(test_roles adds sudo and cron: one more base, shared by its two modules' labs).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from integration.labs import MULTIDEVS_MOUNTS, SHARED_LAB


def run_cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, in a fresh process."""
    return subprocess.run([sys.executable, "-m", "provision9p", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="session")
def p9() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_cli


def remove_tree(path: Path) -> None:
    """Remove a module's labs as the module ends: what is mounted under it first (overlay
    roots, which a plain rmtree would empty through the mount), then the files."""
    real = os.path.realpath(path)
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for point in sorted((m for m in mounts if m.startswith(real + "/")), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def lab_dir() -> Iterator[Path]:
    """A module's own directory for its labs, removed as the module ends (its guests are
    stopped by the module's own fixtures before that)."""
    if os.geteuid() != 0:
        pytest.fail("the integration tests need root (debootstrap), as CI has")
    # Not under /tmp/pytest-of-root (0700): QEMU runs as another user and must get in.
    path = Path(tempfile.mkdtemp(prefix="p9-it-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    remove_tree(path)


# --- the suite's shared guest ---------------------------------------------------------

@pytest.fixture(scope="session")
def shared_lab() -> Iterator[Path]:
    """The shared guest's lab file, the guest up (verify is the modules' own to run)."""
    if os.geteuid() != 0:
        pytest.fail("the integration tests need root (debootstrap), as CI has")
    where = Path(tempfile.mkdtemp(prefix="p9-shared-", dir="/var/tmp"))
    where.chmod(0o755)
    path = where / "lab.yml"
    path.write_text(SHARED_LAB)
    try:
        for share in MULTIDEVS_MOUNTS:
            for fs in ("a", "b"):
                (where / share / fs).mkdir(parents=True)
                subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs",
                                str(where / share / fs)], check=True)
                (where / share / fs / "f").write_text(f"{fs}\n")
        res = run_cli("-f", str(path), "up", "--no-verify")
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        yield path
    finally:
        run_cli("-f", str(path), "down", "--timeout", "5")
        remove_tree(where)
