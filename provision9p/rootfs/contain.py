"""Run one command in a guest's tree before boot, contained: it cannot act on the host.

A chroot is no boundary for root: `hostname`, `swapon`, `sysctl -w`, `ip link`, `date -s`,
`kill`, `reboot` in a role's tree phase acted on the host. Here the command runs in new
user, mount, UTS, IPC, PID and cgroup namespaces, with the tree as its root (pivot_root,
the host's root detached, so no chroot escape leads back out):

- the user namespace maps every id that is mapped here to itself (root: all of them; a
  normal user's build namespace: its own and its subordinate range), so files keep their
  true owners and apt's `_apt` sandbox works as before; but its capabilities reach only
  what the new namespaces own. The host's network namespace, clock, swap, kernel modules,
  sysctls and reboot belong to the initial user namespace: EPERM there.
- the host name is the guest's (UTS); mounts stay inside (a private mount namespace);
  processes see only their own PID namespace, whose end kills them all.
- the network namespace is the host's, so apt reaches the mirror; owning none of it, the
  command cannot configure it (no links, routes, firewall rules).

One code path for root and for a normal user (rootless.py's namespace is the parent then).
Hand-written rather than util-linux `unshare`: its --map-users goes through newuidmap,
which maps only /etc/subuid ranges, and it has no pivot_root; bubblewrap is not in the
base install and maps a single id without a setuid helper.

Run as a script (`python -I contain.py TREE HOSTNAME -- ARGV...`), standard library only,
so each command pays an interpreter start and no provision9p import.
"""

from __future__ import annotations

import ctypes
import os
import platform
import signal
import socket
import subprocess
import sys
from pathlib import Path

_CLONE_NEWNS = 0x00020000
_CLONE_NEWCGROUP = 0x02000000
_CLONE_NEWUTS = 0x04000000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWPID = 0x20000000
NAMESPACES = (_CLONE_NEWUSER | _CLONE_NEWNS | _CLONE_NEWUTS | _CLONE_NEWIPC | _CLONE_NEWPID
              | _CLONE_NEWCGROUP)
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18
_MNT_DETACH = 2
_PR_SET_PDEATHSIG = 1
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "s390x": 217}
#: exit status of the contained command when the container itself could not be made
SETUP_FAILED = 125


def argv(tree: Path, hostname: str, command: list[str]) -> list[str]:
    """The argv that runs `command` (argv[0] a path or a name on PATH, inside the tree)
    contained in `tree`."""
    return [sys.executable, "-I", str(Path(__file__).resolve()), str(tree), hostname, "--",
            *command]


def run(tree: Path, command: list[str], *, hostname: str = "localhost",
        stdin: bytes | None = None, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[bytes]:
    """`command` in `tree`, contained; its output captured."""
    return subprocess.run(argv(tree, hostname, command), input=stdin, capture_output=True,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **(env or {})})


def identity_map(proc_map: str) -> str:
    """Every range mapped in this namespace, mapped to itself one level down."""
    lines = []
    for line in proc_map.splitlines():
        inside, _, count = line.split()
        lines.append(f"{inside} {inside} {count}")
    return "\n".join(lines) + "\n"


def _fail(libc_call: str) -> None:
    err = ctypes.get_errno()
    os.write(2, f"provision9p: cannot contain the tree's command: {libc_call}: "
                f"{os.strerror(err)}\n".encode())
    os._exit(SETUP_FAILED)


def _enter(libc: ctypes.CDLL, tree: str, hostname: str) -> None:
    """In the new namespaces: the tree becomes / and the host's root is detached."""
    if libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        _fail("mount --make-rprivate /")
    if libc.mount(tree.encode(), tree.encode(), None, _MS_BIND | _MS_REC, None) != 0:
        _fail(f"bind mount {tree}")
    os.chdir(tree)
    number = _SYS_PIVOT_ROOT.get(platform.machine())
    if number is None or libc.syscall(number, b".", b".") != 0:
        _fail("pivot_root")
    # the old root is stacked on the new one at "."; detaching it leaves only the tree
    if libc.umount2(b".", _MNT_DETACH) != 0:
        _fail("umount the host's root")
    os.chdir("/")
    socket.sethostname(hostname)


def main(args: list[str]) -> int:
    tree, hostname, sep, *command = args
    if sep != "--" or not command:
        print("usage: contain.py TREE HOSTNAME -- ARGV...", file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    uid_map = identity_map(Path("/proc/self/uid_map").read_text())
    gid_map = identity_map(Path("/proc/self/gid_map").read_text())
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        os.close(go_w)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if libc.unshare(NAMESPACES) != 0:
            _fail("unshare")
        os.write(ready_w, b"u")
        if os.read(go_r, 1) != b"g":
            os._exit(SETUP_FAILED)
        inner = os.fork()  # PID 1 of the new PID namespace; its end ends every process in it
        if inner == 0:
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            _enter(libc, tree, hostname)
            try:
                os.execvpe(command[0], command, os.environ)  # PATH searched in the tree
            except OSError as exc:
                os.write(2, f"provision9p: {command[0]}: {exc.strerror}\n".encode())
                os._exit(127)
        _, status = os.waitpid(inner, 0)
        os._exit(_code(status))
    os.close(ready_w)
    os.close(go_r)
    try:
        if os.read(ready_r, 1) != b"u":  # the child could not unshare; it said why
            return _code(os.waitpid(pid, 0)[1])
        Path(f"/proc/{pid}/uid_map").write_text(uid_map)
        Path(f"/proc/{pid}/gid_map").write_text(gid_map)
        os.write(go_w, b"g")
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        raise
    finally:
        os.close(go_w)
    _, status = os.waitpid(pid, 0)
    return _code(status)


def _code(status: int) -> int:
    """A shell's exit status: the code, or 128 + the signal that ended the process."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
