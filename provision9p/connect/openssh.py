"""The `ssh` program's side: the argv `provision9p ssh` runs, and the master it rides.

Under TCG every new SSH connection costs the guest a fork and re-exec of sshd over 9P, a
key exchange and a PAM session: about a second on a settled guest, more while it boots.
OpenSSH's connection sharing pays that once; `up` opens the master while the roles run,
so the first `provision9p ssh` after it rides a connection that is already there.
"""

from __future__ import annotations

import shutil
import subprocess

from provision9p.connect.ssh import pinned_line
from provision9p.target import Target

# A unix socket path must fit sockaddr_un (108 bytes with its NUL); OpenSSH adds a suffix
# while it sets the master up.
_MAX_CONTROL_PATH = 80

#: how long the master `provision9p ssh` leaves stays after its last session
SSH_PERSIST = 60
#: how long the one `up` opens waits for a first session (the user reads up's report)
UP_PERSIST = 300


def ssh_argv(target: Target, command: list[str], persist: int = SSH_PERSIST) -> list[str]:
    """The `ssh` program's argv for a running guest, its pinned key in its own known_hosts."""
    port = target.ssh_port()
    kind, key = pinned_line(target)
    target.known_hosts.write_text(f"[127.0.0.1]:{port} {kind} {key}\n")  # that key only
    argv = ["ssh", "-i", str(target.client_key), "-p", str(port),
            "-o", f"UserKnownHostsFile={target.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", *_multiplex(target, persist),
            "root@127.0.0.1"]
    return [*argv, "--", " ".join(command)] if command else argv


def _multiplex(target: Target, persist: int) -> list[str]:
    """The first `ssh` leaves a master connection; the next ones ride it instead of a new
    handshake. The master ends with the guest's connection (`down`)."""
    path = control_path(target)
    if path is None:
        return []
    return ["-o", "ControlMaster=auto", "-o", f"ControlPath={path}",
            "-o", f"ControlPersist={persist}"]


def control_path(target: Target) -> str | None:
    """The master's socket, or None when the state directory's path is too long for one."""
    path = str(target.state.run_dir / "ssh.ctl")
    return path if len(path) <= _MAX_CONTROL_PATH else None


class Master:
    """An OpenSSH master being opened in the background (`ssh -f -N`: it forks away once
    logged in). Only a speed-up: when it cannot be made, `provision9p ssh` makes its own."""

    def __init__(self, proc: subprocess.Popen[bytes] | None) -> None:
        self._proc = proc

    @classmethod
    def open(cls, target: Target) -> Master:
        if shutil.which("ssh") is None or control_path(target) is None:
            return cls(None)
        argv = ssh_argv(target, [], persist=UP_PERSIST)
        proc = subprocess.Popen([*argv[:-1], "-f", "-N", argv[-1]], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return cls(proc)

    def join(self, timeout: float = 30.0) -> bool:
        """Wait until it is logged in (its foreground process exits); True when it is."""
        if self._proc is None:
            return False
        try:
            return self._proc.wait(timeout) == 0
        except subprocess.TimeoutExpired:
            self._proc.kill()  # not yet forked away: the process this object started
            self._proc.wait()
            return False
