"""The command line: parse, dispatch to a stage, turn errors into messages and exit codes.

Each stage package registers its own subcommands (`register(subparsers)`), so this
file stays a table of contents.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from provision9p import __version__, ui
from provision9p.errors import LabError, Provision9pError
from provision9p.lab import LabSpec, load_lab

# (module, help) for each stage that brings subcommands; order is the --help order.
STAGES = (
    "provision9p.lab.cli",
    "provision9p.kernel.cli",
    "provision9p.host.cli",
    "provision9p.rootfs.cli",
    "provision9p.boot.cli",
    "provision9p.tasks.cli",
    "provision9p.verify.cli",
)


def lab_argument(parser: argparse.ArgumentParser) -> None:
    """The optional LAB argument every lab command takes."""
    parser.add_argument("lab", nargs="?", type=Path, metavar="LAB",
                        help="lab file (default: the built-in default lab)")


def open_lab(args: argparse.Namespace) -> LabSpec:
    """Load the lab named on the command line and print its warnings."""
    lab = load_lab(getattr(args, "lab", None))
    for w in lab.warnings:
        ui.warn(w)
    return lab


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="provision9p",
        description="Provision QEMU guests whose root file system is a host directory "
                    "served over 9P.",
    )
    parser.add_argument("--version", action="version", version=f"provision9p {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in STAGES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    ui.set_quiet(args.quiet)
    try:
        result = args.func(args)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Provision9pError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)
