"""Before boot: say what a guest cannot read through a mapped share.

An extra share is the user's own data and is never converted. Through a mapped model,
QEMU reads a real host symlink or device node as something the guest cannot use
(DESIGN.md), so name a few and suggest security_model=none.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from provision9p.lab.model import GuestSpec
from provision9p.rootfs.security import model_of

SCAN_LIMIT = 50_000


def unreadable_objects(root: Path, limit: int = 5) -> list[str]:
    """Up to `limit` host symlinks or device nodes below `root` (relative paths)."""
    found: list[str] = []
    seen = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".virtfs_metadata"]
        for name in [*filenames, *(d for d in dirnames if os.path.islink(
                os.path.join(dirpath, d)))]:
            seen += 1
            full = os.path.join(dirpath, name)
            try:
                mode = os.lstat(full).st_mode
            except OSError:
                continue
            if stat.S_ISLNK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                found.append(os.path.relpath(full, root))
                if len(found) >= limit:
                    return found
        if seen > SCAN_LIMIT:
            break
    return found


def share_warnings(guest: GuestSpec) -> list[str]:
    out = []
    for share in guest.shares:
        if not model_of(share).mapped or not share.path.is_dir():
            continue
        bad = unreadable_objects(share.path)
        if bad:
            out.append(
                f"{guest.name}: share {share.mount_tag} ({share.path}) holds host symlinks or "
                f"device nodes that the guest cannot read through {share.security_model}: "
                + ", ".join(bad)
                + "; for data the host uses too, set security_model: none")
    return out
