"""The lab network as data: subnet, each guest's address and MAC, the /etc/hosts block.

Pure functions only; the switch that carries the network is boot/switch.py, the tree
setup that configures it is rootfs/guest_setup.py, the SSH refresh of /etc/hosts is
lab_pass.py.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# Away from QEMU user networking's 10.0.2.0/24 (the first NIC of every guest), from
# Docker's 172.17/16 and from the usual home 192.168 ranges.
DEFAULT_SUBNET = "10.89.0.0/24"
SLIRP_SUBNET = ipaddress.IPv4Network("10.0.2.0/24")
# QEMU user networking always gives the guest this address, gateway and DNS; the
# initramfs configures them at once, so sshd answers without waiting for networkd.
SLIRP_ADDRESS = "10.0.2.15/24"
SLIRP_GATEWAY = "10.0.2.2"
SLIRP_DNS = "10.0.2.3"
# The guest's name for its second NIC (net.ifnames=0: eth0 is the user-mode NIC).
LAB_NIC = "eth1"
HOSTS_BEGIN = "# BEGIN provision9p lab {lab}: managed, rewritten on every `up`"
HOSTS_END = "# END provision9p lab {lab}"


@dataclass(frozen=True)
class LabNetwork:
    """The lab's private L2 network; `enabled` is False for a one-guest lab that says
    nothing about a network (nothing to talk to, so no switch and no second NIC)."""

    subnet: ipaddress.IPv4Network = field(
        default_factory=lambda: ipaddress.IPv4Network(DEFAULT_SUBNET))
    enabled: bool = False


def mac_address(lab: str, guest: str) -> str:
    """A stable, locally administered unicast MAC from the lab's and guest's names."""
    digest = hashlib.sha256(f"{lab}\0{guest}".encode()).digest()
    # 0x02: locally administered, unicast; five bytes of hash make a clash within one
    # lab (a few dozen guests) about as likely as never.
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def assign(subnet: ipaddress.IPv4Network,
           pinned: Sequence[ipaddress.IPv4Address | None]) -> list[ipaddress.IPv4Address]:
    """Addresses for guests in lab order: a pinned one is kept, the others take the
    lowest free host addresses. The caller checked that there are enough."""
    taken = {a for a in pinned if a is not None}
    free = (h for h in subnet.hosts() if h not in taken)
    return [a if a is not None else next(free) for a in pinned]


def capacity(subnet: ipaddress.IPv4Network) -> int:
    """How many guests fit: every host address (no gateway; nothing on the host side)."""
    return max(0, subnet.num_addresses - 2) if subnet.prefixlen < 31 else subnet.num_addresses


def hosts_block(lab: str, entries: Iterable[tuple[str, str]]) -> str:
    """The lab's /etc/hosts lines, between markers so a later `up` can replace them."""
    lines = [HOSTS_BEGIN.format(lab=lab)]
    lines += [f"{address}\t{name}.{lab} {name}" for name, address in entries]
    lines.append(HOSTS_END.format(lab=lab))
    return "\n".join(lines) + "\n"


def with_hosts_block(text: str, lab: str, block: str) -> str:
    """`text` (an /etc/hosts) with the lab's block replaced, or appended when absent."""
    begin, end = HOSTS_BEGIN.format(lab=lab), HOSTS_END.format(lab=lab)
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip("\n") == begin]
    if starts:
        start = starts[0]
        stop = next((i for i in range(start, len(lines)) if lines[i].rstrip("\n") == end),
                    len(lines) - 1)
        return "".join(lines[:start]) + block + "".join(lines[stop + 1:])
    if text and not text.endswith("\n"):
        text += "\n"
    return text + block


def network_file(mac: str, address: ipaddress.IPv4Interface) -> str:
    """systemd-networkd's config of the lab NIC, matched by MAC (names can move)."""
    return ("# provision9p: the lab network (no gateway: the user-mode NIC keeps it)\n"
            f"[Match]\nMACAddress={mac}\n\n[Network]\nAddress={address.with_prefixlen}\n"
            "LinkLocalAddressing=no\nIPv6AcceptRA=no\nKeepConfiguration=static\n")
