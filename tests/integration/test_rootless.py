"""The default lab's `up` as a normal user: no root, no sudo, nothing of root's used.

A fresh account (a home, a subordinate id range, no sudo) runs the project from this
checkout: build (mmdebstrap in a user namespace of its own, a cold cache under its
home: the shared /var/cache/provision9p is root's), boot (QEMU as that user), SSH, roles,
verify; then `down`. Afterwards nothing under its home belongs to another uid (the
subordinate ids' files were the plain tree's, converted or deleted) and none of its
processes is left. One cold build and boot: ~3-4 minutes under TCG on a loaded host.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from host_state import ATTEMPTS, host_state

from provision9p.rootfs import rootless

pytestmark = [pytest.mark.vm, pytest.mark.network]

PROJECT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: Path
    python: str
    pythonpath: str


def _processes_of(uid: int) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if proc.stat().st_uid == uid:
                    pids.append(int(proc.name))
            except FileNotFoundError:
                continue
    return pids


def _as(account: Account, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": str(account.home),
           "USER": account.name, "LOGNAME": account.name, "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1", "NO_COLOR": "1"}
    if account.pythonpath:
        env["PYTHONPATH"] = account.pythonpath
    return subprocess.run(argv, env=env, cwd=account.home, user=account.uid, group=account.gid,
                          extra_groups=[], capture_output=True, text=True, timeout=timeout,
                          check=False)


def _interpreter(uid: int, gid: int) -> tuple[str, str]:
    """This interpreter when the account can run it (a venv in the clone), else the
    system's of the same version with this one's packages and the checkout on its path."""
    try:
        probe = subprocess.run([sys.executable, "-c", "import provision9p, xattr, yaml"],
                               user=uid, group=gid, extra_groups=[], capture_output=True,
                               cwd="/", check=False)
        if probe.returncode == 0:
            return sys.executable, ""
    except PermissionError:  # e.g. an interpreter under /root
        pass
    system = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    if not os.access(system, os.X_OK):
        pytest.fail(f"the account cannot run {sys.executable} and there is no {system}")
    paths = ":".join(dict.fromkeys([str(PROJECT), sysconfig.get_paths()["purelib"],
                                    sysconfig.get_paths()["platlib"]]))
    probe = subprocess.run([system, "-c", "import provision9p, xattr, yaml"],
                           env={"PYTHONPATH": paths}, user=uid, group=gid, extra_groups=[],
                           capture_output=True, text=True, cwd="/", check=False)
    if probe.returncode != 0:
        pytest.fail(f"the account cannot import the project from {paths} with {system} "
                    f"(a clone where other users may read, not under /root): {probe.stderr}")
    return system, paths


@pytest.fixture(scope="module")
def account() -> Iterator[Account]:
    if os.geteuid() != 0:
        pytest.fail("this test creates an account: it needs root, as CI has")
    name = f"p9rl{os.getpid() % 100000}"
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", "--user-group", name],
                   check=True, capture_output=True)
    try:
        pw = pwd.getpwnam(name)
        # Debian's useradd gives a new user a range itself (login.defs SUB_UID_MIN);
        # where it did not, add one as an administrator would.
        for path, flag in ((rootless.SUBUID, "--add-subuids"),
                           (rootless.SUBGID, "--add-subgids")):
            if rootless.sub_ids(path, name, pw.pw_uid) is None:
                start = int(rootless.admin_lines(name)[0].split(":")[1])
                subprocess.run(["usermod", flag, f"{start}-{start + 65535}", name],
                               check=True, capture_output=True)
        home = Path(pw.pw_dir)
        python, pythonpath = _interpreter(pw.pw_uid, pw.pw_gid)
        yield Account(name, pw.pw_uid, pw.pw_gid, home, python, pythonpath)
    finally:
        uid = pwd.getpwnam(name).pw_uid
        for pid in _processes_of(uid):  # the account is ours: so is every process of it
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["userdel", "--remove", name], capture_output=True, check=False)
        for path in (rootless.SUBUID, rootless.SUBGID):  # where userdel left them
            lines = path.read_text().splitlines(keepends=True)
            kept = [ln for ln in lines if not ln.startswith(f"{name}:")]
            if kept != lines:
                path.write_text("".join(kept))


NAMESPACE_PROBE = """
import json, os, stat, sys
from pathlib import Path
from provision9p.errors import BuildError
from provision9p.rootfs import rootless

tree = Path(sys.argv[1])

def inside():
    (tree / "guest5").write_text("x")
    os.chown(tree / "guest5", 5, 5)  # left as the guest's uid 5
    rootless.bind_devices(tree)
    with open(tree / "dev/null", "w") as f:
        f.write("lost")
    null = os.stat(tree / "dev/null")
    rootless.unbind_devices(tree)
    return {"uid": os.getuid(), "null_is_device": stat.S_ISCHR(null.st_mode),
            "dev_left": os.listdir(tree / "dev")}

def fails():
    raise BuildError("inside", hint="the hint")

out = rootless.run(inside)
try:
    rootless.run(fails)
except BuildError as exc:
    out["error"] = [type(exc).__name__, exc.message, exc.hint]
print(json.dumps(out))
"""


def test_namespace_maps_guest_ids_to_the_users_range(account: Account) -> None:
    tree = account.home / "probe"
    tree.mkdir()
    os.chown(tree, account.uid, account.gid)
    try:
        run = _as(account, [account.python, "-c", NAMESPACE_PROBE, str(tree)], timeout=120)
        assert run.returncode == 0, run.stderr
        out = json.loads(run.stdout)
        assert out == {"uid": 0, "null_is_device": True, "dev_left": [],
                       "error": ["BuildError", "inside", "the hint"]}
        start = rootless.sub_ids(rootless.SUBUID, account.name, account.uid)
        assert start is not None
        assert (tree / "guest5").stat().st_uid == start.start + 4  # guest uid k: start + k - 1
        assert (tree / "dev").stat().st_uid == account.uid  # made by uid 0 inside: the user
        assert not _processes_of(account.uid)  # the namespace's child is gone
    finally:
        shutil.rmtree(tree)


CONTAINED_PROBE = """
import json, subprocess, sys
from pathlib import Path
from provision9p.rootfs import contain, rootless

tree, script = Path(sys.argv[1]), sys.argv[2]

def inside():
    done = contain.run(tree, ["/bin/sh", "-c", script], hostname="g")
    return [done.returncode, done.stdout.decode(), done.stderr.decode()]

print(json.dumps(rootless.run(inside)))
"""


def test_tree_phase_attempts_as_a_normal_user_leave_the_host_alone(account: Account) -> None:
    """The containment test of tests/tasks/test_contained.py as a normal user: the same
    attempts (busybox's tools; it has no iptables) through the build's user namespace and
    the tree's own namespaces inside it."""
    tree = account.home / "contained"
    (tree / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", tree / "bin" / "busybox")
    for tool in ("sh", "hostname", "dd", "chmod", "mkswap", "swapon", "mount", "sysctl",
                 "mkdir", "touch", "ip", "date", "kill", "modprobe", "reboot", "echo"):
        (tree / "bin" / tool).symlink_to("busybox")
    for path in [tree, *tree.rglob("*")]:
        os.lchown(path, account.uid, account.gid)
    sleeper = subprocess.Popen(["sleep", "600"])
    try:
        script = "export PATH=/bin; hostname; " + "; ".join(
            f"echo [{name}]; ({attempt.format(pid=sleeper.pid)})" for name, attempt
            in ATTEMPTS.items())
        before, wall, mono = host_state(tree), time.time(), time.monotonic()
        run = _as(account, [account.python, "-c", CONTAINED_PROBE, str(tree), script],
                  timeout=120)
        after = host_state(tree)
        assert run.returncode == 0, run.stdout + run.stderr
        code, out, err = json.loads(run.stdout)
        changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
        assert not changed, f"the tree phase changed the host: {changed}\n{out}\n{err}"
        assert abs((time.time() - wall) - (time.monotonic() - mono)) < 60
        assert sleeper.poll() is None, "the tree phase killed a host process"
        assert out.splitlines()[0] == "g", out  # the guest's host name, inside
        assert "[reboot]" in out and code == 129, (code, out, err)  # its PID 1 ended
    finally:
        sleeper.kill()
        sleeper.wait()
        shutil.rmtree(tree)


BUILD_PROBE = """
import json, subprocess, sys
from pathlib import Path
from provision9p.rootfs import contain, rootless

writable, script = Path(sys.argv[1]), sys.argv[2]

def inside():
    argv = contain.build_argv([writable], [], "b", ["/bin/sh", "-c", script])
    done = subprocess.run(argv, capture_output=True, text=True)
    return [done.returncode, done.stdout, done.stderr]

print(json.dumps(rootless.run(inside)))
"""


def test_build_attempts_as_a_normal_user_leave_the_host_alone(account: Account) -> None:
    """tests/tasks/test_contained.py's builder test as a normal user: what mmdebstrap
    runs in the build's namespace (the host's tools, the host's root read-only but the
    cache) leaves the host alone too."""
    writable = account.home / "cache"
    writable.mkdir()
    os.chown(writable, account.uid, account.gid)
    sleeper = subprocess.Popen(["sleep", "600"])
    try:
        script = (f"hostname; touch {writable}/written {account.home}/outside; " + "; ".join(
            f"echo [{name}]; ({attempt.format(pid=sleeper.pid)})".replace(
                "/swapfile", f"{writable}/swapfile").replace("reboot -ff", "busybox reboot -f")
            for name, attempt in ATTEMPTS.items()))
        before, wall, mono = host_state(writable), time.time(), time.monotonic()
        run = _as(account, [account.python, "-c", BUILD_PROBE, str(writable), script],
                  timeout=120)
        after = host_state(writable)
        assert run.returncode == 0, run.stdout + run.stderr
        code, out, err = json.loads(run.stdout)
        changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
        assert not changed, f"the build changed the host: {changed}\n{out}\n{err}"
        assert abs((time.time() - wall) - (time.monotonic() - mono)) < 60
        assert sleeper.poll() is None, "the build killed a host process"
        assert out.splitlines()[0] == "b", out
        assert "[reboot]" in out and code == 129, (code, out, err)
        assert (writable / "written").exists()
        assert not (account.home / "outside").exists(), "the build wrote outside its cache"
    finally:
        sleeper.kill()
        sleeper.wait()
        shutil.rmtree(writable)


def test_default_lab_up_and_down_as_a_normal_user(account: Account) -> None:
    p9 = [account.python, "-m", "provision9p"]
    start = time.monotonic()
    up = _as(account, [*p9, "up"], timeout=1500)
    seconds = time.monotonic() - start
    assert up.returncode == 0, up.stdout + up.stderr
    stages = [ln.strip() for ln in up.stderr.splitlines() + up.stdout.splitlines()
              if "mmdebstrap finished" in ln or ln.strip().startswith(("built in", "booted"))]
    print(f"cold up as {account.name}: {seconds:.0f} s; " + "; ".join(stages))

    state = account.home / ".local/state/provision9p/default"
    cache = account.home / ".cache/provision9p"
    assert (state / "demo").is_dir() or any(state.iterdir())
    assert list(cache.glob(f"trees/*/{rootless.BASE_TAR}"))
    assert not Path("/var/lib/provision9p/default/.").is_relative_to(account.home)

    status = _as(account, [*p9, "status", "--json"], timeout=120)
    assert status.returncode == 0, status.stderr
    guest = json.loads(status.stdout)["guests"][0]
    assert guest["state"] == "running"
    assert Path(f"/proc/{guest['pid']}").stat().st_uid == account.uid  # QEMU as the user

    ssh = _as(account, [*p9, "ssh", "demo", "--", "id", "-u", "demo"], timeout=120)
    assert ssh.returncode == 0 and ssh.stdout.strip() == "1000", ssh.stdout + ssh.stderr

    down = _as(account, [*p9, "down"], timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr

    deadline = time.monotonic() + 30
    while _processes_of(account.uid) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = [Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ")
            for p in _processes_of(account.uid)]
    assert not left, left

    foreign = []
    for dirpath, dirnames, filenames in os.walk(account.home):
        for entry in [*dirnames, *filenames]:
            st = os.lstat(os.path.join(dirpath, entry))
            if st.st_uid != account.uid or st.st_gid != account.gid:
                foreign.append(f"{os.path.join(dirpath, entry)} {st.st_uid}:{st.st_gid}")
    assert not foreign, foreign[:20]
    shutil.rmtree(account.home / ".cache", ignore_errors=True)  # ~300 MB, before userdel
