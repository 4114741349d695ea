"""How `up` and `down` end: the per-guest summary (or `up --json`'s document) and the
exit status; `--jobs`."""

from __future__ import annotations

import argparse
import json
import sys

from provision9p import ui
from provision9p.errors import Provision9pError
from provision9p.jobs import Outcome
from provision9p.outcomes import UpRun, final_error, first_line, summary_lines, to_json
from provision9p.verify.report import print_report


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {n}")
    return n


def add_jobs_option(parser: argparse.ArgumentParser, helptext: str) -> None:
    parser.add_argument("-j", "--jobs", type=_positive, default=None, metavar="N", help=helptext)


def print_up(run: UpRun, *, as_json: bool) -> int:
    """Print the run's result on stdout; a failed guest's full error goes to stderr, with
    its name, when there were several (one guest's error the CLI prints itself)."""
    error = final_error(run)
    if as_json:
        print(json.dumps(to_json(run), indent=2))
    else:
        print()
        for line in summary_lines(run):
            print(line)
        report = [c for g in run.guests.values() for c in g.checks]
        if report:  # the verify report comes last: what a person reads first after `up`
            print()
            print_report(report)
    if error is None:
        return 0
    if len(run.results) > 1:
        sys.stdout.flush()
        for r in run.results:
            if r.error is not None and not as_json:
                _show_guest_error(r.name, r.error, r.trace)
    raise error


def _show_guest_error(name: str, error: BaseException, trace: str) -> None:
    text = str(error) if isinstance(error, Provision9pError) else first_line(error)
    print(f"error: [{name}] {text}", file=sys.stderr)
    if trace and ui.debug():
        print(trace, file=sys.stderr)
    elif trace:
        print("  hint: run again with --debug for the traceback", file=sys.stderr)


def print_down(results: list[Outcome[bool]]) -> int:
    for r in results:
        if r.error is not None:
            print(f"{r.name}: FAILED ({first_line(r.error)})")
        elif r.value:
            print(f"{r.name}: stopped in {r.seconds:.1f} s")
        else:
            print(f"{r.name}: not running")
    failed = [r for r in results if r.error is not None]
    if not failed:
        return 0
    if len(results) == 1:
        raise failed[0].error  # type: ignore[misc]
    sys.stdout.flush()
    for r in failed:
        assert r.error is not None
        _show_guest_error(r.name, r.error, r.trace)
    from provision9p.outcomes import GuestsFailed

    raise GuestsFailed(f"{len(failed)} guest(s) did not stop: "
                       + ", ".join(r.name for r in failed),
                       "`provision9p status` shows what still runs", 1)
