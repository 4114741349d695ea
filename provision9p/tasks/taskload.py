"""Reading task files into the task tree, checking everything that can be checked
before anything runs: the module and its parameters, keywords, Jinja2 syntax, loops,
meta actions. Static imports (import_tasks, import_role) are read here too; dynamic
includes are read when reached (load_include), with the same checks.

Whatever Ansible has and we do not fails with "not supported by provision9p: X".
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jinja2

from provision9p.errors import RoleError, TaskError
from provision9p.tasks.kv import RAW_MODULES, parse_kv
from provision9p.tasks.lookups import LOOKUPS, lookup_name
from provision9p.tasks.model import PHASES, Role, Task, as_list, read_yaml, strip_lines
from provision9p.tasks.modules import ALIASES, MODULES, check_args

#: Keywords a block passes down to its tasks (as Ansible's blocks do).
INHERITED = {"become", "become_user", "become_method", "environment", "check_mode", "diff",
             "ignore_errors", "ignore_unreachable", "no_log", "any_errors_fatal", "run_once",
             "throttle", "phase", "collections", "notify"}
BLOCK_KEYWORDS = {"name", "when", "tags", "vars", "block", "rescue", "always", *INHERITED}
TASK_KEYWORDS = {
    "name", "when", "loop", "loop_control", "register", "notify", "tags", "ignore_errors",
    "changed_when", "failed_when", "vars", "args", "listen", "until", "retries", "delay",
    "action", *INHERITED,
}
#: Ansible keywords we refuse rather than ignore.
REFUSED = {"delegate_to", "delegate_facts", "local_action", "connection", "remote_user",
           "port", "timeout", "debugger", "module_defaults", "become_flags", "become_exe",
           "poll", "async", "vars_files", "vars_prompt", "include"}
BECOME_METHODS = {"sudo", "su", "runuser", "doas", "sudo_su", "machinectl"}

#: Tasks the engine itself carries out (the rest are MODULES).
ACTIONS = {"import_tasks", "include_tasks", "import_role", "include_role", "meta"}
ROLE_ARGS = {"name", "tasks_from", "vars_from", "defaults_from", "handlers_from",
             "allow_duplicates", "public", "apply", "rolespec_validate"}
META_ACTIONS = {"flush_handlers", "end_play", "end_host", "end_batch", "end_role", "noop",
                "clear_facts", "clear_host_errors", "refresh_inventory", "reset_connection"}
PREFIXES = ("ansible.builtin.", "ansible.legacy.")

def unsupported(where: str, what: str, hint: str | None = None) -> RoleError:
    return RoleError(f"{where}: not supported by provision9p: {what}", hint=hint)


def module_name(key: str) -> str:
    for prefix in PREFIXES:
        key = key.removeprefix(prefix)
    return ALIASES.get(key, key)


def load_tasks(role: Role, path: Path, *, handlers: bool = False, depth: int = 0
               ) -> list[Task]:
    if not path.is_file():
        return []
    data = read_yaml(path) or []
    if not isinstance(data, list):
        raise RoleError(f"{path}: expected a list of tasks")
    return [parse_task(role, path, raw, handlers=handlers, depth=depth) for raw in data]


def _where(role: Role, path: Path, raw: Any) -> str:
    rel = path.relative_to(role.path) if path.is_relative_to(role.path) else path
    line = raw.get("__line__", "?") if isinstance(raw, dict) else "?"
    where = f"role {role.name}, {rel}:{line}"
    if isinstance(raw, dict) and raw.get("name"):
        where += f", task {str(raw['name'])!r}"
    return where


def parse_task(role: Role, path: Path, raw: Any, *, handlers: bool = False,
               depth: int = 0) -> Task:
    where = _where(role, path, raw)
    if not isinstance(raw, dict):
        raise RoleError(f"{where}: a task must be a mapping")
    raw = strip_lines(raw)
    if depth > 20:
        raise RoleError(f"{where}: imports nested more than 20 deep (a loop?)")
    for key in raw:
        if key in REFUSED:
            raise unsupported(where, f"task keyword {key!r}")
    if "block" in raw:
        return _block(role, path, raw, where, handlers, depth)
    if "action" in raw:
        raw = _action(raw, where)
    loop = _loop(raw, where)
    others = [k for k in raw if k not in TASK_KEYWORDS and k != "loop" and
              not (k.startswith("with_") and lookup_name(k[5:]) in LOOKUPS)]
    known = [k for k in others if module_name(k) in MODULES or module_name(k) in ACTIONS]
    if len(known) != 1:
        if not others:
            raise RoleError(f"{where}: a task needs a module", hint="supported modules: "
                            + ", ".join(sorted(MODULES)))
        if not known and len(others) == 1:
            raise unsupported(where, f"module {others[0]!r}",
                              hint="supported modules: " + ", ".join(sorted(MODULES)))
        if len(known) > 1:
            raise RoleError(f"{where}: a task has one module, found {', '.join(known)}")
    extra = [k for k in others if k not in known]
    if extra:
        raise unsupported(where, f"task keyword {extra[0]!r}"
                          if not extra[0].startswith("with_") else f"loop {extra[0]!r}")
    key = known[0]
    module = module_name(key)
    args = _args(module, raw[key], raw.get("args"), where)
    keywords = {k: v for k, v in raw.items() if k in TASK_KEYWORDS and k != "args"}
    _check_keywords(keywords, where)
    task = Task(str(raw.get("name") or module), module, args, keywords, where, role, path,
                loop=loop)
    _check_templates(args, where)
    if module in ACTIONS:
        _action_checks(task, handlers, depth)
    else:
        try:
            check_args(module, args)
        except TaskError as exc:
            raise RoleError(f"{where}: {exc.message}", hint=exc.hint) from None
    return task


def _action(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """`action: apt name=x` / `action: {module: apt, name: x}` -> `apt: ...`."""
    action = raw.pop("action")
    if isinstance(action, str):
        module, _, rest = action.strip().partition(" ")
        raw[module] = rest.strip() or None
    elif isinstance(action, dict) and "module" in action:
        args = dict(action)
        raw[str(args.pop("module"))] = args
    else:
        raise RoleError(f"{where}: action must be 'module args' or {{module: ..., ...}}")
    return raw


def _loop(raw: dict[str, Any], where: str) -> tuple[str, Any] | None:
    loops = [k for k in raw
             if k == "loop" or (k.startswith("with_") and lookup_name(k[5:]) in LOOKUPS)]
    if len(loops) > 1:
        raise RoleError(f"{where}: one loop per task, found {', '.join(loops)}")
    if not loops:
        if "loop_control" in raw:
            raise RoleError(f"{where}: loop_control without a loop")
        return None
    key = loops[0]
    return ("loop", raw[key]) if key == "loop" else (lookup_name(key[5:]), raw[key])


def _args(module: str, value: Any, extra: Any, where: str) -> dict[str, Any]:
    try:
        if value is None:
            args: dict[str, Any] = {}
        elif isinstance(value, str):
            if module in ("include_tasks", "import_tasks") and not _is_kv(value):
                args = {"file": value}
            elif module in ("include_role", "import_role") and not _is_kv(value):
                args = {"name": value}
            elif module == "meta":
                args = {"_raw_params": value.strip()}
            else:
                free = module in MODULES and "_raw_params" in MODULES[module].params
                args = parse_kv(value, module, free_form=free)
        elif isinstance(value, dict):
            args = dict(value)
        else:
            raise TaskError(f"{module} takes a mapping of parameters or key=value text")
        if module in RAW_MODULES and isinstance(args.get("cmd"), str) and "_raw_params" in args:
            raise TaskError(f"{module}: give the command once, as cmd or free-form")
    except TaskError as exc:
        raise RoleError(f"{where}: {exc.message}", hint=exc.hint) from None
    if extra is not None:
        if not isinstance(extra, dict):
            raise RoleError(f"{where}: args must be a mapping")
        args = {**extra, **args}  # `command: make` + `args: {chdir: /src}`
    return args


def _is_kv(text: str) -> bool:
    return "=" in text.split()[0] if text.split() else False


def _check_keywords(kw: dict[str, Any], where: str) -> None:
    if kw.get("phase", "any") not in PHASES:
        raise RoleError(f"{where}: phase must be one of {', '.join(PHASES)}, "
                        f"not {kw['phase']!r}")
    method = kw.get("become_method")
    if method is not None and method not in BECOME_METHODS:
        raise unsupported(where, f"become_method {method!r}")
    for key in ("when", "changed_when", "failed_when", "until"):
        for cond in as_list(kw.get(key)):
            if isinstance(cond, str):
                _check_templates(cond if "{{" in cond else "{{ " + cond + " }}", where)
    lc = kw.get("loop_control")
    if lc is not None:
        if not isinstance(lc, dict):
            raise RoleError(f"{where}: loop_control must be a mapping")
        bad = set(lc) - {"loop_var", "index_var", "label", "pause", "extended",
                         "extended_allitems"}
        if bad:
            raise unsupported(where, f"loop_control {sorted(bad)[0]!r}")
    if "vars" in kw and not isinstance(kw["vars"] or {}, dict):
        raise RoleError(f"{where}: vars must be a mapping")


@functools.lru_cache(maxsize=8192)
def _template_problem(source: str) -> tuple[str, str] | None:
    """(kind, text) of what is wrong with a template, checked against the environment
    tasks render with: syntax, or a filter or test that does not exist or is refused."""
    from provision9p.tasks import templating

    try:
        templating.check_template(source)
    except jinja2.TemplateSyntaxError as exc:
        text = exc.message or str(exc)
        prefix = "not supported by provision9p: "
        if text.startswith(prefix):
            return ("unsupported", text.removeprefix(prefix))
        return ("error", text)
    return None


def _check_templates(value: Any, where: str) -> None:
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        problem = _template_problem(value)
        if problem and problem[0] == "unsupported":
            raise unsupported(where, problem[1])
        if problem:
            raise RoleError(f"{where}: template error in {value!r}: {problem[1]}")
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_templates(k, where)
            _check_templates(v, where)
    elif isinstance(value, list):
        for v in value:
            _check_templates(v, where)


def _block(role: Role, path: Path, raw: dict[str, Any], where: str, handlers: bool,
           depth: int) -> Task:
    bad = [k for k in raw if k not in BLOCK_KEYWORDS]
    if bad:
        raise unsupported(where, f"block keyword {bad[0]!r}")
    keywords = {k: v for k, v in raw.items() if k not in ("block", "rescue", "always")}
    _check_keywords(keywords, where)
    task = Task(str(raw.get("name") or "block"), "block", {}, keywords, where, role, path)
    for part in ("block", "rescue", "always"):
        items = raw.get(part) or []
        if not isinstance(items, list):
            raise RoleError(f"{where}: {part} must be a list of tasks")
        tasks = [parse_task(role, path, t, handlers=handlers, depth=depth) for t in items]
        setattr(task, "children" if part == "block" else part, tasks)
    return task


def _action_checks(task: Task, handlers: bool, depth: int) -> None:
    """The engine's own actions: meta's verb, role arguments, and static imports now."""
    args, where = task.args, task.where
    if task.module == "meta":
        verb = str(args.get("_raw_params", ""))
        if verb not in META_ACTIONS:
            raise unsupported(where, f"meta: {verb}", hint="meta: " + ", ".join(
                sorted(META_ACTIONS)))
        return
    if task.module.endswith("_role"):
        bad = set(args) - ROLE_ARGS
        if bad or "name" not in args:
            raise RoleError(f"{where}: {task.module} takes {', '.join(sorted(ROLE_ARGS))} "
                            "(name is required)")
    else:
        bad = set(args) - {"file", "_raw_params", "apply"}
        if bad:
            raise RoleError(f"{where}: {task.module} takes file (and apply), not "
                            f"{', '.join(sorted(bad))}")
    if "apply" in args and task.module.startswith("import_"):
        raise RoleError(f"{where}: apply is for include_tasks/include_role; import_* "
                        "passes its keywords to every task already")
    if task.module.startswith("import_"):
        if task.loop is not None:
            raise RoleError(f"{where}: {task.module} cannot loop (use include_"
                            f"{task.module[7:]})")
        if task.module == "import_tasks":
            target = include_path(task, static_name(task, args.get("file")
                                                     or args.get("_raw_params")))
            task.children = load_tasks(task.role, target, handlers=handlers, depth=depth + 1)
        else:
            child = role_for(task, {k: static_name(task, v) for k, v in args.items()})
            task.role.imports.append(child)
            task.children = child.tasks


def static_name(task: Task, value: Any) -> Any:
    """A static import's name may use the role's own variables, known at load."""
    if not isinstance(value, str) or ("{{" not in value and "{%" not in value):
        return value
    from provision9p.tasks.templating import render, resolve_vars

    scope = resolve_vars({**task.role.defaults, **task.role.vars,
                          "role_path": str(task.role.path), "role_name": task.role.name})
    try:
        return render(value, scope)
    except TaskError as exc:
        raise RoleError(f"{task.where}: {task.module} is read at load, when {value!r} "
                        f"cannot be known ({exc.message})",
                        hint=f"use include_{task.module[7:]} for names known only when "
                             "the task runs") from None


def include_path(task: Task, name: Any) -> Path:
    """Where Ansible finds a tasks file: next to the including file, the role's tasks/,
    the role itself."""
    if not name:
        raise RoleError(f"{task.where}: {task.module} needs a file")
    name = str(name)
    role = task.role
    if Path(name).is_absolute():
        candidates = [Path(name)]
    else:
        here = task.path.parent if task.path else role.path / "tasks"
        candidates = [here / name, role.path / "tasks" / name, role.path / name]
    for path in candidates:
        if path.is_file():
            return path
    raise RoleError(f"{task.where}: {task.module}: no file {name}",
                    hint="looked in " + ", ".join(str(p.parent) for p in candidates))


def role_for(task: Task, args: dict[str, Any]) -> Role:
    from provision9p.tasks.roles import load_role

    role = load_role(str(args["name"]), task.role.search,
                     tasks_from=args.get("tasks_from"), vars_from=args.get("vars_from"),
                     defaults_from=args.get("defaults_from"),
                     handlers_from=args.get("handlers_from"), parent_tags=task.role.tags)
    _load_deps(role, 0)
    return role


def _load_deps(role: Role, depth: int) -> None:
    from provision9p.tasks.roles import load_role

    if depth > 20:
        raise RoleError(f"role {role.name}: dependencies nested more than 20 deep (a loop?)")
    for dep in role.dependencies:
        child = load_role(dep.name, role.search)
        _load_deps(child, depth + 1)
        role.dep_roles.append((dep, child))


def load_include(task: Task, args: dict[str, Any]) -> list[Task] | Role:
    """A dynamic include, when it is reached: its tasks, or the role it includes."""
    if task.module == "include_tasks":
        target = include_path(task, args.get("file") or args.get("_raw_params"))
        return load_tasks(task.role, target)
    return role_for(task, args)
