"""`rootfs build [GUEST...]`, `rootfs export GUEST -o DIR|FILE.tar`, `rootfs remove GUEST...`."""

from __future__ import annotations

import argparse
from pathlib import Path

from provision9p.commands.common import SubParsers, add_guests, add_lab_option, targets


def register(sub: SubParsers) -> None:
    p = sub.add_parser("rootfs", help="build or export guests' root trees")
    rsub = p.add_subparsers(dest="rootfs_command", metavar="ACTION", required=True)
    b = rsub.add_parser("build", help="debootstrap, set up and convert guests' root trees")
    add_lab_option(b)
    add_guests(b)
    b.add_argument("--force", action="store_true", help="rebuild even when current")
    b.set_defaults(func=build_command)
    e = rsub.add_parser("export", help="a mapped tree back to a real tree or a tar archive")
    add_lab_option(e)
    add_guests(e, one=True)
    e.add_argument("-o", "--output", type=Path, required=True,
                   help="a directory to create, or a file ending in .tar")
    e.set_defaults(func=export_command)
    r = rsub.add_parser("remove", help="delete stopped guests' root trees and build state")
    add_lab_option(r)
    add_guests(r)
    r.set_defaults(func=remove_command)


def build_command(args: argparse.Namespace) -> int:
    from provision9p import pipeline

    lab, chosen = targets(args, create_account=True)
    for result, t in zip(pipeline.build_trees(lab, chosen, force=args.force), chosen,
                         strict=True):
        if result.changed:
            print(f"{t.name}: built {t.guest.root.path} in {result.seconds:.1f} s")
        else:
            print(f"{t.name}: {t.guest.root.path} is current; nothing to do")
    return 0


def export_command(args: argparse.Namespace) -> int:
    from provision9p import pipeline

    _lab, (target,) = targets(args)
    pipeline.export(target, args.output)
    return 0


def remove_command(args: argparse.Namespace) -> int:
    from provision9p.rootfs.remove import remove_guest

    _lab, chosen = targets(args)
    for t in chosen:
        t.require_stopped("removing its tree would pull the root from under it")
    for t in chosen:
        gone = remove_guest(t)
        print(f"{t.name}: removed " + (", ".join(gone) if gone else "nothing (not built)"))
    return 0
