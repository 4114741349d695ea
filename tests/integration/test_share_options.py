"""QEMU's own share options on a booted guest, not only in the generated argv: fmode and
dmode set the host modes of what the guest creates (mapped-xattr), writeout=immediate
reaches QEMU, and multidevs=remap (asked, or by default where a share spans file systems)
keeps two file systems' equal inode numbers apart where QEMU's pass-through (warn) shows
them as one, which verify's inode check finds. On the suite's shared guest
(tests/integration/labs.py).
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest
from integration.labs import MULTIDEVS_MOUNTS, SHARED_GUEST

pytestmark = [pytest.mark.vm, pytest.mark.network]

SG = SHARED_GUEST


def _ssh(p9: Any, lab: Path, command: str) -> str:
    res = p9("-f", str(lab), "ssh", SG, "--", command)
    assert res.returncode == 0, res.stdout + res.stderr
    return str(res.stdout)


def test_fmode_and_dmode_are_the_host_modes_of_what_the_guest_creates(shared_lab: Path,
                                                                      p9: Any) -> None:
    out = _ssh(p9, shared_lab, "cd /mnt/opts && rm -rf d f && umask 022 && mkdir d && "
                               "echo x > f && stat -c '%a %n' f d")
    assert out.split() == ["644", "f", "755", "d"]  # the guest's own modes, in the xattrs
    host = shared_lab.parent / "opts-data"
    # QEMU's defaults would be 0600 and 0700 (DESIGN.md): these are the lab's fmode/dmode
    assert stat.S_IMODE(os.stat(host / "f").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(host / "d").st_mode) == 0o750
    assert os.getxattr(host / "f", "user.virtfs.mode") == \
        (stat.S_IFREG | 0o644).to_bytes(4, "little")


def test_writeout_immediate_reaches_qemu(shared_lab: Path, p9: Any) -> None:
    res = p9("-f", str(shared_lab), "status", "--json")
    (pid,) = [g["pid"] for g in json.loads(res.stdout)["guests"] if g["name"] == SG]
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert [a for a in argv if b"writeout=" in a] == \
        [a for a in argv if b"writeout=immediate" in a] != [], argv
    assert _ssh(p9, shared_lab, "echo now > /mnt/opts/w && cat /mnt/opts/w").strip() == "now"


def test_multidevs_remap_keeps_equal_inode_numbers_apart(shared_lab: Path, p9: Any) -> None:
    for share in MULTIDEVS_MOUNTS:  # the setup: two file systems, one number
        a, b = (os.stat(shared_lab.parent / share / fs / "f") for fs in ("a", "b"))
        assert a.st_ino == b.st_ino and a.st_dev != b.st_dev
    out = _ssh(p9, shared_lab, "stat -c %i /mnt/remap/a/f /mnt/remap/b/f /mnt/auto/a/f "
                               "/mnt/auto/b/f /mnt/warn/a/f /mnt/warn/b/f; "
                               "cat /mnt/remap/a/f /mnt/remap/b/f")
    remap_a, remap_b, auto_a, auto_b, warn_a, warn_b, text_a, text_b = out.split()
    assert warn_a == warn_b  # QEMU's pass-through: the guest sees one inode for two files
    assert remap_a != remap_b  # remap: two
    assert auto_a != auto_b  # remap too: the share spans file systems, the lab said nothing
    assert (text_a, text_b) == ("a", "b")
    res = p9("-f", str(shared_lab), "status", "--json")
    (pid,) = [g["pid"] for g in json.loads(res.stdout)["guests"] if g["name"] == SG]
    argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]
    for tag, multidevs in (("remap", "remap"), ("auto", "remap"), ("warn", "warn")):
        (fsdev,) = [a for a in argv if f"/{tag}-data," in a]
        assert f"multidevs={multidevs}" in fsdev, fsdev


def test_verify_finds_shared_inode_numbers(shared_lab: Path, p9: Any) -> None:
    """verify's inode check: apart where remap holds, the collision shown under warn."""
    res = p9("-f", str(shared_lab), "verify", SG)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    for tag in ("remap", "auto"):
        assert any(f" {tag} " in ln and "inode numbers apart 3 file systems" in ln
                   and ln.rstrip().endswith("ok") for ln in lines), res.stdout
    assert any(" warn " in ln and "inode numbers apart 3 file systems" in ln for ln in lines)
    assert re.search(r"warning: \S+ warn inode numbers apart: warn: /mnt/warn/\S+ and "
                     r"/mnt/warn/\S+, on two file systems on the host, share inode number",
                     res.stdout + res.stderr), res.stdout + res.stderr
    assert any(" tdata " in ln and "inode numbers apart 1 file system" in ln for ln in lines)
