"""Where `up` and `rootfs build` run a guest's roles: on the tree, then over SSH.

The tree phase runs during the build, on the plain tree before the security model is
applied, so chroot commands (apt, useradd) work and the guest boots configured. The
SSH phase runs the whole play again on the booted guest: tasks marked `phase: ssh`
do their work there, and everything the tree phase did reports ok. The caller loads
the play once (load_play checks every role) and hands it to both.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from provision9p.connect.base import Connection
from provision9p.connect.tree import TreeConnection
from provision9p.lab.model import GuestSpec, LabSpec
from provision9p.rootfs.metadata.stores import PlainStore
from provision9p.tasks.engine import BriefReporter, Play, Recap, run_play


def tree_hook(lab: LabSpec, guest: GuestSpec, play: Play) -> Callable[[Path], None] | None:
    """The build's hook: the guest's roles on its freshly set-up plain tree."""
    if not play:
        return None

    def hook(tree: Path) -> None:
        with TreeConnection(tree, PlainStore(tree), guest.name) as conn:
            run_play(conn, guest, lab, play=play,
                     reporter=BriefReporter("roles on the tree", out=sys.stderr))
    return hook


def ssh_phase(lab: LabSpec, guest: GuestSpec, conn: Connection, play: Play) -> Recap:
    return run_play(conn, guest, lab, play=play,
                    reporter=BriefReporter("roles over SSH", out=sys.stderr))
