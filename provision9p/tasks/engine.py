"""Running roles on one guest: when/loop/register/notify, handlers, tags, the recap.

Variable precedence, low to high, as in Ansible for the levels that exist here: role
defaults < lab vars (lab defaults, then the guest's) < the role reference's vars <
role vars < registered results.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from provision9p import paths
from provision9p.connect.base import Connection
from provision9p.errors import TaskError
from provision9p.host.mirror import host_mirror
from provision9p.lab.model import GuestSpec, LabSpec
from provision9p.tasks.filters import OMIT
from provision9p.tasks.modules import MODULES, ModuleContext
from provision9p.tasks.modules.base import coerce_args
from provision9p.tasks.report import BriefReporter, Recap, Reporter
from provision9p.tasks.roles import Role, Task, as_list, load_role
from provision9p.tasks.templating import condition, render, resolve_vars, template_renderer

__all__ = ["BriefReporter", "Play", "Recap", "Reporter", "load_play", "run_play"]


def role_search(lab: LabSpec) -> list[Path]:
    return [*lab.roles_path, paths.shipped_roles_dir()]


#: Mounts the lab's extra shares; every guest with shares gets it, first.
SHARES_ROLE = "ninep_shares"

#: A guest's roles in running order, each with the vars of its reference in the lab.
Play = list[tuple[Role, dict[str, Any]]]


def load_play(guest: GuestSpec, lab: LabSpec) -> Play:
    """The guest's roles, dependencies first and each once, all checked before running."""
    search = role_search(lab)
    seen: set[str] = set()
    play: Play = []

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
             extra_vars: dict[str, Any] | None = None, play: Play | None = None) -> Recap:
    """Run the guest's play (loaded here unless the caller already has it)."""
    play = load_play(guest, lab) if play is None else play
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


def _run_roles(play: Play, conn: Connection, guest: GuestSpec,
               facts: dict[str, Any], registered: dict[str, Any],
               notified: list[tuple[Role, str]], recap: Recap, reporter: Reporter,
               check: bool, tags: set[str] | None, skip_tags: set[str] | None) -> None:
    def scope(role: Role, ref_vars: dict[str, Any]) -> Callable[[dict[str, Any]],
                                                                  dict[str, Any]]:
        def variables(task_vars: dict[str, Any]) -> dict[str, Any]:
            return resolve_vars({**facts, **role.defaults, **dict(guest.vars), **ref_vars,
                                 **role.vars, **registered, **task_vars})
        return variables

    for role, ref_vars in play:
        if role.phase not in ("any", conn.phase):
            continue
        for task in role.tasks:
            _run_task(task, conn, scope(role, ref_vars), registered, notified, recap,
                      reporter, check, tags, skip_tags, guest.name)
    # Handlers: each notified one once, in the order of its role's handlers file.
    for role, ref_vars in play:
        for handler in role.handlers:
            if (role, handler.name) in notified or any(
                    n == handler.keywords.get("listen") for _, n in notified):
                _run_task(handler, conn, scope(role, ref_vars), registered, [], recap,
                          reporter, check, None, None, guest.name)


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
        if not all(condition(c, tvars) for c in as_list(kw.get("when"))):
            res: dict[str, Any] = {"changed": False, "skipped": True}
            reporter.result(guest, "skipping", res, _label(loop_control, tvars, item, loop))
            results.append(res)
            continue
        args = {k: v for k, v in render(task.args, tvars).items() if v != OMIT}
        ctx = ModuleContext(check=check, role_path=task.role.path,
                            render=template_renderer(tvars), variables=tvars)
        try:
            res = MODULES[task.module].run(conn, coerce_args(task.module, args), ctx)
        except TaskError as exc:
            hint = f" ({exc.hint})" if exc.hint else ""
            res = {"changed": False, "failed": True, "msg": exc.message + hint}
        except OSError as exc:
            res = {"changed": False, "failed": True, "msg": str(exc)}
        if "changed_when" in kw:
            res["changed"] = all(condition(c, {**tvars, **_as_reg(kw, res)})
                                 for c in as_list(kw["changed_when"]))
        if "failed_when" in kw:
            res["failed"] = any(condition(c, {**tvars, **_as_reg(kw, res)})
                                for c in as_list(kw["failed_when"]))
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
        for name in as_list(kw.get("notify")):
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


def _as_reg(kw: dict[str, Any], res: dict[str, Any]) -> dict[str, Any]:
    return {kw["register"]: res} if "register" in kw else {}
