"""A guest whose kernel comes from another suite than its root: bookworm's userspace on
bookworm-backports' kernel (`kernel: {suite: ...}`), which is how a bookworm guest gets
Linux 6.12's faster loose root writes (bench/results/root-throughput.md). One boot."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from integration.labs import lab_file

pytestmark = [pytest.mark.vm, pytest.mark.network]

LAB = """\
name: ksuite
defaults:
  memory: 512
  boot_timeout: 600  # a loaded CI host
  kernel: {cmdline: no_timer_check}
  rootfs:
    layout: overlay  # a layer per guest over the shared base: no copy
    packages: [acl, python3, python3-apt]  # the suite's one base tree
guests:
  bp:
    kernel: {suite: bookworm-backports}
"""


@pytest.fixture(scope="module")
def lab(lab_dir: Path, p9: Any) -> Iterator[Path]:
    with lab_file(lab_dir, "ksuite", LAB, p9) as path:
        yield path


def test_bookworm_root_boots_the_backports_kernel(lab: Path, p9: Any) -> None:
    res = p9("-f", str(lab), "up")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "checks passed" in res.stdout, res.stdout
    out = p9("-f", str(lab), "ssh", "bp", "--",
             ". /etc/os-release; echo $VERSION_CODENAME; uname -r; "
             "awk '$2 == \"/\" {print $3}' /proc/mounts")
    assert out.returncode == 0, out.stderr
    codename, release, fstype = out.stdout.split()[:3]
    assert codename == "bookworm"
    major, minor = (int(n) for n in release.split(".")[:2])
    assert (major, minor) > (6, 1), release  # bookworm's own is 6.1
    assert fstype == "9p"
