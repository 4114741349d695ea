"""`verify [GUEST...]`: the share checks and the lab's testinfra files, on running guests."""

from __future__ import annotations

import argparse

from provision9p.commands.common import SubParsers, add_guests, add_lab_option, targets


def register(sub: SubParsers) -> None:
    p = sub.add_parser("verify", help="check every share of the running guests (testinfra)")
    add_lab_option(p)
    add_guests(p)
    p.set_defaults(func=verify_command)


def verify_command(args: argparse.Namespace) -> int:
    from provision9p import pipeline

    _lab, chosen = targets(args)
    pipeline.verify(chosen)
    return 0
