"""Running another architecture's programs on this host: binfmt_misc and qemu-user.

A foreign root tree (an arm64 guest on an amd64 host) is built by running its own
maintainer scripts, depmod and the roles' tree phase in a chroot of it. The kernel hands
those foreign ELF files to qemu-user through a binfmt_misc entry; the entry needs the F
flag ("fix binary": the interpreter is opened when the entry is registered), because
inside the chroot the host's /usr/libexec/qemu-binfmt does not exist.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from provision9p.errors import HostError

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
# Debian arch -> the binfmt_misc entry qemu-user-static registers for it
ENTRIES = {"arm64": "qemu-aarch64", "s390x": "qemu-s390x", "amd64": "qemu-x86_64"}
# What provides the entries: qemu-user-static ships them (/usr/share/binfmts), and
# binfmt-support's update-binfmts mounts binfmt_misc and registers them.
PACKAGES = ("qemu-user-static", "binfmt-support")
# the Debian name of the host's architecture, by the kernel's name for it
HOST_ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "s390x": "s390x"}


@dataclass(frozen=True)
class Emulation:
    """Can this host run `arch`'s programs in a chroot, and if not, why."""

    arch: str  # Debian's name
    ok: bool
    detail: str

    @property
    def fix(self) -> str:
        entry = ENTRIES.get(self.arch, f"qemu-{self.arch}")
        return (f"`provision9p doctor --install` (or: apt-get install {' '.join(PACKAGES)}"
                f" && update-binfmts --enable {entry})")


def host_arch() -> str:
    machine = platform.machine()
    return HOST_ARCHES.get(machine, machine)


def emulation(arch: str, binfmt_dir: Path = BINFMT_DIR) -> Emulation:
    """What binfmt_misc says about `arch` (a Debian name) here. The host's own arch
    needs nothing."""
    if arch == host_arch():
        return Emulation(arch, True, "native")
    entry = ENTRIES.get(arch)
    if entry is None:
        return Emulation(arch, False, f"no qemu-user emulation is known for {arch}")
    if not (binfmt_dir / "status").exists():
        return Emulation(arch, False, f"binfmt_misc is not mounted at {binfmt_dir}")
    try:
        lines = (binfmt_dir / entry).read_text().splitlines()
    except FileNotFoundError:
        return Emulation(arch, False, f"binfmt_misc has no {entry} entry")
    fields = dict(line.split(" ", 1) for line in lines[1:] if " " in line)
    state = lines[0].strip() if lines else ""
    interpreter = fields.get("interpreter", "?")
    flags = fields.get("flags:", "").strip()
    if state != "enabled":
        return Emulation(arch, False, f"binfmt_misc's {entry} entry is {state or 'empty'}")
    if "F" not in flags:
        # without F the kernel looks the interpreter up inside the chroot, where it is not
        return Emulation(arch, False, f"binfmt_misc's {entry} entry lacks the F flag "
                                      f"(flags: {flags or 'none'}), so it fails in a chroot")
    if (binfmt_dir / "status").read_text().strip() != "enabled":
        return Emulation(arch, False, "binfmt_misc is disabled as a whole")
    return Emulation(arch, True, f"binfmt_misc {entry} -> {interpreter} (flags {flags})")


def enable(arch: str) -> None:
    """Register `arch`'s qemu-user entry (mounting binfmt_misc if needed), as root."""
    entry = ENTRIES.get(arch)
    if entry is None:
        raise HostError(f"no qemu-user emulation is known for {arch}",
                        hint="build this guest on a host of its architecture")
    tool = shutil.which("update-binfmts")
    if tool is None or not Path("/usr/share/binfmts", entry).is_file():
        raise HostError(f"cannot register {entry}: qemu-user-static and binfmt-support "
                        "are not both installed",
                        hint="apt-get install " + " ".join(PACKAGES))
    registered = BINFMT_DIR / entry
    if registered.exists() and not emulation(arch).ok:
        # registered without the F flag (by hand, or another package's binfmt.d file):
        # update-binfmts would leave it as it is, so drop it first ("-1" removes an entry)
        registered.write_text("-1")
    proc = subprocess.run([tool, "--enable", entry], capture_output=True, text=True)
    if proc.returncode != 0:
        raise HostError(f"update-binfmts --enable {entry} failed: "
                        f"{(proc.stderr or proc.stdout).strip()[-400:]}",
                        hint="binfmt_misc must be mountable (a container may forbid it): "
                             "enable it on the machine that runs this one")
