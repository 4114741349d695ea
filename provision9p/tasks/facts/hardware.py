"""Hardware and virtualization facts (Ansible's `hardware`, `virtual`, `loadavg`,
`fibre_channel_wwn` collectors) from the facts script's parts."""

from __future__ import annotations

import re
from typing import Any

from provision9p.tasks.facts.collect import Facts, Parts, exists_of, file_of, line_of


def memory(parts: Parts) -> Facts:
    info = {}
    for line in (file_of(parts, "/proc/meminfo") or "").splitlines():
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
    text = file_of(parts, "/proc/cpuinfo")
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
        value = line_of(parts, f"/sys/class/dmi/id/{key}")
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
    for line in (file_of(parts, "/proc/mounts") or "").splitlines():
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
    if not any(p.startswith("/sys/block/") for p in exists_of(parts)):
        facts.update(devices={}, device_links={"ids": {}, "labels": {}, "masters": {},
                                               "uuids": {}})
    if not {"/sbin/vgs", "/usr/sbin/vgs"} & exists_of(parts):
        facts["lvm"] = "N/A"
    return facts


def fibre_channel_wwn(parts: Parts) -> Facts:
    """No Fibre Channel HBA in a QEMU lab guest (Ansible reads /sys/class/fc_host)."""
    return {"fibre_channel_wwn": []}


def uptime(parts: Parts) -> Facts:
    words = parts.get("file:/proc/uptime", "").split()
    return {"uptime_seconds": int(float(words[0]))} if words else {}


def loadavg(parts: Parts) -> Facts:
    load = parts.get("file:/proc/loadavg", "").split()
    if len(load) < 3:
        return {}
    return {"loadavg": {"1m": float(load[0]), "5m": float(load[1]), "15m": float(load[2])}}


def virtual(parts: Parts) -> Facts:
    """Ansible's Linux order: containers, Xen, then DMI vendor and product names."""
    have = exists_of(parts)
    guest: list[str] = []
    host: list[str] = []
    vtype = role = "NA"
    product = line_of(parts, "/sys/class/dmi/id/product_name") or ""
    vendor = line_of(parts, "/sys/class/dmi/id/sys_vendor") or ""
    bios = line_of(parts, "/sys/class/dmi/id/bios_vendor") or ""
    cpuinfo = file_of(parts, "/proc/cpuinfo") or ""
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
