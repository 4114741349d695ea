"""`rootfs build` and `rootfs export`."""

from __future__ import annotations

import argparse
from pathlib import Path

from provision9p import ui
from provision9p.cli import open_lab
from provision9p.errors import UsageError
from provision9p.lab.model import GuestSpec, LabSpec
from provision9p.state import GuestState, lab_lock


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("rootfs", help="build or export guests' root trees")
    rsub = p.add_subparsers(dest="rootfs_command", metavar="ACTION", required=True)
    b = rsub.add_parser("build", help="debootstrap, set up and convert a guest's root tree")
    b.add_argument("args", nargs="*", metavar="[LAB] [GUEST]")
    b.add_argument("--force", action="store_true", help="rebuild even when current")
    b.set_defaults(func=build_command)
    e = rsub.add_parser("export", help="a mapped tree back to a real tree or a tar archive")
    e.add_argument("args", nargs="+", metavar="[LAB] GUEST")
    e.add_argument("-o", "--output", type=Path, required=True,
                   help="a directory to create, or a file ending in .tar")
    e.set_defaults(func=export_command)


def _lab_guests(args: argparse.Namespace, need_guest: bool) -> tuple[LabSpec, list[GuestSpec]]:
    words: list[str] = list(args.args)
    lab_path = None
    if words and (words[0].endswith((".yml", ".yaml")) or Path(words[0]).is_file()):
        lab_path = Path(words.pop(0))
    if len(words) > 1:
        raise UsageError("expected [LAB] [GUEST]")
    args.lab = lab_path
    lab = open_lab(args)
    if words:
        return lab, [lab.guest(words[0])]
    if need_guest:
        raise UsageError("name the guest", hint="guests: " + ", ".join(g.name for g in lab.guests))
    return lab, list(lab.guests)


def build_command(args: argparse.Namespace) -> int:
    from provision9p.rootfs.build import build_guest
    from provision9p.tasks.engine import load_play
    from provision9p.tasks.phases import tree_hook

    lab, guests = _lab_guests(args, need_guest=False)
    with lab_lock(lab, "rootfs build"):
        for guest in guests:
            if GuestState.of(lab, guest).running_pid() is not None:
                raise UsageError(f"{guest.name} is running; its tree cannot be rebuilt under it",
                                 hint="stop it first: `provision9p down`")
            result = build_guest(lab, guest, force=args.force,
                                 tree_hook=tree_hook(lab, guest, load_play(guest, lab)))
            if result.changed:
                print(f"{guest.name}: built {guest.root.path} in {result.seconds:.1f} s")
            else:
                print(f"{guest.name}: {guest.root.path} is current; nothing to do")
    return 0


def export_command(args: argparse.Namespace) -> int:
    from provision9p.rootfs.security import model_of

    _lab, guests = _lab_guests(args, need_guest=True)
    guest = guests[0]
    if not guest.root.path.is_dir():
        raise UsageError(f"{guest.name} has no root tree yet", hint="`provision9p rootfs build`")
    if args.output.exists():
        raise UsageError(f"{args.output} exists; export never overwrites")
    with ui.step(f"exporting {guest.root.path} ({guest.root.security_model}) to {args.output}"):
        model_of(guest.root).export(guest.root.path, args.output)
    return 0
