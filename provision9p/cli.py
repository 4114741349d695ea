"""The command line: parse, dispatch to a command, turn errors into messages and exit codes.

One grammar for every command: `provision9p [-f LAB] COMMAND [GUEST...] [options]`
(provision9p/commands/common.py). Exit codes: 0 success, 1 a failed check or run,
2 bad input; tracebacks only with --debug.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from provision9p import __version__, ui
from provision9p.commands import (
    apply,
    doc,
    guests,
    host,
    image,
    inventory,
    kernel,
    lab,
    rootfs,
    tune,
    verify,
)
from provision9p.commands.common import LAB_HELP
from provision9p.errors import LabError, Provision9pError

# In --help order.
COMMANDS = (lab, kernel, host, rootfs, image, guests, inventory, apply, verify, tune, doc)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="provision9p",
        description="Provision QEMU guests whose root file system is a host directory "
                    "served over 9P.",
    )
    parser.add_argument("--version", action="version", version=f"provision9p {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    parser.add_argument("-f", "--lab", type=Path, metavar="FILE", default=None, help=LAB_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    ui.set_quiet(args.quiet)
    ui.set_debug(args.debug)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except Provision9pError as exc:
        if args.debug and not isinstance(exc, LabError):  # a lab's problems are the message
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as a killed-by-SIGPIPE tool would.
        _silence_stdout()
        return 141
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        if threading.active_count() > 1:
            # Guest jobs run on daemon threads that may be printing: a normal interpreter
            # exit can then abort on stdout's lock ("Fatal Python error:
            # _enter_buffered_busy"). Nothing here needs finalizing (no atexit handlers).
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        return 130
    except OSError as exc:
        # Not a bad argument we foresaw: say what failed without a traceback.
        if args.debug:
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        print("  hint: run again with --debug for the traceback", file=sys.stderr)
        return 1


def _silence_stdout() -> None:
    """Point stdout at /dev/null so Python's own flush at exit cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
