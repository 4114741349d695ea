"""The `tree` connection: a guest's root tree on the host, before it boots.

File operations go through the root share's MetadataStore, so with mapped-xattr the
owner and mode land in QEMU's xattrs, not on the host file. Commands run contained in the
tree (rootfs/contain.py: namespaces of their own, nothing that acts on the host), which
only makes sense on a plain (not yet converted) tree.
"""

from __future__ import annotations

import shlex
import stat as stat_mod
from pathlib import Path

from provision9p.connect.base import RunResult
from provision9p.errors import TaskError
from provision9p.rootfs import contain
from provision9p.rootfs.chroot_path import resolve_in
from provision9p.rootfs.metadata.base import GuestStat, MetadataStore
from provision9p.rootfs.metadata.stores import PlainStore

# While commands run in the chroot: no service starts (Debian's policy-rc.d protocol),
# and names resolve as on the host (the tree's resolv.conf points at QEMU's DNS).
_POLICY = "usr/sbin/policy-rc.d"
_RESOLV = "etc/resolv.conf"


class TreeConnection:
    phase = "tree"

    def __init__(self, tree: Path, store: MetadataStore, guest: str) -> None:
        self.tree = tree
        self.store = store
        self.guest = guest
        self._restore: list[tuple[Path, bytes | None]] | None = None

    def __enter__(self) -> TreeConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _chroot_ready(self) -> None:
        if self._restore is not None:
            return
        self._restore = []
        host_resolv = Path("/etc/resolv.conf")
        for rel, text in ((_POLICY, b"#!/bin/sh\n# provision9p: no services in the tree\n"
                                    b"exit 101\n"),
                          (_RESOLV, host_resolv.read_bytes() if host_resolv.is_file() else None)):
            if text is None:
                continue
            path = resolve_in(self.tree, "/" + rel)
            if path.is_symlink() or not path.parent.is_dir():
                continue
            self._restore.append((path, path.read_bytes() if path.exists() else None))
            path.write_bytes(text)
            path.chmod(0o755 if rel == _POLICY else 0o644)

    @staticmethod
    def _rel(path: str) -> str:
        if not path.startswith("/"):
            raise TaskError(f"{path!r} is not an absolute guest path")
        return path.strip("/")

    def run(self, command: str | list[str], *, stdin: bytes | None = None,
            cwd: str | None = None, env: dict[str, str] | None = None) -> RunResult:
        if not isinstance(self.store, PlainStore):
            raise TaskError(
                f"commands cannot run in {self.guest}'s tree once its security model is "
                "applied",
                hint="run them while the guest is up (`provision9p apply`), or mark the task "
                     "`phase: ssh`")
        self._chroot_ready()
        script = command if isinstance(command, str) else shlex.join(command)
        if cwd:
            script = f"cd {shlex.quote(cwd)} && {script}"
        proc = contain.run(self.tree, ["/bin/sh", "-c", script], hostname=self.guest,
                           stdin=stdin, env=env)
        return RunResult(proc.returncode, proc.stdout.decode(errors="replace"),
                         proc.stderr.decode(errors="replace"))

    def stat(self, path: str) -> GuestStat | None:
        try:
            return self.store.lstat(self._rel(path))
        except FileNotFoundError:
            return None

    def readlink(self, path: str) -> str:
        return self.store.readlink(self._rel(path))

    def read_file(self, path: str) -> bytes:
        return self.store.read_bytes(self._rel(path))

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644,
                   uid: int = 0, gid: int = 0) -> None:
        self.store.write_bytes(self._rel(path), data, mode, uid, gid)

    def mkdir(self, path: str, *, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        self.store.mkdir(self._rel(path), mode, uid, gid)

    def symlink(self, target: str, path: str) -> None:
        self.store.symlink(target, self._rel(path), 0, 0)

    def chown(self, path: str, uid: int, gid: int) -> None:
        self.store.chown(self._rel(path), uid, gid)

    def chmod(self, path: str, mode: int) -> None:
        self.store.chmod(self._rel(path), mode)

    def remove(self, path: str) -> None:
        rel = self._rel(path)
        if stat_mod.S_ISDIR(self.store.lstat(rel).mode):
            self.store.rmdir(rel)
        else:
            self.store.unlink(rel)

    def listdir(self, path: str) -> list[str]:
        return self.store.listdir(self._rel(path))

    def close(self) -> None:
        """Put back what the chroot session replaced."""
        for path, old in reversed(self._restore or []):
            if old is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(old)
        self._restore = None
