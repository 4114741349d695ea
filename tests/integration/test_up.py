"""`provision9p up` end to end on a real guest under QEMU (TCG here)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from integration import fidelity

from provision9p.connect.openssh import control_path
from provision9p.lab import load_lab
from provision9p.lab.model import Share
from provision9p.qemu_user import qemu_user
from provision9p.rootfs.guest_setup import MASKED_GENERATORS
from provision9p.rootfs.security import security_model
from provision9p.target import resolve

pytestmark = [pytest.mark.vm, pytest.mark.network]

LAB = """\
name: it
guests:
  web:
    memory: 1024
    cpus: 2
    shares:
      - path: data
        mount_tag: data
        mount: /mnt/data
        security_model: mapped-xattr
      - path: ro
        mount_tag: ro
        mount: /mnt/ro
        security_model: none
        readonly: true
        cache: loose
      - path: fidelity
        mount_tag: fid
        mount: /mnt/fid
        security_model: mapped-xattr
      - path: fidelity-file
        mount_tag: fidfile
        mount: /mnt/fidfile
        security_model: mapped-file
    rootfs:
      packages: [acl, python3, python3-apt]  # the suite's one base tree (see conftest)
    verify: [test_web.py]
    roles: [users]
    vars:
      users_groups: [{name: lab, gid: 2000}]
      users_accounts: [{name: ann, uid: 1000, group: lab}]
"""

# The lab's own testinfra file, run in the same verify report as the share checks.
USER_CHECKS = """\
def test_hostname_is_the_guest_name(host):
    assert host.file("/etc/hostname").content_string.strip() == "web"


def test_sshd_runs(host):
    assert host.service("ssh").is_running
"""


@pytest.fixture(scope="module")
def lab(lab_dir: Path, p9: Any) -> Iterator[Path]:
    path = lab_dir / "lab.yml"
    path.write_text(LAB)
    (lab_dir / "test_web.py").write_text(USER_CHECKS)
    (lab_dir / "ro").mkdir()
    (lab_dir / "ro" / "hello.txt").write_text("from the host\n")
    # Every kind of object, converted as `rootfs build` converts a root tree.
    fidelity.make_source(lab_dir / "fid-src")
    run_as = qemu_user(Share(path=lab_dir, mount_tag="x"))
    for name, model in (("fidelity", "mapped-xattr"), ("fidelity-file", "mapped-file")):
        subprocess.run(["cp", "-a", str(lab_dir / "fid-src"), str(lab_dir / name)],
                       check=True)
        security_model(model).convert(lab_dir / name, host_uid=run_as.uid,
                                      host_gid=run_as.gid)
    yield path
    p9("-f", str(path), "down", "--timeout", "5")


@pytest.fixture(scope="module")
def up_result(lab: Path, p9: Any) -> tuple[int, str, str, float]:
    start = time.monotonic()
    res = p9("-f", str(lab), "up")
    return res.returncode, res.stdout, res.stderr, time.monotonic() - start


def test_up_boots_and_verifies(up_result: tuple[int, str, str, float]) -> None:
    rc, out, err, _ = up_result
    assert rc == 0, out + err
    assert re.search(r"web: ok, \d+ checks passed", out), out
    # up's last lines: the verify report, one readable line per check
    assert re.search(r"^web +test_web\.py +hostname is the guest name +ok$", out, re.M), out
    assert re.search(r"^web +test_web\.py +sshd runs +ok$", out, re.M), out
    assert re.search(r"^web +data +mounted 9p2000\.L msize=\d+ +ok$", out, re.M), out
    # the report's last check line, then only its warnings (cache=loose shares get one)
    checks = [line for line in out.rstrip().splitlines() if not line.startswith("warning: ")]
    assert re.match(r"web +\S+ +.* ok$", checks[-1]), out
    assert "PASSED" not in out and "warnings summary" not in out
    assert "failed" not in out.lower().replace("0 failed", "")


def test_up_leaves_an_ssh_master(lab: Path, up_result: object) -> None:
    # before any `provision9p ssh` of this module: the master is the one `up` opened
    target = resolve(load_lab(lab), load_lab(lab).guest("web"))
    path = control_path(target)
    assert path is not None
    check = subprocess.run(["ssh", "-O", "check", "-o", f"ControlPath={path}", "web"],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr


def test_guest_root_is_9p_and_shares_mounted(lab: Path, up_result: object, p9: Any) -> None:
    res = p9("-f", str(lab), "ssh", "web", "--", "cat", "/proc/self/mounts")
    assert res.returncode == 0, res.stderr
    mounts = {line.split()[1]: line.split() for line in res.stdout.splitlines()}
    assert mounts["/"][2] == "9p" and mounts["/"][0] == "rootfs"
    assert mounts["/mnt/data"][2] == "9p"
    assert "ro" in mounts["/mnt/ro"][3].split(",")


def test_ssh_passes_exit_status(lab: Path, up_result: object, p9: Any) -> None:
    res = p9("-f", str(lab), "ssh", "web", "--", "exit 7")
    assert res.returncode == 7


def test_sshd_first_while_booting_then_as_any_unit(lab: Path, up_result: object,
                                                   p9: Any) -> None:
    # ssh.service's cgroup weighs 10x during the boot (rootfs/guest_setup.py), the
    # default once the boot is done
    res = p9("-f", str(lab), "ssh", "web", "--",
             "systemctl is-system-running --wait >/dev/null; "
             "grep -h StartupCPUWeight /etc/systemd/system/ssh.service; "
             "cat /sys/fs/cgroup/system.slice/ssh.service/cpu.weight")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["StartupCPUWeight=1000", "100"], res.stdout


def test_logins_run_no_update_motd_scripts(lab: Path, up_result: object, p9: Any) -> None:
    # pam_motd's update wrote /run/motd.dynamic at every login (0.8 s each under TCG);
    # guest setup turned it off, the static motd stays
    res = p9("-f", str(lab), "ssh", "web", "--",
             "test -s /etc/motd && ! test -e /run/motd.dynamic && echo quiet")
    assert res.returncode == 0 and res.stdout.split() == ["quiet"], res.stdout + res.stderr


def test_masked_generators_mask_real_ones_and_the_rest_ran(lab: Path, up_result: object,
                                                          p9: Any) -> None:
    # each masked name is one of the guest's generators (a renamed one would be missed),
    # and the kept ones still ran: fstab's made the share's mount unit, getty's the console
    res = p9("-f", str(lab), "ssh", "web", "--",
             "cd /etc/systemd/system-generators && for g in *; do "
             "test -x /lib/systemd/system-generators/$g && readlink $g; done; "
             "ls /run/systemd/generator/mnt-data.mount "
             "/run/systemd/generator/getty.target.wants/serial-getty@ttyS0.service")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.split() == ["/dev/null"] * len(MASKED_GENERATORS) + [
        "/run/systemd/generator/getty.target.wants/serial-getty@ttyS0.service",
        "/run/systemd/generator/mnt-data.mount"], res.stdout  # as ls sorts them


def test_system_files_as_debian_installed_them(lab: Path, up_result: object, p9: Any) -> None:
    res = p9("ssh", "--lab", str(lab), "web",
             "stat -c '%U %a %F' /usr/bin/passwd /etc/shadow /tmp /bin /dev/null")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "root 4755 regular file"  # setuid kept
    assert lines[1].split()[1] == "640"
    assert lines[2] == "root 1777 directory"  # sticky kept
    assert lines[3] == "root 777 symbolic link"


def test_a_real_users_file_on_a_mapped_share(lab: Path, up_result: object, p9: Any) -> None:
    """The users role made ann; her file is hers in the guest, and QEMU's user's on the
    host with ann's ids in the xattrs (mapped-xattr)."""
    res = p9("ssh", "--lab", str(lab), "web",
             "install -d -o ann -g lab -m 0750 /mnt/data/ann && "
             "su ann -c 'umask 027; echo hi > /mnt/data/ann/ann.txt' && "
             "stat -c '%U %G %a' /mnt/data/ann/ann.txt")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.split() == ["ann", "lab", "640"]
    host = lab.parent / "data" / "ann" / "ann.txt"
    assert os.getxattr(host, "user.virtfs.uid") == (1000).to_bytes(4, "little")
    assert os.getxattr(host, "user.virtfs.gid") == (2000).to_bytes(4, "little")
    assert os.stat(host).st_uid == qemu_user(Share(path=lab.parent, mount_tag="x")).uid


# The service module on a booted guest: its probe (is-enabled and is-active side by side)
# read back as the state before each task, through every transition.
SERVICE_ROLE = """\
- copy:
    dest: /etc/systemd/system/p9-probe.service
    content: "[Service]\\nExecStart=/bin/sleep infinity\\n[Install]\\nWantedBy=multi-user.target\\n"
- systemd: {name: p9-probe, daemon_reload: true, state: stopped}
  register: r1
- systemd: {name: p9-probe, enabled: true, state: started}
  register: r2
- systemd: {name: p9-probe.service, enabled: true, state: started}
  register: r3
- service: {name: sshd, enabled: true}
  register: r4
- systemd: {name: p9-probe, enabled: false, state: stopped}
  register: r5
- service: {name: nosuch, state: started}
  register: r6
  ignore_errors: true
- assert:
    that:
      - not r1.changed and r1.status.ActiveState == 'inactive'
      - r1.status.UnitFileState == 'disabled'
      - r2.changed and r2.status.ActiveState == 'inactive'
      - not r3.changed and r3.status.ActiveState == 'active'
      - r3.status.UnitFileState == 'enabled'
      - not r4.changed and r4.status.UnitFileState == 'alias'
      - r5.changed and r5.status.ActiveState == 'active'
      - r6.failed
"""


def test_service_states_on_the_booted_guest(lab: Path, up_result: object, p9: Any) -> None:
    role = lab.parent / "roles" / "p9probe" / "tasks"
    role.mkdir(parents=True)
    (role / "main.yml").write_text(SERVICE_ROLE)
    probe_lab = lab.parent / "probe.yml"
    probe_lab.write_text(LAB.replace("roles: [users]", "roles: [p9probe]"))
    res = p9("-f", str(probe_lab), "apply", "web")
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(r"ok=\d+ changed=3 .*failed=0", res.stdout + res.stderr), res.stdout
    res = p9("-f", str(lab), "ssh", "web", "--", "systemctl is-active p9-probe")
    assert res.stdout.strip() == "inactive", res.stdout


def test_second_up_changes_nothing_quickly(lab: Path, up_result: object, p9: Any) -> None:
    start = time.monotonic()
    res = p9("-f", str(lab), "up")
    took = time.monotonic() - start
    assert res.returncode == 0, res.stdout + res.stderr
    assert "no change" in res.stdout
    print(f"second up: {took:.1f} s")


@pytest.mark.parametrize("mount", ["/mnt/fid", "/mnt/fidfile"])
def test_guest_sees_every_object_as_the_source_has_it(lab: Path, up_result: object,
                                                      mount: str) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "provision9p", "ssh", "--lab", str(lab), "web",
         f"bash -s {mount}"], input=fidelity.GUEST_SCRIPT.encode(), capture_output=True,
        timeout=300)
    assert res.returncode == 0, res.stderr
    guest = fidelity.parse_guest(res.stdout)
    source = fidelity.host_view(lab.parent / "fid-src")
    if mount == "/mnt/fidfile":
        # QEMU reports a directory's host link count, and mapped-file's hidden
        # .virtfs_metadata subdirectory adds one: a known difference of that model.
        guest = {k: fidelity.without_dir_nlink(v) for k, v in guest.items()}
        source = {k: fidelity.without_dir_nlink(v) for k, v in source.items()}
    assert sorted(guest) == sorted(source)
    diffs = {name: (source[name], guest[name]) for name in source if source[name] != guest[name]}
    assert not diffs, diffs


def test_down_leaves_no_qemu(lab: Path, up_result: object, p9: Any) -> None:
    pidfile = lab.parent / ".provision9p/guests/web/run/qemu.pid"
    pid = int(pidfile.read_text())
    res = p9("-f", str(lab), "down")
    assert res.returncode == 0, res.stderr
    assert "web: stopped" in res.stdout
    assert not os.path.exists(f"/proc/{pid}") or \
        Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    res = p9("-f", str(lab), "status")
    assert "web: stopped" in res.stdout
