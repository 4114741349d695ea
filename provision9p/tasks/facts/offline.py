"""The facts script's parts, read from a guest's tree and its lab spec, running nothing.

What the booted guest will print is known offline for most parts: its files are the
tree's, its kernel command line and network are the lab's (QEMU user networking always
gives 10.0.2.15/24 via 10.0.2.2), its CPUs are QEMU's for the lab's accelerator. What
only a running kernel knows (free memory, uptime, the exact MemTotal, DMI versions of the
host's QEMU) is approximated or left out; tests/integration/test_facts.py lists each.
"""

from __future__ import annotations

import re
import stat as stat_mod
import struct
import time
from pathlib import Path

from provision9p import paths
from provision9p.boot.qemu_argv import kernel_cmdline
from provision9p.connect.base import Connection
from provision9p.lab.model import MMIO_MACHINES, GuestSpec
from provision9p.tasks.facts import probe
from provision9p.tasks.facts.collect import Parts

#: Facts a tree cannot know: the host's QEMU and firmware build, the CPU flags QEMU
#: offers, whether the guest kernel will load kvm.
UNKNOWN = ("bios_date", "bios_version", "product_version", "chassis_version",
           "virtualization_tech_host", "flags")
# sshd's environment for a root login (Debian's openssh with pam_env and pam_motd).
_SSHD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# QEMU's TCG `-cpu max` on x86_64 (QEMU 7.2): what /proc/cpuinfo names it.
_TCG_CPU = ("AuthenticAMD", "QEMU TCG CPU version 2.5+")
# QEMU's first NIC gets this MAC unless told otherwise.
_QEMU_MAC = "52:54:00:12:34:56"
_PRODUCTS = {"pc": "Standard PC (i440FX + PIIX, 1996)", "q35": "Standard PC (Q35 + ICH9, 2009)"}


def _read(conn: Connection, path: str) -> str | None:
    """A file's text as the guest reads it (symlinks followed the guest's way)."""
    try:
        real = resolve(conn, path)
        st = conn.stat(real)
        if st is None or not stat_mod.S_ISREG(st.mode):
            return None
        return conn.read_file(real).decode(errors="replace")
    except OSError:
        return None


def _exists(conn: Connection, path: str) -> bool:
    try:
        return conn.stat(path) is not None
    except OSError:  # a component is not a directory
        return False


def resolve(conn: Connection, path: str) -> str:
    """realpath inside the guest: its symlinks, `..` stopping at its root."""
    todo = [c for c in path.split("/") if c]
    done: list[str] = []
    hops = 0
    while todo:
        name = todo.pop(0)
        if name == ".":
            continue
        if name == "..":
            if done:
                done.pop()
            continue
        cur = "/" + "/".join([*done, name])
        st = conn.stat(cur)
        if st is not None and stat_mod.S_ISLNK(st.mode) and hops < 40:
            hops += 1
            target = conn.readlink(cur)
            if target.startswith("/"):
                done = []
            todo = [c for c in target.split("/") if c] + todo
            continue
        done.append(name)
    return "/" + "/".join(done)


def parts(conn: Connection, guest: GuestSpec) -> Parts:
    out: Parts = {}
    for path in probe.FILES:
        if path.startswith(("/proc/", "/sys/")):
            continue
        text = _read(conn, path)
        if text is not None:
            out[f"file:{path}"] = text
    for name in sorted(conn.listdir("/etc/ssh")) if _exists(conn, "/etc/ssh") else []:
        if re.fullmatch(r"ssh_host_\w+_key\.pub", name):
            out[f"file:/etc/ssh/{name}"] = _read(conn, f"/etc/ssh/{name}") or ""
    init = resolve(conn, "/sbin/init")
    systemd = init.endswith("/systemd")
    release = _kernel_release(conn, guest)
    image = _kernel_image(conn, guest, release)
    out["file:/proc/cmdline"] = kernel_cmdline(guest) + "\n"
    out["file:/proc/1/comm"] = ("systemd" if systemd else Path(init).name) + "\n"
    out["file:/proc/sys/crypto/fips_enabled"] = "0\n"
    have = [p for p in probe.EXISTS
            if not p.startswith(("/proc/", "/sys/", "/run/", "/dev/")) and _exists(conn, p)]
    if systemd:
        have.append("/run/systemd/system")
    if image is not None and _apparmor(image, release, out["file:/proc/cmdline"]):
        have.append("/sys/kernel/security/apparmor")
    out["exists"] = "\n".join(have) + "\n"
    hostname = (out.get("file:/etc/hostname") or _read(conn, "/etc/hostname")
                or guest.name).strip()
    version = _kernel_version(image) if image is not None else ""
    out["uname"] = f"Linux\n{hostname}\n{release}\n{version}\n{guest.arch}\n"
    out["id"] = "0\n0\nroot\n0\n0\n"  # the SSH phase logs in as root
    out["file:/proc/self/status"] = "CapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\n"
    out["env"] = _env(out.get("file:/etc/passwd", ""))
    now = time.time()
    out["date"] = f"{int(now)} 0 +0000 UTC\n"
    st = conn.stat("/etc/localtime") if _exists(conn, "/etc/localtime") else None
    if st is not None and stat_mod.S_ISLNK(st.mode):
        out["localtime"] = conn.readlink("/etc/localtime")
    out["dpkg"] = _dpkg(_read(conn, "/var/lib/dpkg/status") or "")
    if _exists(conn, "/usr/bin/python3"):
        out["python"] = resolve(conn, "/usr/bin/python3") + "\n"
    if systemd:
        out["systemd"] = _systemd_version(conn, out["dpkg"])
    out["chroot"] = "1:2\n1:2\n"  # the facts describe the booted guest, not the chroot
    out.update(_hardware(guest))
    out.update(_network(guest))
    fstab = _read(conn, "/etc/fstab") or ""
    out["file:/proc/mounts"] = "".join(
        line + "\n" for line in fstab.splitlines() if line.split()[:1] != ["#"]
        and len(line.split()) >= 4)
    out["nproc"] = f"{guest.cpus}\n"
    out["unknown"] = " ".join(UNKNOWN)
    out["end"] = ""
    return out


def _kernel_release(conn: Connection, guest: GuestSpec) -> str:
    """The one release under /usr/lib/modules (the build installs the guest kernel's)."""
    for base in ("/usr/lib/modules", "/lib/modules"):
        if _exists(conn, base):
            names = sorted(conn.listdir(base))
            if names:
                return names[-1]
    return guest.kernel.image.name if guest.kernel.image else ""


def _kernel_image(conn: Connection, guest: GuestSpec, release: str) -> Path | None:
    """The image that boots: the lab's own image, the tree's /boot, else the kernel
    cache's extracted package."""
    tree = getattr(conn, "tree", None)
    candidates = [guest.kernel.image] if guest.kernel.image is not None else []
    if isinstance(tree, Path):
        candidates.append(tree / "boot" / f"vmlinuz-{release}")
    candidates += sorted((paths.cache_home() / "kernels").glob(f"*/boot/vmlinuz-{release}"))
    return next((p for p in candidates if p.is_file()), None)


def _kernel_version(image: Path) -> str:
    """`uname -v` from the bzImage setup header's kernel_version string (x86 boot
    protocol 2.00+: offset at 0x20e, relative to 0x200): "RELEASE (BUILDER) VERSION"."""
    try:
        with image.open("rb") as fh:
            head = fh.read(0x8000)
    except OSError:
        return ""
    if head[0x38:0x3C] == b"ARM\x64":  # an arm64 Image: not compressed, so the banner is in it
        return _arm64_version(image)
    if head[0x202:0x206] != b"HdrS":
        return ""
    off = struct.unpack_from("<H", head, 0x20E)[0] + 0x200
    text = head[off:off + 512].split(b"\0")[0].decode(errors="replace")
    m = re.match(r"\S+ \(.*?\) (#.*)", text)
    return m.group(1) if m else ""


def _arm64_version(image: Path) -> str:
    """`uname -v` from the "Linux version RELEASE (BUILDER) (COMPILER) VERSION" banner in
    an uncompressed arm64 Image (Debian's arm64 vmlinuz is one). Debian's holds a second
    copy whose VERSION lacks the build number ("# SMP ..."); the one uname shows has it."""
    m = re.search(rb"Linux version [^\n\0]*?\) (#\d+ [^\n\0]*)", image.read_bytes())
    return m.group(1).decode(errors="replace").strip() if m else ""


def _apparmor(image: Path, release: str, cmdline: str) -> bool:
    """Whether the booted kernel enables AppArmor: its config's default LSMs, unless the
    command line turns it off."""
    config = image.with_name(f"config-{release}")
    if "apparmor=0" in cmdline.split() or not config.is_file():
        return False
    text = config.read_text(errors="replace")
    m = re.search(r'^CONFIG_LSM="([^"]*)"', text, re.M)
    if m and "apparmor" not in m.group(1).split(","):
        return False
    return "CONFIG_SECURITY_APPARMOR=y" in text


def _env(passwd: str) -> str:
    home, shell = "/root", "/bin/sh"
    for line in passwd.splitlines():
        f = line.split(":")
        if len(f) >= 7 and f[0] == "root":
            home, shell = f[5], f[6]
    env = {"HOME": home, "LOGNAME": "root", "USER": "root", "SHELL": shell,
           "PATH": _SSHD_PATH, "PWD": home}
    return "\036".join(f"{k}={v}" for k, v in env.items()) + "\036"


def _dpkg(status: str) -> str:
    """The script's dpkg part: `name version arch` of every installed package."""
    lines = []
    for para in status.split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+): ?(.*)$", para, re.M))
        if fields.get("Package") and fields.get("Status", "").endswith(" installed"):
            lines.append(f"{fields['Package']} {fields.get('Version', '')} "
                         f"{fields.get('Architecture', '')}\n")
    return "".join(lines)


def _systemd_version(conn: Connection, dpkg: str) -> str:
    """`systemctl --version` offline: the package's version, and the feature line the
    shared library carries as a constant."""
    version = next((line.split()[1] for line in dpkg.splitlines()
                    if line.split()[:1] == ["systemd"]), "")
    m = re.match(r"(?:\d+:)?(\d+)", version)
    if not m:
        return ""
    features = ""
    for base in ("/usr/lib/x86_64-linux-gnu/systemd", "/usr/lib/aarch64-linux-gnu/systemd",
                 "/usr/lib/s390x-linux-gnu/systemd", "/usr/lib/systemd"):
        lib = f"{base}/libsystemd-shared-{m.group(1)}.so"
        if _exists(conn, lib):
            found = re.search(rb"[+-]PAM [+-]AUDIT [^\0]*", conn.read_file(lib))
            features = found.group().decode() if found else ""
            break
    return f"systemd {m.group(1)} ({version})\n{features}\n"


def _hardware(guest: GuestSpec) -> Parts:
    """QEMU's CPUs and DMI; memory as the lab sets it. `-smp N` is one socket of N cores on
    QEMU 6.2 and later machine types (they prefer cores to sockets; a booted 2-CPU guest's
    cpuinfo says so), so processor_count is 1 and processor_cores N."""
    out: Parts = {}
    vendor, model = _TCG_CPU if guest.accel != "kvm" else _host_cpu()
    if guest.arch == "aarch64":
        # arm64's cpuinfo names no model; its Features line (flags) is unknowable offline
        out["file:/proc/cpuinfo"] = "".join(f"processor\t: {i}\n\n" for i in range(guest.cpus))
    if guest.arch == "x86_64":
        out["file:/proc/cpuinfo"] = "".join(
            f"processor\t: {i}\nvendor_id\t: {vendor}\nmodel name\t: {model}\n"
            f"physical id\t: 0\nsiblings\t: {guest.cpus}\ncpu cores\t: {guest.cpus}\n\n"
            for i in range(guest.cpus))
        if guest.machine not in MMIO_MACHINES:
            product = _PRODUCTS.get(guest.machine.split("-")[0], "")
            if guest.machine.startswith("pc-q35"):
                product = _PRODUCTS["q35"]
            for key, value in (("sys_vendor", "QEMU"), ("product_name", product),
                               ("chassis_vendor", "QEMU"), ("chassis_type", "1"),
                               ("bios_vendor", "SeaBIOS")):
                out[f"file:/sys/class/dmi/id/{key}"] = value + "\n"
    # The guest's MemTotal is this less what the kernel keeps; only booting tells.
    kib = guest.memory_mib * 1024
    out["file:/proc/meminfo"] = (f"MemTotal: {kib} kB\nMemFree: {kib} kB\nBuffers: 0 kB\n"
                                 "Cached: 0 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n")
    out["file:/proc/uptime"] = "0.00 0.00\n"
    out["file:/proc/loadavg"] = "0.00 0.00 0.00 1/1 1\n"
    return out


def _host_cpu() -> tuple[str, str]:
    """`-cpu host` under KVM shows the host's CPU."""
    vendor = model = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return vendor, model
    for line in text.splitlines():
        key, _, value = (x.strip() for x in line.partition(":"))
        if key == "vendor_id" and not vendor:
            vendor = value
        elif key == "model name" and not model:
            model = value
    return vendor, model


def _network(guest: GuestSpec) -> Parts:
    """QEMU user networking as guest_setup configures it: eth0 10.0.2.15/24 via
    10.0.2.2; the NIC is the virtio device after the 9P shares."""
    nic = f"virtio{len(guest.all_shares)}"
    return {
        "net": ("lo\t1\t00:00:00:00:00:00\t65536\tunknown\t0x9\t772\t\t\t\t\n"
                f"eth0\t2\t{_QEMU_MAC}\t1500\tup\t0x1003\t1\tvirtio_net\t{nic}\t-1\t\n"),
        "addr": ("1: lo    inet 127.0.0.1/8 scope host lo\n"
                 "1: lo    inet6 ::1/128 scope host \n"
                 "2: eth0    inet 10.0.2.15/24 scope global eth0\n"),
        "route4": "8.8.8.8 via 10.0.2.2 dev eth0 src 10.0.2.15 uid 0\n",
        "route6": "",
        "local4": ("local 10.0.2.15 dev eth0 proto kernel scope host src 10.0.2.15\n"
                   "local 127.0.0.0/8 dev lo proto kernel scope host src 127.0.0.1\n"
                   "local 127.0.0.1 dev lo proto kernel scope host src 127.0.0.1\n"),
        "local6": "local ::1 dev lo proto kernel metric 0 pref medium\n",
    }
