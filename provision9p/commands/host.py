"""`provision9p doctor [--install]`: what this host lacks for the lab."""

from __future__ import annotations

import argparse

from provision9p.commands.common import SubParsers, add_lab_option, open_lab
from provision9p.host.doctor import Finding, enable_emulation, install_packages, run_checks
from provision9p.tables import print_table


def register(sub: SubParsers) -> None:
    p = sub.add_parser("doctor", help="check that this host has what the lab needs",
                       description="Check programs, privileges, KVM, user xattrs and disk "
                                   "space for the lab; exit 1 if something required is "
                                   "missing.")
    add_lab_option(p)
    p.add_argument("--install", action="store_true",
                   help="apt-get install the missing Debian packages (and register qemu-user "
                        "with binfmt_misc for a foreign guest), then check again")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=doctor)


def doctor(args: argparse.Namespace) -> int:
    lab = open_lab(args)
    findings = run_checks(lab)
    packages = sorted({f.package for f in findings if not f.ok and f.package})
    if args.install and packages:
        install_packages(packages)
        findings = run_checks(lab)
    if args.install and any(not f.ok and f.name.endswith(" root tree") for f in findings):
        enable_emulation(findings)
        findings = run_checks(lab)
    failed = [f for f in findings if not f.ok and f.required]
    if args.json:
        from provision9p import jsonout

        jsonout.dump({"lab": lab.source, "ok": not failed, "checks": [
            {"name": f.name, "ok": f.ok, "required": f.required, "status": f.status,
             "detail": f.detail, "fix": f.fix or None, "package": f.package}
            for f in findings]})
        return 1 if failed else 0
    print(f"host check for {lab.source}:")
    rows = [[f.status, f.name, f.detail + (f"\nfix: {f.fix}" if not f.ok and f.fix else "")]
            for f in findings]
    print_table(("STATUS", "CHECK", "DETAIL"), rows, status_column=0,
                plain=format_findings(findings))
    if failed:
        still = sorted({f.package for f in failed if f.package})
        tail = f"; `provision9p doctor --install` installs {' '.join(still)}" if still else ""
        print(f"{len(failed)} required item(s) missing{tail}")
        return 1
    print("everything required is there")
    return 0


def format_findings(findings: list[Finding]) -> str:
    width = max((len(f.name) for f in findings), default=0)
    lines = []
    for f in findings:
        lines.append(f"  {f.status:<7} {f.name:<{width}}  {f.detail}")
        if not f.ok and f.fix:
            lines.append(f"  {'':<7} {'':<{width}}  fix: {f.fix}")
    return "\n".join(lines)
