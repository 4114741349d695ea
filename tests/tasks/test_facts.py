"""Facts: the probe script run for real on this host, the offline reading of a tree, the
subset rules, and the setup / service_facts / package_facts modules."""

from __future__ import annotations

import getpass
import os
import platform
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from provision9p.connect.base import RunResult
from provision9p.connect.tree import TreeConnection
from provision9p.errors import TaskError
from provision9p.lab import load_lab
from provision9p.lab.model import GuestSpec
from provision9p.rootfs.metadata import open_store
from provision9p.tasks.facts import (
    COLLECTORS,
    MIN,
    collect,
    gather_facts,
    hardware,
    network,
    offline,
    probe,
    resolve_subset,
)
from provision9p.tasks.modules import MODULES, ModuleContext, check_args


class HostConnection:
    """This host as a booted guest: the probe script runs here for real."""

    phase = "ssh"
    guest = "host"

    def __init__(self) -> None:
        self.runs = 0

    def run(self, command: str | list[str], **_: Any) -> RunResult:
        self.runs += 1
        proc = subprocess.run(command, shell=isinstance(command, str), capture_output=True,
                              text=True)
        return RunResult(proc.returncode, proc.stdout, proc.stderr)

    def read_file(self, path: str) -> bytes:
        return Path(path).read_bytes()


@pytest.fixture
def guest(tmp_path: Path) -> GuestSpec:
    lab = tmp_path / "lab.yml"
    lab.write_text("name: f\nguests:\n  web:\n    memory: 1024\n    cpus: 2\n")
    return load_lab(lab).guest("web")


OS_RELEASE = ('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
              'VERSION_ID="12"\nVERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\n'
              "ID=debian\n")
STATUS = ("Package: openssh-server\nStatus: install ok installed\nSection: net\n"
          "Architecture: amd64\nVersion: 1:9.2p1-2+deb12u3\n\n"
          "Package: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\n"
          "Version: 1.0\n\n"
          "Package: python3.11-minimal\nStatus: install ok installed\nSection: python\n"
          "Architecture: amd64\nVersion: 3.11.2-6+deb12u6\n\n"
          "Package: systemd\nStatus: install ok installed\nSection: admin\n"
          "Architecture: amd64\nVersion: 252.39-1~deb12u1\n")


@pytest.fixture(params=["passthrough", "mapped-xattr"])
def tree(tmp_path: Path, request: pytest.FixtureRequest) -> TreeConnection:
    """A small Debian-shaped tree, merged /usr (links) included, in either store."""
    root = tmp_path / "tree"
    store = open_store(request.param, root, os.getuid(), os.getgid())
    root.mkdir()
    store.chown("", 0, 0)
    c = TreeConnection(root, store, "web")
    for d in ("/usr", "/usr/lib", "/usr/bin", "/usr/sbin", "/etc", "/etc/ssh", "/usr/lib/modules",
              "/usr/lib/modules/6.1.0-50-amd64", "/usr/lib/systemd", "/usr/lib/systemd/system",
              "/etc/systemd", "/etc/systemd/system",
              "/etc/systemd/system/multi-user.target.wants", "/etc/init.d", "/var",
              "/var/lib", "/var/lib/dpkg", "/usr/share", "/usr/share/zoneinfo",
              "/usr/share/zoneinfo/Europe", "/root"):
        c.mkdir(d)
    c.symlink("usr/lib", "/lib")
    c.symlink("usr/sbin", "/sbin")
    c.symlink("/lib/systemd/systemd", "/usr/sbin/init")
    c.write_file("/usr/lib/systemd/systemd", b"", mode=0o755)
    c.write_file("/usr/lib/os-release", OS_RELEASE.encode())
    c.symlink("../usr/lib/os-release", "/etc/os-release")
    c.write_file("/etc/debian_version", b"12.5\n")
    c.write_file("/etc/hostname", b"web\n")
    c.write_file("/etc/hosts", b"127.0.0.1\tlocalhost\n127.0.1.1\tweb.lab.test web\n")
    c.write_file("/etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n")
    c.write_file("/etc/machine-id", b"0123456789abcdef0123456789abcdef\n")
    c.write_file("/etc/resolv.conf", b"nameserver 10.0.2.3\nsearch lab.test\n")
    c.write_file("/etc/timezone", b"Europe/Berlin\n")
    c.symlink("/usr/share/zoneinfo/Europe/Berlin", "/etc/localtime")
    c.write_file("/etc/fstab", b"rootfs / 9p trans=virtio 0 0\n")
    c.write_file("/etc/ssh/ssh_host_ed25519_key.pub", b"ssh-ed25519 AAAAkey web\n")
    c.write_file("/var/lib/dpkg/status", STATUS.encode())
    c.write_file("/usr/bin/apt-get", b"", mode=0o755)
    c.write_file("/usr/bin/python3.11", b"", mode=0o755)
    c.symlink("python3.11", "/usr/bin/python3")
    units = {"ssh.service": "[Unit]\n[Service]\n[Install]\nWantedBy=multi-user.target\n",
             "cron.service": "[Service]\n[Install]\nWantedBy=multi-user.target\n",
             "emergency.service": "[Service]\nExecStart=/bin/sh\n",
             "apt-daily.service": "[Service]\n"}
    for name, text in units.items():
        c.write_file(f"/usr/lib/systemd/system/{name}", text.encode())
    c.symlink("/lib/systemd/system/ssh.service",
              "/etc/systemd/system/multi-user.target.wants/ssh.service")
    c.symlink("/dev/null", "/etc/systemd/system/apt-daily.service")
    c.write_file("/etc/init.d/kmod", b"#!/bin/sh\n", mode=0o755)
    return c


# --- the script, for real ----------------------------------------------------------------

def test_probe_on_this_host_is_one_command_and_agrees_with_python() -> None:
    """The same script the guests run, run here: one command, and what it finds is what
    Python's own view of this host says."""
    conn = HostConnection()
    res = conn.run(["/bin/sh", "-c", probe.SCRIPT])
    parts = probe.parse(res.stdout)
    facts = {k: v for cs in COLLECTORS.values() for c in cs
             for k, v in c(parts).items()}
    assert conn.runs == 1
    uname = platform.uname()
    assert facts["system"] == "Linux"
    assert facts["kernel"] == uname.release and facts["kernel_version"] == uname.version
    assert facts["machine"] == uname.machine == facts["architecture"]
    assert facts["nodename"] == socket.gethostname()
    assert facts["user_id"] == getpass.getuser() and facts["user_uid"] == os.getuid()
    assert facts["effective_user_id"] == os.geteuid()
    assert facts["env"]["HOME"] == os.environ["HOME"]
    assert facts["processor_nproc"] == len(os.sched_getaffinity(0))
    assert facts["processor_vcpus"] == os.cpu_count()
    phys_mb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20
    assert abs(facts["memtotal_mb"] - phys_mb) <= 1
    assert facts["os_family"] == "Debian" and facts["pkg_mgr"] == "apt"
    assert facts["distribution_major_version"] == \
        Path("/etc/debian_version").read_text().split(".")[0]
    assert "lo" in facts["interfaces"] and facts["lo"]["type"] == "loopback"
    assert facts["lo"]["ipv4"]["address"] == "127.0.0.1"
    assert abs(int(facts["date_time"]["epoch"]) - time.time()) < 30
    assert facts["uptime_seconds"] > 0


def test_parse_refuses_a_cut_output() -> None:
    with pytest.raises(ValueError, match="stopped before its end"):
        probe.parse("\n\037env\nHOME=/root\n")


def test_gather_over_a_connection_is_one_run(guest: GuestSpec) -> None:
    conn = HostConnection()
    facts = gather_facts(conn, guest, ["!all", "network"])  # type: ignore[arg-type]
    assert conn.runs == 1
    assert "interfaces" in facts and "distribution" in facts  # min comes along
    assert "memtotal_mb" not in facts and "virtualization_type" not in facts
    assert facts["gather_subset"] == ["!all", "network"] and facts["module_setup"] is True


# --- parsing, from what a booted lab guest prints ----------------------------------------

def test_network_from_ip_and_sysfs() -> None:
    parts = {
        "net": "lo\t1\t00:00:00:00:00:00\t65536\tunknown\t0x9\t772\t\t\t\t\n"
               "eth0\t2\t52:54:00:12:34:56\t1500\tup\t0x1003\t1\tvirtio_net\tvirtio1\t-1\t\n",
        "addr": "1: lo    inet 127.0.0.1/8 scope host lo\n"
                "1: lo    inet6 ::1/128 scope host \n"
                "2: eth0    inet 10.0.2.15/24 brd 10.0.2.255 scope global eth0\n"
                "2: eth0    inet 10.0.2.16/24 scope global secondary eth0\n",
        "route4": "8.8.8.8 via 10.0.2.2 dev eth0 src 10.0.2.15 uid 0 \\    cache",
        "route6": "", "local4": "local 10.0.2.15 dev eth0\nbroadcast 10.0.2.255 dev eth0\n",
        "local6": "local ::1 dev lo"}
    f = network.network(parts)
    assert f["interfaces"] == ["lo", "eth0"]
    assert f["all_ipv4_addresses"] == ["10.0.2.15", "10.0.2.16"]
    assert f["all_ipv6_addresses"] == []
    assert f["eth0"]["ipv4"] == {"address": "10.0.2.15", "broadcast": "10.0.2.255",
                                 "netmask": "255.255.255.0", "network": "10.0.2.0",
                                 "prefix": "24"}
    assert f["eth0"]["ipv4_secondaries"][0]["address"] == "10.0.2.16"
    assert f["eth0"]["module"] == "virtio_net" and f["eth0"]["speed"] == -1
    assert "macaddress" not in f["lo"] and "speed" not in f["lo"]
    assert f["lo"]["ipv6"] == [{"address": "::1", "prefix": "128", "scope": "host"}]
    assert f["default_ipv4"] == {
        "address": "10.0.2.15", "interface": "eth0", "gateway": "10.0.2.2",
        "broadcast": "10.0.2.255", "netmask": "255.255.255.0", "network": "10.0.2.0",
        "prefix": "24", "macaddress": "52:54:00:12:34:56", "mtu": 1500, "type": "ether",
        "alias": "eth0"}
    assert f["default_ipv6"] == {}
    assert f["locally_reachable_ips"] == {"ipv4": ["10.0.2.15"], "ipv6": ["::1"]}


def test_cmdline_keeps_repeats_in_proc_cmdline() -> None:
    f = collect.cmdline({"file:/proc/cmdline":
                         "root=rootfs console=tty0 console=ttyS0 rw no_timer_check "
                         "no_timer_check\n"})
    assert f["cmdline"] == {"root": "rootfs", "console": "ttyS0", "rw": True,
                            "no_timer_check": True}
    assert f["proc_cmdline"]["console"] == ["tty0", "ttyS0"]
    # a repeated bare flag stays True in Ansible's proc_cmdline (seen on a guest whose lab
    # repeats provision9p's own no_timer_check), not a list
    assert f["proc_cmdline"]["no_timer_check"] is True


def test_date_time_in_the_guests_zone() -> None:
    parts = {"date": "1790000000 0 +0000 UTC\n", "file:/etc/timezone": "Europe/Berlin\n"}
    d = collect.date_time(parts)["date_time"]
    assert (d["tz"], d["tz_dst"], d["tz_offset"]) == ("CEST", "CEST", "+0200") or \
        (d["tz"], d["tz_dst"]) == ("CET", "CEST")
    assert d["iso8601"] == "2026-09-21T14:13:20Z" and d["hour"] == "16"
    assert d["epoch"] == d["epoch_int"] == "1790000000"


def test_fqdn_from_hosts() -> None:
    hosts = "127.0.0.1 localhost\n127.0.1.1 web.lab.test web\n"
    f = collect.platform({"uname": "Linux\nweb\n6.1\n#1\nx86_64\n", "file:/etc/hosts": hosts})
    assert (f["hostname"], f["fqdn"], f["domain"]) == ("web", "web.lab.test", "lab.test")
    f = collect.platform({"uname": "Linux\nweb\n6.1\n#1\nx86_64\n",
                          "file:/etc/hosts": "127.0.1.1\tweb\n"})
    assert (f["fqdn"], f["domain"]) == ("web", "")


def test_processor_counts_sockets_cores_threads() -> None:
    cpu = "".join(f"processor\t: {i}\nvendor_id\t: GenuineIntel\nmodel name\t: Xeon\n"
                  f"physical id\t: 0\nsiblings\t: 4\ncpu cores\t: 2\nflags\t: fpu sse\n\n"
                  for i in range(4))
    f = hardware.processor({"file:/proc/cpuinfo": cpu, "nproc": "3\n"})
    assert f["processor"][:3] == ["0", "GenuineIntel", "Xeon"] and len(f["processor"]) == 12
    assert (f["processor_count"], f["processor_cores"], f["processor_threads_per_core"],
            f["processor_vcpus"], f["processor_nproc"]) == (1, 2, 2, 4, 3)
    assert f["flags"] == ["fpu", "sse"]


# --- subsets -----------------------------------------------------------------------------

ALL = set(COLLECTORS)


@pytest.mark.parametrize(("subset", "groups"), [
    (["all"], ALL),
    (["min"], MIN),
    (["!all"], MIN),
    (["!all", "!min"], set()),
    (["!all", "network"], MIN | {"network"}),
    # Ansible starts from min, so naming only exclusions leaves min (collector.py).
    (["!hardware"], MIN),
    (["all", "!hardware"], ALL - {"hardware"}),
    (["hardware", "!min"], {"hardware"}),
    (["facter", "ohai"], MIN | {"facter", "ohai"}),
    (["!nonsense"], MIN),  # excluding an unknown name is ignored, as in Ansible
])
def test_gather_subset_as_ansible(subset: list[str], groups: set[str]) -> None:
    assert resolve_subset(subset) == groups


def test_bad_subset_is_a_task_error() -> None:
    with pytest.raises(TaskError, match="bad subset 'hardwre'"):
        resolve_subset(["hardwre"])


# --- offline, from a tree ----------------------------------------------------------------

def test_tree_facts_from_files_and_the_lab(tree: TreeConnection, guest: GuestSpec) -> None:
    f = gather_facts(tree, guest)
    assert (f["distribution"], f["distribution_release"], f["distribution_version"],
            f["distribution_major_version"], f["distribution_minor_version"],
            f["os_family"]) == ("Debian", "bookworm", "12.5", "12", "5", "Debian")
    assert f["distribution_file_path"] == "/etc/os-release" and f["lsb"] == {}
    assert (f["hostname"], f["fqdn"], f["domain"]) == ("web", "web.lab.test", "lab.test")
    assert f["kernel"] == "6.1.0-50-amd64" and f["architecture"] == "x86_64"
    assert (f["service_mgr"], f["pkg_mgr"]) == ("systemd", "apt")
    assert f["systemd"]["version"] == 252
    assert f["python_version"] == "3.11.2"
    assert f["python"]["version_info"] == [3, 11, 2, "final", 0]
    assert f["user_id"] == "root" and f["user_shell"] == "/bin/bash"
    assert f["env"]["HOME"] == "/root"
    assert f["machine_id"] == "0123456789abcdef0123456789abcdef"
    assert f["dns"] == {"nameservers": ["10.0.2.3"], "search": ["lab.test"]}
    assert f["date_time"]["tz"] in ("CET", "CEST")
    assert f["ssh_host_key_ed25519_public"] == "AAAAkey"
    # -smp 2 is one socket of two cores (QEMU 6.2+ machine types), as the booted guest says
    assert (f["processor_count"], f["processor_cores"]) == (1, 2)
    assert f["processor_vcpus"] == f["processor_nproc"] == 2
    assert f["processor"][:3] == ["0", "AuthenticAMD", "QEMU TCG CPU version 2.5+"]
    assert f["memtotal_mb"] == 1024
    assert f["cmdline"]["root"] == guest.root.mount_tag and f["cmdline"]["rw"] is True
    assert f["default_ipv4"]["address"] == "10.0.2.15"
    assert f["default_ipv4"]["gateway"] == "10.0.2.2"
    assert f["eth0"]["pciid"] == "virtio1"  # the 9P root is virtio0
    assert f["mounts"] == []  # a 9P tag is no device path: Ansible lists none
    assert (f["virtualization_type"], f["virtualization_role"]) == ("kvm", "guest")
    assert f["is_chroot"] is False and f["fips"] is False
    assert f["selinux"] == {"status": "disabled"}
    assert "bios_version" not in f and "flags" not in f  # unknowable offline: left out


def test_tree_facts_honour_the_subset(tree: TreeConnection, guest: GuestSpec) -> None:
    f = gather_facts(tree, guest, ["!all"])
    assert "distribution" in f and "memtotal_mb" not in f and "interfaces" not in f


# --- modules -----------------------------------------------------------------------------

def run(conn: Any, module: str, guest: GuestSpec | None = None, **args: Any) -> dict[str, Any]:
    ctx = ModuleContext(check=False, role_path=Path("/nonexistent"), render=lambda t: t,
                        guest=guest)
    check_args(module, args)
    return MODULES[module].run(conn, args, ctx)


def test_setup_filter_and_prefix(tree: TreeConnection, guest: GuestSpec) -> None:
    res = run(tree, "setup", guest, filter=["ansible_distribution*", "os_family"])
    assert res["changed"] is False
    keys = set(res["ansible_facts"])
    assert "ansible_distribution" in keys and "ansible_os_family" in keys
    assert "ansible_distribution_release" in keys and "ansible_hostname" not in keys
    res = run(tree, "setup", guest, gather_subset="!all", gather_timeout=10)
    assert "ansible_memtotal_mb" not in res["ansible_facts"]
    assert res["ansible_facts"]["gather_subset"] == ["!all"]


def test_setup_rejects_what_it_cannot_do(tree: TreeConnection, guest: GuestSpec) -> None:
    with pytest.raises(TaskError, match="not supported by provision9p: setup fact_path"):
        check_args("setup", {"fact_path": "/etc/ansible/facts.d"})
    with pytest.raises(TaskError, match="bad subset"):
        run(tree, "setup", guest, gather_subset=["nope"])


def test_service_facts_offline(tree: TreeConnection) -> None:
    services = run(tree, "service_facts")["ansible_facts"]["services"]
    assert services["ssh.service"] == {"name": "ssh.service", "source": "systemd",
                                       "state": "stopped", "status": "enabled"}
    assert services["cron.service"]["status"] == "disabled"
    assert services["emergency.service"]["status"] == "static"
    assert services["apt-daily.service"]["status"] == "masked"
    assert services["kmod"] == {"name": "kmod", "source": "sysv", "state": "stopped"}


def test_package_facts_from_dpkg_status(tree: TreeConnection) -> None:
    packages = run(tree, "package_facts", manager="auto")["ansible_facts"]["packages"]
    assert packages["openssh-server"] == [{
        "name": "openssh-server", "version": "1:9.2p1-2+deb12u3", "arch": "amd64",
        "category": "net", "origin": "", "source": "apt"}]
    assert "gone" not in packages  # config files only: not installed
    with pytest.raises(TaskError, match="manager rpm is not supported by provision9p"):
        run(tree, "package_facts", manager="rpm")


def test_kernel_version_from_a_bzimage_header(tmp_path: Path) -> None:
    """uname -v without booting: the x86 boot protocol's kernel_version string."""
    head = bytearray(0x8000)
    head[0x202:0x206] = b"HdrS"
    head[0x20E:0x210] = (0x100).to_bytes(2, "little")
    text = b"6.1.0-50-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC " \
           b"Debian 6.1.176-1 (2026-07-02)\0"
    head[0x300:0x300 + len(text)] = text
    image = tmp_path / "vmlinuz-6.1.0-50-amd64"
    image.write_bytes(bytes(head))
    assert offline._kernel_version(image) == \
        "#1 SMP PREEMPT_DYNAMIC Debian 6.1.176-1 (2026-07-02)"
    image.write_bytes(b"\0" * 0x1000)
    assert offline._kernel_version(image) == ""
