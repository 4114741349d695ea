"""Paths in a root tree resolve like the guest sees them and never leave the tree."""

from __future__ import annotations

import os
from pathlib import Path

from provision9p.rootfs import chroot_path as cp


def test_absolute_symlink_stays_inside_tree(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "run").mkdir(parents=True)
    (tree / "etc").mkdir()
    os.symlink("/run", tree / "etc" / "link")
    assert cp.resolve_in(tree, "/etc/link/x") == tree / "run" / "x"


def test_dotdot_cannot_escape(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    os.symlink("../../../../..", tree / "etc" / "up")
    resolved = cp.resolve_in(tree, "/etc/up/passwd")
    assert resolved == tree / "passwd"


def test_write_file_replaces_a_symlink_instead_of_following_it(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    outside = tmp_path / "host-file"
    outside.write_text("host")
    os.symlink(str(outside), tree / "etc" / "resolv.conf")
    cp.write_file(tree, "/etc/resolv.conf", "nameserver 10.0.2.3\n")
    assert outside.read_text() == "host"
    assert not (tree / "etc" / "resolv.conf").is_symlink()
    assert (tree / "etc" / "resolv.conf").read_text() == "nameserver 10.0.2.3\n"
