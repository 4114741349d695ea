"""`validate`."""

from __future__ import annotations

import argparse

from provision9p.commands.common import SubParsers, add_lab_option, open_lab


def register(sub: SubParsers) -> None:
    p = sub.add_parser("validate", help="load and validate a lab file, nothing else")
    add_lab_option(p)
    p.add_argument("--json", action="store_true",
                   help="print the validated lab as one JSON document")
    p.set_defaults(func=validate)


def validate(args: argparse.Namespace) -> int:
    lab = open_lab(args)
    if args.json:
        from provision9p import jsonout

        jsonout.dump(jsonout.lab_json(lab))
        return 0
    for g in lab.guests:
        shares = ", ".join(f"{s.mount_tag}->{s.mount}" for s in g.shares) or "no extra shares"
        print(f"{g.name}: {g.arch}/{g.machine}, {g.memory_mib} MiB, {g.cpus} cpus, "
              f"{g.rootfs.suite} root ({g.root.security_model}), {shares}")
    print(f"{lab.source}: valid, {len(lab.guests)} guest(s)")
    return 0
