"""Clock facts an emulated x86 guest cannot measure for itself.

Under TCG the guest's TSC is the host's counter (QEMU reads the host's ticks), but a
guest on the microvm machine has no HPET or ACPI PM timer to calibrate it against,
and its PIT calibration fails on a loaded host: the kernel then hangs right after
"tsc: Marking TSC unstable due to could not calculate TSC khz" (seen 2 of 2 boots
here, load average ~20). Telling it the frequency (`tsc_early_khz=`) skips the
calibration; the pc machine has HPET and the PM timer and needs nothing.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path

_MHZ = re.compile(r"^cpu MHz\s*:\s*([0-9.]+)", re.M)


def host_tsc_khz(cpuinfo: Path = Path("/proc/cpuinfo")) -> int | None:
    """The host's TSC frequency in kHz, from /proc/cpuinfo on an x86 host whose TSC runs
    at a constant rate (constant_tsc), else None."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    flags = re.search(r"^flags\s*:(.*)$", text, re.M)
    mhz = _MHZ.search(text)
    if not flags or "constant_tsc" not in flags.group(1).split() or not mhz:
        return None
    return round(float(mhz.group(1)) * 1000)
