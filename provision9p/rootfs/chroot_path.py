"""Resolve a path inside a root tree the way the guest would, never leaving the tree.

An absolute symlink in the tree (`/etc/resolv.conf -> /run/...`) points into the
guest, not the host; following it with plain host calls would write to the host.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

MAX_LINKS = 40


def resolve_in(tree: Path, rel: str, *, follow_last: bool = False) -> Path:
    """The host path of guest path `rel` in `tree`, symlinks resolved inside the tree.

    The last component is left as it is unless `follow_last`, so callers can
    replace a symlink rather than write through it.
    """
    parts = list(PurePosixPath("/" + rel.lstrip("/")).parts[1:])
    done: list[str] = []
    hops = 0
    while parts:
        name = parts.pop(0)
        if name in ("", "."):
            continue
        if name == "..":
            if done:
                done.pop()
            continue
        host = tree.joinpath(*done, name)
        last = not parts
        try:
            st = os.lstat(host)
        except FileNotFoundError:
            done.append(name)
            continue
        if stat.S_ISLNK(st.st_mode) and (not last or follow_last):
            hops += 1
            if hops > MAX_LINKS:
                raise OSError(f"too many levels of symbolic links in {rel}")
            target = os.readlink(host)
            if target.startswith("/"):
                done = []
            parts = [*PurePosixPath(target).parts, *parts]
            if target.startswith("/"):
                parts = parts[1:]
            continue
        done.append(name)
    return tree.joinpath(*done)


def write_file(tree: Path, rel: str, data: str | bytes, mode: int = 0o644) -> None:
    """Create or replace a file in the tree (root-owned), atomically, never through a link."""
    path = resolve_in(tree, rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.p9tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        os.write(fd, raw)
        os.fchmod(fd, mode)
        os.fchown(fd, 0, 0)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def symlink(tree: Path, rel: str, target: str) -> None:
    path = resolve_in(tree, rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(path):
        if os.path.islink(path) and os.readlink(path) == target:
            return
        path.unlink()
    os.symlink(target, path)


def remove(tree: Path, rel: str) -> None:
    path = resolve_in(tree, rel)
    if os.path.lexists(path) and not path.is_dir():
        path.unlink()
