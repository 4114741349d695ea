"""Real guests: a lab in a directory QEMU's unprivileged user can reach.

Most test labs' rootfs ask for the same packages (acl, python3, python3-apt), so the
suite builds few base trees and every guest build after a base's first reuses it
(test_roles adds sudo and cron: one more base, shared by its two modules' labs).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from shared_guest import remove_tree


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
