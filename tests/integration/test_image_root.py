"""A guest booted from an image (`rootfs.image`): built once from the shared base tree,
locked, imaged, then a second lab's two guests are made straight from the image and boot,
and reach each other on their lab network.

One `up` for the module; the image's source guest is built but never booted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.vm, pytest.mark.network]

SOURCE_LAB = """\
name: imgsrc
defaults:
  rootfs:
    packages: [acl, python3, python3-apt]
guests:
  src: {}
"""


def test_guest_boots_from_an_image(lab_dir: Path, p9: Any) -> None:
    src = lab_dir / "imgsrc"
    src.mkdir()
    (src / "lab.yml").write_text(SOURCE_LAB)
    lab = ["-f", str(src / "lab.yml")]
    assert p9(*lab, "rootfs", "build").returncode == 0
    assert p9(*lab, "lock").returncode == 0
    assert (src / "lab.lock").is_file()
    built = p9(*lab, "image", "build", "--json")
    assert built.returncode == 0, built.stderr
    (result,) = json.loads(built.stdout)
    digest = result["digest"].removeprefix("sha256:")
    assert result["reproducible"]

    dst = lab_dir / "fromimg"
    dst.mkdir()
    # two guests from the image: a lab network between them, which the image's source
    # guest (alone in its lab) never had
    (dst / "lab.yml").write_text(
        f"name: fromimg\ndefaults:\n  memory: 768\n  boot_timeout: 900\n"
        f"  rootfs:\n    image: {digest[:16]}\nguests:\n  copy: {{}}\n  twin: {{}}\n")
    lab2 = ["-f", str(dst / "lab.yml")]
    try:
        up = p9(*lab2, "up")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "root tree from" in up.stderr + up.stdout
        for me, other in (("copy", "twin"), ("twin", "copy")):
            reach = p9(*lab2, "ssh", me, "--",
                       f"timeout 60 bash -c 'until </dev/tcp/{other}.fromimg/22; do sleep 1; "
                       f"done' && ip -4 -o addr show eth1")
            assert reach.returncode == 0, reach.stdout + reach.stderr
            assert "10.89.0." in reach.stdout, reach.stdout
        out = p9(*lab2, "ssh", "copy", "--", "cat", "/etc/hostname", "/etc/machine-id")
        assert out.returncode == 0, out.stderr
        hostname, machine_id = out.stdout.split()
        assert hostname == "copy" and len(machine_id) == 32  # made at first boot
        keys = p9(*lab2, "ssh", "copy", "--", "cat", "/etc/ssh/ssh_host_ed25519_key.pub")
        pinned = (dst / ".provision9p/guests/copy/host_key.pub")
        assert keys.stdout.split()[:2] == pinned.read_text().split()[:2]
        owners = p9(*lab2, "ssh", "copy", "--", "stat", "-c", "%u:%g:%a",
                    "/usr/bin/passwd", "/etc/shadow")
        assert owners.stdout.split() == ["0:0:4755", "0:42:640"]
    finally:
        p9(*lab2, "down", "--timeout", "5")
        p9("image", "rm", digest)  # the image store is the shared cache's
