"""An aarch64 guest's offline facts (the roles' tree phase) against what its booted guest
shows: /proc/cpuinfo, nproc and `uname -v`, captured from a real guest of this project
(-machine virt -cpu cortex-a57 -smp 2, Debian's 6.1.0-50-arm64)."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision9p.lab import load_lab
from provision9p.lab.model import GuestSpec
from provision9p.tasks.facts import hardware, offline

pytestmark = pytest.mark.unit

A57 = ("BogoMIPS\t: 125.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid\n"
       "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x1\n"
       "CPU part\t: 0xd07\nCPU revision\t: 0\n\n")
BOOTED_CPUINFO = "".join(f"processor\t: {i}\n{A57}" for i in range(2))
# Both banners in Debian's arm64 Image; uname -v in the guest showed the second's version.
BANNERS = (b"Linux version 6.1.0-50-arm64 (debian-kernel@lists.debian.org) (gcc-12 (Debian "
           b"12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) # SMP Debian "
           b"6.1.176-1 (2026-07-02)\n\0\0\0\0%s version %s",
           b"Linux version 6.1.0-50-arm64 (debian-kernel@lists.debian.org) (gcc-12 (Debian "
           b"12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP Debian "
           b"6.1.176-1 (2026-07-02)\n\0")


@pytest.fixture
def arm(tmp_path: Path) -> GuestSpec:
    lab = tmp_path / "lab.yml"
    lab.write_text("name: f\nguests:\n  arm:\n    arch: aarch64\n    cpus: 2\n")
    return load_lab(lab).guest("arm")


def test_processor_facts_match_the_booted_guest(arm: GuestSpec) -> None:
    parts = offline._hardware(arm)
    booted = hardware.processor({"file:/proc/cpuinfo": BOOTED_CPUINFO, "nproc": "2\n"})
    tree = hardware.processor({**parts, "nproc": f"{arm.cpus}\n"})
    assert booted.pop("flags") == ["fp", "asimd", "evtstrm", "aes", "pmull", "sha1", "sha2",
                                   "crc32", "cpuid"]
    assert "flags" not in tree  # unknowable offline (offline.UNKNOWN)
    assert tree == booted == {"processor": ["0", "1"], "processor_count": 2,
                              "processor_cores": 1, "processor_threads_per_core": 1,
                              "processor_vcpus": 2, "processor_nproc": 2}
    assert "file:/sys/class/dmi/id/sys_vendor" not in parts  # virt without firmware: no DMI


def test_uname_v_from_an_arm64_image(tmp_path: Path) -> None:
    image = tmp_path / "vmlinuz-6.1.0-50-arm64"
    header = bytearray(64)
    header[0x38:0x3C] = b"ARM\x64"  # the arm64 Image header's magic
    image.write_bytes(bytes(header) + b"\0" * 4096 + BANNERS[0] + b"\0" * 512 + BANNERS[1])
    assert offline._kernel_version(image) == "#1 SMP Debian 6.1.176-1 (2026-07-02)"
    image.write_bytes(bytes(header) + b"no banner here")
    assert offline._kernel_version(image) == ""
