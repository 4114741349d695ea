"""Running roles on one guest: templating, when/loop/register/notify, handlers, recap.

Variable precedence, low to high, as in Ansible for the levels that exist here: role
defaults < lab vars (lab defaults, then the guest's) < the role reference's vars <
role vars < registered results.
"""

from __future__ import annotations

import difflib
import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import jinja2
from jinja2.nativetypes import NativeEnvironment

from provision9p import paths
from provision9p.connect.base import Connection
from provision9p.errors import TaskError
from provision9p.host.mirror import host_mirror
from provision9p.lab.model import GuestSpec, LabSpec
from provision9p.tasks.filters import FILTERS, OMIT, TESTS
from provision9p.tasks.modules import MODULES, ModuleContext
from provision9p.tasks.roles import Role, Task, load_role

_native = NativeEnvironment(undefined=jinja2.StrictUndefined)
_text = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
# The template module's Jinja2 settings in Ansible: a block tag eats its newline.
_files = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                            trim_blocks=True)
for _env in (_native, _text, _files):
    _env.filters.update(FILTERS)
    _env.tests.update(TESTS)


@dataclass
class Recap:
    ok: int = 0
    changed: int = 0
    skipped: int = 0
    failed: int = 0
    ignored: int = 0
    results: list[tuple[str, str]] = field(default_factory=list)  # (task, status)


class Reporter:
    """Ansible-like lines: TASK [role : name], ok/changed/skipping/failed, PLAY RECAP."""

    def __init__(self, out: TextIO | None = None, diff: bool = False) -> None:
        self.out = out or sys.stdout
        self.diff = diff

    def task(self, task: Task) -> None:
        print(f"\nTASK [{task.role.name} : {task.name}]", file=self.out)

    def result(self, guest: str, status: str, result: dict[str, Any], item: Any = None
               ) -> None:
        label = f" => (item={item})" if item is not None else ""
        msg = f" => {result['msg']}" if status == "failed" and result.get("msg") else ""
        print(f"{status}: [{guest}]{label}{msg}", file=self.out)
        self._diff(status, result)

    def _diff(self, status: str, result: dict[str, Any]) -> None:
        d = result.get("diff")
        if self.diff and d and status == "changed":
            lines = difflib.unified_diff(d["before"].splitlines(True), d["after"].splitlines(True),
                                         f"before: {d['before_header']}",
                                         f"after: {d['after_header']}")
            self.out.write("".join(lines))

    def recap(self, guest: str, recap: Recap) -> None:
        print(f"\nPLAY RECAP {'*' * 60}\n{guest:<26}: ok={recap.ok} changed={recap.changed} "
              f"unreachable=0 failed={recap.failed} skipped={recap.skipped} "
              f"ignored={recap.ignored}", file=self.out)


class BriefReporter(Reporter):
    """For `up`: only what changed or failed, then one recap line."""

    def __init__(self, label: str, out: TextIO | None = None) -> None:
        super().__init__(out)
        self.label = label
        self._task = ""

    def task(self, task: Task) -> None:
        self._task = f"{task.role.name} : {task.name}"

    def result(self, guest: str, status: str, result: dict[str, Any], item: Any = None
               ) -> None:
        if status in ("changed", "failed"):
            label = f" (item={item})" if item is not None else ""
            msg = f": {result['msg']}" if status == "failed" and result.get("msg") else ""
            print(f"    {status}: {self._task}{label}{msg}", file=self.out)

    def recap(self, guest: str, recap: Recap) -> None:
        print(f"    {self.label}: ok={recap.ok} changed={recap.changed} "
              f"skipped={recap.skipped} failed={recap.failed}", file=self.out)


@functools.lru_cache(maxsize=4096)
def _compiled(native: bool, source: str) -> jinja2.Template:
    return (_native if native else _text).from_string(source)


def templated(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(templated(v) for v in value.values())
    if isinstance(value, list):
        return any(templated(v) for v in value)
    return False


def render(value: Any, variables: dict[str, Any]) -> Any:
    """Templating as Ansible does it: '{{ x }}' alone keeps x's type; other text is text."""
    try:
        if isinstance(value, str):
            if "{{" not in value and "{%" not in value:
                return value
            if value.startswith("{{") and value.endswith("}}") and value.count("{{") == 1:
                result = _compiled(True, value).render(variables)
                if isinstance(result, jinja2.Undefined):
                    result._fail_with_undefined_error()
                return result
            return _compiled(False, value).render(variables)
        if isinstance(value, dict):
            return {k: render(v, variables) for k, v in value.items()}
        if isinstance(value, list):
            return [render(v, variables) for v in value]
    except jinja2.UndefinedError as exc:
        raise TaskError(f"undefined variable: {exc.message}") from None
    except jinja2.TemplateError as exc:
        raise TaskError(f"template error in {value!r}: {exc}") from None
    return value


def resolve_vars(merged: dict[str, Any]) -> dict[str, Any]:
    """Variables whose values are templates, rendered against the others (as Ansible's
    lazy templating does: a role default of "{{ provision9p_shares }}" is a list).

    A value that cannot be rendered stays as written; it fails where it is used.
    """
    out = dict(merged)
    pending = [k for k, v in out.items() if templated(v)]
    for _ in range(8):
        still = []
        for key in pending:
            try:
                out[key] = render(out[key], out)
            except TaskError:
                still.append(key)
                continue
            if templated(out[key]):
                still.append(key)
        if not still or still == pending:
            break
        pending = still
    return out


def condition(expr: Any, variables: dict[str, Any]) -> bool:
    if isinstance(expr, bool):
        return expr
    try:
        return bool(_native.compile_expression(str(expr))(**variables))
    except jinja2.UndefinedError as exc:
        raise TaskError(f"undefined variable in {expr!r}: {exc.message}") from None


def role_search(lab: LabSpec) -> list[Path]:
    return [*lab.roles_path, paths.shipped_roles_dir()]


#: Mounts the lab's extra shares; every guest with shares gets it, first.
SHARES_ROLE = "ninep_shares"


def load_play(guest: GuestSpec, lab: LabSpec) -> list[tuple[Role, dict[str, Any]]]:
    """The guest's roles, dependencies first and each once, all checked before running."""
    search = role_search(lab)
    seen: set[str] = set()
    play: list[tuple[Role, dict[str, Any]]] = []

    def add(name: str, ref_vars: dict[str, Any], tags: tuple[str, ...] = ()) -> None:
        if name in seen:
            return
        seen.add(name)
        role = load_role(name, search)
        role.tags = frozenset(tags)
        for dep in role.dependencies:
            add(dep, {}, tags)
        play.append((role, ref_vars))

    if guest.shares and SHARES_ROLE not in {r.name for r in guest.roles}:
        add(SHARES_ROLE, {})
    for ref in guest.roles:
        add(ref.name, dict(ref.vars), ref.tags)
    return play


def guest_facts(guest: GuestSpec, lab: LabSpec) -> dict[str, Any]:
    """What the lab knows of the guest, as variables (Ansible's magic vars, plus ours)."""
    return {
        "inventory_hostname": guest.name, "ansible_hostname": guest.name,
        "ansible_managed": "Managed by provision9p",
        "provision9p_lab": lab.name,
        "provision9p_suite": guest.rootfs.suite,
        "provision9p_arch": guest.debian_arch,
        "provision9p_components": list(guest.rootfs.components),
        "provision9p_mirror": guest.rootfs.mirror or host_mirror(),
        "provision9p_shares": [
            {"mount_tag": s.mount_tag, "mount": s.mount, "readonly": s.readonly,
             "security_model": s.security_model,
             "opts": s.options.as_string(readonly=s.readonly) + ",nofail"}
            for s in guest.shares],
    }


def run_play(conn: Connection, guest: GuestSpec, lab: LabSpec, *, check: bool = False,
             diff: bool = False, tags: set[str] | None = None,
             skip_tags: set[str] | None = None, reporter: Reporter | None = None,
             extra_vars: dict[str, Any] | None = None) -> Recap:
    play = load_play(guest, lab)
    reporter = reporter or Reporter(diff=diff)
    recap = Recap()
    registered: dict[str, Any] = {}
    notified: list[tuple[Role, str]] = []
    facts = {**guest_facts(guest, lab), "ansible_check_mode": check, "omit": OMIT,
             **(extra_vars or {})}
    try:
        _run_roles(play, conn, guest, facts, registered, notified, recap, reporter, check,
                   tags, skip_tags)
    finally:
        reporter.recap(guest.name, recap)
    return recap


def _run_roles(play: list[tuple[Role, dict[str, Any]]], conn: Connection, guest: GuestSpec,
               facts: dict[str, Any], registered: dict[str, Any],
               notified: list[tuple[Role, str]], recap: Recap, reporter: Reporter,
               check: bool, tags: set[str] | None, skip_tags: set[str] | None) -> None:
    for role, ref_vars in play:
        if role.phase not in ("any", conn.phase):
            continue

        def variables(task_vars: dict[str, Any], role: Role = role,
                      ref_vars: dict[str, Any] = ref_vars) -> dict[str, Any]:
            return resolve_vars({**facts, **role.defaults, **dict(guest.vars), **ref_vars,
                                 **role.vars, **registered, **task_vars})

        for task in role.tasks:
            _run_task(task, conn, variables, registered, notified, recap, reporter, check,
                      tags, skip_tags, guest.name)
    # Handlers: each notified one once, in the order of its role's handlers file.
    for role, _ in play:
        for handler in role.handlers:
            if (role, handler.name) in notified or any(
                    n == handler.keywords.get("listen") for _, n in notified):
                def hvars(task_vars: dict[str, Any], role: Role = role) -> dict[str, Any]:
                    return resolve_vars({**facts, **role.defaults, **dict(guest.vars),
                                         **role.vars, **registered, **task_vars})
                _run_task(handler, conn, hvars, registered, [], recap, reporter, check,
                          None, None, guest.name)


def _selected(task: Task, tags: set[str] | None, skip_tags: set[str] | None) -> bool:
    if "always" in task.tags and not (skip_tags and "always" in skip_tags):
        return True
    if "never" in task.tags and not (tags and task.tags & tags):
        return False
    if tags and not task.tags & tags:
        return False
    return not (skip_tags and task.tags & skip_tags)


def _run_task(task: Task, conn: Connection, variables: Any, registered: dict[str, Any],
              notified: list[tuple[Role, str]], recap: Recap, reporter: Reporter,
              check: bool, tags: set[str] | None, skip_tags: set[str] | None,
              guest: str) -> None:
    if not _selected(task, tags, skip_tags):
        return
    kw = task.keywords
    phase = kw.get("phase", "any")
    if task.module == "include_tasks":
        for sub in task.subtasks:
            _run_task(sub, conn, variables, registered, notified, recap, reporter, check,
                      tags, skip_tags, guest)
        return
    reporter.task(task)
    base_vars = render(kw.get("vars", {}), variables({}))
    if phase not in ("any", conn.phase):
        recap.skipped += 1
        reporter.result(guest, "skipping", {"msg": f"runs in the {phase} phase"})
        return
    loop = kw.get("loop", kw.get("with_items"))
    loop_control = kw.get("loop_control") or {}
    loop_var = loop_control.get("loop_var", "item")
    items = render(loop, variables(base_vars)) if loop is not None else [None]
    results = []
    any_changed = any_failed = False
    for item in items:
        tvars = variables({**base_vars, **({loop_var: item} if loop is not None else {})})
        if not all(condition(c, tvars) for c in _as_list(kw.get("when"))):
            res: dict[str, Any] = {"changed": False, "skipped": True}
            reporter.result(guest, "skipping", res, _label(loop_control, tvars, item, loop))
            results.append(res)
            continue
        args = {k: v for k, v in render(task.args, tvars).items() if v != OMIT}
        ctx = ModuleContext(check=check, role_path=task.role.path,
                            render=_template_renderer(tvars))
        try:
            res = MODULES[task.module].run(conn, args, ctx)
        except TaskError as exc:
            res = {"changed": False, "failed": True, "msg": exc.message}
        except OSError as exc:
            res = {"changed": False, "failed": True, "msg": str(exc)}
        if "changed_when" in kw:
            res["changed"] = all(condition(c, {**tvars, **_as_reg(kw, res)})
                                 for c in _as_list(kw["changed_when"]))
        if "failed_when" in kw:
            res["failed"] = any(condition(c, {**tvars, **_as_reg(kw, res)})
                                for c in _as_list(kw["failed_when"]))
        status = "failed" if res.get("failed") else ("changed" if res.get("changed") else "ok")
        reporter.result(guest, status, res, _label(loop_control, tvars, item, loop))
        any_changed |= bool(res.get("changed"))
        any_failed |= bool(res.get("failed"))
        results.append(res)
    if "register" in kw:
        registered[kw["register"]] = ({"results": results, "changed": any_changed}
                                      if loop is not None else results[0])
    if all(r.get("skipped") for r in results):
        recap.skipped += 1
        recap.results.append((task.name, "skipped"))
        return
    if any_failed:
        if kw.get("ignore_errors"):
            recap.ignored += 1
            recap.results.append((task.name, "ignored"))
            return
        recap.failed += 1
        recap.results.append((task.name, "failed"))
        raise TaskError(f"{task.where}: failed: {results[-1].get('msg', '')}")
    if any_changed:
        recap.changed += 1
        recap.results.append((task.name, "changed"))
        for name in _as_list(kw.get("notify")):
            if (task.role, name) not in notified:
                notified.append((task.role, name))
    else:
        recap.ok += 1
        recap.results.append((task.name, "ok"))


def _label(loop_control: dict[str, Any], tvars: dict[str, Any], item: Any, loop: Any) -> Any:
    if loop is None:
        return None
    if "label" in loop_control:
        return render(loop_control["label"], tvars)
    return item


def _template_renderer(variables: dict[str, Any]) -> Callable[[str], str]:
    def render_text(text: str) -> str:
        try:
            return _files.from_string(text).render(variables)
        except jinja2.TemplateError as exc:
            raise TaskError(f"template: {exc}") from None
    return render_text


def _as_reg(kw: dict[str, Any], res: dict[str, Any]) -> dict[str, Any]:
    return {kw["register"]: res} if "register" in kw else {}


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
