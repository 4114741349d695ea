"""An arm64 guest on this x86-64 host, end to end under TCG: its tree built through
qemu-user (binfmt_misc), Debian's arm64 kernel with our initramfs, the `virt` board with a
virtio-9p-pci root, SSH, roles in both phases, verify. One boot for the module.

Costly under emulation (bench/results/aarch64.md): the base tree is built once per cache
(minutes of qemu-user), so the lab asks for nothing beyond the base packages.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provision9p import paths
from provision9p.host.binfmt import emulation


def _cache_is_warm() -> bool:
    """An arm64 base tree in the cache: without one, the build alone is minutes of
    qemu-user, which is the slow ring's to pay (a CI machine's cache is always cold)."""
    return any((paths.cache_home() / "trees").glob("*-arm64-*"))


pytestmark = [pytest.mark.vm, pytest.mark.network]
if not _cache_is_warm():
    pytestmark.append(pytest.mark.slow(
        covered_by="tests/kernel/test_arm64.py::test_debian_arm64_boots_a_9p_root_from_our_"
                   "initramfs"))
    pytestmark.append(pytest.mark.timeout(2700))

LAB = """\
name: a64
guests:
  arm:
    arch: aarch64
    memory: 1024
    cpus: 2
    boot_timeout: 900        # TCG emulating arm64 on a loaded 2-core host
    shares:
      - path: data
        mount_tag: data
        mount: /mnt/data
        security_model: mapped-xattr
    roles: [users]           # its tree phase runs in the arm64 chroot through qemu-user
    vars:
      users_groups: [{name: lab, gid: 2000}]
      users_accounts: [{name: ann, uid: 1000, group: lab}]
"""
EM_AARCH64 = b"\xb7\x00"


def _skip_without_emulation() -> None:
    if shutil.which("qemu-system-aarch64") is None:
        pytest.skip("qemu-system-aarch64 is not installed (setup.sh installs qemu-system-arm)")
    emu = emulation("arm64")
    if not emu.ok:
        pytest.skip(f"arm64 programs cannot run here: {emu.detail}; fix: {emu.fix}")


@pytest.fixture(scope="module")
def lab(lab_dir: Path, p9: Any) -> Iterator[tuple[Path, dict[str, Any]]]:
    _skip_without_emulation()
    path = lab_dir / "a64.yml"
    path.write_text(LAB)
    res = p9("-f", str(path), "up", "--json", timeout=2400)
    try:
        report = json.loads(res.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"up printed no JSON (exit {res.returncode}):\n{res.stderr[-4000:]}")
    yield path, report
    p9("-f", str(path), "down", "--timeout", "5")  # a clean TCG shutdown costs ~40 s


def test_up_builds_boots_and_verifies(lab: tuple[Path, dict[str, Any]]) -> None:
    _, report = lab
    guest = report["guests"]["arm"]
    assert report["ok"], json.dumps(guest.get("error"), indent=1)
    assert guest["state"] == "up" and guest["checks"]["failed"] == []
    assert guest["checks"]["passed"] >= 10  # two shares, five checks each
    assert guest["timings"]["accel"] == "tcg"
    # up's verify ran the share checks over SSH; no second `verify` (CI time)


def test_the_guest_is_aarch64(lab: tuple[Path, dict[str, Any]], p9: Any) -> None:
    res = p9("-f", str(lab[0]), "ssh", "arm", "--", "uname", "-m")
    assert (res.returncode, res.stdout.strip()) == (0, "aarch64"), res.stderr


def test_the_tree_is_arm64_and_the_tree_phase_ran_in_it(lab: tuple[Path, dict[str, Any]],
                                                        lab_dir: Path, p9: Any) -> None:
    # the host holds arm64 programs: QEMU's mapped-xattr files keep their bytes
    root = lab_dir / "guests" / "arm" / "root"
    assert (root / "usr/bin/ls").read_bytes()[18:20] == EM_AARCH64
    # the account the roles made in the chroot, before the first boot
    res = p9("-f", str(lab[0]), "ssh", "arm", "--", "id", "-u", "ann")
    assert (res.returncode, res.stdout.strip()) == (0, "1000"), res.stderr
