"""Ansible's facts, under its names and value shapes, from the parts of the facts script.

Each collector takes the parts ({name: text}, see probe.py) and returns its facts; a part
that is missing leaves its facts out. The offline tree connection feeds the same
collectors with parts it reads from the tree, so both phases agree by construction.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import re
import shlex
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Parts = dict[str, str]
Facts = dict[str, Any]


def _file(parts: Parts, path: str) -> str | None:
    return parts.get(f"file:{path}")


def _line(parts: Parts, path: str) -> str | None:
    text = _file(parts, path)
    return None if text is None else text.strip()


def _keyvals(text: str) -> dict[str, str]:
    """os-release / lsb-release: KEY="value" lines."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            try:
                words = shlex.split(value)
            except ValueError:
                words = [value]
            out[key.strip()] = " ".join(words)
    return out


def distribution(parts: Parts) -> Facts:
    path = "/etc/os-release" if _file(parts, "/etc/os-release") is not None \
        else "/usr/lib/os-release"
    text = _file(parts, path)
    if text is None:
        return {"distribution": "NA", "distribution_release": "NA",
                "distribution_version": "NA", "os_family": "NA"}
    osr = _keyvals(text)
    name = osr.get("NAME", "NA").split()[0] if osr.get("NAME") else osr.get("ID", "NA")
    release = osr.get("VERSION_CODENAME") or "NA"
    version = osr.get("VERSION_ID", "NA")
    facts: Facts = {"distribution": name, "distribution_release": release}
    debian = _line(parts, "/etc/debian_version")
    if name == "Debian":
        # Ansible takes the point release from /etc/debian_version (12.5, not 12).
        if debian and re.fullmatch(r"\d+(\.\d+)*", debian):
            version = debian
        elif debian and "/" in debian:  # testing/sid: "trixie/sid"
            release = release if release != "NA" else debian.split("/")[0]
        facts.update(distribution_file_path=path, distribution_file_variety="Debian",
                     distribution_file_parsed=True, distribution_release=release)
    facts["distribution_version"] = version
    major, _, minor = version.partition(".")
    facts["distribution_major_version"] = major if version != "NA" else "NA"
    if minor:
        facts["distribution_minor_version"] = minor.split(".")[0]
    family = {"Debian": "Debian", "Ubuntu": "Debian", "Kali": "Debian", "Devuan": "Debian",
              "Raspbian": "Debian", "Linux Mint": "Debian"}.get(name)
    like = osr.get("ID_LIKE", "").split()
    facts["os_family"] = family or ("Debian" if "debian" in like else name)
    return facts


def lsb(parts: Parts) -> Facts:
    """Only /etc/lsb-release: the lsb_release program is not in a minbase guest."""
    text = _file(parts, "/etc/lsb-release")
    out: dict[str, str] = {}
    if text:
        kv = _keyvals(text)
        for key, name in (("DISTRIB_ID", "id"), ("DISTRIB_RELEASE", "release"),
                          ("DISTRIB_DESCRIPTION", "description"),
                          ("DISTRIB_CODENAME", "codename")):
            if key in kv:
                out[name] = kv[key]
        if "release" in out:
            out["major_release"] = out["release"].split(".")[0]
    return {"lsb": out}


def _getfqdn(hostname: str, hosts: str) -> str:
    """socket.getfqdn() as the guest's resolver answers it from /etc/hosts (nsswitch
    `files` first; the lab's DNS forwarder knows no guest name)."""
    rows = []
    for line in hosts.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2:
            rows.append(words)
    addr = next((r[0] for r in rows if hostname in r[1:]), None)
    if addr is None:
        return hostname
    names = next(r[1:] for r in rows if r[0] == addr)
    return next((n for n in names if "." in n), names[0])


def platform(parts: Parts) -> Facts:
    uname = parts.get("uname", "").splitlines()
    if len(uname) < 5:
        return {}
    system, node, release, version, machine = uname[:5]
    fqdn = _getfqdn(node, _file(parts, "/etc/hosts") or "")
    facts: Facts = {
        "system": system, "kernel": release, "kernel_version": version,
        "machine": machine, "nodename": node, "hostname": node.split(".")[0],
        "fqdn": fqdn, "domain": ".".join(fqdn.split(".")[1:]),
        "architecture": {"i686": "i386", "i586": "i386"}.get(machine, machine),
    }
    bits = "32" if machine in ("i386", "i586", "i686", "armv7l", "armv6l") else "64"
    facts["userspace_bits"] = bits
    if machine == "x86_64":
        facts["userspace_architecture"] = "x86_64" if bits == "64" else "i386"
    if "python_version" in (py := python(parts)):
        facts["python_version"] = py["python_version"]
    machine_id = _line(parts, "/var/lib/dbus/machine-id") or \
        _line(parts, "/etc/machine-id")
    if machine_id:
        facts["machine_id"] = machine_id
    return facts


def user(parts: Parts) -> Facts:
    ids = parts.get("id", "").split()
    if len(ids) < 5:
        return {}
    uid, gid, name, ruid, rgid = ids[:5]
    facts: Facts = {"user_id": name, "effective_user_id": int(uid),
                    "effective_group_id": int(gid), "real_user_id": int(ruid),
                    "real_group_id": int(rgid)}
    for line in (_file(parts, "/etc/passwd") or "").splitlines():
        f = line.split(":")
        if len(f) >= 7 and f[0] == name:
            facts.update(user_uid=int(f[2]), user_gid=int(f[3]), user_gecos=f[4],
                         user_dir=f[5], user_shell=f[6])
            break
    return facts


def env(parts: Parts) -> Facts:
    out = {}
    for item in parts.get("env", "").split("\036"):
        key, sep, value = item.partition("=")
        if sep and key:
            out[key] = value
    return {"env": out}


def date_time(parts: Parts) -> Facts:
    words = parts.get("date", "").split()
    if len(words) < 3:
        return {}
    epoch = int(words[0]) + int(words[1][:6].ljust(6, "0")) / 1e6
    tzname = _tzname(parts)
    zone: dt.tzinfo
    try:
        zone = ZoneInfo(tzname) if tzname else _fixed(words[2], words[3:])
    except (ZoneInfoNotFoundError, ValueError):
        zone = _fixed(words[2], words[3:])
    now = dt.datetime.fromtimestamp(epoch, zone)
    utc = dt.datetime.fromtimestamp(epoch, dt.UTC)
    jan, jul = (dt.datetime(now.year, m, 1, tzinfo=zone) for m in (1, 7))
    dst = next((d.tzname() for d in (jan, jul) if d.dst()), now.tzname())
    return {"date_time": {
        "year": now.strftime("%Y"), "month": now.strftime("%m"),
        "weekday": now.strftime("%A"), "weekday_number": now.strftime("%w"),
        "weeknumber": now.strftime("%W"), "day": now.strftime("%d"),
        "hour": now.strftime("%H"), "minute": now.strftime("%M"),
        "second": now.strftime("%S"), "epoch": str(int(epoch)), "epoch_int": str(int(epoch)),
        "date": now.strftime("%Y-%m-%d"), "time": now.strftime("%H:%M:%S"),
        "iso8601_micro": utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "iso8601": utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "iso8601_basic": now.strftime("%Y%m%dT%H%M%S%f"),
        "iso8601_basic_short": now.strftime("%Y%m%dT%H%M%S"),
        "tz": now.tzname() or "", "tz_dst": dst or "", "tz_offset": now.strftime("%z"),
    }}


def _tzname(parts: Parts) -> str | None:
    name = _line(parts, "/etc/timezone")
    link = parts.get("localtime", "").strip()
    if not name and "zoneinfo/" in link:
        name = link.split("zoneinfo/", 1)[1]
    return name or None


def _fixed(offset: str, name: list[str]) -> dt.tzinfo:
    sign = -1 if offset.startswith("-") else 1
    delta = dt.timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5]))
    return dt.timezone(sign * delta, name[0]) if name else dt.timezone(sign * delta)


def dns(parts: Parts) -> Facts:
    text = _file(parts, "/etc/resolv.conf")
    if text is None:
        return {}
    out: dict[str, Any] = {}
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        key, args = words[0], words[1:]
        if key == "nameserver" and args:
            out.setdefault("nameservers", []).append(args[0])
        elif key == "domain" and args:
            out["domain"] = args[0]
        elif key == "search":
            out["search"] = args
        elif key == "sortlist":
            out["sortlist"] = args
        elif key == "options":
            opts = out.setdefault("options", {})
            for opt in args:
                name, sep, value = opt.partition(":")
                opts[name] = value if sep else True
    return {"dns": out}


def cmdline(parts: Parts) -> Facts:
    text = _line(parts, "/proc/cmdline")
    if text is None:
        return {}
    plain: dict[str, Any] = {}
    proc: dict[str, Any] = {}
    for word in shlex.split(text, posix=False):
        key, sep, value = word.partition("=")
        val: Any = value if sep else True
        plain[key] = val
        if key in proc:
            proc[key] = (proc[key] if isinstance(proc[key], list) else [proc[key]]) + [val]
        else:
            proc[key] = val
    return {"cmdline": plain, "proc_cmdline": proc}


def _exists(parts: Parts) -> set[str]:
    return set(parts.get("exists", "").split())


def apparmor(parts: Parts) -> Facts:
    return {"apparmor": {"status": "enabled" if "/sys/kernel/security/apparmor"
                         in _exists(parts) else "disabled"}}


def fips(parts: Parts) -> Facts:
    return {"fips": _line(parts, "/proc/sys/crypto/fips_enabled") == "1"}


def selinux(parts: Parts) -> Facts:
    have = _exists(parts)
    selinux: dict[str, Any] = {"status": "disabled"}
    if "/sys/fs/selinux" in have and _line(parts, "/sys/fs/selinux/enforce") is not None:
        enforce = _line(parts, "/sys/fs/selinux/enforce")
        selinux = {"status": "enabled",
                   "mode": "enforcing" if enforce == "1" else "permissive"}
    return {
        "selinux": selinux,
        # Ansible reaches libselinux through ctypes when python3-selinux is missing.
        "selinux_python_present": "/usr/lib/python3/dist-packages/selinux" in have
        or "libselinux1" in packages(parts),
    }


def pkg_mgr(parts: Parts) -> Facts:
    have = _exists(parts)
    return {"pkg_mgr": next((name for path, name in (
        ("/usr/bin/apt-get", "apt"), ("/usr/bin/dnf", "dnf"), ("/usr/bin/yum", "yum"),
        ("/usr/bin/zypper", "zypper"), ("/sbin/apk", "apk"), ("/usr/bin/pacman", "pacman"))
        if path in have), "unknown")}


def service_mgr(parts: Parts) -> Facts:
    comm = _line(parts, "/proc/1/comm") or ""
    booted = comm == "systemd" or "/run/systemd/system" in _exists(parts)
    return {"service_mgr": "systemd" if booted else comm or "service"}


def systemd(parts: Parts) -> Facts:
    lines = parts.get("systemd", "").splitlines()
    if service_mgr(parts)["service_mgr"] != "systemd" or len(lines) < 2 \
            or not lines[0].startswith("systemd "):
        return {}
    return {"systemd": {"version": int(lines[0].split()[1]), "features": lines[1]}}


def caps(parts: Parts) -> Facts:
    """Ansible asks capsh; a process holding every capability reads as `=ep`."""
    if not {"/sbin/capsh", "/usr/sbin/capsh"} & _exists(parts):
        return {}
    status = dict(line.split(":", 1) for line in
                  (_file(parts, "/proc/self/status") or "").splitlines() if ":" in line)
    eff, bnd = status.get("CapEff", "").strip(), status.get("CapBnd", "").strip()
    if not eff or eff != bnd:
        return {}
    return {"system_capabilities_enforced": "False", "system_capabilities": []}


def local(parts: Parts) -> Facts:
    """No /etc/ansible/facts.d scripts are run: provision9p has no local facts."""
    return {"local": {}}


def chroot(parts: Parts) -> Facts:
    ids = parts.get("chroot", "").split()
    return {"is_chroot": len(ids) == 2 and ids[0] != ids[1]}


def ssh_keys(parts: Parts) -> Facts:
    facts: Facts = {}
    for name, text in parts.items():
        m = re.fullmatch(r"file:/etc/ssh/ssh_host_(\w+)_key\.pub", name)
        words = text.split()
        if m and len(words) >= 2:
            facts[f"ssh_host_key_{m.group(1)}_public"] = words[1]
            facts[f"ssh_host_key_{m.group(1)}_public_keytype"] = words[0]
    return facts


def packages(parts: Parts) -> dict[str, tuple[str, str]]:
    """{name: (version, arch)} of the installed packages, from the dpkg part."""
    out = {}
    for line in parts.get("dpkg", "").splitlines():
        words = line.split()
        if len(words) == 3:
            out[words[0]] = (words[1], words[2])
    return out


def python(parts: Parts) -> Facts:
    """From the interpreter's Debian package, so no Python has to run (nor exist)."""
    target = parts.get("python", "").strip()
    m = re.search(r"python(\d+)\.(\d+)$", target)
    if "/usr/bin/python3" not in _exists(parts) or not m:
        return {}
    pkgs = packages(parts)
    deb = pkgs.get(f"python{m.group(1)}.{m.group(2)}-minimal", ("", ""))[0]
    v = re.match(r"(\d+)\.(\d+)\.(\d+)", deb.split(":")[-1])
    if not v:
        return {}
    major, minor, micro = (int(x) for x in v.groups())
    return {"python_version": f"{major}.{minor}.{micro}", "python": {
        "executable": "/usr/bin/python3", "has_sslcontext": True, "type": "cpython",
        "version": {"major": major, "minor": minor, "micro": micro,
                    "releaselevel": "final", "serial": 0},
        "version_info": [major, minor, micro, "final", 0]}}


# --- hardware ------------------------------------------------------------------------

def memory(parts: Parts) -> Facts:
    info = {}
    for line in (_file(parts, "/proc/meminfo") or "").splitlines():
        key, _, rest = line.partition(":")
        if rest.split():
            info[key] = int(rest.split()[0]) // 1024
    if "MemTotal" not in info:
        return {}
    total, free = info["MemTotal"], info.get("MemFree", 0)
    nocache = free + info.get("Buffers", 0) + info.get("Cached", 0)
    swap_total, swap_free = info.get("SwapTotal", 0), info.get("SwapFree", 0)
    return {"memtotal_mb": total, "memfree_mb": free, "swaptotal_mb": swap_total,
            "swapfree_mb": swap_free, "memory_mb": {
                "real": {"total": total, "used": total - free, "free": free},
                "nocache": {"free": nocache, "used": total - nocache},
                "swap": {"total": swap_total, "free": swap_free,
                         "used": swap_total - swap_free,
                         "cached": info.get("SwapCached", 0)}}}


def processor(parts: Parts) -> Facts:
    text = _file(parts, "/proc/cpuinfo")
    if text is None:
        return {}
    procs: list[str] = []
    sockets: dict[str, int] = {}
    siblings = cores = 0
    count = 0
    phys = "0"
    flags: list[str] = []
    for line in text.splitlines():
        key, _, value = (x.strip() for x in line.partition(":"))
        if key == "processor":
            procs.append(value)
            count += 1
        elif key in ("vendor_id", "model name", "Processor", "cpu", "Hardware"):
            procs.append(value)
        elif key == "physical id":
            sockets.setdefault(value, 0)
            phys = value
        elif key == "cpu cores":
            cores = int(value)
            sockets[phys] = cores
        elif key == "siblings":
            siblings = int(value)
        elif key in ("flags", "Features") and not flags:
            flags = value.split()
    count_sockets = len(sockets) or count
    per_socket = cores or 1
    threads = siblings // per_socket if siblings and cores else 1
    facts: Facts = {"processor": procs, "processor_count": count_sockets,
                    "processor_cores": per_socket, "processor_threads_per_core": threads,
                    "processor_vcpus": threads * per_socket * count_sockets}
    nproc = parts.get("nproc", "").strip()
    facts["processor_nproc"] = int(nproc) if nproc.isdigit() else facts["processor_vcpus"]
    if flags:
        facts["flags"] = flags
    return facts


def dmi(parts: Parts) -> Facts:
    facts: Facts = {}
    names = {"sys_vendor": "system_vendor", "chassis_type": "form_factor"}
    for key in ("bios_date", "bios_vendor", "bios_version", "board_asset_tag", "board_name",
                "board_serial", "board_vendor", "board_version", "chassis_asset_tag",
                "chassis_serial", "chassis_vendor", "chassis_version", "product_name",
                "product_serial", "product_uuid", "product_version", "sys_vendor",
                "chassis_type"):
        value = _line(parts, f"/sys/class/dmi/id/{key}")
        facts[names.get(key, key)] = value or "NA"
    if facts["form_factor"] != "NA":
        facts["form_factor"] = _FORM_FACTORS.get(facts["form_factor"], "unknown")
    return facts


# SMBIOS chassis types (DMTF DSP0134 7.4.1), as Ansible names them.
_FORM_FACTORS = {str(i): name for i, name in enumerate((
    "Unknown", "Other", "Unknown", "Desktop", "Low Profile Desktop", "Pizza Box",
    "Mini Tower", "Tower", "Portable", "Laptop", "Notebook", "Hand Held", "Docking Station",
    "All In One", "Sub Notebook", "Space-saving", "Lunch Box", "Main Server Chassis",
    "Expansion Chassis", "Sub Chassis", "Bus Expansion Chassis", "Peripheral Chassis",
    "RAID Chassis", "Rack Mount Chassis", "Sealed-case PC", "Multi-system",
    "CompactPCI", "AdvancedTCA", "Blade", "Blade Enclosure", "Tablet", "Convertible",
    "Detachable", "IoT Gateway", "Embedded PC", "Mini PC", "Stick PC"))}


def mounts(parts: Parts) -> Facts:
    """Ansible lists only mounts of a device path or a network export (9P tags are not)."""
    rows = []
    for line in (_file(parts, "/proc/mounts") or "").splitlines():
        w = line.split()
        if len(w) >= 6 and (w[0].startswith(("/", "\\")) or ":/" in w[0]) \
                and w[2] != "none":
            rows.append(w)
    sizes = {}
    for line in parts.get("statfs", "").splitlines():
        w = line.split()
        if len(w) == 7:
            sizes[w[0]] = [int(x) for x in w[1:]]
    out = []
    for w in rows:
        item: dict[str, Any] = {
            "mount": _unescape(w[1]), "device": _unescape(w[0]), "fstype": w[2],
            "options": w[3], "dump": int(w[4]), "passno": int(w[5]), "uuid": "N/A"}
        if w[1] in sizes:
            bsize, blocks, avail, free, files, ffree = sizes[w[1]]
            item.update(size_total=bsize * blocks, size_available=bsize * avail,
                        block_size=bsize, block_total=blocks, block_available=avail,
                        block_used=blocks - free, inode_total=files, inode_available=ffree,
                        inode_used=files - ffree)
        out.append(item)
    return {"mounts": out}


def _unescape(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def devices(parts: Parts) -> Facts:
    """A 9P-root guest has no block device; with one, devices are left out (not read)."""
    facts: Facts = {}
    if not any(p.startswith("/sys/block/") for p in _exists(parts)):
        facts.update(devices={}, device_links={"ids": {}, "labels": {}, "masters": {},
                                               "uuids": {}})
    if not {"/sbin/vgs", "/usr/sbin/vgs"} & _exists(parts):
        facts["lvm"] = "N/A"
    return facts


def fibre_channel_wwn(parts: Parts) -> Facts:
    """No Fibre Channel HBA in a QEMU lab guest (Ansible reads /sys/class/fc_host)."""
    return {"fibre_channel_wwn": []}


def nvme(parts: Parts) -> Facts:
    return {"hostnqn": _line(parts, "/etc/nvme/hostnqn") or ""}


def iscsi(parts: Parts) -> Facts:
    iqn = ""
    for line in (_file(parts, "/etc/iscsi/initiatorname.iscsi") or "").splitlines():
        if line.startswith("InitiatorName="):
            iqn = line.split("=", 1)[1].strip()
    return {"iscsi_iqn": iqn}


def uptime(parts: Parts) -> Facts:
    words = parts.get("file:/proc/uptime", "").split()
    return {"uptime_seconds": int(float(words[0]))} if words else {}


def loadavg(parts: Parts) -> Facts:
    load = parts.get("file:/proc/loadavg", "").split()
    if len(load) < 3:
        return {}
    return {"loadavg": {"1m": float(load[0]), "5m": float(load[1]), "15m": float(load[2])}}


# --- network -------------------------------------------------------------------------

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
        _addr_line(line, ifaces, all4, all6)
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


def _addr_line(line: str, ifaces: dict[str, dict[str, Any]], all4: list[str],
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


# --- virtualization ------------------------------------------------------------------

def virtual(parts: Parts) -> Facts:
    """Ansible's Linux order: containers, Xen, then DMI vendor and product names."""
    have = _exists(parts)
    guest: list[str] = []
    host: list[str] = []
    vtype = role = "NA"
    product = _line(parts, "/sys/class/dmi/id/product_name") or ""
    vendor = _line(parts, "/sys/class/dmi/id/sys_vendor") or ""
    bios = _line(parts, "/sys/class/dmi/id/bios_vendor") or ""
    cpuinfo = _file(parts, "/proc/cpuinfo") or ""
    if "/.dockerenv" in have:
        vtype, role, guest = "docker", "guest", ["docker"]
    elif "/run/.containerenv" in have:
        vtype, role, guest = "podman", "guest", ["podman"]
    elif "/proc/xen" in have:
        vtype, role, guest = "xen", "guest", ["xen"]
    elif product in ("KVM", "KVM Server", "Bochs", "AHV") or vendor == "QEMU" \
            or bios == "Amazon EC2" or "QEMU" in cpuinfo:
        vtype, role, guest = "kvm", "guest", ["kvm"]
    elif product.startswith("VMware"):
        vtype, role, guest = "VMware", "guest", ["VMware"]
    elif bios == "innotek GmbH" or product == "VirtualBox":
        vtype, role, guest = "virtualbox", "guest", ["virtualbox"]
    if parts.get("kvm_module", "").strip() == "yes":
        host.append("kvm")
        if role == "NA":
            vtype, role = "kvm", "host"
    return {"virtualization_type": vtype, "virtualization_role": role,
            "virtualization_tech_guest": guest, "virtualization_tech_host": host}


Collector = Callable[[Parts], Facts]

#: Ansible's fact collectors by name (what gather_subset names), each as ours.
COLLECTORS: dict[str, tuple[Collector, ...]] = {
    "apparmor": (apparmor,), "caps": (caps,), "cmdline": (cmdline,),
    "date_time": (date_time,), "distribution": (distribution,), "dns": (dns,),
    "env": (env,), "fips": (fips,), "local": (local,), "lsb": (lsb,), "pkg_mgr": (pkg_mgr,),
    "platform": (platform,), "python": (python,), "selinux": (selinux,),
    "service_mgr": (service_mgr,), "ssh_pub_keys": (ssh_keys,), "user": (user,),
    "chroot": (chroot,), "systemd": (systemd,), "loadavg": (loadavg,),
    "hardware": (memory, processor, dmi, mounts, uptime, devices),
    "network": (network,), "virtual": (virtual,), "iscsi": (iscsi,), "nvme": (nvme,),
    "fibre_channel_wwn": (fibre_channel_wwn,),
    "facter": (), "ohai": (),  # those tools are not in a lab guest: nothing to add
}
#: Ansible's minimal subset (the setup module's), gathered unless `!min`.
MIN = frozenset({"apparmor", "caps", "cmdline", "date_time", "distribution", "dns", "env",
                 "fips", "local", "lsb", "pkg_mgr", "platform", "python", "selinux",
                 "service_mgr", "ssh_pub_keys", "user"})
