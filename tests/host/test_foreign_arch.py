"""A guest of another architecture: built through qemu-user, refused before any download
when binfmt_misc cannot run its programs, and doctor says which."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from provision9p.host.binfmt import emulation
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
    # A host without qemu-user registered, made real for this one process: in a mount
    # namespace of its own, an empty tmpfs hides binfmt_misc (the host keeps its entries).
    script = ('mount -t tmpfs p9-no-binfmt /proc/sys/fs/binfmt_misc && '
              'exec "$0" -m provision9p rootfs build')
    res = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                          script, sys.executable], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr
    assert ("arm64 root trees cannot be built on this amd64 host: binfmt_misc is not "
            "mounted at /proc/sys/fs/binfmt_misc") in res.stderr
    assert ("hint: `provision9p doctor --install` (or: apt-get install qemu-user-static "
            "binfmt-support && update-binfmts --enable qemu-aarch64); then build again"
            ) in res.stderr
    assert "Traceback" not in res.stderr
    # nothing fetched: the kernel used to be downloaded before the refusal
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))


def test_doctor_names_what_a_foreign_tree_needs() -> None:
    found = {f.name: f for f in check_foreign_build("aarch64")}
    assert set(found) == {"qemu-aarch64-static", "update-binfmts", "aarch64 root tree"}
    for name, package in (("qemu-aarch64-static", "qemu-user-static"),
                          ("update-binfmts", "binfmt-support")):
        assert found[name].ok or found[name].package == package
    tree = found["aarch64 root tree"]
    assert tree.required and tree.ok == emulation("arm64").ok
    assert tree.ok or "update-binfmts --enable qemu-aarch64" in tree.fix
    native = check_foreign_build("x86_64")
    assert [(f.name, f.ok) for f in native] == [("x86_64 root tree", True)]
