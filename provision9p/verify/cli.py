"""`verify`: the share checks and the lab's testinfra files, against running guests."""

from __future__ import annotations

import argparse

from provision9p.cli import lab_argument, open_lab
from provision9p.errors import UsageError, VerifyError
from provision9p.state import GuestState


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("verify", help="check every share of the running guests (testinfra)")
    lab_argument(p)
    p.add_argument("--limit", metavar="GUEST", action="append", help="only these guests")
    p.set_defaults(func=verify_command)


def verify_command(args: argparse.Namespace) -> int:
    from provision9p.verify.runner import verify_guest

    lab = open_lab(args)
    guests = [lab.guest(n) for n in args.limit] if args.limit else list(lab.guests)
    failed: list[str] = []
    for guest in guests:
        if GuestState.of(lab, guest).running_pid() is None:
            raise UsageError(f"{guest.name} is not running", hint="start it: `provision9p up`")
        failed += verify_guest(lab, guest).failed
    if failed:
        raise VerifyError(f"{len(failed)} check(s) failed:\n" + "\n".join(f"  {f}" for f in failed))
    return 0
