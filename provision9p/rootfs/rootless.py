"""Building a root tree as a normal user: the build runs in a user namespace of our own.

A user without root cannot give a tree the guest's owners, chroot into it, or run
mmdebstrap's root mode. In a user namespace where the invoking user is uid 0 and its
/etc/subuid range is uids 1..65535 it can do all three, so the build runs there as it
runs for root. While the tree is plain, guest uid k is subuid start + k - 1 on the host;
the security model's conversion then makes every file the user's own (uid 0 inside),
the guest's owners kept in QEMU's xattrs. Nothing owned by another uid outlives the
build: the cached base is a tarball (rootfs/builder.py), not a tree.

Only the tree build needs the namespace; QEMU runs as the user outside it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import pwd
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from provision9p.errors import BuildError, HostError, Provision9pError

BASE_TAR = "base.tar"  # a normal user's cached base, in the cache entry's directory
SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")
# Guest ids 1..65535 need a range this long; uid 0 is the user itself.
NEEDED = 65535
_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_PR_SET_PDEATHSIG = 1

_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")

T = TypeVar("T")
_inside = False


@dataclass(frozen=True)
class SubIds:
    """One range of /etc/subuid or /etc/subgid."""

    start: int
    count: int


def needed() -> bool:
    """Whether a build must go through a user namespace: not root, and not in one yet."""
    return os.geteuid() != 0 and not _inside


def active() -> bool:
    """Whether builds are a normal user's (this process is not root, or is in our namespace)."""
    return _inside or os.geteuid() != 0


def inside() -> bool:
    """Whether this process is a build's user namespace (root there, the user outside)."""
    return _inside


def sub_ids(path: Path, name: str, uid: int) -> SubIds | None:
    """The first range for the user (by name or uid) at least NEEDED long, else None."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.strip().split(":")
        if len(fields) != 3 or fields[0] not in (name, str(uid)):
            continue
        try:
            start, count = int(fields[1]), int(fields[2])
        except ValueError:
            continue
        if count >= NEEDED:
            return SubIds(start, count)
    return None


def admin_lines(name: str) -> list[str]:
    """What an administrator adds to /etc/subuid and /etc/subgid for `name` (a free range)."""
    taken: list[int] = []
    for path in (SUBUID, SUBGID):
        try:
            for line in path.read_text().splitlines():
                fields = line.split(":")
                if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
                    taken.append(int(fields[1]) + int(fields[2]))
        except OSError:
            pass
    start = max([100000, *taken])
    return [f"{name}:{start}:65536"]


def id_maps(uid: int, gid: int, subuid: SubIds, subgid: SubIds) -> tuple[list[str], list[str]]:
    """newuidmap's and newgidmap's arguments (after the pid): the user is 0 inside, its
    range 1..65535."""
    return ([str(i) for i in (0, uid, 1, 1, subuid.start, NEEDED)],
            [str(i) for i in (0, gid, 1, 1, subgid.start, NEEDED)])


def _ranges() -> tuple[SubIds, SubIds]:
    pw = pwd.getpwuid(os.geteuid())
    uids = sub_ids(SUBUID, pw.pw_name, pw.pw_uid)
    gids = sub_ids(SUBGID, pw.pw_name, pw.pw_uid)
    if uids is None or gids is None:
        missing = " and ".join(str(p) for p, r in ((SUBUID, uids), (SUBGID, gids)) if r is None)
        line = admin_lines(pw.pw_name)[0]
        raise HostError(f"building a root tree as {pw.pw_name} (not root) needs a range of "
                        f"{NEEDED + 1} subordinate ids in {missing}",
                        hint=f"an administrator adds `{line}` to /etc/subuid and /etc/subgid "
                             "once (`provision9p doctor` lists what else is needed)")
    for tool in ("newuidmap", "newgidmap"):
        if not any(os.access(Path(d) / tool, os.X_OK)
                   for d in os.environ.get("PATH", "/usr/bin:/bin").split(":") if d):
            raise HostError(f"{tool} is missing (it maps the subordinate ids)",
                            hint="an administrator runs `apt-get install uidmap` once")
    return uids, gids


def run(fn: Callable[[], T]) -> T:
    """`fn()` in a forked child that is root in a new user (and mount) namespace.

    The result comes back pickled. A provision9p error in the child is raised again
    here with its message and hint; anything else becomes a BuildError with the
    child's traceback in it. The child dies with this process.
    """
    subuid, subgid = _ranges()
    uid_args, gid_args = id_maps(os.geteuid(), os.getegid(), subuid, subgid)
    # ready: the child has unshared (its maps can be written); go: they are written
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns from here
        for fd in (ready_r, go_w, out_r):
            os.close(fd)
        _child(fn, ready_w, go_r, out_w)
    for fd in (ready_w, go_r, out_w):
        os.close(fd)
    try:
        with os.fdopen(ready_r, "rb") as ready:
            unshared = ready.read(1) == b"u"
        if unshared:
            _map_ids(pid, uid_args, gid_args)
            os.write(go_w, b"g")
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        raise
    finally:
        os.close(go_w)
        data = _result(out_r, pid)
        _, status = os.waitpid(pid, 0)
    if not data:
        raise BuildError(f"the build's user namespace ended without a result "
                         f"({_describe(status)})", hint="rerun with --debug; what it "
                         "left half-made is cleaned up by the next build")
    kind, payload = pickle.loads(data)
    if kind == "ok":
        return payload  # type: ignore[no-any-return]
    if kind == "error":
        cls, message, hint = payload
        exc = cls.__new__(cls)
        Provision9pError.__init__(exc, message, hint)
        raise exc
    if kind == "interrupt":
        raise KeyboardInterrupt
    raise BuildError(f"the build failed in its user namespace:\n{payload}",
                     hint="this is a bug in provision9p; the traceback is above")


def _result(fd: int, pid: int) -> bytes:
    """The child's pickled result. A Ctrl-C reached the child too: it cleans up what it
    made (only it can delete its namespace's files) and reports; a second one kills it."""
    chunks: list[bytes] = []
    interrupted = False
    try:
        while True:
            try:
                chunk = os.read(fd, 1 << 16)  # raw reads: an interrupt loses no data
            except KeyboardInterrupt:
                if interrupted:
                    os.kill(pid, signal.SIGKILL)
                    raise
                interrupted = True
                continue
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit {os.waitstatus_to_exitcode(status)}"


def _map_ids(pid: int, uid_args: list[str], gid_args: list[str]) -> None:
    for tool, args in (("newuidmap", uid_args), ("newgidmap", gid_args)):
        proc = subprocess.run([tool, str(pid), *args], capture_output=True, text=True)
        if proc.returncode != 0:
            raise HostError(f"{tool} refused the id map {' '.join(args)}: "
                            f"{proc.stderr.strip()}",
                            hint="check the user's lines in /etc/subuid and /etc/subgid "
                                 "(`provision9p doctor`)")


def _child(fn: Callable[[], T], ready_w: int, go_r: int, out_w: int) -> None:
    """The forked side of run(): unshare, wait for the maps, run `fn`, report, exit."""
    global _inside
    code = 0
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNS) != 0:
            err = ctypes.get_errno()
            raise HostError(f"cannot create a user namespace: {os.strerror(err)}",
                            hint="an administrator enables unprivileged user namespaces "
                                 "(sysctl user.max_user_namespaces > 0)")
        os.write(ready_w, b"u")
        os.close(ready_w)
        if os.read(go_r, 1) != b"g":
            raise HostError("the id maps of the build's user namespace were not written",
                            hint="see the error above")
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        _inside = True
        # root's tools (chroot, depmod) are in sbin, which a user's PATH may lack
        path = os.environ.get("PATH", "/usr/bin:/bin").split(":")
        os.environ["PATH"] = ":".join([*path, *(d for d in _SBIN if d not in path)])
        result: tuple[str, object] = ("ok", fn())
    except Provision9pError as exc:
        result = ("error", (type(exc), exc.message, exc.hint))
    except KeyboardInterrupt:
        result = ("interrupt", None)
    except BaseException:
        result = ("crash", traceback.format_exc())
        code = 1
    try:
        with os.fdopen(out_w, "wb") as out:
            out.write(pickle.dumps(result))
    finally:
        for stream in (sys.stdout, sys.stderr):  # os._exit flushes nothing
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def extract_base(base: Path, dest: Path) -> None:
    """Unpack the cached base tarball into `dest` with the guest's owners (in the namespace).

    Its device nodes stay out: the namespace cannot make them, and the guest's /dev is
    the kernel's devtmpfs. While the tree is set up, the host's are bound in instead
    (bind_devices), until with_devices' hook takes them away again.
    """
    proc = subprocess.run(["tar", "-x", "-p", "--numeric-owner", "--exclude=./dev/*",
                           "-f", str(base / BASE_TAR), "-C", str(dest)],
                          capture_output=True, text=True)
    if proc.returncode == 0:
        bind_devices(dest)
    if proc.returncode != 0:
        raise BuildError(f"unpacking the base tree failed: {proc.stderr.strip()[-500:]}",
                         hint="check free disk space; `rm -r` the cache entry "
                              f"{base} to build it again")


# What chroot commands (maintainer scripts, apt, useradd) expect in /dev. Without them a
# `> /dev/null` makes a regular file that then collects every later write.
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
_MS_BIND = 4096
_MNT_DETACH = 2


def bind_devices(tree: Path) -> None:
    """Bind the host's device nodes onto empty files in the tree's /dev (in the build's
    private mount namespace, so the host never sees these mounts)."""
    libc = ctypes.CDLL(None, use_errno=True)
    dev = tree / "dev"
    dev.mkdir(mode=0o755, exist_ok=True)
    for name in DEVICES:
        target = dev / name
        target.touch(mode=0o666)
        if libc.mount(f"/dev/{name}".encode(), bytes(target), None, _MS_BIND, None) != 0:
            raise BuildError(f"cannot bind /dev/{name} into the tree: "
                             f"{os.strerror(ctypes.get_errno())}",
                             hint="the build's user namespace needs a mount namespace; "
                                  "see `provision9p doctor`")


def unbind_devices(tree: Path) -> None:
    """Undo bind_devices: the tree's /dev as the base had it, empty (before conversion)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for name in DEVICES:
        target = tree / "dev" / name
        libc.umount2(bytes(target), _MNT_DETACH)  # not mounted (already undone): fine
        target.unlink(missing_ok=True)


def with_devices(hook: Callable[[Path], None] | None) -> Callable[[Path], None]:
    """The tree phase's hook for a build in the namespace: the hook, then the host's
    device nodes taken out of the tree again, whatever the hook did."""
    def run_hook(tree: Path) -> None:
        try:
            if hook is not None:
                hook(tree)
        finally:
            unbind_devices(tree)
    return run_hook
