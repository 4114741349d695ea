"""`provision9p kernel check`: will this kernel boot a 9P root, and how?"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

from provision9p.commands.common import SubParsers
from provision9p.errors import UsageError
from provision9p.kernel.check import KernelReport, check_kernel, check_package, describe

_HOST_DEBIAN_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "s390x": "s390x"}


def register(sub: SubParsers) -> None:
    k = sub.add_parser("kernel", help="check a guest kernel for 9P root support")
    ksub = k.add_subparsers(dest="kernel_command", metavar="COMMAND", required=True)
    c = ksub.add_parser(
        "check", help="builtin / initramfs / unbootable verdict for a kernel",
        description="Read a kernel's configuration (.config, config.gz, /boot/config-*, "
                    "an image built with IKCONFIG, a linux-image .deb, or a package from "
                    "the Debian mirror) and say whether it can mount a 9P root. "
                    "Exit 0: builtin or initramfs; 1: unbootable.")
    c.add_argument("source", nargs="?", type=Path, metavar="SOURCE",
                   help="a kernel config, config.gz, kernel image or .deb")
    c.add_argument("--package", metavar="NAME",
                   help="check a Debian package instead, e.g. linux-image-amd64")
    c.add_argument("--arch", help="Debian architecture for --package (default: the host's)")
    c.add_argument("--suite", default="bookworm", help="Debian suite for --package")
    c.add_argument("--mirror", help="Debian mirror URL (default: from the host's apt sources)")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.set_defaults(func=check)


def check(args: argparse.Namespace) -> int:
    report = run_check(args)
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        from provision9p.tables import print_table

        lines = describe(report).splitlines()
        rows = [[line[:9].strip(), line[9:]] for line in lines]
        print_table(("", ""), rows, status_column=1, show_header=False, plain="\n".join(lines))
    return 1 if report.verdict == "unbootable" else 0


def run_check(args: argparse.Namespace) -> KernelReport:
    if (args.source is None) == (args.package is None):
        raise UsageError("name exactly one kernel: SOURCE or --package NAME",
                         hint="provision9p kernel check /boot/config-$(uname -r)")
    if args.source is not None:
        if not args.source.is_file():
            what = "is a directory" if args.source.is_dir() else "does not exist"
            raise UsageError(f"{args.source} {what}",
                             hint="give a kernel config, config.gz, image or .deb")
        return check_kernel(args.source)
    from provision9p.host.mirror import host_mirror

    arch = args.arch or _HOST_DEBIAN_ARCH.get(platform.machine(), platform.machine())
    return check_package(args.package, arch=arch, suite=args.suite,
                         mirror=args.mirror or host_mirror())
