"""`up`, `down`, `status`, `ssh`, `console`, `qemu-cmd`, `libvirt-xml`."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from provision9p import ui
from provision9p.boot import supervisor
from provision9p.boot.libvirt_xml import libvirt_domain_xml
from provision9p.boot.qemu_argv import qemu_argv
from provision9p.cli import lab_argument, open_lab
from provision9p.errors import UsageError
from provision9p.lab.model import GuestSpec, LabSpec
from provision9p.pipeline import up
from provision9p.state import GuestState, lab_lock


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("up", help="build, boot, provision and verify the lab's guests")
    lab_argument(p)
    p.add_argument("--rebuild", action="store_true", help="rebuild root trees even if current")
    p.add_argument("--no-verify", action="store_true", help="skip the verify report")
    p.add_argument("--limit", metavar="GUEST", action="append",
                   help="only these guests (repeatable)")
    p.set_defaults(func=up_command)

    p = sub.add_parser("down", help="power the lab's guests off")
    lab_argument(p)
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for a clean poweroff before killing QEMU")
    p.set_defaults(func=down_command)

    p = sub.add_parser("status", help="which guests run, on which port")
    lab_argument(p)
    p.set_defaults(func=status_command)

    p = sub.add_parser("ssh", help="a shell or a command in a guest")
    p.add_argument("--lab", type=Path, default=None,
                   help="lab file (default: the built-in default lab)")
    p.add_argument("guest", metavar="GUEST")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")
    p.set_defaults(func=ssh_command)

    p = sub.add_parser("console", help="show a guest's serial console log")
    p.add_argument("--lab", type=Path, default=None)
    p.add_argument("guest", metavar="GUEST")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
    p.set_defaults(func=console_command)

    for name, helptext, func in (
        ("qemu-cmd", "print the QEMU command for a guest, shell-quoted", qemu_cmd_command),
        ("libvirt-xml", "print a libvirt domain for a guest", libvirt_xml_command),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("args", nargs="+", metavar="[LAB] GUEST")
        p.add_argument("--accel", choices=("kvm", "tcg"), default="tcg")
        p.add_argument("--port", type=int, default=None, help="host port for SSH")
        p.set_defaults(func=func)


def _lab_and_guest(args: argparse.Namespace) -> tuple[LabSpec, GuestSpec]:
    if len(args.args) > 2:
        raise UsageError("expected [LAB] GUEST")
    args.lab = Path(args.args[0]) if len(args.args) == 2 else None
    lab = open_lab(args)
    return lab, lab.guest(args.args[-1])


def up_command(args: argparse.Namespace) -> int:
    lab = open_lab(args)
    return up(lab, rebuild=args.rebuild, verify=not args.no_verify, limit=args.limit)


def down_command(args: argparse.Namespace) -> int:
    lab = open_lab(args)
    with lab_lock(lab, "down"):
        for guest in lab.guests:
            start = time.monotonic()
            if supervisor.stop(lab, guest, args.timeout):
                print(f"{guest.name}: stopped in {time.monotonic() - start:.1f} s")
            else:
                print(f"{guest.name}: not running")
    return 0


def status_command(args: argparse.Namespace) -> int:
    lab = open_lab(args)
    for guest in lab.guests:
        print(f"{guest.name}: {supervisor.status(lab, guest).describe()}")
    return 0


def ssh_command(args: argparse.Namespace) -> int:
    lab = open_lab(args)
    guest = lab.guest(args.guest)
    st = GuestState.of(lab, guest)
    if st.running_pid() is None:
        raise UsageError(f"{guest.name} is not running", hint="start it: `provision9p up`")
    port = int((st.read_json(st.boot_json) or {}).get("ssh_port", 0))
    known = st.dir / "known_hosts"
    kind, key = st.host_key.read_text().split()[:2]
    known.write_text(f"[127.0.0.1]:{port} {kind} {key}\n")  # the pinned key, nothing else
    argv = ["ssh", "-i", str(lab.state_dir / "ssh" / "id_ed25519"), "-p", str(port),
            "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
            "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "root@127.0.0.1"]
    if args.command:
        argv += ["--", " ".join(args.command)]
    sys.stdout.flush()
    os.execvp("ssh", argv)


def console_command(args: argparse.Namespace) -> int:
    lab = open_lab(args)
    st = GuestState.of(lab, lab.guest(args.guest))
    if not st.console.exists():
        raise UsageError(f"no console log for {args.guest} yet", hint="start it: `provision9p up`")
    with open(st.console, "rb") as f:
        while True:
            chunk = f.read(65536)
            if chunk:
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
                continue
            if not args.follow:
                return 0
            time.sleep(0.3)


def qemu_cmd_command(args: argparse.Namespace) -> int:
    lab, guest = _lab_and_guest(args)
    port = args.port or guest.ssh_port or supervisor.free_port()
    argv = qemu_argv(guest, supervisor.boot_files(lab, guest, args.accel, port))
    ui.info(f"# QEMU for {guest.name}; run it as the user that owns {guest.root.path}")
    print(shlex.join(argv))
    return 0


def libvirt_xml_command(args: argparse.Namespace) -> int:
    lab, guest = _lab_and_guest(args)
    port = args.port or guest.ssh_port or 2222
    print(libvirt_domain_xml(guest, supervisor.boot_files(lab, guest, args.accel, port)))
    return 0
