"""`apply`: run the lab's roles on its guests, over SSH when up, on the tree when not."""

from __future__ import annotations

import argparse
import os

from provision9p.cli import lab_argument, open_lab
from provision9p.connect.base import Connection
from provision9p.lab.model import GuestSpec, LabSpec
from provision9p.state import GuestState


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("apply", help="apply the lab's roles (over SSH, or to a stopped "
                                     "guest's tree)")
    lab_argument(p)
    p.add_argument("--check", action="store_true", help="change nothing, say what would")
    p.add_argument("--diff", action="store_true", help="show content changes")
    p.add_argument("--tags", default="", help="only tasks with these tags (comma-separated)")
    p.add_argument("--skip-tags", default="", help="not tasks with these tags")
    p.add_argument("--limit", metavar="GUEST", action="append", help="only these guests")
    p.set_defaults(func=apply_command)
    from provision9p.tasks import doc

    doc.register(sub)


def connect_guest(lab: LabSpec, guest: GuestSpec) -> Connection:
    """SSH when the guest runs; otherwise its root tree, in its security model."""
    if GuestState.of(lab, guest).running_pid() is not None:
        from provision9p.connect.ssh import connect

        return connect(lab, guest)
    from provision9p.connect.tree import TreeConnection
    from provision9p.rootfs.metadata import open_store

    st = os.stat(guest.root.path)
    store = open_store(guest.root.security_model, guest.root.path, st.st_uid, st.st_gid)
    return TreeConnection(guest.root.path, store, guest.name)


def apply_command(args: argparse.Namespace) -> int:
    from provision9p.tasks.engine import run_play

    lab = open_lab(args)
    guests = [lab.guest(n) for n in args.limit] if args.limit else list(lab.guests)
    tags = {t for t in args.tags.split(",") if t} or None
    skip = {t for t in args.skip_tags.split(",") if t} or None
    for guest in guests:
        conn = connect_guest(lab, guest)
        try:
            run_play(conn, guest, lab, check=args.check, diff=args.diff, tags=tags,
                     skip_tags=skip)
        finally:
            conn.close()
    return 0
