"""The grammar every command shares: which lab, which guests.

The lab file: `-f/--lab FILE`, else `lab.yml` (or `lab.yaml`) in the current
directory, else the built-in default lab, as compose-style tools do. Guests are
positional names; none means every guest of the lab.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from provision9p import ui
from provision9p.lab import LabSpec, load_lab
from provision9p.target import Target, resolve_all

LAB_FILES = ("lab.yml", "lab.yaml")
LAB_HELP = ("lab file (default: lab.yml in the current directory, else the built-in "
            "default lab)")

if TYPE_CHECKING:
    SubParsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
else:  # not subscriptable at run time
    SubParsers = argparse._SubParsersAction


def add_lab_option(parser: argparse.ArgumentParser) -> None:
    """`--lab FILE` after the command too; SUPPRESS keeps a `-f` given before it."""
    parser.add_argument("--lab", type=Path, metavar="FILE", default=argparse.SUPPRESS,
                        help=LAB_HELP)


def add_guests(parser: argparse.ArgumentParser, *, one: bool = False) -> None:
    if one:
        parser.add_argument("guest", metavar="GUEST", help="a guest of the lab")
    else:
        parser.add_argument("guests", nargs="*", metavar="GUEST",
                            help="guests of the lab (default: all of them)")


def lab_file(args: argparse.Namespace) -> Path | None:
    """The lab file the command line names, or finds in the cwd; None: the built-in lab."""
    given: Path | None = getattr(args, "lab", None)
    if given is not None:
        return given
    for name in LAB_FILES:
        if Path(name).is_file():
            return Path(name)
    return None


def open_lab(args: argparse.Namespace) -> LabSpec:
    """Load the lab and print its warnings."""
    lab = load_lab(lab_file(args))
    for w in lab.warnings:
        ui.warn(w)
    return lab


def targets(args: argparse.Namespace, *, create_account: bool = False) -> tuple[LabSpec,
                                                                               list[Target]]:
    """The lab and the targets the command line names (all guests when it names none)."""
    lab = open_lab(args)
    names = [args.guest] if hasattr(args, "guest") else list(getattr(args, "guests", []))
    return lab, resolve_all(lab, names, create_account=create_account)
