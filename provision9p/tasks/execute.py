"""One module task: its loop, `when` per item, the keywords that shape the module's
run (check_mode, diff, become, environment, until/retries/delay), the judgement of its
result (changed_when, failed_when, ignore_errors), register, notify and the report.

run_once, throttle, any_errors_fatal and ignore_unreachable are accepted and change
nothing: a run has one guest, over one connection.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from provision9p.errors import TaskError
from provision9p.tasks.become import task_connection
from provision9p.tasks.filters import OMIT
from provision9p.tasks.loops import loop_items, loop_vars
from provision9p.tasks.model import Task, as_list
from provision9p.tasks.modules import MODULES, ModuleContext
from provision9p.tasks.modules.base import coerce_args
from provision9p.tasks.runner import CENSORED, TaskFailed, boolean, test
from provision9p.tasks.templating import render, template_renderer, templated

if TYPE_CHECKING:
    from provision9p.tasks.runner import Inherit, Runner


def execute(runner: Runner, task: Task, inh: Inherit) -> None:
    kw = {**inh.keywords, **task.keywords}
    guest = runner.conn.guest
    runner.reporter.task(task)
    phase = kw.get("phase", "any")
    if phase not in ("any", runner.conn.phase):
        runner.recap.skipped += 1
        runner.reporter.result(guest, "skipping", {"msg": f"runs in the {phase} phase"})
        return
    tvars = runner.variables(task, inh)
    when = (*inh.when, *as_list(task.keywords.get("when")))
    control = kw.get("loop_control") or {}
    try:
        items = loop_items(task, tvars)
    except TaskError as loop_error:
        # Ansible: a loop over something undefined is fine when `when` is false anyway
        # (`with_items: "{{ x }}"` + `when: x is defined`).
        try:
            skip = bool(when) and not _when(when, tvars)
        except TaskError:
            skip = False
        if not skip:
            raise TaskError(f"{task.where}: {loop_error.message}", hint=loop_error.hint
                            ) from None
        items = []
    results: list[dict[str, Any]] = []
    no_log = False
    for index in range(len(items)) if items is not None else [None]:
        ivars = (loop_vars(control, items, index)
                 if items is not None and index is not None else {})
        local = runner.variables(task, inh, ivars) if ivars else tvars
        if "check_mode" in kw:  # the task's own check mode, as Ansible's play context has it
            local = {**local, "ansible_check_mode": boolean(kw["check_mode"], local)}
        no_log = boolean(kw.get("no_log", False), local)
        label = _label(control, ivars, local, no_log)
        if index and "pause" in control:
            time.sleep(float(render(control["pause"], local)))
        if not _when(when, local):
            res: dict[str, Any] = {"changed": False, "skipped": True,
                                   "skip_reason": "Conditional result was False"}
            runner.reporter.result(guest, "skipping", res, label)
        else:
            res = _attempts(runner, task, kw, local)
            status = ("failed" if res.get("failed") else
                      "changed" if res.get("changed") else "ok")
            shown = {"censored": CENSORED} if no_log else res
            diff = (boolean(kw["diff"], local) if "diff" in kw else runner.opts.diff)
            runner.reporter.result(guest, status, shown, label, diff=diff and not no_log)
            if isinstance(res.get("ansible_facts"), dict) and not res.get("failed"):
                runner.state.add_facts(res["ansible_facts"], task.module)
        if ivars:
            var = ivars["ansible_loop_var"]
            res = {**res, var: ivars[var], "ansible_loop_var": var}
        results.append(res)
    _conclude(runner, task, kw, tvars, results, items is not None, no_log)


def _when(conditions: tuple[Any, ...], variables: dict[str, Any]) -> bool:
    return all(test(c, variables) for c in conditions)


def _label(control: dict[str, Any], ivars: dict[str, Any], local: dict[str, Any],
           no_log: bool) -> Any:
    if not ivars:
        return None
    if no_log:
        return "None"
    if "label" in control:
        return render(control["label"], local)
    return ivars[ivars["ansible_loop_var"]]


def _attempts(runner: Runner, task: Task, kw: dict[str, Any], local: dict[str, Any]
              ) -> dict[str, Any]:
    """The module's run, again while `until` is false (retries + 1 times at most)."""
    until = as_list(kw.get("until"))
    retries = int(render(kw.get("retries", 3), local)) if until else 0
    delay = float(render(kw.get("delay", 5), local)) if until else 0.0
    attempt = 0
    while True:
        attempt += 1
        res = _one(runner, task, kw, local)
        if not until:
            return res
        res["attempts"] = attempt
        reg = {kw["register"]: res} if "register" in kw else {}
        try:
            done = all(test(c, {**local, **reg}) for c in until)
        except TaskError as exc:
            return {**res, "failed": True, "msg": exc.message}
        if done:
            return res
        if attempt > max(retries, 0):
            return {**res, "failed": True,
                    "msg": res.get("msg") or f"retried {attempt} times; until never held"}
        if delay > 0:
            time.sleep(delay)


def _one(runner: Runner, task: Task, kw: dict[str, Any], local: dict[str, Any]
         ) -> dict[str, Any]:
    try:
        check = boolean(kw["check_mode"], local) if "check_mode" in kw else runner.opts.check
        diff = boolean(kw["diff"], local) if "diff" in kw else runner.opts.diff
        user = (str(render(kw.get("become_user", "root"), local))
                if boolean(kw.get("become", False), local) else None)
        conn = task_connection(runner.conn, user, _environment(kw.get("environment"), local))
        # keys are templates too (`set_fact: {"{{ item.key }}": ...}`), as in Ansible
        args = {(render(k, local) if templated(k) else k): v
                for k, v in render(task.args, local).items() if v != OMIT}
        ctx = ModuleContext(check=check, role_path=task.role.path,
                            render=template_renderer(local), variables=local, diff=diff,
                            guest=runner.state.guest)
        res = dict(MODULES[task.module].run(conn, coerce_args(task.module, args), ctx))
    except TaskError as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        res = {"changed": False, "failed": True, "msg": exc.message + hint}
    except OSError as exc:
        res = {"changed": False, "failed": True, "msg": str(exc)}
    reg = {kw["register"]: res} if "register" in kw else {}
    try:
        if "changed_when" in kw:
            res["changed"] = all(test(c, {**local, **reg}) for c in as_list(kw["changed_when"]))
        if "failed_when" in kw:
            res["failed"] = any(test(c, {**local, **reg}) for c in as_list(kw["failed_when"]))
    except TaskError as exc:
        res.update(failed=True, msg=exc.message)
    res.setdefault("changed", False)
    return res


def _environment(value: Any, local: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for part in as_list(render(value, local) if value is not None else None):
        if not isinstance(part, dict):
            raise TaskError(f"environment must be a mapping, got {part!r}")
        env.update({str(k): str(v) for k, v in part.items() if v != OMIT})
    return env


def _conclude(runner: Runner, task: Task, kw: dict[str, Any], tvars: dict[str, Any],
              results: list[dict[str, Any]], looped: bool, no_log: bool) -> None:
    recap = runner.recap
    changed = any(r.get("changed") for r in results)
    failed = any(r.get("failed") for r in results)
    skipped = all(r.get("skipped") for r in results)
    if "register" in kw:
        if looped:
            value: dict[str, Any] = {"results": results, "changed": changed,
                                     "msg": "All items completed", "skipped": skipped}
            if failed:
                value["failed"] = True
            if not results:
                value["skipped_reason"] = "No items in the list"
        else:
            value = results[0]
        runner.state.register(str(kw["register"]), value)
    if skipped:
        recap.skipped += 1
        recap.results.append((task.name, "skipped"))
        return
    if failed:
        if boolean(kw.get("ignore_errors", False), tvars):
            recap.ignored += 1
            recap.results.append((task.name, "ignored"))
            return
        recap.failed += 1
        recap.results.append((task.name, "failed"))
        last = next(r for r in reversed(results) if r.get("failed"))
        msg = "(censored: no_log)" if no_log else last.get("msg", "")
        raise TaskFailed(f"{task.where}: failed: {msg}", task, last)
    if changed:
        recap.changed += 1
        recap.results.append((task.name, "changed"))
        runner.notify(task, [render(n, tvars) for n in as_list(kw.get("notify"))])
    else:
        recap.ok += 1
        recap.results.append((task.name, "ok"))
