"""`provision9p doc MODULE` and `provision9p doc --list`: pages written from the
modules' own parameter declarations, so the documentation cannot drift from what the
load-time check accepts."""

from __future__ import annotations

import difflib
import textwrap
from typing import Any

from provision9p.errors import UsageError
from provision9p.tasks.modules import ALIASES, MODULES
from provision9p.tasks.modules.spec import P, Spec

#: What holds for every module, printed under --list.
GENERAL = """\
Every module takes Ansible's parameter names (aliases included) and returns Ansible's
result keys; `ansible.builtin.`, `ansible.posix.` and the listed collection names are
accepted. A parameter that Ansible has but provision9p does not do stops the role at
load ("not supported by provision9p: MODULE PARAM"); an unknown one says which names
exist. Modules see the guest through one connection: the root tree before boot
(commands in a chroot), SSH after. SELinux contexts and chattr attributes are never
kept."""


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v == "":
        return "''"
    return str(v).replace("\n", "\\n").replace("\r", "\\r")


def _param_line(name: str, p: P) -> str:
    kind = f"list of {p.elements}" if p.type == "list" and p.elements else p.type
    bits = [kind]
    if p.required:
        bits.append("required")
    if p.default is not None and p.default != []:
        bits.append(f"default: {_value(p.default)}")
    if p.choices:
        bits.append("choices: " + ", ".join(_value(c) for c in p.choices))
    if p.aliases:
        bits.append("aliases: " + ", ".join(p.aliases))
    if p.no_log:
        bits.append("secret")
    return f"  {name} ({'; '.join(bits)})"


def _wrap(text: str, indent: str = "      ") -> list[str]:
    return textwrap.wrap(text, 88, initial_indent=indent, subsequent_indent=indent)


def page(name: str) -> str:
    """The doc page of one module (canonical or prefixed name)."""
    module = resolve(name)
    spec: Spec = MODULES[module].spec
    out = [f"{module} - {spec.help}", "", "PARAMETERS"]
    for pname in sorted(spec.params, key=lambda n: (n.startswith("_"), n)):
        p = spec.params[pname]
        out.append(_param_line(pname, p))
        if p.help:
            out += _wrap(p.help)
    if spec.any_names:
        out.append("  NAME: VALUE (any number): the variables to set")
    rules = [*(f"mutually exclusive: {', '.join(g)}" for g in spec.mutually_exclusive),
             *(f"one of these is needed: {', '.join(g)}" for g in spec.required_one_of),
             *(f"{n}={_value(v)} needs {', '.join(r)}" for n, v, r in spec.required_if),
             *(f"given together or not at all: {', '.join(g)}"
               for g in spec.required_together)]
    if rules:
        out += ["", "RULES", *(f"  {r}" for r in rules)]
    if spec.unsupported:
        out += ["", "NOT SUPPORTED (the role stops at load)"]
        by_reason: dict[str, list[str]] = {}
        for pname, why in spec.unsupported.items():
            by_reason.setdefault(why, []).append(pname)
        for why, names in by_reason.items():
            out += _wrap(f"{', '.join(sorted(names))}: {why}", "  ")
    if spec.returns:
        out += ["", "RETURNS", *_wrap(spec.returns, "  ")]
    if spec.differences:
        out += ["", "DIFFERENCES FROM ANSIBLE", *_wrap(spec.differences, "  ")]
    return "\n".join(out) + "\n"


def listing() -> str:
    width = max(len(n) for n in MODULES)
    lines = [f"{n:<{width}}  {MODULES[n].spec.help}" for n in sorted(MODULES)]
    aliases = [f"{a} -> {m}" for a, m in sorted(ALIASES.items())]
    return "\n".join([*lines, "", "Also accepted: " + ", ".join(aliases), "",
                      GENERAL, ""])


def resolve(name: str) -> str:
    module = name.removeprefix("ansible.builtin.")
    module = ALIASES.get(module, ALIASES.get(name, module))
    if module not in MODULES:
        close = difflib.get_close_matches(module, sorted(MODULES), n=1)
        raise UsageError(f"no module {name!r}",
                         hint=(f"did you mean {close[0]!r}? " if close else "")
                         + "`provision9p doc --list` lists them")
    return module
