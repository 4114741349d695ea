"""A guest of another architecture: refused before any download, and doctor says so."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from provision9p.host.doctor import check_foreign_build

pytestmark = pytest.mark.tree

LAB = "name: a64\nguests:\n  arm:\n    arch: aarch64\n"


def test_foreign_build_is_refused_before_anything_is_downloaded() -> None:
    if os.geteuid() != 0:
        pytest.skip("rootfs build needs root")
    # where QEMU's account can enter, as a build first checks (not /tmp/pytest-of-root)
    tmp_path = Path(tempfile.mkdtemp(prefix="p9-foreign-", dir="/var/tmp"))
    tmp_path.chmod(0o755)
    try:
        _refused(tmp_path)
    finally:
        shutil.rmtree(tmp_path)


def _refused(tmp_path: Path) -> None:
    (tmp_path / "lab.yml").write_text(LAB)
    env = {**os.environ, "PROVISION9P_HOME": str(tmp_path / "home"),
           "PROVISION9P_CACHE": str(tmp_path / "cache")}
    res = subprocess.run([sys.executable, "-m", "provision9p", "rootfs", "build"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr
    assert "arm64 root trees cannot be built on this amd64 host yet" in res.stderr
    assert "hint: build the guest on a Debian host of its architecture" in res.stderr
    assert "Traceback" not in res.stderr
    # nothing fetched: the kernel used to be downloaded before the refusal
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))


def test_doctor_warns_about_a_foreign_tree() -> None:
    found = check_foreign_build("aarch64")
    assert not found.ok and not found.required and found.status == "warn"
    assert "arm64 trees cannot be built" in found.detail
    assert check_foreign_build("x86_64").ok
