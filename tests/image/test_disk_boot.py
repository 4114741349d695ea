"""A guest boots from the ext4 twin of an image: built once from the shared base tree,
imaged, made into a disk, then booted by `image boot` over virtio-blk with the image's
own kernel. SSH must answer with the host key pinned for the boot (the client refuses
any other). One boot for the module.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from provision9p.image.archive import sha256_of

pytestmark = [pytest.mark.vm, pytest.mark.network]

LAB = """\
name: disksrc
defaults:
  rootfs:
    packages: [acl, python3, python3-apt]
guests:
  src: {}
"""


def _p9(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "provision9p", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def digest() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.fail("this test needs root (debootstrap, mke2fs from a tree with true "
                    "owners), as CI has")
    # Not under /tmp/pytest-of-root (0700): QEMU's user must reach the guest's tree.
    where = Path(tempfile.mkdtemp(prefix="p9-disk-", dir="/var/tmp"))
    where.chmod(0o755)
    (where / "lab.yml").write_text(LAB)
    lab = ["-f", str(where / "lab.yml")]
    new = None
    try:
        assert _p9(*lab, "rootfs", "build").returncode == 0
        built = _p9(*lab, "image", "build", "--json")
        assert built.returncode == 0, built.stderr
        (result,) = json.loads(built.stdout)
        if result["new"]:
            new = result["digest"].removeprefix("sha256:")
        yield result["digest"].removeprefix("sha256:")
    finally:
        _p9(*lab, "rootfs", "remove")
        if new is not None:
            _p9("image", "rm", new)  # the store is the shared cache's: only what we added
        shutil.rmtree(where, ignore_errors=True)


def test_guest_boots_from_the_ext4_twin(digest: str) -> None:
    made = _p9("image", "disk", digest[:16], "--format", "ext4", "--json")
    assert made.returncode == 0, made.stderr
    (ext4,) = json.loads(made.stdout)
    assert ext4["format"] == "ext4" and Path(ext4["path"]).is_file()
    listed = _p9("image", "list")
    assert f"{digest[:12]}" in listed.stdout and "tar+ext4" in listed.stdout

    booted = _p9("image", "boot", digest[:16], "--", "sh", "-c",
                 "uname -r; findmnt -n -o SOURCE,FSTYPE /; cat /etc/hostname; "
                 "stat -c %u:%g:%a /usr/bin/passwd /etc/shadow")
    assert booted.returncode == 0, booted.stdout + booted.stderr
    release, root, hostname, passwd, shadow = booted.stdout.split("\n")[:5]
    assert release.endswith("-amd64")
    assert root.split() == ["/dev/vda", "ext4"]
    assert hostname == "imageboot"  # the boot's own files reached the disk's root
    assert (passwd, shadow) == ("0:0:4755", "0:42:640")  # true owners and modes
    assert "SSH answered after" in booted.stderr
    # the stored disk was not written: the boot wrote to a throwaway overlay
    stored = _p9("image", "list", "--json")
    (entry,) = [i for i in json.loads(stored.stdout) if i["digest"].endswith(digest)]
    assert sha256_of(Path(ext4["path"])) == entry["disks"]["ext4"]["sha256"]


@pytest.mark.slow(covered_by="tests/image/test_disk_boot.py::test_guest_boots_from_the_ext4_twin")
def test_guest_boots_from_the_qcow2_twin(digest: str) -> None:
    """The qcow2 disk boots too (qemu-img's format, its own code path in `image boot`),
    and the stored qcow2 is not written either."""
    made = _p9("image", "disk", digest[:16], "--format", "qcow2", "--json")
    assert made.returncode == 0, made.stderr
    (qcow2,) = json.loads(made.stdout)
    assert qcow2["format"] == "qcow2" and Path(qcow2["path"]).is_file()
    booted = _p9("image", "boot", digest[:16], "--format", "qcow2", "--", "sh", "-c",
                 "findmnt -n -o SOURCE,FSTYPE /; cat /etc/hostname")
    assert booted.returncode == 0, booted.stdout + booted.stderr
    root, hostname = booted.stdout.split("\n")[:2]
    assert root.split() == ["/dev/vda", "ext4"] and hostname == "imageboot"
    stored = _p9("image", "list", "--json")
    (entry,) = [i for i in json.loads(stored.stdout) if i["digest"].endswith(digest)]
    assert sha256_of(Path(qcow2["path"])) == entry["disks"]["qcow2"]["sha256"]
