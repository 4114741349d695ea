"""Checks of the lab network's settings: the top-level `network:` and each guest's
`network.address`, every problem with its key path, before anything starts."""

from __future__ import annotations

import ipaddress
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from provision9p.lab.checker import Checker, P, show
from provision9p.lab.network import (
    DEFAULT_SUBNET,
    SLIRP_SUBNET,
    LabNetwork,
    assign,
    capacity,
    mac_address,
)

LAB_NETWORK_KEYS = ("subnet", "enabled")
SWITCH_PROGRAM = "vde_switch"


@dataclass(frozen=True)
class NetGuest:
    """What the lab-wide check needs of one valid guest."""

    name: str
    pinned: ipaddress.IPv4Address | None
    origin: dict[P, P]


def guest_address(n: Mapping[str, Any], npath: P, check: Checker) -> ipaddress.IPv4Address | None:
    """A guest's `network.address`, pinned; None when absent or bad (a problem then)."""
    raw = n.get("address")
    if raw is None:
        return None
    try:
        if not isinstance(raw, str):
            raise ValueError
        return ipaddress.IPv4Address(raw)
    except ValueError:
        check.err((*npath, "address"), f"expected an IPv4 address such as 10.89.0.5 (the "
                  f"subnet comes from the lab's network.subnet), got {show(raw)}")
        return None


def lab_network(top: Mapping[str, Any], guests: Sequence[NetGuest], check: Checker,
                lab: str) -> tuple[LabNetwork, dict[str, tuple[ipaddress.IPv4Interface, str]]]:
    """The lab's network and, when it is on, each guest's (address/prefix, MAC)."""
    npath: P = ("network",)
    check.origin = {}
    n = check.mapping(top.get("network"), npath, LAB_NETWORK_KEYS)
    subnet = _subnet(n, npath, check)
    pinned_any = any(g.pinned is not None for g in guests)
    enabled = check.boolean(n, npath, "enabled",
                            len(guests) > 1 or "network" in top or pinned_any)
    net = LabNetwork(subnet=subnet or ipaddress.IPv4Network(DEFAULT_SUBNET), enabled=enabled)
    if not enabled:
        for g in guests:
            if g.pinned is not None:
                check.origin = g.origin
                check.err(("guests", g.name, "network", "address"), "the lab network is "
                          "off (network.enabled: false); remove the address or turn it on")
        check.origin = {}
        return net, {}
    if shutil.which(SWITCH_PROGRAM) is None:
        where: P = npath if "network" in top else ("guests",)
        check.err(where, f"the lab network needs {SWITCH_PROGRAM}, which is not installed: "
                         "apt-get install vde2")
    if subnet is None:
        return net, {}
    ok = True
    room = capacity(subnet)
    if room < len(guests):
        check.err((*npath, "subnet"), f"{subnet} has room for {room} guest(s), the lab has "
                  f"{len(guests)}; use a larger subnet (a /{_prefix_for(len(guests))} or wider)")
        ok = False
    owners: dict[ipaddress.IPv4Address, str] = {}
    for g in guests:
        if g.pinned is None:
            continue
        check.origin = g.origin
        apath: P = ("guests", g.name, "network", "address")
        if g.pinned not in subnet:
            check.err(apath, f"{g.pinned} is outside the lab's subnet {subnet}")
            ok = False
        elif g.pinned in (subnet.network_address, subnet.broadcast_address) and \
                subnet.prefixlen < 31:
            check.err(apath, f"{g.pinned} is the subnet's "
                      f"{'network' if g.pinned == subnet.network_address else 'broadcast'} "
                      f"address; pick a host address of {subnet}")
            ok = False
        elif g.pinned in owners:
            check.err(apath, f"{g.pinned} is also guest {owners[g.pinned]}'s address; each "
                             "guest needs its own")
            ok = False
        else:
            owners[g.pinned] = g.name
    check.origin = {}
    if not ok:
        return net, {}
    addresses = assign(subnet, [g.pinned for g in guests])
    return net, {
        g.name: (ipaddress.IPv4Interface(f"{a}/{subnet.prefixlen}"), mac_address(lab, g.name))
        for g, a in zip(guests, addresses, strict=True)
    }


def _subnet(n: Mapping[str, Any], npath: P, check: Checker) -> ipaddress.IPv4Network | None:
    raw = n.get("subnet", DEFAULT_SUBNET)
    spath = (*npath, "subnet")
    if not isinstance(raw, str):
        check.err(spath, f"expected an IPv4 subnet such as {DEFAULT_SUBNET}, got {show(raw)}")
        return None
    try:
        subnet = ipaddress.IPv4Network(raw)
    except ipaddress.NetmaskValueError:
        check.err(spath, f"expected an IPv4 subnet such as {DEFAULT_SUBNET}, got {show(raw)}")
        return None
    except ValueError:
        try:
            loose = ipaddress.IPv4Network(raw, strict=False)
        except ValueError:
            check.err(spath, f"expected an IPv4 subnet such as {DEFAULT_SUBNET}, "
                             f"got {show(raw)}")
            return None
        check.err(spath, f"{raw} has host bits set; did you mean {loose}?")
        return None
    if subnet.overlaps(SLIRP_SUBNET):
        check.err(spath, f"{subnet} overlaps {SLIRP_SUBNET}, QEMU's user network on every "
                         f"guest's first NIC (SSH and the mirror); use another, e.g. "
                         f"{DEFAULT_SUBNET}")
        return None
    return subnet


def _prefix_for(guests: int) -> int:
    """The longest prefix whose subnet has room for `guests` host addresses."""
    prefix = 30
    while prefix > 0 and capacity(ipaddress.IPv4Network(f"0.0.0.0/{prefix}")) < guests:
        prefix -= 1
    return prefix
