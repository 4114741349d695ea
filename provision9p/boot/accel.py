"""KVM or TCG: decided by what really happened on this host, not by /dev/kvm opening.

DESIGN.md: /dev/kvm can open and answer KVM_GET_API_VERSION while a guest under
KVM never gets past early boot. So `auto` tries KVM once, watches the console
for progress, falls back to TCG, and remembers the finding per host.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass

from provision9p.host.facts import load_facts, remember
from provision9p.qemu_user import RunAs

# Under KVM a kernel prints this within a few seconds; if it has not after this
# long, KVM is not working here.
KVM_PROBE_SECONDS = 25.0
KVM_PROGRESS_MARK = "Freeing unused kernel"


@dataclass(frozen=True)
class AccelChoice:
    accel: str  # "kvm" or "tcg"
    reason: str
    probe: bool = False  # True: KVM is on trial; watch for progress and fall back


def kvm_accessible(run_as: RunAs) -> bool:
    """Whether QEMU's user (not ours) may open /dev/kvm read-write."""
    try:
        st = os.stat("/dev/kvm")
    except OSError:
        return False
    if run_as.uid == 0:
        return True
    if st.st_uid == run_as.uid:
        return st.st_mode & 0o600 == 0o600
    if st.st_gid in os.getgrouplist(run_as.name, run_as.gid):
        return st.st_mode & 0o060 == 0o060
    return st.st_mode & 0o006 == 0o006


def choose(requested: str, guest_arch: str, run_as: RunAs) -> AccelChoice:
    if requested in ("kvm", "tcg"):
        return AccelChoice(requested, "the lab asks for it")
    if guest_arch != platform.machine():
        return AccelChoice("tcg", f"{guest_arch} guest on an {platform.machine()} host")
    if not os.path.exists("/dev/kvm"):
        return AccelChoice("tcg", "this host has no /dev/kvm")
    if not kvm_accessible(run_as):
        return AccelChoice("tcg", f"/dev/kvm is not open to {run_as.name}, QEMU's user "
                                  "(add it to the kvm group to try KVM)")
    fact = load_facts().get("kvm")
    if isinstance(fact, dict) and "works" in fact:
        if fact["works"]:
            return AccelChoice("kvm", f"KVM worked here before ({fact.get('checked', '?')})")
        return AccelChoice("tcg", f"KVM did not work here ({fact.get('reason', '?')}, "
                                  f"found {fact.get('checked', '?')})")
    return AccelChoice("kvm", "trying KVM once (/dev/kvm opens, which proves nothing)",
                       probe=True)


def record(works: bool, reason: str) -> None:
    remember("kvm", {"works": works, "reason": reason,
                     "checked": time.strftime("%Y-%m-%d %H:%M:%S")})
