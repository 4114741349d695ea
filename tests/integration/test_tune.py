"""`tune msize` on a real guest: a short sweep, the clamped msize reported, the share put
back as it was, and --apply keeping the lab file's comments; on the suite's shared guest."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from integration.labs import SHARED_GUEST, SHARED_LAB

pytestmark = [pytest.mark.vm, pytest.mark.network]

SG = SHARED_GUEST


@pytest.fixture(scope="module")
def lab(shared_lab: Path, p9: Any) -> Iterator[Path]:
    """The suite's shared guest; its lab text and the swept share are put back after."""
    text = shared_lab.read_text()
    yield shared_lab
    shared_lab.write_text(text)
    p9("-f", str(shared_lab), "ssh", SG, "--", "umount /mnt/tdata; mount /mnt/tdata")


@pytest.fixture(scope="module")
def swept(lab: Path, p9: Any) -> tuple[str, str]:
    # mounted by hand at another msize than the lab's: the sweep must put that one back
    res = p9("-f", str(lab), "ssh", SG, "--", "umount /mnt/tdata && mount -t 9p -o "
             "trans=virtio,version=9p2000.L,msize=16384,cache=none tdata /mnt/tdata")
    assert res.returncode == 0, res.stderr
    res = p9("-f", str(lab), "tune", "msize", "--sizes", "65536,900000", "--file-size", "4M",
             "--files", "20", "--apply", timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout, res.stderr


def test_the_clamped_msize_is_reported_never_the_asked_one(swept: tuple[str, str]) -> None:
    out, err = swept
    sizes = [int(m) for m in re.findall(r"^\s+(\d+)\s+\d", out, re.M)]
    assert sizes == [65536, 512000], out
    assert "900000" not in out
    assert "msize 900000 (effective 512000)" in err
    assert re.search(r"recommended msize for tdata: (65536|512000)", out)


def test_apply_changes_only_the_msize_and_keeps_comments(lab: Path,
                                                         swept: tuple[str, str]) -> None:
    chosen = int(re.findall(r"recommended msize for tdata: (\d+)", swept[0])[0])
    text = lab.read_text()
    assert text == SHARED_LAB.replace("        cache: none\n",
                                      f"        cache: none\n        msize: {chosen}\n")
    assert yaml.safe_load(text)["guests"][SG]["shares"][0]["msize"] == chosen


def test_the_share_is_back_as_it_was(lab: Path, swept: tuple[str, str], p9: Any) -> None:
    res = p9("-f", str(lab), "ssh", SG, "--", "grep", "-w", "tdata", "/proc/mounts")
    assert res.returncode == 0, res.stderr
    (line,) = res.stdout.splitlines()
    assert line.split()[1] == "/mnt/tdata" and ",msize=16384," in line  # as it was
    leftovers = [p.name for p in (lab.parent / "tune-data").iterdir()
                 if p.name.startswith(".provision9p-tune")]
    assert leftovers == []
