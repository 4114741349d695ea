"""`doc MODULE` and `doc --list`: the modules' own parameter declarations, as pages."""

from __future__ import annotations

import argparse

from provision9p.errors import UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("doc", help="a module's parameters, returns and differences "
                                   "from Ansible")
    p.add_argument("module", nargs="?", metavar="MODULE")
    p.add_argument("--list", action="store_true", help="every supported module")
    p.set_defaults(func=doc_command)


def doc_command(args: argparse.Namespace) -> int:
    from provision9p.tasks import doc

    if args.list:
        print(doc.listing(), end="")
        return 0
    if not args.module:
        raise UsageError("doc needs a MODULE or --list")
    print(doc.page(args.module), end="")
    return 0
