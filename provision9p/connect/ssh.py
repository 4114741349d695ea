"""The `ssh` connection: one paramiko session per guest, its host key pinned at build time.

A guest that answers with another host key is refused (never auto-added): the key
was generated when its tree was built and only its public half was kept.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import logging
import posixpath
import shlex
import socket
import stat as stat_mod
import threading
import time
import uuid

import paramiko

from provision9p.connect.base import RunResult
from provision9p.errors import ConnectError
from provision9p.rootfs.metadata.base import GuestStat
from provision9p.target import Target


class HostKeyMismatch(ConnectError):
    """The guest answered with another host key than the one pinned at build: never retried."""


class NotReady(ConnectError):
    """The SSH handshake broke off (sshd starting or reloading): worth another try."""


class _Pinned(paramiko.MissingHostKeyPolicy):
    def __init__(self, expected: paramiko.PKey, guest: str) -> None:
        self.expected = expected
        self.guest = guest

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        if key.get_name() != self.expected.get_name() or \
                key.asbytes() != self.expected.asbytes():
            raise HostKeyMismatch(
                f"{self.guest} answered with host key {key.get_fingerprint().hex()}, not the "
                "one made when its tree was built",
                hint="something else may be listening on that port; run "
                     "`provision9p status`, or rebuild the guest with `provision9p up --rebuild`")


def pinned_line(target: Target) -> tuple[str, str]:
    pinned = target.state.read_host_key()
    if pinned is None:
        raise ConnectError(f"no pinned host key in {target.state.host_key}",
                           hint=f"build the guest first: `provision9p up {target.name}`")
    return pinned


def pinned_key(target: Target) -> paramiko.PKey:
    kind, data = pinned_line(target)
    return paramiko.PKey.from_type_string(kind, base64.b64decode(data))


def ssh_banner(port: int, timeout: float = 1.0) -> bool:
    """True when an SSH server answers on 127.0.0.1:port (slirp accepts before the guest)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(4).startswith(b"SSH-")
    except OSError:
        return False


# paramiko's transport thread logs connection resets with tracebacks; our errors say it.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False


AUTH_TIMEOUT = 60.0


def open_client(target: Target, port: int, timeout: float = 10.0,
                attempts: int = 3, sock: socket.socket | None = None) -> paramiko.SSHClient:
    """A logged-in client; a handshake that breaks off (sshd reloading) is retried.

    `sock`: a connection already open to the guest's sshd (the boot's banner probe),
    used for the first attempt instead of a new one: one sshd fork less in the guest."""
    for attempt in range(attempts):
        try:
            return _open_client(target, port, timeout, sock if attempt == 0 else None)
        except NotReady:
            if attempt == attempts - 1:
                raise
            time.sleep(1.0)
    raise AssertionError("unreachable")


def _open_client(target: Target, port: int, timeout: float,
                 sock: socket.socket | None = None) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(_Pinned(pinned_key(target), target.name))
    where = f"{target.name} on 127.0.0.1:{port}"
    hint = "is it running? `provision9p status`"
    try:
        # A wrong key is refused at once; only a guest too slow to answer (a loaded host
        # under TCG) runs into auth_timeout, which paramiko reports as an authentication
        # failure. So it is generous, rather than told apart by its message.
        client.connect("127.0.0.1", port=port, username="root",
                       key_filename=str(target.client_key), look_for_keys=False,
                       allow_agent=False, timeout=timeout, banner_timeout=timeout,
                       auth_timeout=max(timeout, AUTH_TIMEOUT), sock=sock)
    except ConnectError:
        client.close()
        raise
    except paramiko.AuthenticationException as exc:
        client.close()
        raise ConnectError(f"cannot log into {where}: {exc}",
                           hint=f"the lab's key is {target.client_key}; rebuild the guest "
                                "if it was made with another one") from exc
    except (paramiko.SSHException, EOFError, ConnectionResetError) as exc:
        # The TCP connection was accepted (slirp accepts for the guest) but the SSH
        # handshake did not complete: sshd is not (yet, or for a moment) there.
        client.close()
        raise NotReady(f"cannot SSH into {where}: {exc}", hint=hint) from exc
    except OSError as exc:
        client.close()
        raise ConnectError(f"cannot SSH into {where}: {exc}", hint=hint) from exc
    transport = client.get_transport()
    if transport is not None:
        transport.set_keepalive(30)
    return client


class SSHConnection:
    """The booted guest, over one reused SSH session (commands) and one SFTP channel."""

    phase = "ssh"

    def __init__(self, client: paramiko.SSHClient, guest: str, port: int) -> None:
        self.client = client
        self.guest = guest
        self.port = port
        self._sftp: paramiko.SFTPClient | None = None
        self._opening: concurrent.futures.Future[paramiko.SFTPClient] | None = None

    def open_sftp_soon(self) -> None:
        """Start opening the file channel now, alongside the next command: under TCG the
        guest's sftp-server takes seconds to start right after boot, and a play's first
        command (the facts) would otherwise run before it, not while it starts."""
        if self._sftp is None and self._opening is None:
            self._opening = concurrent.futures.Future()
            threading.Thread(target=self._open_sftp, args=(self._opening,), daemon=True,
                             name=f"sftp-{self.guest}").start()

    def _open_sftp(self, future: concurrent.futures.Future[paramiko.SFTPClient]) -> None:
        try:
            future.set_result(self.client.open_sftp())
        except BaseException as exc:  # handed to the thread that needs the channel
            future.set_exception(exc)

    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            opening, self._opening = self._opening, None
            self._sftp = opening.result() if opening else self.client.open_sftp()
        return self._sftp

    def run(self, command: str | list[str], *, stdin: bytes | None = None,
            cwd: str | None = None, env: dict[str, str] | None = None) -> RunResult:
        cmd = command if isinstance(command, str) else shlex.join(command)
        if env:
            cmd = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + " " + cmd
        if cwd:
            cmd = f"cd {shlex.quote(cwd)} && {cmd}"
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise ConnectError(f"the SSH connection to {self.guest} was lost",
                               hint="check `provision9p status` and the console")
        chan = transport.open_session()
        try:
            chan.exec_command(cmd)
            if stdin is not None:
                chan.sendall(stdin)
            chan.shutdown_write()
            out = chan.makefile("rb").read()
            err = chan.makefile_stderr("rb").read()
            rc = chan.recv_exit_status()
        finally:
            chan.close()
        return RunResult(rc, out.decode(errors="replace"), err.decode(errors="replace"))

    def stat(self, path: str) -> GuestStat | None:
        try:
            a = self.sftp.lstat(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if getattr(exc, "errno", None) == 2:
                return None
            raise
        return GuestStat(mode=a.st_mode or 0, uid=a.st_uid or 0, gid=a.st_gid or 0,
                         size=a.st_size or 0, mtime=float(a.st_mtime or 0))

    def readlink(self, path: str) -> str:
        target = self.sftp.readlink(path)
        if target is None:
            raise OSError(f"{path} is not a symlink")
        return target

    def read_file(self, path: str) -> bytes:
        with self.sftp.open(path, "rb") as f:
            return f.read()

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644,
                   uid: int = 0, gid: int = 0) -> None:
        tmp = posixpath.join(posixpath.dirname(path),
                             f".{posixpath.basename(path)}.p9tmp-{uuid.uuid4().hex[:8]}")
        try:
            with self.sftp.open(tmp, "wb") as f:
                f.set_pipelined(True)
                f.write(data)
            self.sftp.chown(tmp, uid, gid)
            self.sftp.chmod(tmp, mode)
            self.sftp.posix_rename(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                self.sftp.remove(tmp)
            raise

    def mkdir(self, path: str, *, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        self.sftp.mkdir(path, mode)
        self.sftp.chown(path, uid, gid)
        self.sftp.chmod(path, mode)

    def symlink(self, target: str, path: str) -> None:
        self.sftp.symlink(target, path)

    def chown(self, path: str, uid: int, gid: int) -> None:
        # SFTP's chown follows symlinks; lchown through the shell keeps links as they are.
        res = self.run(["chown", "-h", f"{uid}:{gid}", path])
        if not res.ok:
            raise OSError(res.stderr.strip())

    def chmod(self, path: str, mode: int) -> None:
        self.sftp.chmod(path, mode & 0o7777)

    def remove(self, path: str) -> None:
        st = self.stat(path)
        if st is not None and stat_mod.S_ISDIR(st.mode):
            self.sftp.rmdir(path)
        else:
            self.sftp.remove(path)

    def listdir(self, path: str) -> list[str]:
        return sorted(self.sftp.listdir(path))

    def close(self) -> None:
        if self._opening is not None:
            with contextlib.suppress(Exception):
                self._opening.result()  # opened or failed: then the client closes it
        if self._sftp is not None:
            self._sftp.close()
        self.client.close()


def connect(target: Target, *, wait: float = 0.0) -> SSHConnection:
    """Connect to a running guest (the port comes from its boot record)."""
    if target.running_pid() is None:
        raise ConnectError(f"{target.name} is not running",
                           hint=f"start it: `provision9p up {target.name}`")
    port = target.ssh_port()
    deadline = time.monotonic() + wait
    while wait and not ssh_banner(port) and time.monotonic() < deadline:
        time.sleep(0.5)
    return SSHConnection(open_client(target, port), target.name, port)
