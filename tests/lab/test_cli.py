"""`provision9p validate` as a user runs it: a separate process, exit codes, no traces."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]

MANY_MISTAKES = """\
guests:
  web:
    memory: lots
    kernel:
      package: linux-image-cloud-amd64
    shares:
      - path: data
        mount_tag: data,ro
        mount: /mnt/data
        fsdriver: proxy
      - path: data
        mount_tag: data2
        mount: mnt/other
        security_model: passthrough
        fmode: 0o1777
"""
EXPECTED = [
    ("3", "guests.web.memory"),
    ("5", "guests.web.kernel.package"),
    ("8", "guests.web.shares[0].mount_tag"),
    ("10", "guests.web.shares[0].fsdriver"),
    ("13", "guests.web.shares[1].mount"),
    ("14", "guests.web.shares[1].security_model"),
    ("15", "guests.web.shares[1].fmode"),
]


def run(args: list[str], home: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the CLI with every place it could write pointed into `home`."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "PROVISION9P_HOME": str(home / "p9home"),
        "PROVISION9P_CACHE": str(home / "p9cache"),
        "PYTHONPATH": str(PROJECT),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    return subprocess.run([sys.executable, "-m", "provision9p", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture()
def dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """An empty home, an empty working directory and a directory for the lab file."""
    home, cwd, labs = tmp_path / "home", tmp_path / "cwd", tmp_path / "labs"
    for d in (home, cwd, labs):
        d.mkdir()
    return home, cwd, labs


def test_all_mistakes_at_once_exit_2_nothing_written(dirs: tuple[Path, Path, Path]) -> None:
    home, cwd, labs = dirs
    lab = labs / "lab.yml"
    lab.write_text(MANY_MISTAKES)
    result = run(["-f", str(lab), "validate"], home, cwd)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {len(EXPECTED)} problems in the lab file:")
    lines = result.stderr.splitlines()
    for line_no, key in EXPECTED:
        assert any(f"  {lab}:{line_no}:" in x and f" {key}: " in x for x in lines), key
    assert list(home.iterdir()) == []
    assert list(cwd.iterdir()) == []
    assert list(labs.iterdir()) == [lab]


def test_builtin_default_lab_validates(dirs: tuple[Path, Path, Path]) -> None:
    home, cwd, _ = dirs
    result = run(["validate"], home, cwd)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "demo: x86_64/pc, 1024 MiB, 2 cpus, bookworm root (mapped-xattr), data->/mnt/data",
        "<built-in default lab>: valid, 1 guest(s)",
    ]
    assert list(home.iterdir()) == []
    assert list(cwd.iterdir()) == []


def test_warnings_go_to_stderr_and_the_lab_is_valid(dirs: tuple[Path, Path, Path]) -> None:
    home, cwd, labs = dirs
    lab = labs / "lab.yml"
    lab.write_text("allow_passthrough: true\nguests:\n  web:\n    rootfs:\n"
                   "      security_model: passthrough\n")
    result = run(["-f", str(lab), "validate"], home, cwd)
    assert result.returncode == 0, result.stderr
    assert f"{lab}:5:7 guests.web.rootfs.security_model: passthrough" in result.stderr
    assert result.stdout.endswith(f"{lab}: valid, 1 guest(s)\n")


def test_missing_lab_file(dirs: tuple[Path, Path, Path]) -> None:
    home, cwd, labs = dirs
    result = run(["validate", "--lab", str(labs / "nope.yml")], home, cwd)
    assert result.returncode == 2
    assert "cannot read the lab file" in result.stderr
    assert "Traceback" not in result.stderr
