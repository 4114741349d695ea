"""A share whose path is a file, and a share missing a key: the other checks still run."""

from __future__ import annotations

from pathlib import Path

from .helpers import problems


def test_share_path_that_is_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    found = problems("""
        guests:
          web:
            shares:
              - {path: afile, mount_tag: data, mount: /mnt/data}
        """, tmp_path)
    assert [(p.line, p.path) for p in found] == [(5, "guests.web.shares[0].path")]
    assert f"{tmp_path / 'afile'} is not a directory" in found[0].message


def test_root_path_that_is_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "root").write_text("x")
    found = problems("""
        guests:
          web:
            rootfs: {path: root}
        """, tmp_path)
    assert [p.path for p in found] == ["guests.web.rootfs.path"]
    assert "is not a directory" in found[0].message


def test_missing_mount_still_checks_the_rest_of_the_share(tmp_path: Path) -> None:
    found = problems("""
        guests:
          web:
            shares:
              - {path: a, mount_tag: data, mount: /mnt/a}
              - path: b
                mount_tag: data
                msize: lots
                fmode: 0999
              - path: guests/web/root/srv
                mount_tag: c
        """, tmp_path)
    assert [(p.line, p.path, p.message.split(" (")[0].split(";")[0]) for p in found] == [
        (6, "guests.web.shares[1]", "missing key mount"),
        (7, "guests.web.shares[1].mount_tag",
         "mount tag 'data' is already used by shares[0]"),
        (8, "guests.web.shares[1].msize", "expected a size in bytes"),
        (9, "guests.web.shares[1].fmode", 'expected an octal mode like 0644, got "0999"'),
        (10, "guests.web.shares[2]", "missing key mount"),
        (10, "guests.web.shares[2].path",
         "an extra share cannot be the root tree, be inside it or contain it"),
    ]


def test_missing_path_still_checks_duplicate_mount(tmp_path: Path) -> None:
    found = problems("""
        guests:
          web:
            shares:
              - {path: a, mount_tag: a, mount: /mnt/a}
              - {mount_tag: b, mount: /mnt/a}
        """, tmp_path)
    assert [p.path for p in found] == ["guests.web.shares[1]", "guests.web.shares[1].mount"]
    assert "missing key path" in found[0].message
    assert "already the mount point of shares[0]" in found[1].message
