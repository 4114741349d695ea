"""A three-guest lab on its own network: names, a shared directory, other tools (Ansible,
ssh -F) with host keys checked, a fourth guest added later, the switch's life.

One boot of three guests for the whole module (the suite's cached base tree); the fourth
guest is the only other boot.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from integration.labs import lab_file

from provision9p.lab.network import mac_address
from provision9p.rootfs.keys import generate

pytestmark = [pytest.mark.vm, pytest.mark.network]

GUESTS = ("alpha", "beta", "gamma")
LAB = """\
name: trio
defaults:
  memory: 320
  cpus: 1
  rootfs:
    layout: overlay  # a layer per guest over the shared base: no copy
    packages: [acl, python3, python3-apt]  # the suite's one base tree (see conftest)
guests:
  alpha:
    shares:
      - {path: shared, mount_tag: shared, mount: /mnt/shared, cache: none}
  beta:
    network: {address: 10.89.0.20}
    shares:
      - {path: shared, mount_tag: shared, mount: /mnt/shared, cache: none}
  gamma: {}
"""


@pytest.fixture(scope="module")
def lab(lab_dir: Path, p9: Any) -> Iterator[Path]:
    with lab_file(lab_dir, "trio", LAB, p9) as path:
        yield path


@pytest.fixture(scope="module")
def up_result(lab: Path, p9: Any) -> tuple[int, str, str]:
    start = time.monotonic()
    res = p9("-f", str(lab), "up")
    print(f"up of three guests: {time.monotonic() - start:.1f} s")
    return res.returncode, res.stdout, res.stderr


def ssh(p9: Any, lab: Path, guest: str, command: str) -> Any:
    return p9("-f", str(lab), "ssh", guest, "--", command, timeout=120)


def guest_notes(stdout: str, guest: str) -> list[str]:
    """The indented lines under `GUEST: ...` in up's summary."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{guest}: "))
    notes = []
    for line in lines[start + 1:]:
        if not line.startswith("  "):
            break
        notes.append(line.strip())
    return notes


REFRESHED = "/etc/hosts names the lab's guests again"


def switch_pid(lab: Path) -> int:
    return int((lab.parent / ".provision9p" / "net" / "switch.pid").read_text())


def reach_all(p9: Any, lab: Path, guests: tuple[str, ...] = GUESTS) -> dict[str, str]:
    """Per guest, the names it could not open TCP port 22 on (empty: all reached)."""
    script = " ".join(
        f"timeout 5 bash -c '</dev/tcp/{n}/22' 2>/dev/null || echo {n}; "
        f"timeout 5 bash -c '</dev/tcp/{n}.trio/22' 2>/dev/null || echo {n}.trio;"
        for n in guests)
    out = {}
    for g in guests:
        res = ssh(p9, lab, g, script)
        assert res.returncode == 0, res.stderr
        out[g] = res.stdout.strip()
    return out


def test_up_brings_the_lab_up(up_result: tuple[int, str, str]) -> None:
    rc, out, err = up_result
    assert rc == 0, out + err
    for g in GUESTS:
        assert re.search(rf"^{g}: ok", out, re.M), out
    assert "lab trio: ok" in out, out
    assert "1 cross-guest share check(s) passed" in out or \
        "2 cross-guest share check(s) passed" in out, out


def test_addresses_static_and_pinned(lab: Path, up_result: object, p9: Any) -> None:
    res = ssh(p9, lab, "gamma", "cat /etc/hosts")
    assert res.returncode == 0, res.stderr
    hosts = res.stdout
    assert "10.89.0.1\talpha.trio alpha" in hosts, hosts
    assert "10.89.0.20\tbeta.trio beta" in hosts, hosts
    assert "10.89.0.2\tgamma.trio gamma" in hosts, hosts
    # the lab NIC is eth1 and carries the address; eth0 stays QEMU's user network
    # (minbase has neither iproute2 nor D-Bus for networkctl: the kernel's tables tell)
    res = ssh(p9, lab, "beta", "cat /sys/class/net/eth1/address; "
                               "grep -A1 '10.89.0.20$' /proc/net/fib_trie | grep -c LOCAL")
    assert res.returncode == 0, res.stdout + res.stderr
    mac, local = res.stdout.split()
    assert mac == mac_address("trio", "beta") and int(local) >= 1, res.stdout


def test_each_guest_reaches_every_other_by_name(lab: Path, up_result: object,
                                                p9: Any) -> None:
    assert reach_all(p9, lab) == dict.fromkeys(GUESTS, "")


def test_a_file_one_guest_writes_another_reads(lab: Path, up_result: object, p9: Any) -> None:
    res = ssh(p9, lab, "alpha", "echo from-alpha > /mnt/shared/note.txt")
    assert res.returncode == 0, res.stderr
    res = ssh(p9, lab, "beta", "cat /mnt/shared/note.txt")
    assert (res.returncode, res.stdout) == (0, "from-alpha\n"), res.stderr
    res = ssh(p9, lab, "beta", "echo from-beta >> /mnt/shared/note.txt")
    res = ssh(p9, lab, "alpha", "cat /mnt/shared/note.txt")
    assert res.stdout == "from-alpha\nfrom-beta\n", res.stdout + res.stderr


# --- other tools reach the lab with the pinned host keys ----------------------------


def ansible_hostname(inventory: Path, work: Path) -> subprocess.CompletedProcess[str]:
    """`ansible all -m raw -a hostname` as a user runs it: Ansible's own default of
    checking host keys (no ANSIBLE_HOST_KEY_CHECKING in the environment)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    # No persistent master: a kept connection would skip the key check of a later run.
    env.update(ANSIBLE_HOME=str(work / "home"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_SSH_ARGS="-o ControlMaster=no", LC_ALL="C.UTF-8", LANG="C.UTF-8")
    cmd = [str(Path(sys.executable).with_name("ansible")), "-i", str(inventory), "all",
           "-m", "raw", "-a", "hostname"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work,
                          timeout=300)


def test_ansible_reaches_every_guest_with_keys_checked(lab: Path, up_result: object,
                                                       p9: Any, tmp_path: Path) -> None:
    res = p9("-f", str(lab), "inventory")
    assert res.returncode == 0, res.stderr
    inv = tmp_path / "inventory.yml"
    inv.write_text(res.stdout)
    proc = ansible_hostname(inv, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for g in GUESTS:  # each guest answers with its own hostname
        assert re.search(rf"^{g} \| CHANGED \| rc=0 >>\n{g}$", proc.stdout, re.M), proc.stdout

    # beta's pinned key replaced by another real key: Ansible must refuse beta only
    beta = yaml.safe_load(res.stdout)["all"]["children"]["trio"]["hosts"]["beta"]
    known = lab.parent / ".provision9p" / "known_hosts"
    assert f"-o UserKnownHostsFile={known} " in beta["ansible_ssh_common_args"], beta
    text = known.read_text()
    other = generate("not-beta").public_line.split()[:2]
    lines = [" ".join([line.split()[0], *other])
             if line.startswith(f"[127.0.0.1]:{beta['ansible_port']} ") else line
             for line in text.splitlines()]
    assert lines != text.splitlines()
    known.write_text("\n".join(lines) + "\n")
    try:
        proc = ansible_hostname(inv, tmp_path)
    finally:
        known.write_text(text)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert re.search(r"^beta \| UNREACHABLE!", proc.stdout, re.M), proc.stdout
    assert "Host key verification failed" in proc.stdout + proc.stderr, proc.stdout
    for g in ("alpha", "gamma"):
        assert re.search(rf"^{g} \| CHANGED \| rc=0 >>\n{g}$", proc.stdout, re.M), proc.stdout


def test_ssh_with_the_generated_config(lab: Path, up_result: object, p9: Any,
                                       tmp_path: Path) -> None:
    res = p9("-f", str(lab), "ssh-config")
    assert res.returncode == 0, res.stderr
    conf = tmp_path / "lab.ssh"
    conf.write_text(res.stdout)
    for g in GUESTS:
        proc = subprocess.run(["ssh", "-F", str(conf), g, "cat /etc/hostname"],
                              capture_output=True, text=True, timeout=120)
        assert (proc.returncode, proc.stdout) == (0, f"{g}\n"), proc.stderr


def test_status_shows_the_switch(lab: Path, up_result: object, p9: Any) -> None:
    res = p9("-f", str(lab), "status")
    assert res.returncode == 0, res.stderr
    pid = switch_pid(lab)
    assert f"switch running (pid {pid}, 3 guest(s) connected)" in res.stdout, res.stdout


def test_up_rewrites_a_stale_hosts_block(lab: Path, up_result: object, p9: Any) -> None:
    """What adding a guest relies on: `up` rewrites the lab block in running guests."""
    res = ssh(p9, lab, "gamma", "sed -i '/alpha.trio/d' /etc/hosts")
    assert res.returncode == 0, res.stderr
    res = p9("-f", str(lab), "up", "--no-verify")
    assert res.returncode == 0, res.stdout + res.stderr
    # written on the connection gamma's own pass used (pipeline._lab_hosts): the note is
    # among gamma's lines of the summary, and only there
    notes = guest_notes(res.stdout, "gamma")
    assert REFRESHED in notes and "running and unchanged; nothing to do" not in notes, \
        res.stdout
    assert all(REFRESHED not in guest_notes(res.stdout, g) for g in ("alpha", "beta"))
    assert "alpha.trio alpha" in ssh(p9, lab, "gamma", "cat /etc/hosts").stdout


def test_a_killed_switch_is_reported_and_restarted(lab: Path, up_result: object,
                                                   p9: Any) -> None:
    old = switch_pid(lab)
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{old}") and time.monotonic() < deadline:
        time.sleep(0.1)
    res = p9("-f", str(lab), "status")
    assert "switch down while 3 guest(s) run" in res.stdout, res.stdout
    res = p9("-f", str(lab), "up", "--no-verify")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "lab NIC reconnected in alpha, beta, gamma" in res.stdout, res.stdout
    new = switch_pid(lab)
    assert new != old
    res = p9("-f", str(lab), "status")
    assert f"switch running (pid {new}, 3 guest(s) connected)" in res.stdout, res.stdout
    # networkd configures the replugged NIC; give it a moment under TCG
    deadline = time.monotonic() + 30
    while (missing := reach_all(p9, lab)) != dict.fromkeys(GUESTS, "") and \
            time.monotonic() < deadline:
        time.sleep(2)
    assert missing == dict.fromkeys(GUESTS, "")


@pytest.mark.slow(covered_by="tests/integration/test_lab_network.py::test_up_brings_the_lab_up")
def test_a_fourth_guest_joins_without_rebuilding_the_others(lab: Path, up_result: object,
                                                            p9: Any) -> None:
    """Appended to the lab file, `up` boots it; the other three learn its name over SSH
    (their build records, fingerprints included, stay as they were)."""
    records = {g: (lab.parent / ".provision9p" / "guests" / g / "build.json").read_bytes()
               for g in GUESTS}
    lab.write_text(LAB + "  delta: {memory: 256}\n")
    start = time.monotonic()
    res = p9("-f", str(lab), "up", "--no-verify")
    print(f"up with a fourth guest: {time.monotonic() - start:.1f} s")
    assert res.returncode == 0, res.stdout + res.stderr
    # each running guest's block rewritten on its own `up` connection (no roles here)
    assert all(REFRESHED in guest_notes(res.stdout, g) for g in GUESTS), res.stdout
    assert {g: (lab.parent / ".provision9p" / "guests" / g / "build.json").read_bytes()
            for g in GUESTS} == records
    res = ssh(p9, lab, "alpha", "cat /etc/hosts")
    assert "10.89.0.3\tdelta.trio delta" in res.stdout, res.stdout
    everyone = (*GUESTS, "delta")
    assert reach_all(p9, lab, everyone) == dict.fromkeys(everyone, "")


def test_down_stops_the_switch_after_the_last_guest(lab: Path, up_result: object,
                                                   p9: Any) -> None:
    pid = switch_pid(lab)
    res = p9("-f", str(lab), "down", "alpha", "beta", "--timeout", "10")
    assert res.returncode == 0, res.stderr
    assert os.path.exists(f"/proc/{pid}"), "the switch stopped while gamma still runs"
    res = p9("-f", str(lab), "down", "--timeout", "10")
    assert res.returncode == 0, res.stderr
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{pid}")
    assert not (lab.parent / ".provision9p" / "net" / "switch.pid").exists()
