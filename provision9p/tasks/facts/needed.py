"""Whether a play can read the facts gathered at its start, decided before it runs.

Gathering costs the guest one heavy command (a shell, grep, awk, ip, systemctl, stat):
2-20 s under TCG right after boot (bench/results/roles-over-ssh.md), and the default
lab's roles read no fact. A play
skips it only when that is provable from what it could ever render: every file of
its roles (tasks, handlers, templates, vars, defaults, meta), the task files it imports
from elsewhere, the lab's vars and the extra vars. Anything whose text is not known
before the run (a dynamic include, a lookup, a file-reading loop, a template whose
name is a template, a Jinja include) counts as a use. Facts are a snapshot taken at
the play's start, as in Ansible; gathering them later, on first use, would show
what earlier tasks changed, so the choice is made once, up front.

A name is a use when it is `ansible_<anything>` other than the magic variables below,
`hostvars` (it holds this guest's facts), or a dynamic look at the variables
(`vars[...]`, `vars.x`, `{{ vars }}`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from provision9p.lab.model import GuestSpec
from provision9p.tasks.model import Role, Task
from provision9p.tasks.scope import PlayRole

#: `ansible_` variables that are not facts (scope.magic_vars, loops, rescue, results).
NOT_FACTS = frozenset({
    "ansible_managed", "ansible_check_mode", "ansible_diff_mode", "ansible_run_tags",
    "ansible_skip_tags", "ansible_version", "ansible_play_hosts", "ansible_play_hosts_all",
    "ansible_play_batch", "ansible_connection", "ansible_host", "ansible_port",
    "ansible_loop", "ansible_loop_var", "ansible_index_var", "ansible_failed_task",
    "ansible_failed_result", "ansible_included_var_files",
})

_USE = re.compile(
    r"(?<![\w.])(?:(?P<fact>ansible_\w*)|(?P<hostvars>hostvars)\b"
    r"|(?P<vars>vars)\b(?![\"']?\s*:)"
    r"|(?P<unknown>(?:lookup|query|q)\s*\(|\{%-?\s*(?:include|import|from|extends)\b))")

#: Modules whose files or variables are only known when they run.
_DYNAMIC = frozenset({"include_tasks", "include_role", "include_vars", "include"})
#: `with_<lookup>` loops that only reshape the data they are given.
_PURE_LOOPS = frozenset({"loop", "items", "list", "flattened", "indexed_items", "dict",
                         "together", "nested", "cartesian", "subelements", "sequence",
                         "random_choice"})
#: A role file larger than this is data, not a template: read as a use, unscanned.
_MAX_TEXT = 4 << 20
#: Marks a text that stands for what only the run will know (not scanned).
_UNSCANNED = "\0unscanned: "
#: What another guest's play may use to see this guest's facts.
_CROSS = frozenset({"hostvars", "unknown"})


def text_uses(text: str) -> Iterator[tuple[str, str]]:
    """(kind, text) of each thing in `text` that may read facts: kind is `fact`,
    `hostvars`, `vars` or `unknown` (text that only the run will know)."""
    for m in _USE.finditer(text):
        kind = m.lastgroup or "unknown"
        if kind == "fact" and m.group(0) in NOT_FACTS:
            continue
        yield kind, m.group(0).strip()


def play_uses(play: list[PlayRole], guest: GuestSpec, extra_vars: dict[str, Any]
              ) -> Iterator[tuple[str, str]]:
    """(kind, "where: what") of each possible use of gathered facts in a guest's play."""
    for where, text in _texts(play, guest, extra_vars):
        if text.startswith(_UNSCANNED):
            yield "unknown", f"{where}: {text.removeprefix(_UNSCANNED)}"
            continue
        for kind, what in text_uses(text):
            yield kind, f"{where}: {what}"


def facts_use(guest: GuestSpec, play: list[PlayRole],
              others: Iterable[tuple[GuestSpec, list[PlayRole] | None]] = (),
              extra_vars: dict[str, Any] | None = None) -> str | None:
    """Why this guest's facts must be gathered, or None when no play can read them:
    its own play, or another guest's of the lab, which sees them through `hostvars`
    (an other play that could not be loaded counts as a use)."""
    extra = extra_vars or {}
    for _, why in play_uses(play, guest, extra):
        return why
    for other, other_play in others:
        if other.name == guest.name:
            continue
        if other_play is None:
            return f"guest {other.name}: its roles could not be checked"
        for kind, why in play_uses(other_play, other, extra):
            if kind in _CROSS:
                return f"guest {other.name}, {why}"
    return None


def _texts(play: list[PlayRole], guest: GuestSpec, extra: dict[str, Any]
           ) -> Iterator[tuple[str, str]]:
    """Everything the play can render, as (where, text): the vars given to it, each file
    of its roles (their tasks, templates, defaults and vars among them), the task files
    it imports from elsewhere; for what only the run will know, an _UNSCANNED text."""
    yield "the guest's vars", json.dumps(guest.vars, default=str)
    yield "the extra vars", json.dumps(extra, default=str)
    roles = _roles(play)
    seen: set[Path] = set()
    for role in roles:
        for path in sorted(p for p in role.path.rglob("*") if p.is_file()):
            seen.add(path)
            yield from _file(path)
    for role in roles:
        for task in _tasks(role):
            reason = _dynamic(task)
            if reason is not None:
                yield task.where, _UNSCANNED + reason
            for extra_file in (task.path, _absolute_template(task)):
                if extra_file is not None and extra_file not in seen:
                    seen.add(extra_file)
                    yield from _file(extra_file)


def _absolute_template(task: Task) -> Path | None:
    src = str(task.args.get("src", "")) if task.module == "template" else ""
    return Path(src) if Path(src).is_absolute() else None


def _dynamic(task: Task) -> str | None:
    """Text the task brings in only when it runs, said as a use."""
    if task.module in _DYNAMIC:
        return f"{task.module}: its file is only known when it runs"
    if task.loop is not None and task.loop[0] not in _PURE_LOOPS:
        return f"with_{task.loop[0]}: its items are only known when it runs"
    if task.module == "template" and "{" in str(task.args.get("src", "")):
        return "template src: a template, only known when it runs"
    return None


def _file(path: Path) -> Iterator[tuple[str, str]]:
    try:
        if path.stat().st_size > _MAX_TEXT:
            yield str(path), _UNSCANNED + "a large file, not scanned"
            return
        yield str(path), path.read_text(errors="replace")
    except OSError:
        yield str(path), _UNSCANNED + "cannot be read"


def _roles(play: list[PlayRole]) -> list[Role]:
    out: dict[int, Role] = {}

    def add(role: Role) -> None:
        if id(role) in out:
            return
        out[id(role)] = role
        for sub in role.imports:
            add(sub)
        for _, dep in role.dep_roles:
            add(dep)

    def add_play_role(pr: PlayRole) -> None:
        add(pr.role)
        for dep in pr.deps:
            add_play_role(dep)

    for pr in play:
        add_play_role(pr)
    return list(out.values())


def _tasks(role: Role) -> Iterator[Task]:
    stack = [*role.tasks, *role.handlers]
    while stack:
        task = stack.pop()
        yield task
        stack += [*task.children, *task.rescue, *task.always]
