"""LAB.lock from a real base tree: written, read back, and refused when the lab moved on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from provision9p.host.mirror import host_mirror
from provision9p.image import lock
from provision9p.image.errors import LockError
from provision9p.lab import load_lab
from provision9p.lab.model import RootfsSpec
from provision9p.rootfs.debootstrap import base_tree
from provision9p.rootfs.metadata.stores import PlainStore
from provision9p.target import resolve

pytestmark = [pytest.mark.network]
SUITE_PACKAGES = ("acl", "python3", "python3-apt")
LAB = "name: locked\ndefaults:\n  rootfs:\n    packages: [acl, python3, python3-apt]\n" \
      "guests:\n  web: {}\n"


@pytest.fixture(scope="module")
def base() -> Path:
    if os.geteuid() != 0:
        pytest.fail("these tests need root (debootstrap), as CI has")
    return base_tree(RootfsSpec(packages=SUITE_PACKAGES), "amd64", host_mirror()).path


def test_lock_round_trip_and_mismatch(base: Path, tmp_path: Path) -> None:
    lab_file = tmp_path / "lab.yml"
    lab_file.write_text(LAB)
    lab = load_lab(lab_file)
    target = resolve(lab, lab.guest("web"))
    entry = lock.guest_entry(target, PlainStore(base))
    path = lock.lock_path(lab)
    assert path == tmp_path / "lab.lock"
    lock.write(path, lab, {"web": entry})
    back = lock.check(lab, path)
    assert back["guests"]["web"] == entry
    names = {p["name"]: p for p in entry["packages"]}
    assert {"acl", "python3", "openssh-server", "dpkg"} <= set(names)
    assert all(len(p["sha256"]) == 64 for p in entry["packages"]), [
        p["name"] for p in entry["packages"] if len(p["sha256"]) != 64]
    assert entry["release"]["epoch"] > 1_600_000_000
    assert lock.tree_drift(entry, PlainStore(base)) == []
    # a tree built from another version, or with a package more, is named
    moved = {**entry, "packages": [{**p, "version": "0"} if p["name"] == "acl" else p
                                   for p in entry["packages"] if p["name"] != "dpkg"]}
    drift = lock.tree_drift(moved, PlainStore(base))
    assert any(d.startswith("acl:amd64 ") and "(locked 0)" in d for d in drift)
    assert any(d.startswith("dpkg:amd64 ") and "not in the lock" in d for d in drift)

    lab_file.write_text(LAB.replace("[acl,", "[acl, nginx,") + "  db: {}\n")
    with pytest.raises(LockError) as err:
        lock.check(load_lab(lab_file), path)
    text = str(err.value)
    assert "guest web: packages added since the lock: nginx" in text
    assert "guest db is in the lab but not in the lock" in text
    assert "lock --update" in text
    done = subprocess.run([sys.executable, "-m", "provision9p", "-f", str(lab_file), "lock"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "packages added since the lock: nginx" in done.stderr
    assert "Traceback" not in done.stderr
    path.write_text("format: 99\n")
    with pytest.raises(LockError, match="not a provision9p lock"):
        lock.read(path)
