"""A task's loop: its items (`loop:` or a `with_<lookup>`), and the variables each
iteration sees (loop_var, index_var, ansible_loop with `extended`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from provision9p.errors import TaskError
from provision9p.tasks.lookups import MODULE_SUBDIRS, SUBDIR_VAR, run_lookup
from provision9p.tasks.model import Task
from provision9p.tasks.templating import render


def loop_items(task: Task, variables: dict[str, Any]) -> list[Any] | None:
    """The items to iterate over, or None when the task has no loop."""
    if task.loop is None:
        return None
    kind, terms = task.loop
    if kind == "loop":
        items = render(terms, variables)
        if not isinstance(items, list):
            raise TaskError(f"loop needs a list, got {items!r}",
                            hint="a with_<lookup> or the `dict2items` filter turns other "
                                 "data into a list")
        return items
    rendered = render(terms, variables)
    subdir = MODULE_SUBDIRS.get(task.module, "files")
    return run_lookup(kind, rendered, {**variables, SUBDIR_VAR: subdir})


def loop_vars(control: Mapping[str, Any], items: list[Any], index: int) -> dict[str, Any]:
    loop_var = str(control.get("loop_var", "item"))
    out: dict[str, Any] = {loop_var: items[index], "ansible_loop_var": loop_var}
    if "index_var" in control:
        out[str(control["index_var"])] = index
        out["ansible_index_var"] = str(control["index_var"])
    if control.get("extended"):
        n = len(items)
        info: dict[str, Any] = {
            "index": index + 1, "index0": index, "revindex": n - index,
            "revindex0": n - index - 1, "first": index == 0, "last": index == n - 1,
            "length": n, "previtem": items[index - 1] if index else None,
            "nextitem": items[index + 1] if index + 1 < n else None}
        if control.get("extended_allitems", True):
            info["allitems"] = items
        out["ansible_loop"] = info
    return out
