"""Staging directories that never leave something half-made behind.

A stage builds in `<target>.staging-<pid>` and renames into place only when
complete; on any failure the staging dir is unmounted (debootstrap mounts proc and
sys inside its target) and removed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def mounts_below(path: Path) -> list[Path]:
    """Mount points at or below `path`, deepest first."""
    root = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4].encode().decode("unicode_escape")
            if mnt == root or mnt.startswith(root + "/"):
                found.append(Path(mnt))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def remove_tree(path: Path) -> None:
    """Unmount whatever is mounted below `path`, then delete it."""
    if not os.path.lexists(path):
        return
    for mnt in mounts_below(path):
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    if mounts_below(path):
        raise OSError(f"{path} still has mounts below it; not deleting")
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def staging_for(target: Path) -> Path:
    return target.with_name(f".{target.name}.staging-{os.getpid()}")


@contextmanager
def staged(target: Path) -> Iterator[Path]:
    """Yield an empty staging dir beside `target`; on success it replaces `target`.

    An existing `target` is moved aside first and deleted only after the new one
    is in place.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_for(target)
    remove_tree(staging)
    staging.mkdir()
    try:
        yield staging
        for mnt in mounts_below(staging):
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        if os.path.lexists(target):
            os.rename(target, old)
        os.rename(staging, target)
        remove_tree(old)
    except BaseException:
        remove_tree(staging)
        raise


def clean_stale_staging(target: Path) -> None:
    """Remove staging dirs left by a run that was killed (its pid is gone)."""
    if not target.parent.is_dir():
        return
    prefixes = (f".{target.name}.staging-", f".{target.name}.old-")
    for entry in target.parent.iterdir():
        for prefix in prefixes:
            if entry.name.startswith(prefix):
                pid = entry.name[len(prefix):]
                if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                    remove_tree(entry)
