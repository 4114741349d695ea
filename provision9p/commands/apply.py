"""`apply [GUEST...]`: the guests' roles, over SSH when up, on the stopped tree when not."""

from __future__ import annotations

import argparse

from provision9p.commands.common import SubParsers, add_guests, add_lab_option, targets


def register(sub: SubParsers) -> None:
    p = sub.add_parser("apply", help="apply the lab's roles (over SSH, or to a stopped "
                                     "guest's tree)")
    add_lab_option(p)
    add_guests(p)
    p.add_argument("--check", action="store_true", help="change nothing, say what would")
    p.add_argument("--diff", action="store_true", help="show content changes")
    p.add_argument("--tags", default="", help="only tasks with these tags (comma-separated)")
    p.add_argument("--skip-tags", default="", help="not tasks with these tags")
    p.set_defaults(func=apply_command)


def apply_command(args: argparse.Namespace) -> int:
    from provision9p import pipeline

    _lab, chosen = targets(args)
    pipeline.apply(chosen, check=args.check, diff=args.diff,
                   tags={t for t in args.tags.split(",") if t} or None,
                   skip_tags={t for t in args.skip_tags.split(",") if t} or None)
    return 0
