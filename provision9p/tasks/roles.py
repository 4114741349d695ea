"""Loading Ansible-layout roles: tasks, handlers, defaults, vars, meta dependencies.

Everything static is parsed and checked before anything runs: an unknown module or
parameter, a bad keyword or a Jinja2 syntax error is a RoleError naming the role, the
file, the line and the task. The task files themselves are read by taskload.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from provision9p.errors import RoleError
from provision9p.tasks.model import (
    PHASES,
    Role,
    RoleDep,
    Task,
    as_list,
    read_yaml,
    strip_lines,
    tag_set,
)
from provision9p.tasks.taskload import load_tasks

__all__ = ["PHASES", "Role", "RoleDep", "Task", "as_list", "find_role", "load_role",
           "strip_lines"]

#: Keys of a dependency entry that are not role parameters (the rest are, old style).
_DEP_KEYS = {"role", "name", "vars", "tags", "when", "src", "version", "scm"}


def find_role(name: str, search: list[Path]) -> Path:
    for base in search:
        if (base / name / "tasks").is_dir() or (base / name / "meta").is_dir():
            return base / name
    # A Galaxy-style name (namespace.role) may sit on disk under its short name.
    short = name.rsplit(".", 1)[-1]
    if short != name:
        return find_role(short, search)
    raise RoleError(f"no role named {name!r}",
                    hint="looked in " + ", ".join(str(p) for p in search))


def role_file(directory: Path, stem: str) -> list[Path]:
    """Ansible's lookup of `main` (or a *_from name) in a role dir: stem.yml, stem.yaml,
    stem.json, stem itself, or a stem/ directory whose files all load, in name order."""
    for suffix in ("", ".yml", ".yaml", ".json"):
        path = directory / (stem + suffix)
        if path.is_file() and (suffix or Path(stem).suffix):
            return [path]
    if (directory / stem).is_dir():
        return sorted(p for p in (directory / stem).rglob("*")
                      if p.is_file() and p.suffix in (".yml", ".yaml", ".json", ""))
    return []


def vars_files(directory: Path, stem: str | None, what: str) -> dict[str, Any]:
    found = role_file(directory, stem or "main")
    if stem and not found:
        raise RoleError(f"{what}: no file {stem} in {directory}")
    out: dict[str, Any] = {}
    for path in found:
        data = strip_lines(read_yaml(path))
        if data is None:
            continue
        if not isinstance(data, dict):
            raise RoleError(f"{path}: expected a mapping of variables")
        out.update(data)
    return out


def _tasks_file(path: Path, sub: str, stem: str | None, role: Role, what: str,
                handlers: bool = False) -> list[Task]:
    found = role_file(path / sub, stem or "main")
    if stem and not found:
        raise RoleError(f"role {role.name}: {what}: no file {stem} in {path / sub}")
    out: list[Task] = []
    for file in found:
        out += load_tasks(role, file, handlers=handlers)
    return out


def load_role(name: str, search: list[Path], *, tasks_from: str | None = None,
              vars_from: str | None = None, defaults_from: str | None = None,
              handlers_from: str | None = None,
              parent_tags: frozenset[str] = frozenset()) -> Role:
    path = find_role(name, search)
    defaults = vars_files(path / "defaults", defaults_from, f"role {name}: defaults_from")
    variables = vars_files(path / "vars", vars_from, f"role {name}: vars_from")
    meta_files = role_file(path / "meta", "main")
    meta = strip_lines(read_yaml(meta_files[0]) or {}) if meta_files else {}
    if not isinstance(meta, dict):
        raise RoleError(f"role {name}, meta/main.yml: expected a mapping")
    role = Role(name, path, defaults, variables,
                dependencies=[_dep(name, d) for d in meta.get("dependencies") or []],
                phase=str(meta.get("phase", "any")), search=search,
                allow_duplicates=bool(meta.get("allow_duplicates", False)), tags=parent_tags)
    if role.phase not in PHASES:
        raise RoleError(f"role {name}, meta/main.yml: phase must be one of "
                        f"{', '.join(PHASES)}, not {role.phase!r}")
    role.arg_spec = _arg_spec(path, meta, Path(tasks_from or "main").stem)
    role.tasks = _tasks_file(path, "tasks", tasks_from, role, "tasks_from")
    role.handlers = _tasks_file(path, "handlers", handlers_from, role, "handlers_from",
                                handlers=True)
    return role


def _arg_spec(path: Path, meta: dict[str, Any], entry: str) -> dict[str, Any]:
    """The options of the entry point (`main`, or the tasks_from name), from
    meta/argument_specs.yml or meta/main.yml's `argument_specs`."""
    specs = meta.get("argument_specs") or {}
    for file in role_file(path / "meta", "argument_specs"):
        specs = (strip_lines(read_yaml(file)) or {}).get("argument_specs") or {}
    point = specs.get(entry) if isinstance(specs, dict) else None
    options = point.get("options") if isinstance(point, dict) else None
    return options if isinstance(options, dict) else {}


def _dep(role: str, entry: Any) -> RoleDep:
    if isinstance(entry, str):
        return RoleDep(entry)
    if not isinstance(entry, dict) or not (entry.get("role") or entry.get("name")):
        raise RoleError(f"role {role}, meta/main.yml: a dependency is a role name or a "
                        f"mapping with `role:`, not {entry!r}")
    params = {k: v for k, v in entry.items() if k not in _DEP_KEYS}
    dvars = entry.get("vars") or {}
    if not isinstance(dvars, dict):
        raise RoleError(f"role {role}, meta/main.yml: vars of a dependency must be a mapping")
    return RoleDep(str(entry.get("role") or entry.get("name")), {**params, **dvars},
                   tag_set(entry.get("tags")), as_list(entry.get("when")))
