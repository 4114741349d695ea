"""Modules about the play rather than the guest: set_fact, include_vars, assert, fail,
debug, pause. Variables they set go back under `ansible_facts`; the engine merges them."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import yaml

from provision9p.connect.base import Connection
from provision9p.errors import TaskError
from provision9p.tasks.modules.base import Module, ModuleContext
from provision9p.tasks.modules.spec import P, Spec
from provision9p.tasks.templating import condition, render

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _set_fact(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    facts = {k: v for k, v in args.items() if k != "cacheable"}
    if "_raw_params" in facts:
        raise TaskError("set_fact takes name: value pairs (or key=value words), not "
                        f"free text: {facts['_raw_params']!r}")
    if not facts:
        raise TaskError("set_fact needs at least one variable to set")
    for name in facts:
        if not _NAME.fullmatch(name):
            raise TaskError(f"set_fact: {name!r} is not a valid variable name")
    return {"changed": False, "ansible_facts": facts}


def _load_vars(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise TaskError(f"include_vars: {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise TaskError(f"include_vars: {path} must hold a mapping of variables")
    return data


def _vars_path(ctx: ModuleContext, name: str) -> Path:
    """A file the way Ansible's include_vars looks in a role: absolute as given, else the
    role's vars/, then the role directory."""
    path = Path(name)
    if path.is_absolute():
        return path
    for base in (ctx.role_path / "vars", ctx.role_path):
        if (base / name).exists():
            return base / name
    raise TaskError(f"include_vars: could not find {name!r} in {ctx.role_path / 'vars'} "
                    f"or {ctx.role_path}")


def _include_vars(conn: Connection, args: dict[str, Any], ctx: ModuleContext
                  ) -> dict[str, Any]:
    files: list[Path] = []
    if args.get("file"):
        path = _vars_path(ctx, str(args["file"]))
        if not path.is_file():
            raise TaskError(f"include_vars: {path} is not a file")
        files = [path]
    else:
        top = _vars_path(ctx, str(args["dir"]))
        if not top.is_dir():
            raise TaskError(f"include_vars: {top} is not a directory")
        files = _dir_files(top, args)
    merged: dict[str, Any] = {}
    for path in files:
        merged.update(_load_vars(path))
    facts = {str(args["name"]): merged} if args.get("name") else merged
    return {"changed": False, "ansible_facts": facts,
            "ansible_included_var_files": [str(f) for f in files]}


def _dir_files(top: Path, args: dict[str, Any]) -> list[Path]:
    depth = int(args.get("depth") or 0)
    exts = [str(e).lstrip(".") for e in args["extensions"]]
    match = re.compile(str(args["files_matching"])) if args.get("files_matching") else None
    ignore = [str(i) for i in args.get("ignore_files") or []]
    out: list[Path] = []

    def walk(d: Path, level: int) -> None:
        entries = sorted(d.iterdir())
        for f in entries:
            if not f.is_file():
                continue
            if any(re.search(f"{i}$", f.name) for i in ignore):
                continue
            if match and not match.search(f.name):
                continue
            if f.suffix.lstrip(".") not in exts:
                if args.get("ignore_unknown_extensions"):
                    continue
                raise TaskError(f"include_vars: {f} has none of the extensions "
                                f"{', '.join(exts)}",
                                hint="set ignore_unknown_extensions: true")
            out.append(f)
        if depth == 0 or level < depth:
            for sub in entries:
                if sub.is_dir():
                    walk(sub, level + 1)

    walk(top, 1)
    return out


def _assert(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    variables = dict(ctx.variables)
    for cond in args["that"]:
        if not condition(cond, variables):
            msg = args.get("fail_msg")
            return {"changed": False, "failed": True, "assertion": cond,
                    "evaluated_to": False,
                    "msg": msg if msg is not None else "Assertion failed"}
    if args.get("quiet"):
        return {"changed": False, "_ansible_verbose_always": False,
                "msg": args.get("success_msg") or "All assertions passed"}
    return {"changed": False, "msg": args.get("success_msg") or "All assertions passed"}


def _fail(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    return {"changed": False, "failed": True, "msg": args["msg"]}


def _debug(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    if args.get("verbosity", 0) > 0:
        # provision9p has no -v levels: a message for -v and above is never shown.
        return {"changed": False, "skipped": True,
                "skipped_reason": "Verbosity threshold not met."}
    if args.get("var") is not None:
        name = str(args["var"])
        try:
            value = render("{{ " + name + " }}", dict(ctx.variables))
        except TaskError:
            value = "VARIABLE IS NOT DEFINED!"
        return {"changed": False, name: value}
    msg = args.get("msg", "Hello world!")
    return {"changed": False, "msg": msg}


def _pause(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    seconds = float(args.get("seconds") or 0) + 60 * float(args.get("minutes") or 0)
    start = time.time()
    if seconds > 0:
        time.sleep(seconds)
    stop = time.time()
    return {"changed": False, "start": time.strftime("%Y-%m-%d %H:%M:%S",
                                                     time.localtime(start)),
            "stop": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stop)),
            "delta": int(stop - start), "user_input": "", "echo": True,
            "stdout": f"Paused for {seconds:g} seconds"}


MODULES: dict[str, Module] = {
    "set_fact": Module(_set_fact, Spec(
        help="Set variables for the rest of the run (any name: value).",
        params={"cacheable": P("bool", default=False,
                               help="accepted; there is no fact cache between runs")},
        any_names=True,
        returns="ansible_facts: the variables set",
        differences="cacheable has nothing to cache into: facts last for the run.")),
    "include_vars": Module(_include_vars, Spec(
        help="Load variables from a YAML/JSON file or a directory of them.",
        params={
            "file": P("path", aliases=("_raw_params",),
                      help="relative: the role's vars/, then the role directory"),
            "dir": P("path", help="every file in it, sorted, merged in order"),
            "name": P("str", help="put the variables under this one name"),
            "depth": P("int", default=0, help="directory levels to read (0: all)"),
            "files_matching": P("str", help="regexp a file name must match"),
            "ignore_files": P("list", elements="str", default=[],
                              help="regexps of file names to skip"),
            "extensions": P("list", elements="str", default=["json", "yaml", "yml"]),
            "ignore_unknown_extensions": P("bool", default=False),
        },
        mutually_exclusive=(("file", "dir"),),
        required_one_of=(("file", "dir"),),
        unsupported={"hash_behaviour": "variables are replaced, never merged"},
        returns="ansible_facts (the variables), ansible_included_var_files")),
    "assert": Module(_assert, Spec(
        help="Fail unless every condition holds (judged with the task's variables).",
        params={
            "that": P("list", required=True, help="conditions, as in when"),
            "fail_msg": P("raw", aliases=("msg",)),
            "success_msg": P("raw"),
            "quiet": P("bool", default=False),
        },
        returns="msg; on failure assertion and evaluated_to")),
    "fail": Module(_fail, Spec(
        help="Fail the task with a message.",
        params={"msg": P("raw", default="Failed as requested from task")},
        returns="msg")),
    "debug": Module(_debug, Spec(
        help="Print a message or a variable.",
        params={"msg": P("raw", default="Hello world!"), "var": P("str"),
                "verbosity": P("int", default=0,
                               help="above 0 the task is skipped: there are no -v levels")},
        mutually_exclusive=(("msg", "var"),),
        returns="msg, or the variable under its own name")),
    "pause": Module(_pause, Spec(
        help="Wait a number of seconds or minutes.",
        params={"seconds": P("float"), "minutes": P("float"),
                "echo": P("bool", default=True)},
        mutually_exclusive=(("seconds", "minutes"),),
        unsupported={"prompt": "provision9p runs unattended: nothing can answer a prompt"},
        returns="start, stop, delta, user_input ('')",
        differences="a pause with neither seconds nor minutes waits for nothing (Ansible "
                    "would wait for a key press).")),
}
