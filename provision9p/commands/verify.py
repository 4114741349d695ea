"""`verify [GUEST...]`: the share checks and the lab's testinfra files, on running guests."""

from __future__ import annotations

import argparse
from pathlib import Path

from provision9p.commands.common import SubParsers, add_guests, add_lab_option, targets
from provision9p.errors import VerifyError


def register(sub: SubParsers) -> None:
    p = sub.add_parser("verify", help="check every share of the running guests (testinfra)")
    add_lab_option(p)
    add_guests(p)
    p.add_argument("--json", action="store_true",
                   help="print one JSON document (per guest: state, port, timings, checks)")
    p.add_argument("--junit", type=Path, metavar="FILE",
                   help="also write the checks as JUnit XML to FILE")
    p.set_defaults(func=verify_command)


def verify_command(args: argparse.Namespace) -> int:
    from provision9p import jsonout, pipeline
    from provision9p.verify.report import failures, print_report, write_junit

    _lab, chosen = targets(args)
    results = pipeline.verify(chosen)
    if args.junit:
        write_junit(results, args.junit)
    failed = failures(results)
    if args.json:
        guests = []
        for t in chosen:
            mine = [r.as_json() for r in results if r.guest == t.name]
            guests.append({**jsonout.guest_state(t), "checks": mine})
        jsonout.dump({"ok": not failed, "passed": sum(r.outcome == "ok" for r in results),
                      "failed": len(failed), "guests": guests})
        return 1 if failed else 0
    print_report(results)
    if failed:
        raise VerifyError(f"{len(failed)} of {len(results)} check(s) failed (see above)",
                          hint="`provision9p console GUEST` shows the guest's boot log")
    return 0
