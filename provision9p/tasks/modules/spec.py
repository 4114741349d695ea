"""Parameter declarations: one beside each module, driving the load-time check, the
run-time coercion and `provision9p doc`.

The idea is Ansible's argument_spec (a type, default, choices and aliases per parameter,
plus rules between parameters); the code is ours. A spec also names the Ansible
parameters a module does not implement, so a role using one stops at load with
"not supported by provision9p" instead of having it ignored.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from provision9p.errors import TaskError
from provision9p.tasks.templating import templated

TYPES = ("str", "bool", "int", "float", "path", "list", "dict", "raw")
TRUE_WORDS = frozenset({"yes", "true", "on", "1", "y", "t"})
FALSE_WORDS = frozenset({"no", "false", "off", "0", "n", "f"})


@dataclass(frozen=True)
class P:
    """One parameter."""

    type: str = "str"
    default: Any = None
    choices: tuple[Any, ...] = ()
    aliases: tuple[str, ...] = ()
    required: bool = False
    no_log: bool = False
    elements: str | None = None  # for type list: the type of each element
    help: str = ""


@dataclass(frozen=True)
class Spec:
    """A module's parameters and the rules between them (all names canonical)."""

    params: Mapping[str, P]
    help: str = ""
    returns: str = ""
    differences: str = ""
    mutually_exclusive: tuple[tuple[str, ...], ...] = ()
    required_one_of: tuple[tuple[str, ...], ...] = ()
    #: (parameter, value, parameters needed when it has that value)
    required_if: tuple[tuple[str, Any, tuple[str, ...]], ...] = ()
    required_together: tuple[tuple[str, ...], ...] = ()
    #: Ansible parameters that exist but that provision9p does not do, with why.
    unsupported: Mapping[str, str] = field(default_factory=dict)
    #: set_fact: any other name is a variable to set, passed through as it is.
    any_names: bool = False

    def names(self) -> frozenset[str]:
        """Every name the module accepts, aliases included."""
        out = set(self.params)
        for p in self.params.values():
            out.update(p.aliases)
        return frozenset(out)

    def canonical(self) -> dict[str, str]:
        out = {name: name for name in self.params}
        for name, p in self.params.items():
            for alias in p.aliases:
                out[alias] = name
        return out



def to_bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise TaskError(f"{what} must be a boolean (true/false), not {value!r}")


def _convert(value: Any, kind: str, elements: str | None, what: str) -> Any:
    if value is None or kind == "raw":
        return value
    if kind == "bool":
        return to_bool(value, what)
    if kind == "int":
        if isinstance(value, bool):
            raise TaskError(f"{what} must be an integer, not {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        text = str(value).strip()
        if text.lstrip("-").isdigit():
            return int(text)
        raise TaskError(f"{what} must be an integer, not {value!r}")
    if kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:
            return float(str(value).strip())
        except ValueError:
            raise TaskError(f"{what} must be a number, not {value!r}") from None
    if kind in ("str", "path"):
        if isinstance(value, (dict, list)):
            raise TaskError(f"{what} must be a string, not {type(value).__name__} {value!r}")
        return value if isinstance(value, str) else str(value)
    if kind == "list":
        if isinstance(value, str):
            items: list[Any] = [v.strip() for v in value.split(",")] if value else []
        elif isinstance(value, (list, tuple)):
            items = list(value)
        elif isinstance(value, dict):
            raise TaskError(f"{what} must be a list, not a mapping")
        else:
            items = [value]
        if elements:
            items = [_convert(v, elements, None, f"{what} item") for v in items]
        return items
    if kind == "dict":
        if isinstance(value, dict):
            return value
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("{"):
                try:
                    loaded = json.loads(text)
                except ValueError:
                    loaded = None
                if isinstance(loaded, dict):
                    return loaded
            if "=" in text:
                return dict(part.split("=", 1) for part in text.split())
        raise TaskError(f"{what} must be a mapping, not {value!r}")
    raise AssertionError(f"unknown parameter type {kind}")


def _set(args: Mapping[str, Any], name: str) -> bool:
    return args.get(name) is not None


def coerce(module: str, spec: Spec, args: Mapping[str, Any], *, partial: bool = False
           ) -> dict[str, Any]:
    """Check and convert a task's parameters; returns them under canonical names with
    defaults filled. `partial` is the load-time check: values that are templates are
    left for run time, and rules that a template could satisfy are not judged."""
    canon = spec.canonical()
    out: dict[str, Any] = {}
    pending: set[str] = set()  # canonical names whose value is a template
    for key, value in args.items():
        if key in spec.unsupported:
            raise TaskError(f"not supported by provision9p: {module} {key}",
                            hint=spec.unsupported[key])
        if key not in canon and spec.any_names:
            out[key] = value
            continue
        if key not in canon:
            close = difflib.get_close_matches(key, sorted(canon), n=1)
            hint = (f"did you mean {close[0]!r}? " if close else "") + \
                f"{module} takes: {', '.join(sorted(spec.params))}"
            raise TaskError(f"{module} has no parameter {key!r}", hint=hint)
        name = canon[key]
        if name in out or name in pending:
            raise TaskError(f"{module}: {key} and another alias of {name} are both given")
        if partial and templated(value):
            pending.add(name)
            continue
        p = spec.params[name]
        what = f"{module}: {key}"
        value = _convert(value, p.type, p.elements, what)
        if p.choices and value is not None:
            values = value if p.type == "list" else [value]
            for v in values:
                if v not in p.choices:
                    raise TaskError(f"{what} must be one of "
                                    f"{', '.join(map(str, p.choices))}, not {v!r}")
        out[name] = value
    given = set(out) | pending
    for group in spec.mutually_exclusive:
        both = [n for n in group if n in pending or _set(out, n)]
        if len(both) > 1:
            raise TaskError(f"{module}: {' and '.join(both)} are mutually exclusive")
    for group in spec.required_together:
        have = [n for n in group if n in given]
        if have and len(have) != len(group):
            raise TaskError(f"{module}: {', '.join(group)} go together "
                            f"(missing {', '.join(n for n in group if n not in given)})")
    for name, p in spec.params.items():
        if p.required and name not in given:
            raise TaskError(f"{module}: missing required parameter {name}")
    for group in spec.required_one_of:
        if not any(n in given for n in group):
            raise TaskError(f"{module} needs one of: {', '.join(group)}")
    for name, value, needed in spec.required_if:
        current = out.get(name, None if name in pending else spec.params[name].default)
        if current == value:
            missing = [n for n in needed if n not in given]
            if missing:
                raise TaskError(f"{module}: {name}={value} needs {', '.join(missing)}")
    if not partial:
        for name, p in spec.params.items():
            if name not in out and p.default is not None:
                out[name] = p.default
    return out
