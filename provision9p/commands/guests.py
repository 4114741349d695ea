"""`up`, `down`, `status`, `ssh`, `console`, `qemu-cmd`, `libvirt-xml`."""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
import time

from provision9p import ui
from provision9p.commands.common import SubParsers, add_guests, add_lab_option, targets
from provision9p.commands.updown import add_jobs_option
from provision9p.errors import UsageError


def register(sub: SubParsers) -> None:
    p = sub.add_parser("up", help="build, boot, provision and verify the lab's guests")
    add_lab_option(p)
    add_guests(p)
    p.add_argument("--rebuild", action="store_true", help="rebuild root trees even if current")
    p.add_argument("--no-verify", action="store_true", help="skip the verify report")
    add_jobs_option(p, "guests built and booted at once (default: the host's cores)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON document (per guest: state, pid, ssh port, timings, "
                        "error) instead of progress and summary")
    p.set_defaults(func=up_command)

    p = sub.add_parser("down", help="power guests off")
    add_lab_option(p)
    add_guests(p)
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for a clean poweroff before killing QEMU")
    add_jobs_option(p, "guests stopped at once (default: all)")
    p.set_defaults(func=down_command)

    p = sub.add_parser("status", help="which guests run, on which port")
    add_lab_option(p)
    add_guests(p)
    p.add_argument("--json", action="store_true",
                   help="print one JSON document (per guest: state, pid, ssh port, timings)")
    p.set_defaults(func=status_command)

    p = sub.add_parser("ssh", help="a shell or a command in a guest (`ssh GUEST -- CMD`)")
    add_lab_option(p)
    add_guests(p, one=True)
    p.add_argument("remote", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                   help="a command to run instead of a shell")
    p.set_defaults(func=ssh_command)

    p = sub.add_parser("console", help="show a guest's serial console log")
    add_lab_option(p)
    add_guests(p, one=True)
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
    p.set_defaults(func=console_command)

    for name, helptext, func in (
        ("qemu-cmd", "print the QEMU command for a guest, shell-quoted", qemu_cmd_command),
        ("libvirt-xml", "print a libvirt domain for a guest", libvirt_xml_command),
    ):
        p = sub.add_parser(name, help=helptext)
        add_lab_option(p)
        add_guests(p, one=True)
        p.add_argument("--accel", choices=("kvm", "tcg"), default="tcg")
        p.add_argument("--port", type=int, default=None, help="host port for SSH")
        p.set_defaults(func=func)


def up_command(args: argparse.Namespace) -> int:
    from provision9p import pipeline
    from provision9p.commands.updown import print_up

    lab, chosen = targets(args, create_account=True)
    if not args.json:
        run = pipeline.up(lab, chosen, rebuild=args.rebuild, verify=not args.no_verify,
                          jobs=args.jobs)
    else:
        # stdout holds the document alone: what the stages print goes to stderr
        ui.set_quiet(True)
        with contextlib.redirect_stdout(sys.stderr):
            run = pipeline.up(lab, chosen, rebuild=args.rebuild, verify=not args.no_verify,
                              jobs=args.jobs)
    return print_up(run, as_json=args.json)


def down_command(args: argparse.Namespace) -> int:
    from provision9p import pipeline
    from provision9p.commands.updown import print_down

    lab, chosen = targets(args)
    return print_down(pipeline.down(lab, chosen, args.timeout, jobs=args.jobs))


def status_command(args: argparse.Namespace) -> int:
    from provision9p import jsonout, pipeline, tables
    from provision9p.boot import supervisor

    lab, chosen = targets(args)
    net = pipeline.network_status(lab)
    if args.json:
        jsonout.dump({"guests": [jsonout.guest_state(t) for t in chosen], "network": net})
        return 0
    found = [(t.name, supervisor.status(t)) for t in chosen]
    plain = "".join(f"{name}: {st.describe()}\n" for name, st in found)
    plain += f"{net}\n" if net is not None else ""
    rows = [[name, st.state, str(st.pid or "-"),
             f"127.0.0.1:{st.ssh_port}" if st.ssh_port else "-", st.accel or "-",
             f"{st.since:.0f} s" if st.since is not None else "-"] for name, st in found]
    tables.print_table(("GUEST", "STATE", "PID", "SSH", "ACCEL", "UP"), rows,
                       status_column=1, plain=plain)
    if tables.is_terminal(sys.stdout):
        for name, st in found:
            if st.console_tail:
                print(f"{name} crashed; its last console lines:")
                print("\n".join(f"  {line}" for line in st.console_tail.splitlines()))
        if net is not None:
            print(net)
    return 0


def ssh_command(args: argparse.Namespace) -> int:
    from provision9p.connect.openssh import ssh_argv

    _lab, (target,) = targets(args)
    target.require_running()
    command = args.remote[1:] if args.remote[:1] == ["--"] else args.remote
    argv = ssh_argv(target, command)
    sys.stdout.flush()
    os.execvp("ssh", argv)


def console_command(args: argparse.Namespace) -> int:
    _lab, (target,) = targets(args)
    path = target.state.console
    if not path.is_file():
        raise UsageError(f"no console log for {target.name} yet",
                         hint=f"start it: `provision9p up {target.name}`")
    with open(path, "rb") as f:
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
    from provision9p.boot import supervisor
    from provision9p.boot.qemu_argv import qemu_argv

    _lab, (target,) = targets(args)
    port = args.port or target.guest.ssh_port or supervisor.free_port()
    argv = qemu_argv(target.guest, supervisor.boot_files(target, args.accel, port))
    ui.info(f"# QEMU for {target.name}; run it as the user that owns {target.guest.root.path}")
    print(shlex.join(argv))
    return 0


def libvirt_xml_command(args: argparse.Namespace) -> int:
    from provision9p.boot import supervisor
    from provision9p.boot.libvirt_xml import libvirt_domain_xml

    _lab, (target,) = targets(args)
    port = args.port or target.guest.ssh_port or 2222
    print(libvirt_domain_xml(target.guest, supervisor.boot_files(target, args.accel, port)))
    return 0
