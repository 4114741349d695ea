"""Running the task tree on one guest: blocks (rescue, always), static imports,
dynamic includes, meta actions, and each task's keywords around its module.

A block passes its `when`, tags, vars and the INHERITED keywords down to its tasks, as
Ansible's blocks do; an import does the same. An include's `when` gates the include
once, and only `apply:` passes keywords into the included tasks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import jinja2

from provision9p.connect.base import Connection
from provision9p.errors import TaskError
from provision9p.tasks.filters import OMIT
from provision9p.tasks.lookups import MODULE_SUBDIRS, SUBDIR_VAR, TASK_DIR_VAR
from provision9p.tasks.loops import loop_items, loop_vars
from provision9p.tasks.model import Role, Task, as_list, tag_set
from provision9p.tasks.report import Recap, Reporter
from provision9p.tasks.scope import HostState, PlayRole
from provision9p.tasks.taskload import INHERITED, load_include
from provision9p.tasks.templating import condition, render

CENSORED = ("the output has been hidden due to the fact that 'no_log: true' was "
            "specified for this result")
_TRUE = {"yes", "true", "on", "1", "y", "t"}
_FALSE = {"no", "false", "off", "0", "n", "f"}


class TaskFailed(TaskError):
    """A task failed and was not ignored: a block's rescue may catch it."""

    def __init__(self, message: str, task: Task, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.task, self.result = task, result


class EndPlay(Exception):
    """meta: end_play / end_host: stop this guest's run, successfully."""


class EndRole(Exception):
    """meta: end_role: the rest of the current role is skipped."""


def boolean(value: Any, variables: Mapping[str, Any]) -> bool:
    """A keyword's value judged the way Ansible's boolean() does, after templating."""
    value = render(value, dict(variables))
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in _TRUE


def test(expr: Any, variables: dict[str, Any]) -> bool:
    """A `when`-style condition; `"{{ x }}"` is accepted as Ansible accepts it."""
    if isinstance(expr, str) and "{{" in expr:
        text = expr.strip()
        if text.startswith("{{") and text.endswith("}}") and text.count("{{") == 1:
            expr = text[2:-2]
        else:
            expr = render(expr, variables)
            if isinstance(expr, bool):
                return expr
    try:
        return condition(expr, variables)
    except jinja2.TemplateError as exc:
        raise TaskError(f"cannot judge {expr!r}: {exc.message or exc}") from None


@dataclass(frozen=True)
class Inherit:
    """What enclosing blocks and imports pass to a task."""

    ctx: PlayRole
    when: tuple[Any, ...] = ()
    tags: frozenset[str] = frozenset()
    vars: Mapping[str, Any] = field(default_factory=dict)
    keywords: Mapping[str, Any] = field(default_factory=dict)
    #: Handlers ignore --tags/--skip-tags, as in Ansible.
    handler: bool = False

    def into(self, task: Task, *, when: bool = True) -> Inherit:
        kw = task.keywords
        return replace(self, when=self.when + (tuple(as_list(kw.get("when"))) if when else ()),
                       tags=self.tags | tag_set(kw.get("tags")),
                       vars={**self.vars, **(kw.get("vars") or {})},
                       keywords={**self.keywords,
                                 **{k: v for k, v in kw.items() if k in INHERITED}})


@dataclass
class Options:
    check: bool = False
    diff: bool = False
    tags: set[str] | None = None
    skip_tags: set[str] | None = None


@dataclass
class Handler:
    task: Task
    ctx: PlayRole


class Runner:
    def __init__(self, conn: Connection, state: HostState, reporter: Reporter, recap: Recap,
                 opts: Options) -> None:
        self.conn, self.state, self.reporter, self.recap = conn, state, reporter, recap
        self.opts = opts
        self.handlers: list[Handler] = []
        #: Roles that ran, by (path, parameters): a dependency runs once.
        self.ran_roles: set[tuple[str, str]] = set()
        self.notified: list[str] = []

    # -- selection and variables ------------------------------------------------------

    def selected(self, tags: frozenset[str]) -> bool:
        want, skip = self.opts.tags, self.opts.skip_tags
        if "always" in tags and not (skip and "always" in skip):
            return True
        if "never" in tags and not (want and tags & want):
            return False
        if want and not tags & want and "all" not in want:
            return False
        return not (skip and tags & skip)

    def variables(self, task: Task, inh: Inherit, extra: Mapping[str, Any] | None = None
                  ) -> dict[str, Any]:
        layers = {**inh.vars, **(task.keywords.get("vars") or {}), **(extra or {})}
        tvars = self.state.variables(inh.ctx, layers)
        hidden = {TASK_DIR_VAR: str(task.path.parent) if task.path else None,
                  SUBDIR_VAR: MODULE_SUBDIRS.get(task.module, "files")}
        return {**tvars, **hidden}

    # -- the tree -----------------------------------------------------------------------

    def run_list(self, tasks: list[Task], inh: Inherit) -> None:
        for task in tasks:
            self.run_one(task, inh)

    def run_one(self, task: Task, inh: Inherit) -> None:
        if task.module in ("block", "import_tasks", "import_role"):
            if task.module == "import_role":
                self.add_handlers(task.role.imports, inh.ctx)
                inner = inh.into(task)
                child_ctx = self.run_deps(_imported(task), inner)
                self.check_arguments(child_ctx, inner)
                self.state.publish(child_ctx.role)  # import_role is public, as in Ansible
                inner = replace(inner, ctx=child_ctx)
            else:
                inner = inh.into(task)
            self._block(task, inner)
            return
        if not inh.handler and not self.selected(task.tags | inh.tags):
            return
        if task.module in ("include_tasks", "include_role"):
            self._include(task, inh)
        elif task.module == "meta":
            self._meta(task, inh)
        else:
            self.run_task(task, inh)

    def _block(self, task: Task, inh: Inherit) -> None:
        try:
            self.run_list(task.children, inh)
        except TaskFailed as failure:
            if not task.rescue:
                self.run_list(task.always, inh)
                raise
            self.recap.failed -= 1
            self.recap.rescued += 1
            failed = {"ansible_failed_task": {"name": failure.task.name,
                                              "action": failure.task.module},
                      "ansible_failed_result": failure.result}
            try:
                self.run_list(task.rescue, replace(inh, vars={**inh.vars, **failed}))
            except TaskFailed:
                self.run_list(task.always, inh)
                raise
        self.run_list(task.always, inh)

    def _include(self, task: Task, inh: Inherit) -> None:
        self.reporter.task(task)
        tvars = self.variables(task, inh)
        if not all(test(c, tvars) for c in (*inh.when, *as_list(task.keywords.get("when")))):
            self.recap.skipped += 1
            self.reporter.result(self.conn.guest, "skipping", {"skipped": True})
            return
        items = loop_items(task, tvars)
        control = task.keywords.get("loop_control") or {}
        for i in range(len(items)) if items is not None else [None]:
            ivars = loop_vars(control, items, i) if items is not None and i is not None else {}
            local = self.variables(task, inh, ivars) if ivars else tvars
            args = {k: v for k, v in render(task.args, local).items() if v != OMIT}
            apply = args.pop("apply", None) or {}
            loaded = load_include(task, args)
            inner = replace(inh, vars={**inh.vars, **(task.keywords.get("vars") or {}),
                                       **ivars})
            if apply:
                inner = inner.into(Task(task.name, "block", {}, dict(apply), task.where,
                                        task.role))
            self.reporter.result(self.conn.guest, "included", {}, ivars.get(
                ivars.get("ansible_loop_var", "item")) if ivars else None)
            if isinstance(loaded, Role):
                self.add_handlers([loaded], inh.ctx)
                if boolean(args.get("public", False), local):
                    self.state.publish(loaded)
                inner = replace(inner, ctx=self.run_deps(loaded, inner))
                self.check_arguments(inner.ctx, inner)
                with contextlib.suppress(EndRole):
                    self.run_list(loaded.tasks, inner)
            else:
                self.run_list(loaded, inner)

    def _meta(self, task: Task, inh: Inherit) -> None:
        verb = task.args["_raw_params"]
        tvars = self.variables(task, inh)
        if verb != "flush_handlers" and not all(
                test(c, tvars) for c in (*inh.when, *as_list(task.keywords.get("when")))):
            return
        if verb == "flush_handlers":
            self.flush_handlers()
        elif verb in ("end_play", "end_host", "end_batch"):
            raise EndPlay(verb)
        elif verb == "end_role":
            raise EndRole(verb)
        elif verb == "clear_facts":
            self.state.clear_facts()
        # noop, clear_host_errors, refresh_inventory, reset_connection: nothing to do
        # with one guest over one connection.

    def run_deps(self, role: Role, inh: Inherit) -> PlayRole:
        """An imported or included role's dependencies run first, each once per run
        unless its parameters differ or it allows duplicates; returns the role's
        context (its dependencies' defaults in scope)."""
        ctx = PlayRole(role, {}, [], inh.ctx.tags)
        for dep, drole in role.dep_roles:
            dep_inh = replace(inh, when=inh.when + tuple(dep.when), tags=inh.tags | dep.tags)
            dep_ctx = self.run_deps(drole, dep_inh)
            dep_ctx.ref_vars = dict(dep.vars)
            ctx.deps.append(dep_ctx)
            key = (str(drole.path), repr(sorted(dep.vars.items())))
            if key in self.ran_roles and not drole.allow_duplicates:
                continue
            self.ran_roles.add(key)
            self.add_handlers([drole], dep_ctx)
            with contextlib.suppress(EndRole):
                self.check_arguments(dep_ctx, dep_inh)
                self.run_list(drole.tasks, replace(dep_inh, ctx=dep_ctx))
        return ctx

    def check_arguments(self, ctx: PlayRole, inh: Inherit) -> None:
        """meta/argument_specs.yml, checked when the role starts as Ansible does (its
        validation task): required options, choices, and the plain types."""
        if not ctx.role.arg_spec:
            return
        task = Task("Validating arguments against arg spec", "validate_argument_spec", {},
                    {}, f"role {ctx.role.name}, meta/argument_specs.yml", ctx.role)
        self.reporter.task(task)
        tvars = self.state.variables(ctx, dict(inh.vars))
        problems = [p for name, opt in ctx.role.arg_spec.items()
                    if isinstance(opt, dict) for p in _argument_problems(name, opt, tvars)]
        if problems:
            res = {"failed": True, "changed": False, "argument_errors": problems,
                   "msg": "Validation of arguments failed: " + "; ".join(problems)}
            self.reporter.result(self.conn.guest, "failed", res)
            self.recap.failed += 1
            raise TaskFailed(f"{task.where}: {res['msg']}", task, res)
        self.recap.ok += 1
        self.reporter.result(self.conn.guest, "ok", {"changed": False})

    # -- handlers -------------------------------------------------------------------------

    def add_handlers(self, roles: list[Role], parent: PlayRole) -> None:
        known = {id(h.task) for h in self.handlers}
        for role in roles:
            ctx = PlayRole(role, {}, [], parent.tags)
            self.handlers += [Handler(t, ctx) for t in role.handlers if id(t) not in known]
            self.add_handlers(role.imports, ctx)

    def notify(self, task: Task, names: list[Any]) -> None:
        for name in names:
            if str(name) not in self.notified:
                self.notified.append(str(name))

    def flush_handlers(self) -> None:
        while self.notified:
            pending, self.notified = self.notified, []
            matched = [(h, self._handler_names(h) & set(pending)) for h in self.handlers]
            unknown = set(pending).difference(*(names for _, names in matched))
            if unknown:
                raise TaskError(f"no handler named or listening to {sorted(unknown)[0]!r} "
                                "was notified", hint="check the names in notify: and the "
                                "handlers' name:/listen:")
            for handler, names in matched:
                if names:
                    self.run_one(handler.task, Inherit(handler.ctx, handler=True))

    def _handler_names(self, handler: Handler) -> set[str]:
        name = str(render(handler.task.name, self.state.base(handler.ctx)))
        listen = [str(x) for x in as_list(handler.task.keywords.get("listen"))]
        return {name, f"{handler.ctx.role.name} : {name}", *listen}

    # -- one task -----------------------------------------------------------------------

    def run_task(self, task: Task, inh: Inherit) -> None:
        from provision9p.tasks.execute import execute

        execute(self, task, inh)


def _imported(task: Task) -> Role:
    """The role an import_role task loaded (the last one it added to its role)."""
    for role in task.role.imports:
        if role.tasks is task.children:
            return role
    raise TaskError(f"{task.where}: import_role lost its role")


def _argument_problems(name: str, opt: dict[str, Any], tvars: dict[str, Any]) -> list[str]:
    if name not in tvars:
        return [f"missing required argument: {name}"] if opt.get("required") else []
    value = tvars[name]
    kind = opt.get("type", "str")
    wrong = ((kind == "int" and not (isinstance(value, int) or str(value).strip().isdigit()))
             or (kind == "bool" and not isinstance(value, bool)
                 and str(value).lower() not in _TRUE | _FALSE)
             or (kind == "dict" and not isinstance(value, Mapping))
             or (kind == "list" and not isinstance(value, (list, str))))
    if wrong:
        return [f"{name}: {value!r} is not a {kind}"]
    choices = opt.get("choices")
    values = value if isinstance(value, list) else [value]
    if choices and any(v not in choices for v in values):
        return [f"{name}: {value!r} is not one of {choices}"]
    return []
