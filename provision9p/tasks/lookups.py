"""Ansible's lookups, in one registry: the `with_<name>` loops and, from templates,
`lookup('name', ...)`, `query('name', ...)` and `q(...)`.

A lookup takes its terms (already templated), the task's variables and its keyword
options, and returns a list. Files are searched the way Ansible searches them: the
role's own subdirectory for the kind of file (files/, templates/, vars/, tasks/), the
role itself, then the task file's directory and the lab's directory (playbook_dir).
`pipe` and `env` run on the controller, this host, as they do in Ansible.
"""

from __future__ import annotations

import glob
import itertools
import os
import random
import re
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2

from provision9p.errors import TaskError

Lookup = Callable[..., list[Any]]
LOOKUPS: dict[str, Lookup] = {}

#: Hidden variables the engine sets so lookups know where they are.
SUBDIR_VAR = "__p9_subdir"
TASK_DIR_VAR = "__p9_task_dir"

#: The directory each module's files come from (Ansible's `_subdir` of its action).
MODULE_SUBDIRS = {"template": "templates", "include_vars": "vars", "include_tasks": "tasks",
                  "import_tasks": "tasks"}


def lookup(name: str) -> Callable[[Lookup], Lookup]:
    def register(fn: Lookup) -> Lookup:
        LOOKUPS[name] = fn
        return fn
    return register


def lookup_name(name: str) -> str:
    """`ansible.builtin.file` and `community.general.flattened` by their short names."""
    for prefix in ("ansible.builtin.", "ansible.legacy.", "community.general."):
        name = name.removeprefix(prefix)
    return name


def search_paths(variables: Mapping[str, Any], subdir: str | None = None) -> list[Path]:
    subdir = subdir or str(variables.get(SUBDIR_VAR) or "files")
    out: list[Path] = []
    for base in (variables.get("role_path"), variables.get(TASK_DIR_VAR),
                 variables.get("playbook_dir")):
        if base:
            out += [Path(str(base)) / subdir, Path(str(base))]
    return list(dict.fromkeys(out))


def find_file(name: str, variables: Mapping[str, Any], subdir: str | None = None
              ) -> Path | None:
    if os.path.isabs(name):
        return Path(name) if os.path.exists(name) else None
    for base in search_paths(variables, subdir):
        if (base / name).exists():
            return base / name
    return None


def _need_file(name: str, variables: Mapping[str, Any], subdir: str) -> Path:
    path = find_file(name, variables, subdir)
    if path is None:
        where = ", ".join(str(p) for p in search_paths(variables, subdir))
        raise TaskError(f"could not find the file {name!r}", hint=f"searched {where}")
    return path


def _flatten_once(terms: list[Any]) -> list[Any]:
    out: list[Any] = []
    for term in terms:
        out.extend(term if isinstance(term, list) else [term])
    return out


@lookup("items")
def _items(terms: list[Any], variables: Mapping[str, Any], **kw: Any) -> list[Any]:
    return _flatten_once(terms)


@lookup("list")
def _list(terms: list[Any], variables: Mapping[str, Any], **kw: Any) -> list[Any]:
    return list(terms)


@lookup("flattened")
def _flattened(terms: list[Any], variables: Mapping[str, Any], **kw: Any) -> list[Any]:
    out: list[Any] = []
    for term in terms:
        out.extend(_flattened(term, variables) if isinstance(term, list) else [term])
    return out


@lookup("indexed_items")
def _indexed(terms: list[Any], variables: Mapping[str, Any], **kw: Any) -> list[Any]:
    return [[i, x] for i, x in enumerate(_flatten_once(terms))]


@lookup("dict")
def _dict(terms: list[Any], variables: Mapping[str, Any], **kw: Any) -> list[Any]:
    out = []
    for term in terms:
        if not isinstance(term, Mapping):
            raise TaskError(f"with_dict expects a dict, got {term!r}")
        out += [{"key": k, "value": v} for k, v in term.items()]
    return out


@lookup("together")
def _together(terms: list[Any], variables: Mapping[str, Any], **kw: Any) -> list[Any]:
    if not terms:
        raise TaskError("with_together needs at least one list")
    return [list(t) for t in itertools.zip_longest(*terms)]


@lookup("nested")
def _nested(terms: list[Any], variables: Mapping[str, Any], **kw: Any) -> list[Any]:
    if not terms:
        raise TaskError("with_nested needs at least one list")
    lists = [t if isinstance(t, list) else [t] for t in terms]
    return [list(p) for p in itertools.product(*lists)]


@lookup("subelements")
def _subelements(terms: list[Any], variables: Mapping[str, Any], **kw: Any) -> list[Any]:
    if len(terms) not in (2, 3) or not isinstance(terms[1], str):
        raise TaskError("subelements expects a list or dict, a key, and optionally "
                        "{skip_missing: true}")
    data, key = terms[0], terms[1]
    flags = terms[2] if len(terms) == 3 and isinstance(terms[2], Mapping) else {}
    skip = bool(flags.get("skip_missing"))
    elements = list(data.values()) if isinstance(data, Mapping) else data
    out = []
    for elem in elements:
        value: Any = elem
        for part in key.split("."):
            if not isinstance(value, Mapping) or part not in value:
                if skip:
                    value = []
                    break
                raise TaskError(f"subelements: {key!r} is missing from {elem!r}",
                                hint="add {skip_missing: true} to skip such elements")
            value = value[part]
        if not isinstance(value, list):
            raise TaskError(f"subelements: {key!r} of {elem!r} is not a list")
        out += [[elem, sub] for sub in value]
    return out


_SEQ_SHORT = re.compile(r"^(?:(-?\d+|0x[0-9a-f]+)-)?(-?\d+|0x[0-9a-f]+)(?:/(\d+))?(?::(.+))?$",
                        re.IGNORECASE)


@lookup("sequence")
def _sequence(terms: list[Any], variables: Mapping[str, Any], **kw: Any) -> list[Any]:
    from provision9p.tasks.kv import parse_kv

    out: list[Any] = []
    for term in terms:
        opts: dict[str, Any] = dict(kw)
        text = str(term).strip()
        m = _SEQ_SHORT.match(text)
        if m and "=" not in text:
            opts.update(start=m.group(1) or 1, end=m.group(2), stride=m.group(3) or 1)
            if m.group(4):
                opts["format"] = m.group(4)
        elif text:
            opts.update(parse_kv(text, "sequence"))
        out += _one_sequence(opts)
    return out


def _one_sequence(opts: Mapping[str, Any]) -> list[str]:
    unknown = set(opts) - {"start", "end", "count", "stride", "format"}
    if unknown:
        raise TaskError(f"sequence: unknown option {', '.join(sorted(unknown))}")
    try:
        start, stride = int(str(opts.get("start", 1)), 0), int(str(opts.get("stride", 1)), 0)
        if "count" in opts and "end" in opts:
            raise TaskError("sequence: give either end or count, not both")
        if "count" in opts:
            count = int(str(opts["count"]), 0)
            end = start + (count - 1) * stride if count else start - stride
        elif "end" in opts:
            end = int(str(opts["end"]), 0)
        else:
            raise TaskError("sequence: needs end or count")
    except ValueError as exc:
        raise TaskError(f"sequence: {exc}") from None
    fmt = str(opts.get("format", "%d"))
    if stride == 0:
        return []
    if (stride > 0 and end < start) or (stride < 0 and end > start):
        raise TaskError("sequence: to count backwards use a negative stride")
    stop = end + (1 if stride > 0 else -1)
    return [fmt % i for i in range(start, stop, stride)]


@lookup("random_choice")
def _random_choice(terms: list[Any], variables: Mapping[str, Any], **kw: Any) -> list[Any]:
    return [random.choice(terms)] if terms else []


@lookup("fileglob")
def _fileglob(terms: list[Any], variables: Mapping[str, Any], **kw: Any) -> list[Any]:
    out: list[str] = []
    for term in terms:
        pattern = str(term)
        if os.path.isabs(pattern):
            bases = [Path("/")]
        else:
            head = os.path.dirname(pattern)
            found = find_file(head, variables, "files") if head else None
            bases = [found.parent] if found else search_paths(variables, "files")
        for base in bases:
            hits = sorted(p for p in glob.glob(str(base / pattern)) if os.path.isfile(p))
            if hits:
                out += hits
                break
    return out


@lookup("first_found")
def _first_found(terms: list[Any], variables: Mapping[str, Any], **kw: Any) -> list[Any]:
    skip = bool(kw.get("skip", False))
    candidates: list[tuple[str, list[str]]] = []  # (file, paths)
    for term in _flatten_once(terms):
        spec = term if isinstance(term, Mapping) else {"files": [term]}
        files = _split_list(spec.get("files", spec.get("file", [])))
        paths = _split_list(spec.get("paths", spec.get("path", [])))
        skip = skip or bool(spec.get("skip", False))
        candidates += [(f, paths) for f in files]
    for name, paths in candidates:
        if paths:
            for base in paths:
                full = name if os.path.isabs(name) else os.path.join(base, name)
                hit = find_file(full, variables)
                if hit is not None:
                    return [str(hit)]
        else:
            hit = find_file(name, variables)
            if hit is not None:
                return [str(hit)]
    if skip:
        return []
    tried = ", ".join(n for n, _ in candidates)
    raise TaskError(f"first_found: none of the files was found: {tried}",
                    hint="searched " + ", ".join(str(p) for p in search_paths(variables)))


def _split_list(value: Any) -> list[str]:
    """first_found's `files`/`paths`: a list, or a string split on , ; and blanks."""
    if isinstance(value, str):
        return [p for p in re.split(r"[,;\s]+", value) if p]
    return [str(v) for v in (value or [])]


@lookup("file")
def _file(terms: list[Any], variables: Mapping[str, Any], **kw: Any) -> list[Any]:
    out = []
    for term in terms:
        text = _need_file(str(term), variables, "files").read_text()
        out.append(text.rstrip() if kw.get("rstrip", True) else text)
    return out


@lookup("template")
def _template(terms: list[Any], variables: Mapping[str, Any], **kw: Any) -> list[Any]:
    from provision9p.tasks.templating import template_renderer

    local = {**variables, **(kw.get("template_vars") or {})}
    render = template_renderer(local)
    return [render(_need_file(str(t), variables, "templates").read_text()) for t in terms]


@lookup("lines")
def _lines(terms: list[Any], variables: Mapping[str, Any], **kw: Any) -> list[Any]:
    out: list[Any] = []
    for term in terms:
        out += _controller(str(term)).splitlines()
    return out


@lookup("pipe")
def _pipe(terms: list[Any], variables: Mapping[str, Any], **kw: Any) -> list[Any]:
    return [_controller(str(t)).rstrip() for t in terms]


def _controller(command: str) -> str:
    proc = subprocess.run(command, shell=True, capture_output=True, text=True)
    if proc.returncode != 0:
        raise TaskError(f"lookup: `{command}` failed on the controller "
                        f"(exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return proc.stdout


@lookup("env")
def _env(terms: list[Any], variables: Mapping[str, Any], **kw: Any) -> list[Any]:
    default = kw.get("default", "")
    return [os.environ.get(str(t), default) for t in terms]


@lookup("vars")
def _vars(terms: list[Any], variables: Mapping[str, Any], **kw: Any) -> list[Any]:
    from provision9p.tasks.templating import render

    out = []
    for term in terms:
        if term in variables:
            out.append(render(variables[term], dict(variables)))
        elif "default" in kw:
            out.append(kw["default"])
        else:
            raise TaskError(f"lookup vars: no variable {term!r}")
    return out


@lookup("varnames")
def _varnames(terms: list[Any], variables: Mapping[str, Any], **kw: Any) -> list[Any]:
    names = [n for n in variables if not n.startswith("__p9_")]
    out: list[str] = []
    for term in terms:
        rx = re.compile(str(term))
        out += [n for n in names if rx.search(n) and n not in out]
    return out


def run_lookup(name: str, terms: Any, variables: Mapping[str, Any], **kw: Any) -> list[Any]:
    name = lookup_name(name)
    if name not in LOOKUPS:
        raise TaskError(f"not supported by provision9p: lookup {name!r}",
                        hint="lookups: " + ", ".join(sorted(LOOKUPS)))
    if not isinstance(terms, list):
        terms = [terms]
    return LOOKUPS[name](terms, variables, **kw)


def _call(context: Any, name: str, args: tuple[Any, ...], kw: dict[str, Any],
          wantlist: bool) -> Any:
    errors = kw.pop("errors", "strict")
    wantlist = bool(kw.pop("wantlist", wantlist))
    variables = context.get_all()
    try:
        found = run_lookup(name, list(args), variables, **kw)
    except TaskError:
        if errors == "strict":
            raise
        found = []
    if wantlist:
        return found
    if all(isinstance(x, str) for x in found):
        return ",".join(found)
    return found[0] if len(found) == 1 else found


@jinja2.pass_context
def _lookup_global(context: Any, name: str, *args: Any, **kw: Any) -> Any:
    return _call(context, name, args, kw, wantlist=False)


@jinja2.pass_context
def _query_global(context: Any, name: str, *args: Any, **kw: Any) -> Any:
    return _call(context, name, args, kw, wantlist=True)


#: Registered on every templating environment.
JINJA_GLOBALS: dict[str, Any] = {"lookup": _lookup_global, "query": _query_global,
                                 "q": _query_global}

#: The `with_<name>` loops that exist.
WITH_LOOPS = frozenset(f"with_{n}" for n in LOOKUPS)
