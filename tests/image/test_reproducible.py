"""Two builds of one guest from a real debootstrapped base give one image digest.

Each build copies the shared cached base tree, sets it up as `rootfs build` does (its own
random machine-id, SSH host key and lab client key, its own build time) and converts it to
mapped-xattr; the second copy also gets every time later than SOURCE_DATE_EPOCH moved to now, as a
debootstrap run on another day would have made them. Files keep the times their .debs
gave them (older than the epoch) in both, as two debootstraps do. No guest boots.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from provision9p.host.mirror import host_mirror
from provision9p.image import diff
from provision9p.image.archive import Reader, write_image
from provision9p.image.normalize import Rules
from provision9p.lab import load_lab
from provision9p.lab.model import RootfsSpec
from provision9p.rootfs import keys
from provision9p.rootfs.debootstrap import base_tree
from provision9p.rootfs.guest_setup import SetupInputs, setup_tree
from provision9p.rootfs.security import security_model

pytestmark = [pytest.mark.network]
SUITE_PACKAGES = ("acl", "python3", "python3-apt")  # the suite's shared base tree
EPOCH = 1_750_000_000
HOST_UID, HOST_GID = 4321, 4322


@pytest.fixture(scope="module")
def two_images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[float]]:
    if os.geteuid() != 0:
        pytest.fail("these tests need root (chroot, device nodes), as CI has")
    base = base_tree(RootfsSpec(packages=SUITE_PACKAGES), "amd64", host_mirror()).path
    work = tmp_path_factory.mktemp("repro")
    (work / "lab.yml").write_text("name: repro\nguests:\n  g: {}\n")
    guest = load_lab(work / "lab.yml").guest("g")
    images, seconds = [], []
    for n in range(2):
        start = time.monotonic()
        tree = work / f"tree{n}"
        subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(tree)], check=True)
        (tree / ".provision9p-base.json").unlink()
        if n == 1:
            _later(tree)
        client = keys.generate("provision9p")  # each machine's lab has its own client key
        setup_tree(tree, SetupInputs(guest, client.public_line, keys.generate(f"host{n}")))
        model = security_model("mapped-xattr")
        model.convert(tree, host_uid=HOST_UID, host_gid=HOST_GID)
        out = work / f"image{n}.tar.zst"
        write_image(model.store(tree, HOST_UID, HOST_GID), out,
                    rules=Rules(EPOCH, (client.public_line,)), boot=[], manifest={"guest": "g"})
        images.append(out)
        seconds.append(time.monotonic() - start)
        subprocess.run(["rm", "-rf", str(tree)], check=True)
    return images[0], images[1], seconds


def _later(tree: Path) -> None:
    now = time.time()
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in [*dirnames, *filenames, ""]:
            path = os.path.join(dirpath, name) if name else dirpath
            if os.lstat(path).st_mtime > EPOCH:
                os.utime(path, (now, now), follow_symlinks=False)


def test_two_builds_one_digest(two_images: tuple[Path, Path, list[float]]) -> None:
    a, b, seconds = two_images
    print(f"builds took {seconds[0]:.1f} s and {seconds[1]:.1f} s")
    assert a.read_bytes() == b.read_bytes(), diff.diff(a, b)[:30]


def test_image_holds_no_secrets_of_the_build(two_images: tuple[Path, Path, list[float]]
                                              ) -> None:
    members = {m.path: m for m in Reader(two_images[0])}
    assert members["etc/machine-id"].data == b""
    assert not [p for p in members if p.startswith("etc/ssh/ssh_host_")]
    assert not [p for p, m in members.items() if p.startswith("var/log/") and m.info.isfile()]
    assert not [p for p in members if "__pycache__" in p]
    assert members["etc/hostname"].data == b"g\n"
    assert members["root/.ssh/authorized_keys"].data == b""  # the lab's key is the lab's
    assert all(m.info.mtime <= EPOCH for m in members.values())
    sshd = members["etc/ssh/sshd_config.d/10-provision9p.conf"].info
    assert (sshd.uid, sshd.gid, sshd.mode) == (0, 0, 0o644)  # the guest's owner, not 4321
    # no lab NIC, and the initramfs configures eth0: nothing for networkd to do
    assert "etc/systemd/system/multi-user.target.wants/systemd-networkd.service" \
        not in members


@pytest.mark.parametrize("initramfs", [False, True])
def test_networkd_runs_where_it_has_something_to_configure(
        tmp_path: Path, initramfs: bool) -> None:
    """A kernel booted without our initramfs needs networkd for eth0; a lab NIC needs it
    either way (tests/integration/test_lab_network.py boots that)."""
    if os.geteuid() != 0:
        pytest.fail("these tests need root (chroot), as CI has")
    base = base_tree(RootfsSpec(packages=SUITE_PACKAGES), "amd64", host_mirror()).path
    tree = tmp_path / "tree"
    subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(tree)], check=True)
    (tmp_path / "lab.yml").write_text("name: net\nguests:\n  g: {}\n")
    guest = load_lab(tmp_path / "lab.yml").guest("g")
    setup_tree(tree, SetupInputs(guest, keys.generate("c").public_line, keys.generate("h"),
                                 initramfs=initramfs))
    wants = tree / "etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
    assert os.path.lexists(wants) is not initramfs
    assert (tree / "etc/systemd/network/20-eth0.network").is_file()
