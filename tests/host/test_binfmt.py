"""binfmt_misc entries as the kernel lists them: what makes a foreign tree buildable."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision9p.host.binfmt import BINFMT_DIR, emulation, host_arch

pytestmark = pytest.mark.unit

ENTRY = """\
{state}
interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
flags: {flags}
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
"""


def fake_binfmt(tmp_path: Path, *, state: str = "enabled", flags: str = "PF",
                status: str = "enabled") -> Path:
    (tmp_path / "status").write_text(status + "\n")
    (tmp_path / "register").write_text("")
    (tmp_path / "qemu-aarch64").write_text(ENTRY.format(state=state, flags=flags))
    return tmp_path


def test_an_enabled_entry_with_the_f_flag_is_enough(tmp_path: Path) -> None:
    emu = emulation("arm64", fake_binfmt(tmp_path))
    assert emu.ok
    assert emu.detail == ("binfmt_misc qemu-aarch64 -> "
                          "/usr/libexec/qemu-binfmt/aarch64-binfmt-P (flags PF)")


@pytest.mark.parametrize(("kwargs", "detail"), [
    ({"flags": "OC"}, "binfmt_misc's qemu-aarch64 entry lacks the F flag (flags: OC), "
                      "so it fails in a chroot"),
    ({"flags": ""}, "binfmt_misc's qemu-aarch64 entry lacks the F flag (flags: none), "
                    "so it fails in a chroot"),
    ({"state": "disabled"}, "binfmt_misc's qemu-aarch64 entry is disabled"),
    ({"status": "disabled"}, "binfmt_misc is disabled as a whole"),
])
def test_what_is_wrong_is_named(tmp_path: Path, kwargs: dict[str, str], detail: str) -> None:
    emu = emulation("arm64", fake_binfmt(tmp_path, **kwargs))
    assert not emu.ok and emu.detail == detail
    assert emu.fix == ("`provision9p doctor --install` (or: apt-get install qemu-user-static "
                       "binfmt-support && update-binfmts --enable qemu-aarch64)")


def test_no_entry_and_no_mount(tmp_path: Path) -> None:
    fake_binfmt(tmp_path)
    (tmp_path / "qemu-aarch64").unlink()
    assert emulation("arm64", tmp_path).detail == "binfmt_misc has no qemu-aarch64 entry"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert emulation("arm64", empty).detail == f"binfmt_misc is not mounted at {empty}"
    assert emulation("mips", tmp_path).detail == "no qemu-user emulation is known for mips"


def test_the_host_arch_needs_nothing(tmp_path: Path) -> None:
    assert emulation(host_arch(), tmp_path).ok  # an empty dir: nothing is read


def test_the_real_host_agrees_with_its_proc_file() -> None:
    """Whatever this host has, the verdict follows the kernel's own file."""
    entry = BINFMT_DIR / "qemu-aarch64"
    if host_arch() == "arm64":
        pytest.skip("an arm64 host runs arm64 natively")
    emu = emulation("arm64")
    if not entry.exists():
        assert not emu.ok
        return
    lines = entry.read_text().splitlines()
    flags = next(line for line in lines if line.startswith("flags:"))
    assert emu.ok == (lines[0] == "enabled" and "F" in flags.split(":", 1)[1]
                      and (BINFMT_DIR / "status").read_text().strip() == "enabled")
