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


def run_cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, in a fresh process."""
    return subprocess.run([sys.executable, "-m", "provision9p", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="session")
def p9() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_cli


@pytest.fixture(scope="session")
def lab_dir() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("the integration tests need root (debootstrap), as CI has")
    # Not under /tmp/pytest-of-root (0700): QEMU runs as another user and must get in.
    path = Path(tempfile.mkdtemp(prefix="p9-it-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
