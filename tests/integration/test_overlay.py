"""rootfs.layout: overlay, served by QEMU's 9P server with mapped-xattr, one boot.

Two guests over one converted base; only the first boots. In it: chown/chmod of a base
file (copy-up keeps the guest's metadata), inode numbers as the host's overlay has them,
hard links (one from the base, one made in the guest); on the host: the guest's writes are
in its own upper only, never in the base or the other guest. `rootfs export` sees the
merged tree; a build remounts a root that lost its mount; `rootfs remove` drops the layer.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from provision9p.rootfs import overlay
from provision9p.rootfs.metadata.stores import XattrStore

pytestmark = [pytest.mark.vm, pytest.mark.network]

LAB = """\
name: ovl
defaults:
  memory: 512
  cpus: 1
  rootfs:
    layout: overlay
    packages: [acl, python3, python3-apt]  # the suite's one base tree
guests:
  ov1: {}
  ov2: {}
"""


def _du_kib(path: Path) -> int:
    return int(subprocess.run(["du", "-sk", "-x", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0])


def _fstype(path: Path) -> str | None:
    real = os.path.realpath(path)
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, right = line.split(" - ")
        if left.split()[4] == real:
            return right.split()[0]
    return None


def test_overlay_guests_share_one_base(lab_dir: Path, p9: Any) -> None:
    lab = lab_dir / "ovl" / "lab.yml"
    lab.parent.mkdir()
    lab.parent.chmod(0o755)
    lab.write_text(LAB)
    guests = lab.parent / "guests"
    root1, root2 = guests / "ov1" / "root", guests / "ov2" / "root"
    try:
        _proofs(lab, guests, root1, root2, p9)
    finally:
        overlay.remove(root1)
        overlay.remove(root2)


def _proofs(lab: Path, guests: Path, root1: Path, root2: Path, p9: Any) -> None:
    res = p9("-f", str(lab), "rootfs", "build", "ov1")
    assert res.returncode == 0, res.stdout + res.stderr
    start = time.monotonic()
    res = p9("-f", str(lab), "rootfs", "build", "ov2")
    second = time.monotonic() - start
    assert res.returncode == 0, res.stdout + res.stderr
    assert _fstype(root1) == "overlay" and _fstype(root2) == "overlay"
    lower, modules = (Path(p) for p in json.loads(overlay.record_of(root1).read_text())["lower"])
    print(f"second guest's tree: {second:.1f} s (CLI included), its layer "
          f"{_du_kib(overlay.upper_of(root2)) / 1024:.1f} MiB, the shared base "
          f"{_du_kib(lower) / 1024:.0f} MiB and modules {_du_kib(modules) / 1024:.0f} MiB")
    base_issue = XattrStore(lower).lstat("etc/issue")

    try:
        res = p9("-f", str(lab), "up", "ov1")
        assert res.returncode == 0, res.stdout + res.stderr
        script = (
            "set -e; chown 1234:2345 /etc/issue; chmod 0640 /etc/issue;"
            " echo guest > /root/written-by-ov1; ln /etc/issue /root/issue-link;"
            " stat -c '%n %u %g %a %i %h' /etc/issue /root/issue-link /usr/bin/gunzip"
            " /usr/bin/uncompress /etc/passwd /usr/bin/ls /root/written-by-ov1")
        res = p9("-f", str(lab), "ssh", "ov1", "--", "sh", "-c", script)
        assert res.returncode == 0, res.stdout + res.stderr
        seen = {f[0]: f[1:] for f in (line.split() for line in res.stdout.splitlines())
                if len(f) == 6 and f[0].startswith("/")}
        assert len(seen) == 7, res.stdout
        boot = json.loads((lab.parent / ".provision9p/guests/ov1/timings.json").read_text())
        print(f"ov1 boot to SSH: {boot['boot_total']} s")
    finally:
        p9("-f", str(lab), "down", "--timeout", "5")

    # metadata after copy-up, and a hard link made in the guest
    assert seen["/etc/issue"][:3] == ["1234", "2345", "640"]
    assert seen["/etc/issue"][3:] == seen["/root/issue-link"][3:]
    assert seen["/etc/issue"][4] == "2"
    # a hard link of the base: one inode, two names
    assert seen["/usr/bin/gunzip"][3:] == seen["/usr/bin/uncompress"][3:]
    assert seen["/usr/bin/gunzip"][4] == "2"
    # inode numbers as the host's overlay reports them, copied up or not (the 6.1 guest's
    # v9fs adds 2 to QEMU's qid path; the offset is one constant), none shared by two objects
    offsets = {int(f[3]) - os.lstat(str(root1) + name).st_ino for name, f in seen.items()}
    assert len(offsets) == 1 and offsets <= {0, 2}, offsets
    inodes = {f[3] for n, f in seen.items() if n not in ("/root/issue-link", "/usr/bin/uncompress")}
    assert len(inodes) == len(seen) - 2

    # the guest's writes: in its upper, not in the base nor in the other guest
    up1 = overlay.upper_of(root1)
    assert (up1 / "root" / "written-by-ov1").is_file()
    meta = XattrStore(root1).lstat("etc/issue")
    assert (meta.uid, meta.gid, meta.mode & 0o7777) == (1234, 2345, 0o640)
    assert XattrStore(lower).lstat("etc/issue") == base_issue
    assert XattrStore(root2).lstat("etc/issue") == base_issue
    assert not (lower / "root" / "written-by-ov1").exists()
    assert not (root2 / "root" / "written-by-ov1").exists()

    # a lost mount (a host reboot, say) comes back with the next build or up
    subprocess.run(["umount", str(root1)], check=True)
    assert _fstype(root1) is None
    res = p9("-f", str(lab), "rootfs", "build", "ov1")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "mounted its overlay root again" in res.stdout + res.stderr
    assert _fstype(root1) == "overlay"

    # export sees the merged tree with the guest's owners
    out = lab.parent / "export"
    res = p9("-f", str(lab), "rootfs", "export", "ov1", "-o", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    assert (out / "root" / "written-by-ov1").read_text() == "guest\n"
    st = os.lstat(out / "etc" / "issue")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1234, 2345, 0o640)
    assert os.readlink(out / "bin") == "usr/bin"

    # removing a guest unmounts it and drops its layer; the base and the other stay
    res = p9("-f", str(lab), "rootfs", "remove", "ov1")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ov1: removed" in res.stdout and "overlay layer" in res.stdout
    assert _fstype(root1) is None and not (lab.parent / ".provision9p/guests/ov1").exists()
    assert not root1.exists() and not up1.exists() and not overlay.record_of(root1).exists()
    assert XattrStore(lower).lstat("etc/issue") == base_issue
    assert XattrStore(root2).lstat("etc/issue") == base_issue
