"""Facts on one real guest: provision9p's against Ansible's own `setup`, `service_facts`
and `package_facts` on the same guest, field by field, and the tree's (offline) facts
against the booted guest's. One boot for the whole module: a guest of its own (1 CPU, 768
MiB), not the suite's shared one, whose facts differ in shape (2 CPUs, more shares).

Every difference allowed below carries its reason; anything else must be equal.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provision9p.connect.ssh import SSHConnection, connect
from provision9p.connect.tree import TreeConnection
from provision9p.lab import load_lab
from provision9p.lab.model import GuestSpec
from provision9p.rootfs.keys import generate
from provision9p.rootfs.metadata import open_store
from provision9p.target import resolve
from provision9p.tasks.facts import gather_facts, offline
from provision9p.tasks.modules import MODULES, ModuleContext

pytestmark = [pytest.mark.vm, pytest.mark.network]

LAB = """\
name: facts-it
defaults:
  memory: 768
  cpus: 1
  rootfs:
    packages: [acl, python3, python3-apt]  # Ansible's modules need python3; one base tree
guests:
  fx:
    groups: [probes]
    verify: [checks.py]  # a check that fails on purpose: how verify shows a failure
"""

CHECKS = """\
def test_fails_on_purpose(host):
    assert host.run("echo out; echo err >&2; exit 3").rc == 0, "the probe failed"
"""

# Ansible's facts that change from one moment (or one process) to the next: compared
# by shape and by the parts that must hold still.
RUNTIME = {
    "date_time": "the clock moves between the two gatherings",
    "uptime_seconds": "the clock moves",
    "loadavg": "load moves; Ansible's getloadavg() gives binary floats of the same numbers",
    "memfree_mb": "free memory moves",
    "memory_mb": "free/used/nocache move; the totals must agree",
    "env": "SSH_CLIENT/SSH_CONNECTION carry each session's port; Ansible adds its own "
           "LANG/LC_ALL and runs its module under another shell level",
    "interfaces": "Ansible lists /sys/class/net in the directory's own order (os.scandir), "
                  "provision9p in ifindex order; the same names",
}
# What provision9p leaves out of the tree's facts, or cannot know without booting.
TREE_DIFFERS = {
    **RUNTIME,
    "memtotal_mb": "the kernel keeps part of the lab's memory; the tree answers the lab's "
                   "memory size",
}


@pytest.fixture(scope="module")
def lab(lab_dir: Path, p9: Any) -> Iterator[Path]:
    base = lab_dir / "facts-lab"
    base.mkdir()
    path = base / "lab.yml"
    path.write_text(LAB)
    (base / "checks.py").write_text(CHECKS)
    res = p9("-f", str(path), "up", "--no-verify")
    try:
        assert res.returncode == 0, res.stdout + res.stderr
        yield path
    finally:
        p9("-f", str(path), "down", "--timeout", "5")


@pytest.fixture(scope="module")
def guest(lab: Path) -> GuestSpec:
    return load_lab(lab).guest("fx")


@pytest.fixture(scope="module")
def ssh(lab: Path, guest: GuestSpec) -> Iterator[SSHConnection]:
    spec = load_lab(lab)
    conn = connect(resolve(spec, spec.guest("fx")))
    # SSH answers while the boot goes on (sshd starts first): udev's coldplug loads
    # modules (kvm where the CPU offers vmx/svm) and units are still starting. Let the
    # boot finish, then udev's queue, so both gatherings see the same system (a settle
    # alone returned at once on a slow host: the coldplug had not started yet).
    conn.run("systemctl is-system-running --wait >/dev/null; udevadm settle --timeout=120")
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def tree(guest: GuestSpec) -> TreeConnection:
    st = os.stat(guest.root.path)
    store = open_store(guest.root.security_model, guest.root.path, st.st_uid, st.st_gid)
    return TreeConnection(guest.root.path, store, guest.name)


def ansible(lab_path: Path, module: str, args: str = "") -> dict[str, Any]:
    """Ansible's own module against the guest (pipelining, the lab's key, pinned host
    key), its JSON result as `ansible --tree` writes it."""
    lab = load_lab(lab_path)
    target = resolve(lab, lab.guest("fx"))
    st = target.state
    port = target.ssh_port()
    work = lab_path.parent / "ansible"
    work.mkdir(exist_ok=True)
    known = work / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {st.host_key.read_text().strip()}\n")
    (work / "inventory.ini").write_text(
        f"fx ansible_host=127.0.0.1 ansible_port={port} ansible_user=root "
        f"ansible_ssh_private_key_file={target.client_key} "
        "ansible_python_interpreter=/usr/bin/python3\n")
    (work / "ansible.cfg").write_text(
        "[defaults]\nhost_key_checking = True\n[ssh_connection]\npipelining = True\n"
        f"ssh_args = -o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes\n")
    out = work / f"out-{module}-{abs(hash(args))}"
    env = {**os.environ, "ANSIBLE_CONFIG": str(work / "ansible.cfg"),
           "ANSIBLE_HOME": str(work / "home"), "ANSIBLE_NOCOLOR": "1",
           "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    cmd = [str(Path(sys.executable).with_name("ansible")), "-i", str(work / "inventory.ini"),
           "fx", "-m", module, "--tree", str(out)]
    if args:
        cmd += ["-a", args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result: dict[str, Any] = json.loads((out / "fx").read_text())
    return result


def unprefixed(facts: dict[str, Any]) -> dict[str, Any]:
    return {k.removeprefix("ansible_"): v for k, v in facts.items()}


def _compare(ours: dict[str, Any], theirs: dict[str, Any], allowed: dict[str, str]
             ) -> list[str]:
    """Every fact name either side has: equal, or allowed with a reason (and then still
    checked for the parts that hold still)."""
    problems = []
    for name in sorted(set(ours) | set(theirs)):
        if name not in ours or name not in theirs:
            if name not in allowed:
                side = "provision9p" if name not in ours else "the other side"
                problems.append(f"{name}: missing from {side}")
            continue
        if ours[name] == theirs[name]:
            continue
        if name not in allowed:
            problems.append(f"{name}: {ours[name]!r} != {theirs[name]!r}")
            continue
        a, b = ours[name], theirs[name]
        if name == "date_time":
            assert set(a) == set(b) and abs(int(a["epoch"]) - int(b["epoch"])) < 900
            assert (a["tz"], a["tz_dst"], a["tz_offset"]) == (b["tz"], b["tz_dst"],
                                                              b["tz_offset"])
        elif name == "memory_mb":
            assert a["real"]["total"] == b["real"]["total"] or "memtotal_mb" in allowed
            assert a["swap"]["total"] == b["swap"]["total"]
        elif name == "env":
            for key in ("HOME", "LOGNAME", "USER", "SHELL", "PATH", "PWD"):
                assert a.get(key) == b.get(key), key
        elif name == "interfaces":
            assert sorted(a) == sorted(b)
        elif name in ("loadavg", "memfree_mb", "uptime_seconds", "memtotal_mb"):
            assert type(a) is type(b) and (not isinstance(a, dict) or set(a) == set(b))
    return problems


def test_facts_equal_ansibles_setup(lab: Path, guest: GuestSpec, ssh: SSHConnection,
                                    tree: TreeConnection) -> None:
    ours = gather_facts(ssh, guest)
    t0 = time.perf_counter()
    theirs = unprefixed(ansible(lab, "setup")["ansible_facts"])
    print(f"\nansible -m setup (pipelining): {time.perf_counter() - t0:.1f} s")
    problems = _compare(ours, theirs, RUNTIME)
    assert not problems, "\n".join(problems)
    # Spot checks that the comparison covers what roles read most.
    assert ours["os_family"] == "Debian" and ours["distribution_release"] == "bookworm"
    assert ours["virtualization_type"] == "kvm" and ours["service_mgr"] == "systemd"
    assert ours["default_ipv4"]["address"] == "10.0.2.15"


def test_tree_facts_equal_the_booted_guests(guest: GuestSpec, ssh: SSHConnection,
                                            tree: TreeConnection) -> None:
    booted = gather_facts(ssh, guest)
    offline_facts = gather_facts(tree, guest)
    allowed = {**TREE_DIFFERS, **{k: "unknowable offline (offline.UNKNOWN)"
                                  for k in offline.UNKNOWN}}
    problems = _compare(offline_facts, booted, allowed)
    assert not problems, "\n".join(problems)
    assert set(offline.UNKNOWN).isdisjoint(offline_facts)


def test_setup_filter_as_ansible(lab: Path, guest: GuestSpec, ssh: SSHConnection) -> None:
    ctx = ModuleContext(check=False, role_path=Path("/nonexistent"), render=lambda t: t,
                        guest=guest)
    for args, ansible_args in (({"filter": ["ansible_distribution*"]},
                                "filter=ansible_distribution*"),
                               ({"gather_subset": ["!all", "network"]},
                                "gather_subset=!all,network"),
                               # Ansible starts from min: naming only an exclusion
                               # leaves min, not all-but-hardware.
                               ({"gather_subset": "!hardware"}, "gather_subset=!hardware")):
        ours = MODULES["setup"].run(ssh, args, ctx)["ansible_facts"]
        theirs = ansible(lab, "setup", ansible_args)["ansible_facts"]
        assert sorted(ours) == sorted(theirs)


@pytest.mark.slow(covered_by="tests/integration/test_facts.py::test_facts_equal_ansibles_setup")
def test_service_facts_as_ansible(lab: Path, guest: GuestSpec, ssh: SSHConnection,
                                  tree: TreeConnection) -> None:
    ctx = ModuleContext(check=False, role_path=Path("/nonexistent"), render=lambda t: t)
    ours = MODULES["service_facts"].run(ssh, {}, ctx)["ansible_facts"]["services"]
    # Ansible's second pass, `systemctl list-unit-files`, times out inside systemd on a 9P
    # root under TCG (25 s, then "Connection timed out"), so Ansible keeps the loaded
    # units and the SysV scripts; provision9p does not make that call at all.
    theirs = ansible(lab, "service_facts")["ansible_facts"]["services"]
    assert ours == theirs
    offline_services = MODULES["service_facts"].run(tree, {}, ctx)["ansible_facts"]["services"]
    # The booted list holds loaded units only; the tree knows every unit file, masked
    # ones that nothing pulls in (cryptdisks.service, rc.service, ...) too.
    masked = {n for n, s in ours.items() if s.get("status") == "masked"}
    assert masked <= {n for n, s in offline_services.items() if s.get("status") == "masked"}
    assert {n for n, s in ours.items() if s["source"] == "sysv"} == \
        {n for n, s in offline_services.items() if s["source"] == "sysv"}


def test_package_facts_as_ansible(lab: Path, ssh: SSHConnection, tree: TreeConnection
                                  ) -> None:
    ctx = ModuleContext(check=False, role_path=Path("/nonexistent"), render=lambda t: t)
    ours = MODULES["package_facts"].run(ssh, {}, ctx)["ansible_facts"]["packages"]
    assert MODULES["package_facts"].run(tree, {}, ctx)["ansible_facts"]["packages"] == ours
    theirs = ansible(lab, "package_facts")["ansible_facts"]["packages"]
    assert set(ours) == set(theirs)
    for name, versions in theirs.items():
        mine = ours[name]
        # Ansible takes the section from apt's index, provision9p from dpkg's status
        # file; they differ only where the archive re-sectioned a package (lsb-base:
        # oldlibs in its control file, misc in bookworm's index).
        assert [{**v, "category": ""} for v in mine] == \
            [{**v, "category": ""} for v in versions], name


def test_cost_of_gathering(guest: GuestSpec, ssh: SSHConnection, tree: TreeConnection
                           ) -> None:
    """One round trip over SSH; the numbers go to the report (pytest -s shows them)."""
    floor = []
    for _ in range(5):
        t0 = time.perf_counter()
        ssh.run(["true"])
        floor.append(time.perf_counter() - t0)
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        gather_facts(ssh, guest)
        runs.append(time.perf_counter() - t0)
    offline_runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        gather_facts(tree, guest)
        offline_runs.append(time.perf_counter() - t0)
    print(f"\nfacts over SSH: median {statistics.median(runs) * 1000:.0f} ms "
          f"(runs {', '.join(f'{r * 1000:.0f}' for r in runs)}); tree: median "
          f"{statistics.median(offline_runs) * 1000:.0f} ms; a bare `true` round trip: "
          f"median {statistics.median(floor) * 1000:.0f} ms")
    calls: list[Any] = []
    real_run = ssh.run

    def counting(*args: Any, **kw: Any) -> Any:
        calls.append(args)
        return real_run(*args, **kw)

    ssh.run = counting  # type: ignore[method-assign]
    try:
        gather_facts(ssh, guest)
    finally:
        ssh.run = real_run  # type: ignore[method-assign]
    assert len(calls) == 1


# --- other tools reach the guest: inventory, ssh-config; and the verify report --------


def test_ansible_with_the_generated_inventory(lab: Path, p9: Any) -> None:
    """Real Ansible through `provision9p inventory`, host keys checked: it answers with
    the pinned key, and fails once the known_hosts file names another."""
    res = p9("-f", str(lab), "inventory")
    assert res.returncode == 0, res.stderr
    work = lab.parent / "inventory-run"
    work.mkdir(exist_ok=True)
    (work / "inventory.yml").write_text(res.stdout)
    env = {**os.environ, "ANSIBLE_HOME": str(work / "home"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_SSH_ARGS": "-o ControlMaster=no",
           "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    cmd = [str(Path(sys.executable).with_name("ansible")), "-i", str(work / "inventory.yml"),
           "probes", "-m", "raw", "-a", "hostname"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "fx | CHANGED | rc=0" in proc.stdout and "\nfx\n" in proc.stdout, proc.stdout
    known = load_lab(lab).state_dir / "known_hosts"
    line = known.read_text()
    other = generate("another").public_line.split()  # a real key, not the guest's
    known.write_text(" ".join([line.split()[0], *other[:2]]) + "\n")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    finally:
        known.write_text(line)
    assert proc.returncode != 0 and "UNREACHABLE" in proc.stdout, proc.stdout + proc.stderr


def test_ssh_and_scp_with_the_generated_config(lab: Path, p9: Any) -> None:
    res = p9("-f", str(lab), "ssh-config")
    assert res.returncode == 0, res.stderr
    conf = lab.parent / "lab.ssh"
    conf.write_text(res.stdout)
    proc = subprocess.run(["ssh", "-F", str(conf), "fx", "true"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    src = lab.parent / "scp-probe.txt"
    src.write_text("over scp\n")
    proc = subprocess.run(["scp", "-F", str(conf), str(src), "fx:/tmp/scp-probe.txt"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(["ssh", "-F", str(conf), "fx", "cat /tmp/scp-probe.txt"],
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout == "over scp\n", proc.stderr


def test_verify_report_junit_and_json(lab: Path, p9: Any) -> None:
    junit = lab.parent / "verify.xml"
    res = p9("-f", str(lab), "verify", "--junit", str(junit))
    assert res.returncode == 1, res.stdout + res.stderr  # the lab's probe fails on purpose
    out = res.stdout
    assert re.search(r"^fx +rootfs +mounted 9p2000\.L msize=\d+ +ok$", out, re.M), out
    assert re.search(r"^fx +checks\.py +fails on purpose +failed$", out, re.M), out
    assert "fx checks.py fails on purpose: FAILED\n  the probe failed\n  assert 3 == 0\n" \
           "  last command:" in out, out
    assert "  last command: echo out; echo err >&2; exit 3\n    exit status 3\n" \
           "    stdout: out\n    stderr: err\n" in out, out
    assert "PASSED" not in out and "Traceback" not in res.stderr
    root = ET.parse(junit).getroot()
    assert root.get("failures") == "1" and int(root.get("tests") or 0) >= 5
    res = p9("-f", str(lab), "verify", "--json")
    assert res.returncode == 1, res.stderr
    doc = json.loads(res.stdout)
    (g,) = doc["guests"]
    assert (g["name"], g["state"], g["groups"]) == ("fx", "running", ["facts_it", "probes"])
    assert g["ssh_port"] and g["pid"] and g["timings"]["boot_total"] > 0
    assert doc["failed"] == 1 and doc["passed"] == len(g["checks"]) - 1
    print(f"\nverify report:\n{out}")
