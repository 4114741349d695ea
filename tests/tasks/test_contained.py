"""A role's tree phase cannot touch the host: it tries the host name, swap, sysctls,
mounts, links, firewall rules, the clock, killing a host process and a reboot, on a copy
of a real Debian tree through the tree connection (as the build runs roles); afterwards
every one of those is as it was on the host. As root here; tests/integration/test_rootless.py
runs the same attempts as a normal user."""

from __future__ import annotations

import io
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from host_state import ATTEMPTS, host_state
from scratch_tree import scratch_tree

from provision9p.connect.tree import TreeConnection
from provision9p.host.mirror import host_mirror
from provision9p.lab import load_lab
from provision9p.lab.model import RootfsSpec
from provision9p.rootfs.debootstrap import base_tree
from provision9p.rootfs.metadata.stores import PlainStore
from provision9p.tasks.engine import BriefReporter, run_play

pytestmark = [pytest.mark.network]

SUITE_PACKAGES = ("acl", "python3", "python3-apt")  # the suite's one base tree

def _role(where: Path, pid: int) -> None:
    tasks = where / "roles" / "escape" / "tasks"
    tasks.mkdir(parents=True)
    lines = ["- name: the tools to try with\n  apt: {name: [iptables, iproute2, kmod]}\n",
             "- name: the host name, inside\n  command: hostname\n  register: seen\n",
             "- copy: {content: '{{ seen.stdout }}', dest: /hostname-seen}\n"]
    for name, script in ATTEMPTS.items():
        lines.append(f"- name: {name}\n  shell: {script.format(pid=pid)!r}\n"
                     "  ignore_errors: true\n")
    (tasks / "main.yml").write_text("".join(lines))
    (where / "lab.yml").write_text("name: esc\nguests:\n  g:\n    roles: [escape]\n")


@pytest.fixture()
def tree(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("this test needs root (a real tree's owners), as CI has")
    base = base_tree(RootfsSpec(packages=SUITE_PACKAGES), "amd64", host_mirror()).path
    with scratch_tree(base, tmp_path / "scratch") as path:
        yield path


def test_a_role_in_the_tree_phase_cannot_touch_the_host(tree: Path, tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "600"])
    try:
        _role(tmp_path / "lab", sleeper.pid)
        lab = load_lab(tmp_path / "lab" / "lab.yml")
        before, wall, mono = host_state(tree), time.time(), time.monotonic()
        out = io.StringIO()
        with TreeConnection(tree, PlainStore(tree), "g") as conn:
            result = run_play(conn, lab.guest("g"), lab, reporter=BriefReporter("tree", out=out))
        after = host_state(tree)
        changed = {key: (before[key], after[key]) for key in before if before[key] != after[key]}
        assert not changed, f"the tree phase changed the host: {changed}\n{out.getvalue()}"
        assert result.failed == 0, out.getvalue()  # every attempt ran (ignore_errors)
        # a refused command says why, and how to run it in the booted guest where that helps
        lines = out.getvalue().splitlines()
        assert any("escape : ip link" in ln and "mark the task `phase: ssh`" in ln
                   for ln in lines), out.getvalue()
        assert any("escape : swapon" in ln and "swap with zram" in ln for ln in lines), \
            out.getvalue()
        assert abs((time.time() - wall) - (time.monotonic() - mono)) < 60  # the clock held
        assert sleeper.poll() is None, "the tree phase killed a host process"
        # inside, the host name was the guest's, and the firewall tool was there to try
        assert (tree / "hostname-seen").read_text() == "g"
        assert all((tree / "usr/sbin" / tool).exists() for tool in ("iptables", "modprobe"))
        assert (tree / "usr/bin/ip").exists() or (tree / "sbin/ip").exists()
        assert not (tree / "mnt/t/inside").exists()  # written on the tmpfs, gone with it
    finally:
        sleeper.kill()
        sleeper.wait()
