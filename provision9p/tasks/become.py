"""`become_user` and `environment`: the connection a task's module sees.

Commands run as the become user through `runuser -u USER --` (util-linux, in every
Debian; in the tree phase inside the chroot too), with HOME, USER and LOGNAME of that
user as sudo sets them, and the task's environment merged into the command's.
Files are written by the connection as before (owner: what the module asks for).
"""

from __future__ import annotations

from provision9p.connect.base import Connection, RunResult
from provision9p.errors import TaskError
from provision9p.rootfs.metadata.base import GuestStat
from provision9p.tasks.modules.base import read_db


class TaskConnection:
    """A Connection whose commands run as `user` with `env` added."""

    def __init__(self, conn: Connection, user: str | None, env: dict[str, str]) -> None:
        self.conn = conn
        self.phase = conn.phase
        self.guest = conn.guest
        self.user = user
        self.env = dict(env)
        if user is not None:
            entry = read_db(conn, "/etc/passwd").get(user)
            if entry is None:
                raise TaskError(f"become_user: no user {user!r} in the guest's /etc/passwd")
            home = entry[5] if len(entry) > 5 else "/"
            self.env = {"HOME": home, "USER": user, "LOGNAME": user, **self.env}

    def run(self, command: str | list[str], *, stdin: bytes | None = None,
            cwd: str | None = None, env: dict[str, str] | None = None) -> RunResult:
        if self.user is not None:
            argv = command if isinstance(command, list) else ["/bin/sh", "-c", command]
            command = ["runuser", "-u", self.user, "--", *argv]
        merged = {**self.env, **(env or {})}
        return self.conn.run(command, stdin=stdin, cwd=cwd, env=merged or None)

    def stat(self, path: str) -> GuestStat | None:
        return self.conn.stat(path)

    def readlink(self, path: str) -> str:
        return self.conn.readlink(path)

    def read_file(self, path: str) -> bytes:
        return self.conn.read_file(path)

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644,
                   uid: int = 0, gid: int = 0) -> None:
        self.conn.write_file(path, data, mode=mode, uid=uid, gid=gid)

    def mkdir(self, path: str, *, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        self.conn.mkdir(path, mode=mode, uid=uid, gid=gid)

    def symlink(self, target: str, path: str) -> None:
        self.conn.symlink(target, path)

    def chown(self, path: str, uid: int, gid: int) -> None:
        self.conn.chown(path, uid, gid)

    def chmod(self, path: str, mode: int) -> None:
        self.conn.chmod(path, mode)

    def remove(self, path: str) -> None:
        self.conn.remove(path)

    def listdir(self, path: str) -> list[str]:
        return self.conn.listdir(path)

    def close(self) -> None:
        """The task's view closes nothing: the guest's connection outlives it."""


def task_connection(conn: Connection, user: str | None, env: dict[str, str]) -> Connection:
    if (user is None or user == "root") and not env:
        return conn
    return TaskConnection(conn, None if user == "root" else user, env)
