"""A role's tree phase cannot touch the host: it tries the host name, swap, sysctls,
mounts, links, firewall rules, the clock, killing a host process and a reboot, on a copy
of a real Debian tree through the tree connection (as the build runs roles); afterwards
every one of those is as it was on the host. As root here; tests/integration/test_rootless.py
runs the same attempts as a normal user."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from debian import debfile
from host_state import ATTEMPTS, host_state
from scratch_tree import scratch_tree

from provision9p import paths
from provision9p.connect.tree import TreeConnection
from provision9p.host.mirror import host_mirror
from provision9p.image import pins
from provision9p.lab import load_lab
from provision9p.lab.model import RootfsSpec
from provision9p.rootfs import builder, contain
from provision9p.rootfs.builder import TreeRequest
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


def _attempts_script(pid: int, where: Path, *, reboot: bool) -> str:
    """Every attempt in a subshell; the swap file in `where`, a directory the build
    may write."""
    return "; ".join(f"echo [{name}]; ({attempt.format(pid=pid)})".replace(
        "/swapfile", f"{where}/swapfile") for name, attempt in ATTEMPTS.items()
        if reboot or name != "reboot")


@pytest.mark.tree
def test_a_builder_cannot_touch_the_host(tmp_path: Path) -> None:
    """What mmdebstrap runs (contain.py --build: the host's root kept, read-only) tries
    every attempt with the host's own tools; the host is as it was, only the given
    directory was writable, and /tmp was the build's own."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root, as CI has")
    writable = tmp_path / "cache"
    writable.mkdir()
    sleeper = subprocess.Popen(["sleep", "600"])
    try:
        # the host's `reboot` (systemctl) stops at its read-only /run: busybox's makes
        # the system call (setup.sh installs busybox-static)
        script = (f"hostname; touch {writable}/written /etc/p9-contained {tmp_path}/outside "
                  f"/tmp/p9-private; " + _attempts_script(sleeper.pid, writable, reboot=True)
                  .replace("reboot -ff", "busybox reboot -f"))
        before, wall, mono = host_state(writable), time.time(), time.monotonic()
        done = subprocess.run(contain.build_argv([writable], [], "b", ["sh", "-c", script]),
                              capture_output=True, text=True, timeout=120)
        after = host_state(writable)
        changed = {key: (before[key], after[key]) for key in before if before[key] != after[key]}
        assert not changed, f"the build changed the host: {changed}\n{done.stdout}{done.stderr}"
        assert abs((time.time() - wall) - (time.monotonic() - mono)) < 60
        assert sleeper.poll() is None, "the build killed a host process"
        assert done.stdout.splitlines()[0] == "b", done.stdout  # its own host name
        assert "[reboot]" in done.stdout and done.returncode == 129, (done.returncode,
                                                                      done.stdout)
        assert (writable / "written").exists()
        for path in (Path("/etc/p9-contained"), tmp_path / "outside", Path("/tmp/p9-private")):
            assert not path.exists(), f"the build wrote {path} on the host"
        assert "/etc/p9-contained': Read-only file system" in done.stderr, done.stderr
    finally:
        sleeper.kill()
        sleeper.wait()


def _hostile_deb(where: Path, script: str) -> Path:
    """A package whose postinst makes the attempts and records what it saw, in a flat
    repository of its own (as image/pins.py serves a lock's lost versions)."""
    pkg = where / "pkg"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN" / "control").write_text(
        "Package: p9-hostile\nVersion: 1\nArchitecture: all\nMaintainer: tests <t@t>\n"
        "Depends: iproute2, iptables, kmod, procps\nDescription: containment test\n")
    postinst = pkg / "DEBIAN" / "postinst"
    postinst.write_text(f"#!/bin/sh\nhostname > /hostname-seen\n{script}\nexit 0\n")
    postinst.chmod(0o755)
    repo = where / "repo"
    repo.mkdir()
    deb = repo / "p9-hostile_1_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(pkg), str(deb)], check=True,
                   capture_output=True)
    control = debfile.DebFile(str(deb)).debcontrol()
    control["Filename"] = f"./{deb.name}"
    control["Size"] = str(deb.stat().st_size)
    control["SHA256"] = hashlib.sha256(deb.read_bytes()).hexdigest()
    (repo / "Packages").write_text(control.dump())
    return repo


def test_a_base_trees_maintainer_scripts_cannot_touch_the_host(tmp_path: Path) -> None:
    """A real mmdebstrap build, as `rootfs build` runs it, of a package whose postinst
    makes the attempts (but the reboot, which would end the build): the host is as it was,
    the build succeeds, and the tree is what root's builds always made (device nodes)."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root (a real tree's owners), as CI has")
    staging = paths.cache_home() / "trees" / f".p9-hostile.staging-{os.getpid()}"
    staging.mkdir(parents=True)
    sleeper = subprocess.Popen(["sleep", "600"])
    try:
        repo = _hostile_deb(tmp_path, _attempts_script(sleeper.pid, Path("/"), reboot=False))
        req = TreeRequest("bookworm", "amd64", "minbase", ("main",),
                          (*SUITE_PACKAGES, "p9-hostile"), host_mirror())
        argv = builder._mmdebstrap_argv(req, staging, [f"deb [trusted=yes] file://{repo} ./"],
                                        [f"--hook-dir={pins._AUTOMOUNT}"])
        before, wall, mono = host_state(staging), time.time(), time.monotonic()
        builder._build("mmdebstrap", req, staging, argv)
        after = host_state(staging)
        changed = {key: (before[key], after[key]) for key in before if before[key] != after[key]}
        assert not changed, f"the build changed the host: {changed}"
        assert abs((time.time() - wall) - (time.monotonic() - mono)) < 60
        assert sleeper.poll() is None, "the build killed a host process"
        assert (staging / "hostname-seen").read_text() == "localhost\n"
        assert (staging / "swapfile").is_file()  # made, not swapped on by the host
        null = os.lstat(staging / "dev/null")
        assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    finally:
        sleeper.kill()
        sleeper.wait()
        shutil.rmtree(staging, ignore_errors=True)
