"""A three-guest lab on its own network: names, a shared directory, the switch's life.

One boot of three guests for the whole module (the suite's cached base tree).
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provision9p.lab.network import mac_address

pytestmark = [pytest.mark.vm, pytest.mark.network]

GUESTS = ("alpha", "beta", "gamma")
LAB = """\
name: trio
defaults:
  memory: 320
  cpus: 1
  rootfs:
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
    path = lab_dir / "trio" / "lab.yml"
    path.parent.mkdir()
    path.parent.chmod(0o755)
    path.write_text(LAB)
    yield path
    p9("-f", str(path), "down", "--timeout", "5")


@pytest.fixture(scope="module")
def up_result(lab: Path, p9: Any) -> tuple[int, str, str]:
    start = time.monotonic()
    res = p9("-f", str(lab), "up")
    print(f"up of three guests: {time.monotonic() - start:.1f} s")
    return res.returncode, res.stdout, res.stderr


def ssh(p9: Any, lab: Path, guest: str, command: str) -> Any:
    return p9("-f", str(lab), "ssh", guest, "--", command, timeout=120)


def switch_pid(lab: Path) -> int:
    return int((lab.parent / ".provision9p" / "net" / "switch.pid").read_text())


def reach_all(p9: Any, lab: Path) -> dict[str, str]:
    """Per guest, the names it could not open TCP port 22 on (empty: all reached)."""
    script = " ".join(
        f"timeout 5 bash -c '</dev/tcp/{n}/22' 2>/dev/null || echo {n}; "
        f"timeout 5 bash -c '</dev/tcp/{n}.trio/22' 2>/dev/null || echo {n}.trio;"
        for n in GUESTS)
    out = {}
    for g in GUESTS:
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
    assert "/etc/hosts names the lab's guests again in gamma" in res.stdout, res.stdout
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
