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
    assert set(found) == {"qemu-aarch64-static", "update-binfmts", "arch-test",
                          "aarch64 root tree"}
    for name, package in (("qemu-aarch64-static", "qemu-user-static"),
                          ("update-binfmts", "binfmt-support"), ("arch-test", "arch-test")):
        assert found[name].ok or found[name].package == package
    tree = found["aarch64 root tree"]
    assert tree.required and tree.ok == emulation("arm64").ok
    assert tree.ok or "update-binfmts --enable qemu-aarch64" in tree.fix
    native = check_foreign_build("x86_64")
    assert [(f.name, f.ok) for f in native] == [("x86_64 root tree", True)]


def test_foreign_build_without_arch_test_is_refused_before_download(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """mmdebstrap checks for arch-test only after its downloads; we refuse first."""
    from provision9p.errors import BuildError
    from provision9p.rootfs.debootstrap import refuse_foreign

    if not emulation("arm64").ok:
        pytest.skip("qemu-aarch64 is not registered with binfmt_misc here")
    assert shutil.which("mmdebstrap"), "setup.sh installs mmdebstrap"
    # this host's programs, arch-test left out
    for d in ("/usr/local/bin", "/usr/sbin", "/usr/bin"):
        for prog in Path(d).iterdir():
            link = tmp_path / prog.name
            if prog.name != "arch-test" and not os.path.lexists(link):
                link.symlink_to(prog)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BuildError) as err:
        refuse_foreign("arm64")
    assert "mmdebstrap needs arch-test" in err.value.message
    assert "apt-get install arch-test" in (err.value.hint or "")
    monkeypatch.setenv("PATH", os.environ["PATH"] + os.pathsep + "/usr/bin")
    if shutil.which("arch-test"):
        refuse_foreign("arm64")  # with it, nothing to refuse
