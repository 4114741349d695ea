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

Mapping root to itself is safe here only because the tree is all the command sees: with
no proc or sysfs (none can be mounted without a fully visible one), nothing the kernel
guards by file mode alone is in reach.

A builder (mmdebstrap, which runs the base tree's maintainer scripts) runs contained the
same way with `--build`, but keeps the host's root, which it reads (apt, keyrings, the
mirror's .debs): every mount is read-only to it (mount_setattr, recursively) except the
directories it is given to write (provision9p's cache, with the staging tree), and /tmp is
a private tmpfs. /proc stays, so root's build must not be uid 0 of the host: it runs as
SHIFT + k, and an id-mapped mount of the cache gives the files their true owners on disk.

Run as a script (`python -I contain.py TREE HOSTNAME -- ARGV...`, or
`python -I contain.py --build PATHS HOSTNAME -- ARGV...`), standard library only, so
each command pays an interpreter start and no provision9p import.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
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
_SYS_MOUNT_SETATTR = 442  # one number on every architecture (Linux 5.12)
_MOUNT_ATTR_RDONLY = 0x1
_AT_FDCWD = -100
_AT_RECURSIVE = 0x8000
_AT_EMPTY_PATH = 0x1000
_SYS_OPEN_TREE = 428  # these too (Linux 5.2)
_SYS_MOVE_MOUNT = 429
_OPEN_TREE_CLONE = 1
_OPEN_TREE_CLOEXEC = 0o2000000
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_MOUNT_ATTR_IDMAP = 0x100000
#: Root's builds run as host ids SHIFT + k for guest ids k (0..SHIFT_COUNT-1), never as
#: uid 0: a file a maintainer script can reach is checked against uid 0 by its mode alone
#: (sysctls, /proc/sysrq-trigger, sysfs), whatever the namespaces. Far above accounts and
#: /etc/subuid ranges (100000 up, 65536 each).
SHIFT = 0x70000000
SHIFT_COUNT = 65536
BUILD = "--build"
#: exit status of the contained command when the container itself could not be made
SETUP_FAILED = 125


def argv(tree: Path, hostname: str, command: list[str]) -> list[str]:
    """The argv that runs `command` (argv[0] a path or a name on PATH, inside the tree)
    contained in `tree`."""
    return [sys.executable, "-I", str(Path(__file__).resolve()), str(tree), hostname, "--",
            *command]


def build_argv(write: list[Path], read: list[Path], hostname: str,
               command: list[str]) -> list[str]:
    """The argv that runs a builder contained: the host's root read-only to it, /tmp its
    own, `write` writable; `read` are directories in /tmp it reads (all must exist)."""
    paths = {"write": [str(p.resolve()) for p in write], "read": [str(p.resolve()) for p in read]}
    return [sys.executable, "-I", str(Path(__file__).resolve()), BUILD, json.dumps(paths),
            hostname, "--", *command]


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


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _set_readonly(libc: ctypes.CDLL, path: str) -> None:
    """Every mount at and below `path` read-only."""
    attr = _MountAttr(_MOUNT_ATTR_RDONLY, 0, 0, 0)
    if libc.syscall(_SYS_MOUNT_SETATTR, _AT_FDCWD, path.encode(), _AT_RECURSIVE,
                    ctypes.byref(attr), ctypes.sizeof(attr)) != 0:
        _fail(f"mount_setattr {path} read-only")


def _enter_build(libc: ctypes.CDLL, paths: dict[str, list[str]], userns: int | None) -> None:
    """In the build's mount namespace: every mount read-only, /tmp a private tmpfs (hooks
    and dpkg-deb write there), then the `write` directories bound writable and the
    `read` ones read-only, each at its own path; through `userns`'s ids when given
    (id-mapped: the shifted build's files get their true owners on disk).

    The binds are cloned first, so one in /tmp (a cache, a lock's repository) is bound
    from where it was, under the tmpfs mounted meanwhile."""
    if libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        _fail("mount --make-rprivate /")
    # /proc stays as it is: a fresh proc (mmdebstrap mounts one in the chroot) needs a
    # visible one no more restrictive; what it offers is checked against the build's ids
    # (never the host's root, see SHIFT)
    binds = [(path, True) for path in paths["write"]] + [(p, False) for p in paths["read"]]
    proc = libc.syscall(_SYS_OPEN_TREE, _AT_FDCWD, b"/proc",
                        _OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC | _AT_RECURSIVE)
    if proc < 0:
        _fail("clone the mount of /proc")
    clones = []
    for path, writable in binds:
        fd = libc.syscall(_SYS_OPEN_TREE, _AT_FDCWD, path.encode(),
                          _OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC | _AT_RECURSIVE)
        if fd < 0:
            _fail(f"clone the mount of {path}")
        attr = _MountAttr((0 if writable else _MOUNT_ATTR_RDONLY)
                          | (_MOUNT_ATTR_IDMAP if userns is not None else 0), 0, 0,
                          userns if userns is not None else 0)
        if libc.syscall(_SYS_MOUNT_SETATTR, fd, b"", _AT_EMPTY_PATH | _AT_RECURSIVE,
                        ctypes.byref(attr), ctypes.sizeof(attr)) != 0:
            _fail(f"mount_setattr {path}" + (" (id-mapped)" if userns is not None else ""))
        clones.append(fd)
    _set_readonly(libc, "/")
    if libc.syscall(_SYS_MOVE_MOUNT, proc, b"", _AT_FDCWD, b"/proc",
                    _MOVE_MOUNT_F_EMPTY_PATH) != 0:
        _fail("mount /proc")
    os.close(proc)
    if libc.mount(b"tmpfs", b"/tmp", b"tmpfs", 0, b"mode=1777") != 0:
        _fail("mount a tmpfs on /tmp")
    for (path, _), fd in zip(binds, clones, strict=True):
        os.makedirs(path, exist_ok=True)  # under the new /tmp: its mount point
        if libc.syscall(_SYS_MOVE_MOUNT, fd, b"", _AT_FDCWD, path.encode(),
                        _MOVE_MOUNT_F_EMPTY_PATH) != 0:
            _fail(f"mount {path}")
        os.close(fd)


def _host_root() -> bool:
    """Whether this is root of the host (every id mapped to itself), not of a namespace."""
    return Path("/proc/self/uid_map").read_text().split() == ["0", "0", "4294967295"]


def _shifted_userns(libc: ctypes.CDLL) -> int:
    """A user namespace whose ids 0..SHIFT_COUNT-1 are SHIFT + those on the host, as an
    open file: a helper makes it, the maps are written here, the helper goes."""
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    helper = os.fork()
    if helper == 0:
        os.close(ready_r)
        os.close(hold_w)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if libc.unshare(_CLONE_NEWUSER) != 0:
            _fail("unshare the user namespace")
        os.write(ready_w, b"u")
        os.read(hold_r, 1)  # until the namespace is held open
        os._exit(0)
    os.close(ready_w)
    os.close(hold_r)
    try:
        if os.read(ready_r, 1) != b"u":
            os._exit(_code(os.waitpid(helper, 0)[1]))
        for name in ("uid_map", "gid_map"):
            Path(f"/proc/{helper}/{name}").write_text(f"0 {SHIFT} {SHIFT_COUNT}\n")
        return os.open(f"/proc/{helper}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(hold_w)
        os.close(ready_r)
        os.waitpid(helper, 0)


def _build_as_host_root(libc: ctypes.CDLL, paths: dict[str, list[str]], hostname: str,
                        command: list[str]) -> int:
    """Root's build: the mounts are made (id-mapped) while still root of the host, then
    the process joins the shifted user namespace and unshares the rest from there, so
    every mount it inherits is locked as it was set."""
    userns = _shifted_userns(libc)
    pid = os.fork()
    if pid == 0:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if libc.unshare(_CLONE_NEWNS) != 0:
            _fail("unshare the mount namespace")
        _enter_build(libc, paths, userns)
        if libc.setns(userns, _CLONE_NEWUSER) != 0:
            _fail("setns into the build's user namespace")
        os.setgroups([])
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        if libc.unshare(NAMESPACES & ~_CLONE_NEWUSER) != 0:
            _fail("unshare")
        _as_pid1(libc, lambda: socket.sethostname(hostname), command)
    os.close(userns)
    return _code(os.waitpid(pid, 0)[1])


def _as_pid1(libc: ctypes.CDLL, enter: Callable[[], None], command: list[str]) -> None:
    """Fork PID 1 of the new PID namespace (its end ends every process in it), which
    enters and execs `command`; exit with its status."""
    inner = os.fork()
    if inner == 0:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        enter()
        try:
            os.execvpe(command[0], command, os.environ)  # PATH searched in the tree
        except OSError as exc:
            os.write(2, f"provision9p: {command[0]}: {exc.strerror}\n".encode())
            os._exit(127)
    _, status = os.waitpid(inner, 0)
    os._exit(_code(status))


def main(args: list[str]) -> int:
    build = args[:1] == [BUILD]
    if build:
        args = args[1:]
    if len(args) < 4 or args[2] != "--":
        print("usage: contain.py TREE HOSTNAME -- ARGV...\n"
              '       contain.py --build \'{"write": [DIR...], "read": [DIR...]}\' '
              "HOSTNAME -- ARGV...",
              file=sys.stderr)
        return 2
    tree, hostname, _, *command = args
    libc = ctypes.CDLL(None, use_errno=True)
    if build and _host_root():
        return _build_as_host_root(libc, json.loads(tree), hostname, command)
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
        def enter() -> None:
            if build:
                _enter_build(libc, json.loads(tree), None)
                socket.sethostname(hostname)
            else:
                _enter(libc, tree, hostname)

        _as_pid1(libc, enter, command)
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
