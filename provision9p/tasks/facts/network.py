"""Network facts (Ansible's `network`, `iscsi` and `nvme` collectors): interfaces from
sysfs, addresses and routes from one `ip -batch`, as Ansible's Linux collector shapes them."""

from __future__ import annotations

import ipaddress
import itertools
import re
from typing import Any

from provision9p.tasks.facts.collect import Facts, Parts, file_of, line_of

_IF_TYPES = {"1": "ether", "32": "infiniband", "512": "ppp", "772": "loopback",
             "65534": "tunnel"}


def network(parts: Parts) -> Facts:
    if "net" not in parts:
        return {}
    ifaces: dict[str, dict[str, Any]] = {}
    order: list[tuple[int, str]] = []
    for line in parts["net"].splitlines():
        f = line.split("\t")
        if len(f) < 11:
            continue
        name, index, mac, mtu, oper, flags, typ, module, pciid, speed, kind = f[:11]
        item: dict[str, Any] = {"device": name}
        if mac and mac != "00:00:00:00:00:00":
            item["macaddress"] = mac
        if mtu.isdigit():
            item["mtu"] = int(mtu)
        item["active"] = oper != "down"
        item["type"] = _IF_TYPES.get(typ, "unknown")
        if kind:
            item["type"] = kind
        if module:
            item["module"] = module
        if pciid:
            item["pciid"] = pciid
        if re.fullmatch(r"-?\d+", speed):
            item["speed"] = int(speed)
        item["promisc"] = bool(int(flags, 16) & 0x100) if flags.startswith("0x") else False
        ifaces[name] = item
        order.append((int(index) if index.isdigit() else 0, name))
    all4: list[str] = []
    all6: list[str] = []
    for line in parts.get("addr", "").splitlines():
        _addrline_of(line, ifaces, all4, all6)
    facts: Facts = {"interfaces": [n for _, n in sorted(order)],
                    "all_ipv4_addresses": all4, "all_ipv6_addresses": all6}
    for name, item in ifaces.items():
        facts[name.replace("-", "_").replace(".", "_").replace(":", "_")] = item
    facts["default_ipv4"] = _default(parts.get("route4", ""), ifaces, "ipv4")
    facts["default_ipv6"] = _default(parts.get("route6", ""), ifaces, "ipv6")
    reach: dict[str, list[str]] = {"ipv4": [], "ipv6": []}
    for key, part in (("ipv4", "local4"), ("ipv6", "local6")):
        for line in parts.get(part, "").splitlines():
            w = line.split()
            if len(w) >= 2 and w[0] == "local" and w[1] not in reach[key]:
                reach[key].append(w[1])
    facts["locally_reachable_ips"] = reach
    return facts


def _addrline_of(line: str, ifaces: dict[str, dict[str, Any]], all4: list[str],
               all6: list[str]) -> None:
    """One `ip -o addr` line: `2: eth0    inet 10.0.2.15/24 brd ... scope global eth0`."""
    w = line.split()
    if len(w) < 4 or w[2] not in ("inet", "inet6"):
        return
    dev = w[1].split("@")[0]
    item = ifaces.get(dev)
    if item is None:
        return
    iface = ipaddress.ip_interface(w[3])
    address = str(iface.ip)
    attrs = dict(itertools.pairwise(w[4:]))
    if w[2] == "inet":
        entry = {"address": address, "broadcast": attrs.get("brd", ""),
                 "netmask": str(iface.netmask), "network": str(iface.network.network_address),
                 "prefix": str(iface.network.prefixlen)}
        if "ipv4" not in item and "secondary" not in w:
            item["ipv4"] = entry
        else:
            item.setdefault("ipv4_secondaries", []).append(entry)
        if not address.startswith("127."):
            all4.append(address)
    else:
        item.setdefault("ipv6", []).append({
            "address": address, "prefix": str(iface.network.prefixlen),
            "scope": attrs.get("scope", "")})
        if address != "::1":
            all6.append(address)


def _default(route: str, ifaces: dict[str, dict[str, Any]], family: str) -> dict[str, Any]:
    w = route.split()
    if not w or w[0] in ("unreachable", "prohibit", "blackhole"):
        return {}
    attrs = dict(itertools.pairwise(w[1:]))
    out: dict[str, Any] = {}
    if "src" in attrs:
        out["address"] = attrs["src"]
    if "dev" in attrs:
        out["interface"] = attrs["dev"]
    if "via" in attrs:
        out["gateway"] = attrs["via"]
    item = ifaces.get(out.get("interface", ""))
    if item is None:
        return out
    if family == "ipv4":
        addr = item.get("ipv4")
        if addr and addr.get("address") == out.get("address"):
            out.update(addr)
    else:
        for addr in item.get("ipv6", []):
            if addr["address"] == out.get("address"):
                out.update(addr)
    for key in ("macaddress", "mtu", "type"):
        if key in item:
            out[key] = item[key]
    out["alias"] = out.get("interface", "")
    return out


def nvme(parts: Parts) -> Facts:
    return {"hostnqn": line_of(parts, "/etc/nvme/hostnqn") or ""}


def iscsi(parts: Parts) -> Facts:
    iqn = ""
    for line in (file_of(parts, "/etc/iscsi/initiatorname.iscsi") or "").splitlines():
        if line.startswith("InitiatorName="):
            iqn = line.split("=", 1)[1].strip()
    return {"iscsi_iqn": iqn}
