"""Before any build or boot: what QEMU's user cannot do with a share, and what a guest
cannot read through a mapped one.

A share directory made beforehand by root (mode 755) is not writable by QEMU's
unprivileged user: found here, in well under a second, instead of in verify after every
guest of the lab has booted. An extra share is the user's own data and is never
converted. Through a mapped model, QEMU reads a real host symlink or device node as
something the guest cannot use (DESIGN.md), so name a few and suggest security_model=none.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from provision9p.errors import ShareAccessError
from provision9p.lab.model import GuestSpec
from provision9p.qemu_user import RunAs
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


# test(1)'s -r/-w/-x as QEMU's user, in a shell of its ids (access(2) checks the real
# ids); any interpreter of ours may sit where that user cannot go (a venv under /root)
_ACCESS = ('while [ $# -gt 0 ]; do if test "-$1" "$2"; then echo 1; else echo 0; fi; '
           'shift 2; done')
_FLAGS = {"r": os.R_OK, "w": os.W_OK, "x": os.X_OK}


def _access_as(run_as: RunAs, asks: list[tuple[str, str]]) -> list[bool]:
    """For each (path, one of r w x): may QEMU's user?"""
    if run_as.in_namespace or run_as.uid == os.getuid():
        return [os.access(p, _FLAGS[f]) for p, f in asks]
    argv = ["/bin/sh", "-c", _ACCESS, "sh", *(x for p, f in asks for x in (f, p))]
    try:
        done = subprocess.run(argv, user=run_as.uid, group=run_as.gid, cwd="/",
                              extra_groups=os.getgrouplist(run_as.name, run_as.gid),
                              capture_output=True, text=True, check=False)
    except OSError:
        done = None
    answers = done.stdout.split() if done is not None and done.returncode == 0 else []
    if len(answers) != len(asks):  # cannot ask: leave it to the boot, as before
        return [True] * len(asks)
    return [a == "1" for a in answers]


def check_share_access(guest: GuestSpec, run_as: RunAs) -> None:
    """Every extra share's directory: reachable, readable and (unless readonly) writable
    by QEMU's user; a missing one must be reachable where the build will make it."""
    asks: list[tuple[str, str]] = []
    what: list[tuple[str, Path, str]] = []  # per ask: share tag, path, what was asked
    for share in guest.shares:
        path = share.path.absolute()
        existing = path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        for ancestor in reversed(existing.parents):
            asks.append((str(ancestor), "x"))
            what.append((share.mount_tag, ancestor, "reach"))
        if existing == path:
            if not path.is_dir():
                raise ShareAccessError(f"{guest.name}: share {share.mount_tag}: {path} is not "
                                       "a directory", hint="point the share's path at a "
                                       "directory (a missing one is made)")
            asks += [(str(path), "r"), (str(path), "x")]
            what += [(share.mount_tag, path, "read")] * 2
            if not share.readonly:
                asks.append((str(path), "w"))
                what.append((share.mount_tag, path, "write"))
        else:  # the build makes it, owned by QEMU's user, under `existing`
            asks.append((str(existing), "x"))
            what.append((share.mount_tag, existing, "reach"))
            if not os.access(existing, os.W_OK | os.X_OK):
                raise ShareAccessError(
                    f"{guest.name}: share {share.mount_tag}: {path} does not exist and "
                    f"cannot be made in {existing}",
                    hint=f"make {path} yourself (owned by {run_as.name}), or choose a path "
                         "you may write")
    for ok, (tag, path, verb) in zip(_access_as(run_as, asks), what, strict=True):
        if ok:
            continue
        user = f"{run_as.name}, QEMU's user"
        if verb == "reach":
            raise ShareAccessError(
                f"{guest.name}: share {tag}: {user}, cannot enter {path}",
                hint=f"`chmod o+x {path}` (or give {run_as.name} access with setfacl -m "
                     f"u:{run_as.name}:x), or move the share")
        fix = "rwx" if verb == "write" else "rx"
        also = " or set `readonly: true` on the share" if verb == "write" else ""
        raise ShareAccessError(
            f"{guest.name}: share {tag}: {path} is not {verb.replace('te', 't')}able by "
            f"{user}",
            hint=f"`chown -R {run_as.name} {path}` or `setfacl -m u:{run_as.name}:{fix} "
                 f"{path}`{also}")
