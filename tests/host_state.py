"""What a contained tree phase must leave alone on the host, and the attempts on it that
the containment tests make (tests/tasks/test_contained.py as root,
tests/integration/test_rootless.py as a normal user)."""

from __future__ import annotations

import subprocess
from pathlib import Path

#: Each attempt, as a role's task would make it; every one may fail (that is the point),
#: none may act on the host. {pid} is a process the test started on the host.
ATTEMPTS = {
    "hostname": "hostname contained-or-not",
    "swapon": "dd if=/dev/zero of=/swapfile bs=1M count=8 && chmod 600 /swapfile && "
              "mkswap /swapfile && swapon /swapfile",
    "sysctl": "mount -t proc proc /proc; sysctl -w vm.swappiness=7; "
              "echo 7 > /proc/sys/vm/swappiness; sysctl -w net.ipv4.ip_forward=1",
    "mount": "mkdir -p /mnt/t && mount -t tmpfs tmpfs /mnt/t && touch /mnt/t/inside",
    "ip link": "ip link add p9dummy0 type dummy && ip link set p9dummy0 up",
    "iptables": "iptables -A INPUT -s 192.0.2.1 -j DROP && "
                "iptables -t nat -A POSTROUTING -j MASQUERADE",
    "date": "date -s '2001-02-03 04:05:06'",
    "kill": "kill -9 {pid}",
    "modprobe": "modprobe dummy",
    "reboot": "reboot -ff",  # the syscall itself, not a request to an init
}


def host_state(tree: Path) -> dict[str, object]:
    """What the attempts aim at, read on the host. Mounts: those in the tree only, the
    one place a tree-phase mount could land (other tests mount overlays meanwhile)."""
    def out(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True).stdout

    return {
        "hostname": Path("/proc/sys/kernel/hostname").read_text(),
        "swaps": Path("/proc/swaps").read_text(),
        "sysctls": (Path("/proc/sys/vm/swappiness").read_text(),
                    Path("/proc/sys/net/ipv4/ip_forward").read_text()),
        "mounts": sorted(point for line in Path("/proc/self/mountinfo").read_text().splitlines()
                         if (point := line.split()[4]).startswith(f"{tree}/")),
        "links": out("ip", "-o", "link", "show"),
        "firewall": out("iptables-save"),  # setup.sh installs iptables for the tests
        "boot": Path("/proc/sys/kernel/random/boot_id").read_text(),
        # only the module the attempt asks for: other tests load others meanwhile (loop);
        # /sys/module, since a kernel without module loading has no /proc/modules
        "dummy module": Path("/sys/module/dummy").exists(),
    }
