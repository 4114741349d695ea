"""One POSIX sh script that prints everything the facts need, in one round trip.

The guest may have no Python (minbase + openssh): the script uses only sh, grep, awk,
coreutils, iproute2 and systemctl, which every provision9p tree has. Each part is framed by a line
`\\037name` after a blank line, so files print unchanged and the host parses them back.
"""

from __future__ import annotations

import re
import shlex

# Files read as they are; a file that does not exist prints no part at all.
FILES = (
    "/etc/os-release", "/usr/lib/os-release", "/etc/debian_version", "/etc/lsb-release",
    "/etc/hosts", "/etc/passwd", "/etc/machine-id", "/var/lib/dbus/machine-id",
    "/etc/resolv.conf", "/etc/timezone", "/proc/meminfo", "/proc/cpuinfo", "/proc/mounts",
    "/proc/cmdline", "/proc/uptime", "/proc/loadavg", "/proc/sys/crypto/fips_enabled",
    "/proc/1/comm", "/sys/fs/selinux/enforce", "/etc/iscsi/initiatorname.iscsi",
    "/etc/nvme/hostnqn",
)
DMI = ("bios_date", "bios_vendor", "bios_version", "board_asset_tag", "board_name",
       "board_serial", "board_vendor", "board_version", "chassis_asset_tag", "chassis_serial",
       "chassis_type", "chassis_vendor", "chassis_version", "product_name", "product_serial",
       "product_uuid", "product_version", "sys_vendor")
# Paths whose existence alone is a fact (package managers, LSMs, container hints).
EXISTS = (
    "/usr/bin/apt-get", "/usr/bin/dnf", "/usr/bin/yum", "/usr/bin/zypper", "/sbin/apk",
    "/usr/bin/pacman", "/sys/kernel/security/apparmor", "/sys/fs/selinux",
    "/usr/lib/python3/dist-packages/selinux", "/usr/bin/python3", "/run/systemd/system",
    "/.dockerenv", "/run/.containerenv", "/proc/xen", "/dev/kvm", "/sbin/capsh",
    "/usr/sbin/capsh", "/sbin/vgs", "/usr/sbin/vgs",
)
NET_ATTRS = ("ifindex", "address", "mtu", "operstate", "flags", "type", "speed")

# Under TCG every process the guest starts costs tens to hundreds of milliseconds, so
# the script reads every file with one grep (-H: each line prefixed by its file's name),
# resolves links with the shell's own `-ef`, takes the time from awk's srand() (POSIX:
# seeded from the time of day) and forks only grep, awk, ip and systemctl.
SCRIPT = r"""
s() { printf '\n\037%s\n' "$1"; }
s env; export -p
export LC_ALL=C
s files; set --
for p in __FILES__ /proc/self/status /proc/modules /proc/sys/kernel/ostype \
    /proc/sys/kernel/hostname /proc/sys/kernel/osrelease /proc/sys/kernel/version \
    /proc/sys/kernel/arch /etc/ssh/ssh_host_*_key.pub __DMI__ __NET__; do
  [ -r "$p" ] && set -- "$@" "$p"
done
grep -aH '' "$@" 2>/dev/null
s exists; for p in __EXISTS__ /sys/block/*; do [ -e "$p" ] && echo "$p"; done
[ / -ef /proc/1/root ] || echo /proc/1/root
s links
for p in /usr/bin/python3.*; do [ /usr/bin/python3 -ef "$p" ] && echo "/usr/bin/python3 $p"; done
[ -r /etc/timezone ] || echo "/etc/localtime $(readlink /etc/localtime)"
for d in /sys/class/net/*; do
  [ -e "$d/device" ] || continue
  for b in /sys/bus/*/devices/*; do [ "$b" -ef "$d/device" ] && echo "$d/device $b"; done
  for m in /sys/module/*; do
    [ "$m" -ef "$d/device/driver/module" ] && echo "$d/device/driver/module $m"
  done
done
s ip; printf 'route get 8.8.8.8\nroute get 2404:6800::\nroute show table local\naddr show\n' |
  ip -o -force -batch - 2>/dev/null
s statfs; set --
while read -r dev mnt fs rest; do
  [ "$fs" = none ] && continue
  case "$dev" in /*|\\*|*:/*) set -- "$@" "$mnt" ;; esac
done < /proc/mounts
[ $# -gt 0 ] && stat -f -c '%n %S %b %a %f %c %d' "$@" 2>/dev/null
s systemd; systemctl --version 2>/dev/null
s dpkg
awk 'BEGIN{srand(); print "time", srand()}
     /^Package: /{p=$2} /^Status: /{s=$4} /^Architecture: /{a=$2} /^Version: /{v=$2}
     /^$/{if (p != "" && s == "installed") print p, v, a; p=""; s=""}
     END{if (p != "" && s == "installed") print p, v, a}' /var/lib/dpkg/status 2>/dev/null
s end
""".replace("__FILES__", " ".join(FILES)) \
    .replace("__DMI__", " ".join(f"/sys/class/dmi/id/{d}" for d in DMI)) \
    .replace("__NET__", " ".join(f"/sys/class/net/*/{a}" for a in NET_ATTRS)) \
    .replace("__EXISTS__", " ".join(EXISTS))


def parse(output: str) -> dict[str, str]:
    """The script's output as the parts the collectors read (collect.py): `file:PATH`
    for each file, and `uname`, `id`, `env`, `net`, `addr`, `route4`, ... as text."""
    raw: dict[str, str] = {}
    for chunk in output.split("\n\037")[1:]:
        name, _, text = chunk.partition("\n")
        raw[name] = text
    if "end" not in raw:
        raise ValueError("the facts script stopped before its end")
    parts: dict[str, str] = {k: raw[k] for k in ("exists", "systemd", "end") if k in raw}
    dpkg = raw.get("dpkg", "").split("\n")
    if dpkg and dpkg[0].startswith("time "):
        parts["date"] = f"{dpkg[0].split()[1]} 0 +0000 UTC\n"
        dpkg = dpkg[1:]
    parts["dpkg"] = "\n".join(dpkg)
    files: dict[str, list[str]] = {}
    for line in raw.get("files", "").splitlines():
        path, sep, text = line.partition(":")
        if sep:
            files.setdefault(path, []).append(text)
    for path, lines in files.items():
        parts[f"file:{path}"] = "\n".join(lines) + "\n"
    links = dict(line.split(" ", 1) for line in raw.get("links", "").splitlines()
                 if " " in line)
    parts["env"] = _env(raw.get("env", ""))
    k = {name: (files.get(f"/proc/sys/kernel/{name}") or [""])[0]
         for name in ("ostype", "hostname", "osrelease", "version")}
    parts["uname"] = "\n".join([k["ostype"], k["hostname"], k["osrelease"], k["version"],
                                (files.get("/proc/sys/kernel/arch") or [""])[0]]) + "\n"
    status = dict(line.split(":", 1) for line in files.get("/proc/self/status", [])
                  if ":" in line)
    uid, gid = status.get("Uid", "").split(), status.get("Gid", "").split()
    if len(uid) >= 2 and len(gid) >= 2:
        name = next((f.split(":")[0] for f in files.get("/etc/passwd", [])
                     if f.split(":")[2:3] == [uid[1]]), uid[1])
        parts["id"] = f"{uid[1]}\n{gid[1]}\n{name}\n{uid[0]}\n{gid[0]}\n"
    parts["nproc"] = str(_count_cpus(status.get("Cpus_allowed_list", "").strip())) + "\n"
    parts["kvm_module"] = "yes\n" if any(
        line.startswith("kvm ") for line in files.get("/proc/modules", [])) else ""
    exists = raw.get("exists", "").split()
    parts["chroot"] = "1:1\n1:2\n" if "/proc/1/root" in exists else "1:1\n1:1\n"
    if "/etc/localtime" in links:
        parts["localtime"] = links["/etc/localtime"]
    if "/usr/bin/python3" in links:
        parts["python"] = links["/usr/bin/python3"]
    parts["net"] = _net(files, links)
    routes: dict[str, list[str]] = {"route4": [], "route6": [], "local4": [], "addr": []}
    for line in raw.get("ip", "").splitlines():
        first = line.split()[:1]
        if not first:
            continue
        if first[0] in ("local", "broadcast", "anycast", "multicast"):
            routes["local4"].append(line)
        elif re.fullmatch(r"\d+:", first[0]):
            routes["addr"].append(line)
        else:
            routes["route6" if ":" in first[0] else "route4"].append(line)
    for key, lines in routes.items():
        parts[key] = "\n".join(lines)
    # IPv6's local table holds exactly the configured addresses (one `ip -6` fewer).
    parts["local6"] = "\n".join(
        f"local {w[3].split('/')[0]} dev {w[1]}" for w in map(str.split, routes["addr"])
        if len(w) > 3 and w[2] == "inet6")
    parts["statfs"] = raw.get("statfs", "")
    return parts


def _env(text: str) -> str:
    """`export -p` (dash: export NAME='value') back to NAME=value items."""
    try:
        words = shlex.split(text)
    except ValueError:
        return ""
    return "".join(w + "\036" for w in words if "=" in w and w != "export")


def _count_cpus(spec: str) -> int:
    """Cpus_allowed_list ("0-3,6") as a count, as nproc gives it."""
    count = 0
    for item in filter(None, spec.split(",")):
        lo, _, hi = item.partition("-")
        count += int(hi or lo) - int(lo) + 1
    return count


def _net(files: dict[str, list[str]], links: dict[str, str]) -> str:
    """One tab-separated row per interface, in the order collect.network reads."""
    rows = []
    names = sorted({p.split("/")[4] for p in files if p.startswith("/sys/class/net/")})
    for name in names:
        def attr(a: str, name: str = name) -> str:
            return (files.get(f"/sys/class/net/{name}/{a}") or [""])[0]
        module = links.get(f"/sys/class/net/{name}/device/driver/module", "")
        device = links.get(f"/sys/class/net/{name}/device", "")
        rows.append("\t".join([name, attr("ifindex"), attr("address"), attr("mtu"),
                               attr("operstate"), attr("flags"), attr("type"),
                               module.rsplit("/", 1)[-1], device.rsplit("/", 1)[-1],
                               attr("speed"), ""]))
    return "".join(row + "\n" for row in rows)
