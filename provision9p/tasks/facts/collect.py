"""Ansible's facts, under its names and value shapes, from the parts of the facts script.

Each collector takes the parts ({name: text}, see probe.py) and returns its facts; a part
that is missing leaves its facts out. The offline tree connection feeds the same
collectors with parts it reads from the tree, so both phases agree by construction.
This module: the system facts (Ansible's minimal subset and its neighbours) and the
helpers; hardware.py and network.py hold the rest.
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Parts = dict[str, str]
Facts = dict[str, Any]


def file_of(parts: Parts, path: str) -> str | None:
    return parts.get(f"file:{path}")


def line_of(parts: Parts, path: str) -> str | None:
    text = file_of(parts, path)
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
    path = "/etc/os-release" if file_of(parts, "/etc/os-release") is not None \
        else "/usr/lib/os-release"
    text = file_of(parts, path)
    if text is None:
        return {"distribution": "NA", "distribution_release": "NA",
                "distribution_version": "NA", "os_family": "NA"}
    osr = _keyvals(text)
    name = osr.get("NAME", "NA").split()[0] if osr.get("NAME") else osr.get("ID", "NA")
    release = osr.get("VERSION_CODENAME") or "NA"
    version = osr.get("VERSION_ID", "NA")
    facts: Facts = {"distribution": name, "distribution_release": release}
    debian = line_of(parts, "/etc/debian_version")
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
    text = file_of(parts, "/etc/lsb-release")
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
    fqdn = _getfqdn(node, file_of(parts, "/etc/hosts") or "")
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
    machine_id = line_of(parts, "/var/lib/dbus/machine-id") or \
        line_of(parts, "/etc/machine-id")
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
    for line in (file_of(parts, "/etc/passwd") or "").splitlines():
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
    name = line_of(parts, "/etc/timezone")
    link = parts.get("localtime", "").strip()
    if not name and "zoneinfo/" in link:
        name = link.split("zoneinfo/", 1)[1]
    return name or None


def _fixed(offset: str, name: list[str]) -> dt.tzinfo:
    sign = -1 if offset.startswith("-") else 1
    delta = dt.timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5]))
    return dt.timezone(sign * delta, name[0]) if name else dt.timezone(sign * delta)


def dns(parts: Parts) -> Facts:
    text = file_of(parts, "/etc/resolv.conf")
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
    text = line_of(parts, "/proc/cmdline")
    if text is None:
        return {}
    plain: dict[str, Any] = {}
    proc: dict[str, Any] = {}
    for word in shlex.split(text, posix=False):
        key, sep, value = word.partition("=")
        val: Any = value if sep else True
        plain[key] = val
        # as Ansible's: a repeated key=value gathers a list; a repeated bare flag stays True
        if sep and key in proc:
            proc[key] = (proc[key] if isinstance(proc[key], list) else [proc[key]]) + [val]
        else:
            proc[key] = val
    return {"cmdline": plain, "proc_cmdline": proc}


def exists_of(parts: Parts) -> set[str]:
    return set(parts.get("exists", "").split())


def apparmor(parts: Parts) -> Facts:
    return {"apparmor": {"status": "enabled" if "/sys/kernel/security/apparmor"
                         in exists_of(parts) else "disabled"}}


def fips(parts: Parts) -> Facts:
    return {"fips": line_of(parts, "/proc/sys/crypto/fips_enabled") == "1"}


def selinux(parts: Parts) -> Facts:
    have = exists_of(parts)
    selinux: dict[str, Any] = {"status": "disabled"}
    if "/sys/fs/selinux" in have and line_of(parts, "/sys/fs/selinux/enforce") is not None:
        enforce = line_of(parts, "/sys/fs/selinux/enforce")
        selinux = {"status": "enabled",
                   "mode": "enforcing" if enforce == "1" else "permissive"}
    return {
        "selinux": selinux,
        # Ansible reaches libselinux through ctypes when python3-selinux is missing.
        "selinux_python_present": "/usr/lib/python3/dist-packages/selinux" in have
        or "libselinux1" in packages(parts),
    }


def pkg_mgr(parts: Parts) -> Facts:
    have = exists_of(parts)
    return {"pkg_mgr": next((name for path, name in (
        ("/usr/bin/apt-get", "apt"), ("/usr/bin/dnf", "dnf"), ("/usr/bin/yum", "yum"),
        ("/usr/bin/zypper", "zypper"), ("/sbin/apk", "apk"), ("/usr/bin/pacman", "pacman"))
        if path in have), "unknown")}


def service_mgr(parts: Parts) -> Facts:
    comm = line_of(parts, "/proc/1/comm") or ""
    booted = comm == "systemd" or "/run/systemd/system" in exists_of(parts)
    return {"service_mgr": "systemd" if booted else comm or "service"}


def systemd(parts: Parts) -> Facts:
    lines = parts.get("systemd", "").splitlines()
    if service_mgr(parts)["service_mgr"] != "systemd" or len(lines) < 2 \
            or not lines[0].startswith("systemd "):
        return {}
    return {"systemd": {"version": int(lines[0].split()[1]), "features": lines[1]}}


def caps(parts: Parts) -> Facts:
    """Ansible asks capsh; a process holding every capability reads as `=ep`."""
    if not {"/sbin/capsh", "/usr/sbin/capsh"} & exists_of(parts):
        return {}
    status = dict(line.split(":", 1) for line in
                  (file_of(parts, "/proc/self/status") or "").splitlines() if ":" in line)
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
    if "/usr/bin/python3" not in exists_of(parts) or not m:
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
