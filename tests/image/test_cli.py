"""Bad input to `lock` and `image`: a message, a hint, exit 2, no traceback, nothing made."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def p9(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PROVISION9P_CACHE": str(tmp_path / "cache"),
           "PROVISION9P_HOME": str(tmp_path / "home")}
    return subprocess.run([sys.executable, "-m", "provision9p", *args], capture_output=True,
                          text=True, env=env, cwd=tmp_path)


def refused(res: subprocess.CompletedProcess[str], *words: str, code: int = 2) -> None:
    assert res.returncode == code, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr and res.stderr.startswith(("error: ", "usage: "))
    for word in words:
        assert word in res.stderr, (word, res.stderr)


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    path = tmp_path / "lab.yml"
    path.write_text("name: t\nguests:\n  g: {}\n")
    return path


@pytest.mark.parametrize("command", [["lock"], ["image", "build"]], ids=" ".join)
def test_missing_lab_and_unbuilt_guest(tmp_path: Path, lab: Path, command: list[str]) -> None:
    refused(p9(tmp_path, "-f", str(tmp_path / "nope.yml"), *command), "cannot read the lab")
    refused(p9(tmp_path, "-f", str(lab), *command), "g is not built yet", "rootfs build")
    assert not (tmp_path / "lab.lock").exists()


def test_unknown_guest(tmp_path: Path, lab: Path) -> None:
    refused(p9(tmp_path, "-f", str(lab), "image", "build", "nope"), "no guest named 'nope'")


def test_image_refs_that_name_nothing(tmp_path: Path) -> None:
    for command in (["image", "rm", "abcdef"], ["image", "verify", "abcdef"],
                    ["image", "diff", "abcdef", "012345"],
                    ["image", "unpack", "abcdef", "-o", "out"]):
        refused(p9(tmp_path, *command), "no stored image with a digest starting abcdef")
    refused(p9(tmp_path, "image", "verify", "x"), "neither an image file nor a digest")
    refused(p9(tmp_path, "image", "verify", "./missing.tar.zst"), "no image file at")
    assert p9(tmp_path, "image", "list").stdout.startswith("no images")


def test_stale_lock_refused_before_anything(tmp_path: Path, lab: Path) -> None:
    (tmp_path / "lab.lock").write_text("format: 1\nlab: t\nguests: {}\n")
    for command in (["lock"], ["image", "build"]):
        refused(p9(tmp_path, "-f", str(lab), *command),
                "guest g is in the lab but not in the lock", "lock --update")


def test_image_root_that_is_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "lab.yml").write_text("name: t\nguests:\n  g:\n    rootfs:\n"
                                      "      image: ./nope.tar.zst\n")
    refused(p9(tmp_path, "rootfs", "build"), "no image file at")
    assert not (tmp_path / "guests").exists()


def test_image_guest_plans_without_a_mirror(tmp_path: Path) -> None:
    """A host with no Debian mirror in its apt sources can still make guests from images."""
    import dataclasses

    from provision9p.errors import MirrorError
    from provision9p.lab import load_lab
    from provision9p.rootfs.build import plan
    from provision9p.target import resolve

    (tmp_path / "lab.yml").write_text("name: t\nguests:\n  g:\n    rootfs:\n"
                                      "      image: 0123456789abcdef\n")
    lab = load_lab(tmp_path / "lab.yml")
    guest = lab.guest("g")
    target = resolve(lab, guest)
    target = dataclasses.replace(target, guest=guest,
                                 mirror_error=MirrorError("no mirror on this host"))
    with pytest.raises(MirrorError):
        _ = target.mirror
    assert not plan(target).current  # planned, not built
