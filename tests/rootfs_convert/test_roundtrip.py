"""Conversion to QEMU's mapped layouts keeps every object's guest view; export brings it back.

The guest's own view of a converted tree is checked in a real guest by
tests/integration/test_up.py; these tests prove the host half: the stores read back
exactly the source's metadata, the host layout is what QEMU needs, and export
reproduces the source.
"""

from __future__ import annotations

import os
import stat
import struct
import subprocess
from pathlib import Path

import pytest
import xattr
from integration import fidelity

from provision9p.errors import BuildError
from provision9p.rootfs.export import acl_text
from provision9p.rootfs.security import security_model

pytestmark = pytest.mark.tree
HOST_UID, HOST_GID = 4321, 4322


def _converted(tmp_path: Path, model: str) -> tuple[Path, Path]:
    src = tmp_path / "src"
    fidelity.make_source(src)
    conv = tmp_path / "conv"
    subprocess.run(["cp", "-a", str(src), str(conv)], check=True)
    security_model(model).convert(conv, host_uid=HOST_UID, host_gid=HOST_GID)
    return src, conv


@pytest.mark.parametrize("model", ["mapped-xattr", "mapped-file"])
def test_store_reads_back_the_source(tmp_path: Path, model: str) -> None:
    src, conv = _converted(tmp_path, model)
    store = security_model(model).store(conv, HOST_UID, HOST_GID)
    for dirpath, dirnames, filenames in os.walk(os.fsencode(src)):
        for name in [*dirnames, *filenames]:
            full = os.path.join(dirpath, name)
            rel = os.fsdecode(os.path.relpath(full, os.fsencode(src)))
            want = os.lstat(full)
            got = store.lstat(rel)
            assert (got.mode, got.uid, got.gid) == (want.st_mode, want.st_uid, want.st_gid), rel
            if stat.S_ISCHR(want.st_mode) or stat.S_ISBLK(want.st_mode):
                assert got.rdev == want.st_rdev, rel
            if stat.S_ISLNK(want.st_mode):
                assert store.readlink(rel) == os.fsdecode(os.readlink(full)), rel
            elif stat.S_ISREG(want.st_mode):
                with open(full, "rb") as f:
                    assert store.read_bytes(rel) == f.read(), rel


@pytest.mark.parametrize("model", ["mapped-xattr", "mapped-file"])
def test_host_layout_is_what_an_unprivileged_qemu_needs(tmp_path: Path, model: str) -> None:
    _, conv = _converted(tmp_path, model)
    for dirpath, dirnames, filenames in os.walk(conv):
        for name in [*dirnames, *filenames]:
            st = os.lstat(os.path.join(dirpath, name))
            assert (st.st_uid, st.st_gid) == (HOST_UID, HOST_GID)
            assert stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode), name
            want = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
            if model == "mapped-file" and name in (b"acl", "acl", "sticky"):
                # the ACL stays on the host file: its mask shows as the group bits
                assert stat.S_IMODE(st.st_mode) & 0o707 == want
            else:
                assert stat.S_IMODE(st.st_mode) == want, name
    # hard links stay hard links
    assert os.lstat(conv / "hl1").st_ino == os.lstat(conv / "hl2").st_ino


def test_mapped_xattr_format_is_qemus(tmp_path: Path) -> None:
    _, conv = _converted(tmp_path, "mapped-xattr")
    suid = str(conv / "suid")
    assert struct.unpack("<I", xattr.get(suid, b"user.virtfs.mode"))[0] == 0o104755
    assert struct.unpack("<I", xattr.get(str(conv / "owned"), b"user.virtfs.uid"))[0] == 1234
    rdev = struct.unpack("<Q", xattr.get(str(conv / "blk"), b"user.virtfs.rdev"))[0]
    assert (os.major(rdev), os.minor(rdev)) == (7, 0)
    assert (conv / "rel").read_text() == "d/plain"
    acl = xattr.get(str(conv / "acl"), b"user.virtfs.system.posix_acl_access")
    assert "user:1234:rw-" in acl_text(acl)
    assert b"system.posix_acl_access" not in xattr.list(str(conv / "acl"))


@pytest.mark.parametrize("model", ["mapped-xattr", "mapped-file"])
def test_export_tree_reproduces_the_source(tmp_path: Path, model: str) -> None:
    src, conv = _converted(tmp_path, model)
    out = tmp_path / "out"
    security_model(model).export(conv, out)
    assert fidelity.host_view(out) == fidelity.host_view(src)


def test_export_tar_reproduces_the_source_but_sockets(tmp_path: Path) -> None:
    src, conv = _converted(tmp_path, "mapped-xattr")
    tar = tmp_path / "tree.tar"
    security_model("mapped-xattr").export(conv, tar)
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "--acls", "-xpf", str(tar),
                    "-C", str(out)], check=True, capture_output=True)
    want = fidelity.host_view(src)
    del want[b"sock"]  # a tar archive cannot hold a socket
    assert fidelity.host_view(out) == want


def _with_capability(tmp_path: Path) -> Path:
    tree = tmp_path / "t"
    tree.mkdir()
    ping = tree / "ping"
    ping.write_bytes(b"\x7fELF")
    # VFS_CAP_REVISION_2, effective, CAP_NET_RAW (13) permitted
    cap = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)
    xattr.set(str(ping), b"security.capability", cap)
    return tree


def test_file_capabilities_are_dropped_and_named(tmp_path: Path) -> None:
    tree = _with_capability(tmp_path)
    report = security_model("mapped-xattr").convert(tree, host_uid=HOST_UID, host_gid=HOST_GID)
    assert report is not None
    assert report.dropped_capabilities == ["/ping"]
    assert b"security.capability" not in xattr.list(str(tree / "ping"))


def test_file_capabilities_can_be_refused(tmp_path: Path) -> None:
    tree = _with_capability(tmp_path)
    with pytest.raises(BuildError, match="/ping"):
        security_model("mapped-xattr").convert(tree, host_uid=HOST_UID, host_gid=HOST_GID,
                                               capabilities="fail")
