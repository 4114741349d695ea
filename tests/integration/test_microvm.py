"""`machine: microvm` booted, not only generated: Debian's kernel with virtio_mmio from our
initramfs, the 9P root and a share on virtio-mmio, no PCI bus, SSH over user networking,
and the share checks passing. One boot (overlay layout: no tree copy)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from integration.labs import lab_file

pytestmark = [pytest.mark.vm, pytest.mark.network]

LAB = """\
name: micro
guests:
  mv:
    machine: microvm
    memory: 512
    rootfs:
      layout: overlay
      packages: [acl, python3, python3-apt]  # the suite's one base tree
    shares:
      - {path: data, mount_tag: data, mount: /mnt/data}
"""


@pytest.fixture(scope="module")
def lab(lab_dir: Path, p9: Any) -> Iterator[Path]:
    with lab_file(lab_dir, "micro", LAB, p9) as path:
        yield path


def test_microvm_guest_boots_and_its_shares_pass(lab: Path, p9: Any) -> None:
    up = p9("-f", str(lab), "up")
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    assert "mv: ok" in up.stdout and "checks passed" in up.stdout, up.stdout
    res = p9("-f", str(lab), "ssh", "mv", "--",
             "for d in /sys/bus/virtio/devices/*; do readlink -f $d/../driver; done | "
             "sort | uniq -c | awk '{print $2 \"=\" $1}' | paste -sd,; "
             "ls /sys/bus/pci/devices 2>/dev/null | wc -l; "
             "awk '$2 == \"/\" || $2 == \"/mnt/data\" {print $2, $3}' /proc/mounts")
    assert res.returncode == 0, res.stdout + res.stderr
    transports, pci, *mounts = res.stdout.splitlines()
    # every virtio device (the root, the share, the NIC) sits on virtio-mmio, none on PCI
    assert transports == "/sys/bus/platform/drivers/virtio-mmio=3", res.stdout
    assert int(pci) == 0  # microvm has no PCI bus here
    assert sorted(mounts) == ["/ 9p", "/mnt/data 9p"]
