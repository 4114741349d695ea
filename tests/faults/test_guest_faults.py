"""kill -9 of `up` while it waits for the boot and while it runs roles over SSH, kill -9 of
QEMU, and a guest re-keyed behind the tool's back; each ends with `up` succeeding.

One guest for the module, booted by the first test; the tests run in file order.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Lab, argv, make_lab, qemu_pid, run, spawn, tear_down

pytestmark = [pytest.mark.vm, pytest.mark.network]

ROLE = """\
- name: take a while over SSH
  command: sleep 8
  phase: ssh
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    lab = make_lab("fg", "    roles: [slow]\n")
    (lab.dir / "roles" / "slow" / "tasks").mkdir(parents=True)
    (lab.dir / "roles" / "slow" / "tasks" / "main.yml").write_text(ROLE)
    yield lab
    tear_down(lab)


def _status(lab: Lab) -> str:
    res = run(argv("status", lab.file))
    assert res.returncode == 0, res.stderr
    return res.stdout


def _ssh(lab: Lab, command: str) -> str:
    res = run(argv("ssh", lab.file, lab.guest, extra=("--", command)), timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def _up_ok(lab: Lab, *extra: str) -> str:
    res = run(argv("up", lab.file, extra=extra))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert not lab.orphans()
    return res.stdout + res.stderr


def test_up_killed_during_boot_wait_then_down_is_quick(lab: Lab, tmp_path: Path) -> None:
    first = spawn(argv("up", lab.file), tmp_path / "up1.log")
    first.wait_for(r"\[fg\] +kernel after")
    first.kill9()
    assert "fg: booting (no SSH yet)" in _status(lab)
    started = time.monotonic()
    res = run(argv("down", lab.file))
    took = time.monotonic() - started
    assert res.returncode == 0 and "fg: stopped" in res.stdout, res.stdout + res.stderr
    # no sshd to ask yet: QMP quit or a kill, not the 30 s of a clean shutdown's timeout
    assert took < 8, f"down of a booting guest took {took:.1f} s"
    assert "fg: stopped" in _status(lab)
    assert not lab.orphans()


def test_up_killed_during_boot_wait_then_up_waits_for_that_boot(lab: Lab,
                                                                 tmp_path: Path) -> None:
    first = spawn(argv("up", lab.file), tmp_path / "up1.log")
    first.wait_for(r"\[fg\] +(kernel|initramfs) after")
    pid = qemu_pid(lab.state, lab.guest)
    first.kill9()
    out = _up_ok(lab)
    assert "a boot started" in out and "is in progress" in out, out
    assert "[fg]   userspace after" in out  # the milestones of the boot it found
    assert qemu_pid(lab.state, lab.guest) == pid  # the same QEMU, not a second boot
    assert "fg: running (pid" in _status(lab)


def test_up_killed_during_roles_over_ssh(lab: Lab, tmp_path: Path) -> None:
    first = spawn(argv("up", lab.file), tmp_path / "up.log")
    first.wait_for(r"roles over SSH")
    time.sleep(2)  # inside the role's task
    first.kill9()
    out = _up_ok(lab)
    assert "roles over SSH: ok=0 changed=1" in out or "changed=1" in out, out


def _ssh_unpinned(lab: Lab, command: str) -> None:
    """ssh to the guest accepting whatever host key it shows: how the test puts the guest's
    own keys back after the refusal (provision9p itself never would)."""
    res = run(argv("status", lab.file, extra=("--json",)))
    (port,) = [g["ssh_port"] for g in json.loads(res.stdout)["guests"] if g["name"] == lab.guest]
    done = subprocess.run(
        ["ssh", "-i", str(lab.state / "ssh" / "id_ed25519"), "-p", str(port),
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "ControlPath=none",
         "-o", "LogLevel=ERROR", "root@127.0.0.1", command],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_rekeyed_guest_is_refused_never_repinned(lab: Lab) -> None:
    pinned = (lab.state / "guests" / lab.guest / "host_key.pub").read_text()
    # New host keys now; once `up` has refused them, the test puts the guest's own back
    # (over an unpinned ssh), so the test ends with `up` succeeding without a rebuild.
    _ssh(lab, "mkdir -p /root/keys && cp -a /etc/ssh/ssh_host_* /root/keys/ && "
              "rm -f /etc/ssh/ssh_host_* && ssh-keygen -q -A && systemctl restart ssh")
    started = time.monotonic()
    res = run(argv("up", lab.file))
    assert time.monotonic() - started < 35, "the refusal came too late to be checked"
    assert res.returncode == 1, res.stdout + res.stderr
    assert "answered with host key" in res.stderr, res.stderr
    assert "not the one made when its tree was built" in res.stderr
    assert (lab.state / "guests" / lab.guest / "host_key.pub").read_text() == pinned
    _ssh_unpinned(lab, "cp -a /root/keys/* /etc/ssh/ && systemctl restart ssh")
    res = run(argv("up", lab.file))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert (lab.state / "guests" / lab.guest / "host_key.pub").read_text() == pinned

PKG_ROLE = """\
- name: a package with a long unpack, installed over SSH
  apt:
    name: vim
  phase: ssh
"""


# Slow: a package install in the TCG guest, killed mid-dpkg, then completed (4-5 minutes).
@pytest.mark.slow(covered_by="tests/faults/test_guest_faults.py::"
                             "test_up_killed_during_roles_over_ssh")
def test_power_loss_during_apt_is_crashed_then_up_completes_it(lab: Lab,
                                                              tmp_path: Path) -> None:
    """kill -9 of QEMU while dpkg installs: `status` says crashed, `up` boots it again,
    the tree is intact and the apt task completes."""
    if "fg: running" not in _status(lab):  # alone (the slow ring's -m slow): boot it first
        _up_ok(lab)
    _ssh(lab, "echo before-the-crash > /root/marker && sync")
    (lab.dir / "roles" / "pkg" / "tasks").mkdir(parents=True)
    (lab.dir / "roles" / "pkg" / "tasks" / "main.yml").write_text(PKG_ROLE)
    # roles are not build inputs: this changes what runs over SSH, not the tree
    lab.file.write_text(lab.file.read_text().replace("roles: [slow]", "roles: [pkg]"))
    up = spawn(argv("up", lab.file), tmp_path / "up.log")
    up.wait_for(r"roles over SSH")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        res = run(argv("ssh", lab.file, lab.guest, extra=("--", "pgrep -x dpkg || true")),
                  timeout=60)
        if res.stdout.strip():
            break
        assert up.proc.poll() is None, f"apt finished before dpkg was seen:\n{up.text()}"
    else:
        pytest.fail(f"dpkg never ran:\n{up.text()}")
    time.sleep(1)
    pid = qemu_pid(lab.state, lab.guest)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # the guest loses power mid-dpkg
    assert up.finish() != 0
    status = _status(lab)
    assert "fg: crashed: QEMU died without shutting down" in status, status
    assert "last console lines:" in status
    out = _up_ok(lab)
    assert "booted (tcg" in out or "booted (kvm" in out
    assert _ssh(lab, "cat /root/marker").strip() == "before-the-crash"
    audit = _ssh(lab, "dpkg --audit; dpkg-query -W -f='${db:Status-Abbrev}' vim")
    assert audit.strip() == "ii", audit
