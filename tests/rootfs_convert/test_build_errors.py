"""`rootfs build` refuses clearly, and leaves nothing behind, where it cannot work."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest

from provision9p.errors import HostError
from provision9p.lab import validate_text
from provision9p.rootfs.build import build_guest
from provision9p.target import resolve

LAB = "name: t\nguests:\n  g:\n    memory: 512\n"


def test_root_on_a_file_system_without_user_xattrs() -> None:
    # Under /var/tmp: QEMU's unprivileged user must be able to enter it (pytest's is 0700).
    mnt = Path(tempfile.mkdtemp(prefix="p9-ramfs-", dir="/var/tmp"))
    mnt.chmod(0o755)
    subprocess.run(["mount", "-t", "ramfs", "ramfs", str(mnt)], check=True)
    try:
        lab = validate_text(LAB, str(mnt / "lab.yml"), mnt)
        with pytest.raises(HostError, match="cannot use mapped-xattr") as exc:
            build_guest(resolve(lab, lab.guests[0], create_account=True))
        assert exc.value.hint and "mapped-file" in exc.value.hint
        assert sorted(p.name for p in mnt.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
        mnt.rmdir()


def test_lab_under_a_private_directory_is_refused_before_building(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    lab = validate_text(LAB, str(private / "lab.yml"), private)
    with pytest.raises(HostError, match="cannot enter"):
        build_guest(resolve(lab, lab.guests[0], create_account=True))
    assert list(private.iterdir()) == []
