"""`provision9p doctor` on this real host: each check, and the command's exit codes."""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from provision9p.commands import host as host_cli
from provision9p.errors import Provision9pError
from provision9p.host.binfmt import emulation
from provision9p.host.doctor import (
    check_busybox,
    check_disk,
    check_kvm,
    check_program,
    check_root,
    check_user_xattrs,
    install_packages,
    is_static_elf,
)
from provision9p.host.facts import remember


@pytest.fixture(autouse=True)
def homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROVISION9P_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PROVISION9P_HOME", str(tmp_path / "home"))
    return tmp_path


def test_programs() -> None:
    sh = check_program("sh", "dash", "the shell")
    assert sh.ok and sh.detail == shutil.which("sh")
    gone = check_program("provision9p-no-such-program", "some-pkg", "nothing")
    assert (gone.ok, gone.package, gone.fix, gone.status) == (
        False, "some-pkg", "apt-get install some-pkg", "MISSING")


def _elf(interp: bool) -> bytes:
    """A 64-bit ELF header with one program header: PT_INTERP (3) or PT_LOAD (1)."""
    head = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9
    head += struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    return head + struct.pack("<IIQQQQQQ", 3 if interp else 1, 4, 0, 0, 0, 0, 0, 8)


def test_static_elf(tmp_path: Path) -> None:
    (tmp_path / "static").write_bytes(_elf(False))
    (tmp_path / "dynamic").write_bytes(_elf(True))
    assert is_static_elf(tmp_path / "static")
    assert not is_static_elf(tmp_path / "dynamic")
    assert not is_static_elf(Path(os.path.realpath(shutil.which("sh") or "/bin/sh")))
    found = check_busybox()
    assert found.ok == any(p.is_file() and is_static_elf(p)
                           for p in (Path("/bin/busybox"), Path("/usr/bin/busybox")))
    assert found.ok or found.package == "busybox-static"


def test_kvm_reports_the_remembered_finding() -> None:
    import platform

    arch = platform.machine()
    other = "s390x" if arch != "s390x" else "x86_64"
    assert check_kvm(other).detail.startswith("not used")
    if not os.path.exists("/dev/kvm"):
        assert not check_kvm(arch).ok and not check_kvm(arch).required
        return
    assert "not tried yet" in check_kvm(arch).detail
    remember("kvm", {"works": False, "reason": "no output after Probing EDD",
                     "checked": "2026-11-25 02:30:00"})
    found = check_kvm(arch)
    assert not found.ok and not found.required and "Probing EDD" in found.detail
    remember("kvm", {"works": True, "reason": "booted", "checked": "2026-11-25 03:00:00"})
    assert check_kvm(arch).ok


@pytest.mark.tree
def test_user_xattrs_on_a_real_directory(tmp_path: Path) -> None:
    found = check_user_xattrs(tmp_path / "not/yet/there")
    assert found.ok, found.detail
    assert str(tmp_path) in found.detail
    assert list(tmp_path.iterdir()) == []  # the test file is gone again


@pytest.mark.tree
def test_user_xattrs_where_no_file_can_be_made() -> None:
    found = check_user_xattrs(Path("/proc/provision9p-share"))
    assert not found.ok and "cannot create a test file in /proc" in found.detail


def test_disk_and_root(tmp_path: Path) -> None:
    assert check_disk(tmp_path / "x", minimum=1).ok
    low = check_disk(tmp_path / "x", minimum=2**62)
    assert not low.ok and not low.required and "GiB free" in low.detail
    assert check_root().ok  # a normal user builds in a user namespace (rootless.py)


def run_doctor(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="provision9p")
    host_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["doctor", *argv])
    try:
        code = int(args.func(args))
    except Provision9pError as exc:
        code = exc.exit_code
        print(f"error: {exc}")
    return code, capsys.readouterr().out


def test_doctor_with_nothing_on_path(homes: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    empty = homes / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    code, out = run_doctor([], capsys)
    assert code == 1
    for fix in ("apt-get install qemu-system-x86", "apt-get install mmdebstrap",
                "apt-get install zstd", "apt-get install cpio"):
        assert f"fix: {fix}" in out
    assert "`provision9p doctor --install` installs" in out


def test_doctor_on_a_lab_file(homes: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lab = homes / "lab.yml"
    lab.write_text("name: t\nguests:\n  a:\n    arch: aarch64\n    machine: virt\n"
                   "    shares:\n      - path: data\n        mount_tag: data\n"
                   "        mount: /mnt/data\n")
    code, out = run_doctor(["--lab", str(lab)], capsys)
    assert "qemu-system-aarch64" in out and "user xattrs" in out and "disk space" in out
    needed = [shutil.which(p) for p in ("qemu-system-aarch64", "mmdebstrap", "zstd", "cpio")]
    assert code == (0 if all(needed) and check_busybox().ok and check_root().ok
                    and emulation("arm64").ok else 1)


@pytest.mark.network
@pytest.mark.network  # apt-get from the mirror: the tree ring
def test_install_a_missing_package() -> None:
    if os.geteuid() != 0:
        pytest.fail("installing packages needs root (CI runs as root)")
    # GNU hello: tiny, nothing set-up installs, nothing else needs; absent before the call
    # (so an installer that does nothing fails), removed again afterwards.
    subprocess.run(["dpkg", "--purge", "hello"], capture_output=True, check=False)
    assert shutil.which("hello") is None
    try:
        install_packages(["hello"])
        assert shutil.which("hello") == "/usr/bin/hello"
        run = subprocess.run(["hello"], capture_output=True, text=True, check=True)
        assert run.stdout == "Hello, world!\n"
    finally:
        subprocess.run(["dpkg", "--purge", "hello"], capture_output=True, check=False)
