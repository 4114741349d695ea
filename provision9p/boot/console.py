"""Reading the guest's serial console: boot milestones for progress, and why a boot failed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# (stage name, marker) in boot order; the supervisor reports each as it first appears.
MILESTONES = (
    ("kernel", "Linux version"),
    ("initramfs", "Run /init as init process"),
    ("root mounted", "provision9p: switch_root"),
    ("init", "systemd[1]"),
    ("userspace", "Reached target"),
)

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

# (pattern, likely cause) checked against the console's tail, first match wins.
_CAUSES = (
    (re.compile(r"provision9p-initramfs: (.*)"), None),
    (re.compile(r"Unknown symbol"), "a module was loaded before one it depends on"),
    (re.compile(r"9pnet_virtio: no channels available for device (\S+)"),
     "the root mount tag does not match a 9P device QEMU offers"),
    (re.compile(r"VFS: Unable to mount root fs|Cannot open root device"),
     "the kernel could not mount the 9P root (9P not built in and no initramfs, "
     "or wrong root= / rootflags=)"),
    (re.compile(r"Kernel panic"), "the kernel panicked (see the lines above)"),
    (re.compile(r"You are in emergency mode|Failed to mount"),
     "systemd could not mount something from /etc/fstab"),
    (re.compile(r"Failed to start .*OpenBSD Secure Shell|ssh.service: Failed"),
     "sshd did not start in the guest"),
)


@dataclass
class ConsoleWatch:
    """Follows a console log file as it grows."""

    path: Path
    offset: int = 0
    text: str = ""

    def poll(self) -> str:
        """New console text since the last poll."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return ""
        self.offset += len(data)
        new = data.decode(errors="replace")
        self.text += new
        return new

    def reached(self) -> list[str]:
        return [name for name, marker in MILESTONES if marker in self.text]

    def tail(self, lines: int = 25) -> str:
        # systemd colours its status lines; a terminal showing them raw shows `[0;32m`
        clean = _ANSI.sub("", self.text.replace("\r", ""))
        return "\n".join(clean.rstrip().splitlines()[-lines:])


def likely_cause(text: str) -> str | None:
    for pattern, cause in _CAUSES:
        m = pattern.search(text)
        if m:
            return cause or m.group(1).strip()
    if not text.strip():
        return "the guest printed nothing: QEMU or the firmware did not reach the kernel"
    return None
