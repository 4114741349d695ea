"""`rootfs remove`: a stopped guest's root tree and build state, gone; the lab's shares stay.

An overlay guest's root is unmounted and only its own layer deleted: the shared base and
modules layers stay in the cache for the other guests.
"""

from __future__ import annotations

from provision9p.rootfs import overlay, rootless
from provision9p.rootfs.safe_fs import clean_stale_staging, remove_tree
from provision9p.target import Target


def remove_guest(target: Target) -> list[str]:
    """Delete what a build made for the guest; what was removed, for the message."""
    target.require_stopped("removing its tree would pull the root from under it")
    if rootless.needed():  # a killed build's staging tree has files of the user's subuids
        return rootless.run(lambda: remove_guest(target))
    root = target.guest.root.path
    gone: list[str] = []
    clean_stale_staging(root)
    if overlay.is_overlay(root):
        overlay.remove(root)
        gone.append(f"{root} (its overlay layer)")
    elif root.exists():
        remove_tree(root)
        gone.append(str(root))
    if target.state.dir.exists():
        remove_tree(target.state.dir)
        gone.append(str(target.state.dir))
    return gone
