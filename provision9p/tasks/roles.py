"""Loading Ansible-layout roles: tasks, handlers, defaults, vars, meta dependencies.

Everything is parsed and checked before anything runs: an unknown module or
parameter, a bad keyword or a Jinja2 syntax error is a RoleError naming the role, the
file, the line and the task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml

from provision9p.errors import RoleError, TaskError
from provision9p.tasks.filters import FILTERS, TESTS
from provision9p.tasks.modules import ALIASES, MODULES, check_args
from provision9p.tasks.templating import check_template

TASK_KEYWORDS = {
    "name", "when", "loop", "with_items", "loop_control", "register", "notify", "tags",
    "ignore_errors", "changed_when", "failed_when", "vars", "become", "become_user",
    "phase", "check_mode", "no_log", "listen", "args",
}


#: Where a task may run: on the tree before boot, over SSH after, or either.
PHASES = ("any", "tree", "ssh")


class _LineLoader(yaml.SafeLoader):
    """Records each mapping's line so errors can point at the task."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = {str(k): v for k, v in loader.construct_mapping(node, deep=True).items()}
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def strip_lines(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_lines(v) for k, v in value.items() if k != "__line__"}
    if isinstance(value, list):
        return [strip_lines(v) for v in value]
    return value


@dataclass
class Task:
    name: str
    module: str
    args: dict[str, Any]
    keywords: dict[str, Any]
    where: str  # "role file:line", for messages
    role: Role
    subtasks: list[Task] = field(default_factory=list)  # include_tasks

    @property
    def tags(self) -> set[str]:
        tags = self.keywords.get("tags", [])
        return ({tags} if isinstance(tags, str) else set(tags)) | self.role.tags


@dataclass
class Role:
    name: str
    path: Path
    defaults: dict[str, Any]
    vars: dict[str, Any]
    tasks: list[Task] = field(default_factory=list)
    handlers: list[Task] = field(default_factory=list)
    dependencies: list[str] = field(default_factory=list)
    phase: str = "any"
    tags: frozenset[str] = frozenset()  # the lab's `tags:` on the role reference


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(), Loader=_LineLoader)
    except yaml.YAMLError as exc:
        raise RoleError(f"{path}: not valid YAML: {exc}") from None


def find_role(name: str, search: list[Path]) -> Path:
    for base in search:
        if (base / name / "tasks").is_dir() or (base / name / "meta").is_dir():
            return base / name
    raise RoleError(f"no role named {name!r}",
                    hint="looked in " + ", ".join(str(p) for p in search))


def load_role(name: str, search: list[Path]) -> Role:
    path = find_role(name, search)
    defaults = _vars_file(path / "defaults" / "main.yml")
    variables = _vars_file(path / "vars" / "main.yml")
    meta = _read_yaml(path / "meta" / "main.yml") if (path / "meta/main.yml").is_file() else {}
    meta = strip_lines(meta or {})
    deps = [d if isinstance(d, str) else d.get("role", "") for d in meta.get("dependencies", [])]
    role = Role(name, path, defaults, variables, dependencies=deps,
                phase=str(meta.get("phase", "any")))
    if role.phase not in PHASES:
        raise RoleError(f"role {name}, meta/main.yml: phase must be one of "
                        f"{', '.join(PHASES)}, not {role.phase!r}")
    role.tasks = load_tasks(role, path / "tasks" / "main.yml")
    role.handlers = load_tasks(role, path / "handlers" / "main.yml")
    return role


def _vars_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = strip_lines(_read_yaml(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RoleError(f"{path}: expected a mapping of variables")
    return data


def load_tasks(role: Role, path: Path) -> list[Task]:
    if not path.is_file():
        return []
    data = _read_yaml(path) or []
    if not isinstance(data, list):
        raise RoleError(f"{path}: expected a list of tasks")
    return [_task(role, path, raw) for raw in data]


_env = jinja2.Environment()
_env.filters.update(FILTERS)
_env.tests.update(TESTS)


def _check_templates(value: Any, where: str) -> None:
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        try:
            check_template(value)
        except jinja2.TemplateSyntaxError as exc:
            raise RoleError(f"{where}: template error in {value!r}: {exc.message}") from None
    elif isinstance(value, dict):
        for v in value.values():
            _check_templates(v, where)
    elif isinstance(value, list):
        for v in value:
            _check_templates(v, where)


def _task(role: Role, path: Path, raw: Any) -> Task:
    rel = path.relative_to(role.path) if path.is_relative_to(role.path) else path
    line = raw.get("__line__", "?") if isinstance(raw, dict) else "?"
    where = f"role {role.name}, {rel}:{line}"
    if not isinstance(raw, dict):
        raise RoleError(f"{where}: a task must be a mapping")
    raw = strip_lines(raw)
    name = str(raw.get("name", ""))
    if name:
        where += f", task {name!r}"
    modules = [k for k in raw if k not in TASK_KEYWORDS]
    if len(modules) != 1:
        what = ", ".join(modules) or "none"
        raise RoleError(f"{where}: a task needs exactly one module, found {what}",
                        hint="supported modules: " + ", ".join(sorted(MODULES)))
    module = modules[0].removeprefix("ansible.builtin.")
    module = ALIASES.get(module, module)
    args = raw[modules[0]]
    if module not in MODULES and module != "include_tasks":
        raise RoleError(f"{where}: unknown module {modules[0]!r}",
                        hint="supported modules: " + ", ".join(sorted(MODULES)))
    if isinstance(args, str):
        args = {"_raw_params": args} if module in ("command", "shell") else (
            {"file": args} if module == "include_tasks" else {"_raw_params": args})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise RoleError(f"{where}: {module} takes a mapping of parameters")
    if isinstance(raw.get("args"), dict):  # `command: make` + `args: {chdir: /src}`
        args = {**raw["args"], **args}
    if module != "include_tasks":
        try:
            check_args(module, args)
        except TaskError as exc:
            raise RoleError(f"{where}: {exc.message}", hint=exc.hint) from None
    keywords = {k: v for k, v in raw.items() if k in TASK_KEYWORDS}
    if keywords.get("phase", "any") not in PHASES:
        raise RoleError(f"{where}: phase must be one of {', '.join(PHASES)}, "
                        f"not {keywords['phase']!r}")
    _check_templates(args, where)
    for key in ("when", "changed_when", "failed_when"):
        for cond in as_list(keywords.get(key)):
            if isinstance(cond, str):
                _check_templates("{{ " + cond + " }}", where)
    task = Task(name or module, module, args, keywords, where, role)
    if module == "include_tasks":
        target = role.path / "tasks" / str(args.get("file", ""))
        if not target.is_file():
            raise RoleError(f"{where}: include_tasks: no file {target}")
        task.subtasks = load_tasks(role, target)
    return task


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
