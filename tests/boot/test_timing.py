"""Kernel options for emulated x86 guests: the host's TSC rate for microvm, and the
IO-APIC timer check skipped."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from provision9p.boot.supervisor import tcg_cmdline
from provision9p.boot.timing import host_tsc_khz

CPUINFO = "processor\t: 0\ncpu MHz\t\t: 2596.120\nflags\t\t: fpu tsc {flag} rdtscp\n\n"


@pytest.mark.tree
@pytest.mark.skipif(platform.machine() != "x86_64", reason="an x86 host's cpuinfo")
def test_host_tsc_khz_needs_a_constant_tsc(tmp_path: Path) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text(CPUINFO.format(flag="constant_tsc"))
    bad.write_text(CPUINFO.format(flag="nothing"))
    assert host_tsc_khz(good) == 2596120
    assert host_tsc_khz(bad) is None
    assert host_tsc_khz(tmp_path / "absent") is None


def test_tcg_cmdline() -> None:
    assert tcg_cmdline("x86_64", "pc", "tcg", 2596120) == ""
    assert tcg_cmdline("x86_64", "microvm", "tcg", 2596120) == "tsc_early_khz=2596120"
    assert tcg_cmdline("x86_64", "microvm", "tcg", None) == ""
    assert tcg_cmdline("x86_64", "microvm", "kvm", 2596120) == ""
    assert tcg_cmdline("aarch64", "virt", "tcg", 2596120) == ""
