"""The overlay layout on small real layers (root: mounts, mknod, trusted.* xattrs): a guest
layer made on the plain lower, converted alone, mounted on the converted lower, remounted
when lost, removed; what the setup deleted stays deleted."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
import xattr

from provision9p.errors import HostError
from provision9p.rootfs import overlay
from provision9p.rootfs.convert import convert_in_place
from provision9p.rootfs.metadata.stores import XattrStore
from provision9p.rootfs.security import security_model

pytestmark = [pytest.mark.tree]

UID, GID = 4321, 4322  # QEMU's user, as far as these layers know


@pytest.fixture(autouse=True)
def _root() -> None:
    if os.geteuid() != 0:
        pytest.fail("overlay mounts need root, as CI has")


def _plain_base(path: Path) -> Path:
    (path / "etc" / "gone").mkdir(parents=True)
    (path / "etc" / "gone" / "x").write_text("x\n")
    (path / "etc" / "issue").write_text("base\n")
    (path / "etc" / "drop-me").write_text("d\n")
    (path / "usr" / "bin").mkdir(parents=True)
    (path / "usr" / "bin" / "a").write_text("#!/bin/sh\n")
    os.link(path / "usr" / "bin" / "a", path / "usr" / "bin" / "b")
    os.symlink("usr/bin", path / "bin")
    os.chmod(path / "usr" / "bin" / "a", 0o4755)
    return path


def test_upper_conversion_keeps_overlay_marks(tmp_path: Path) -> None:
    up = tmp_path / "upper"
    (up / "opaque").mkdir(parents=True)
    xattr.set(str(up / "opaque"), "trusted.overlay.opaque", b"y")
    os.mknod(up / "whiteout", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    (up / "f").write_text("f\n")
    xattr.set(str(up / "f"), "trusted.overlay.origin", b"\x00fh")
    report = convert_in_place(XattrStore(up, UID, GID), "mapped-xattr", overlay_upper=True)
    assert report.dropped_xattrs == []
    assert stat.S_ISCHR(os.lstat(up / "whiteout").st_mode)  # still overlay's whiteout
    assert xattr.get(str(up / "opaque"), "trusted.overlay.opaque") == b"y"
    assert "trusted.overlay.origin" not in xattr.list(str(up / "f"))
    st = XattrStore(up).lstat("f")
    assert (st.uid, os.lstat(up / "f").st_uid) == (0, UID)


def test_guest_layer_lifecycle(tmp_path: Path) -> None:
    model = security_model("mapped-xattr")
    plain = _plain_base(tmp_path / "base")
    converted = overlay.converted_base(plain, model, UID, GID, "drop")
    assert overlay.converted_base(plain, model, UID, GID, "drop") == converted  # once
    root = tmp_path / "guest" / "root"
    root.parent.mkdir()
    staging = root.with_name(".root.staging-1")
    staging.mkdir()
    with overlay.plain_overlay((plain,), root, staging) as layers:
        # what a guest's setup does: write, replace, delete, hide a directory
        (staging / "etc" / "hostname").write_text("g\n")
        (staging / "etc" / "issue").write_text("guest\n")
        (staging / "etc" / "drop-me").unlink()
        subprocess.run(["rm", "-r", str(staging / "etc" / "gone")], check=True)
        (staging / "etc" / "gone").mkdir()  # a new dir where a base dir was: opaque
        assert os.readlink(staging / "bin") == "usr/bin"  # plain, as chroots need it
    overlay.convert_upper(layers, model, UID, GID, "drop")
    staging.rmdir()
    overlay.install(layers, (converted,), root)
    try:
        assert overlay.is_mounted(root)
        store = XattrStore(root)
        assert (root / "etc" / "hostname").read_text() == "g\n"
        assert (root / "etc" / "issue").read_text() == "guest\n"
        assert not (root / "etc" / "drop-me").exists()
        assert list((root / "etc" / "gone").iterdir()) == []
        assert store.readlink("bin") == "usr/bin"
        assert store.lstat("usr/bin/a").mode & 0o4000 and store.lstat("usr/bin/a").uid == 0
        assert store.lstat("etc/hostname").uid == 0
        a, b = os.lstat(root / "usr/bin/a"), os.lstat(root / "usr/bin/b")
        assert a.st_ino == b.st_ino and a.st_nlink == 2
        assert os.lstat(root / "etc/hostname").st_dev == os.lstat(root / "usr/bin/a").st_dev
        # the shared layers are untouched
        assert (converted / "etc" / "issue").read_text() == "base\n"
        assert (converted / "etc" / "drop-me").exists()
        assert not (converted / "etc" / "hostname").exists()
        # lost mount, found again
        subprocess.run(["umount", str(root)], check=True)
        assert overlay.ensure_mounted(root) and overlay.is_mounted(root)
        assert not overlay.ensure_mounted(root)
    finally:
        overlay.remove(root)
    assert not root.exists() and not overlay.upper_of(root).exists()
    assert not overlay.record_of(root).exists()
    assert (converted / "etc" / "issue").read_text() == "base\n"


def test_missing_shared_layer_is_named(tmp_path: Path) -> None:
    root = tmp_path / "root"
    overlay.record_of(root).write_text(
        '{"lower": ["/nonexistent/base"], "upper": "/x", "work": "/y"}\n')
    with pytest.raises(HostError, match=r"a shared layer under .* is gone"):
        overlay.ensure_mounted(root)
