"""What a play prints: Ansible's TASK lines, results, diffs and PLAY RECAP, or, for
`up`, only what changed and one line of counts."""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from provision9p.tasks.model import Task


@dataclass
class Recap:
    ok: int = 0
    changed: int = 0
    skipped: int = 0
    failed: int = 0
    ignored: int = 0
    rescued: int = 0
    results: list[tuple[str, str]] = field(default_factory=list)  # (task, status)


class Reporter:
    """Ansible-like lines: TASK [role : name], ok/changed/skipping/failed, PLAY RECAP."""

    def __init__(self, out: TextIO | None = None, diff: bool = False) -> None:
        self.out = out or sys.stdout
        self.diff = diff

    def task(self, task: Task) -> None:
        print(f"\nTASK [{task.role.name} : {task.name}]", file=self.out)

    def result(self, guest: str, status: str, result: dict[str, Any], item: Any = None,
               diff: bool | None = None) -> None:
        """One result; `diff` is the task's own diff keyword when it has one."""
        label = f" => (item={item})" if item is not None else ""
        msg = f" => {result['msg']}" if status == "failed" and result.get("msg") else ""
        if "censored" in result:
            msg = f" => {{\"censored\": \"{result['censored']}\"}}"
        print(f"{status}: [{guest}]{label}{msg}", file=self.out)
        self._diff(status, result, self.diff if diff is None else diff)

    def _diff(self, status: str, result: dict[str, Any], show: bool) -> None:
        d = result.get("diff")
        if show and isinstance(d, dict) and "before" in d and status == "changed":
            lines = difflib.unified_diff(d["before"].splitlines(True), d["after"].splitlines(True),
                                         f"before: {d['before_header']}",
                                         f"after: {d['after_header']}")
            self.out.write("".join(lines))

    def recap(self, guest: str, recap: Recap) -> None:
        print(f"\nPLAY RECAP {'*' * 60}\n{guest:<26}: ok={recap.ok} changed={recap.changed} "
              f"unreachable=0 failed={recap.failed} skipped={recap.skipped} "
              f"rescued={recap.rescued} ignored={recap.ignored}", file=self.out)


#: Modules that can take minutes (package downloads), announced before they run.
SLOW_MODULES = frozenset({"apt"})


class BriefReporter(Reporter):
    """For `up`: only what changed or failed, then one recap line."""

    def __init__(self, label: str, out: TextIO | None = None) -> None:
        super().__init__(out)
        self.label = label
        self._task = ""

    def task(self, task: Task) -> None:
        self._task = f"{task.role.name} : {task.name}"
        if task.module in SLOW_MODULES:  # minutes, sometimes: say what is going on
            print(f"    {self._task} ...", file=self.out, flush=True)

    def result(self, guest: str, status: str, result: dict[str, Any], item: Any = None,
               diff: bool | None = None) -> None:
        if status in ("changed", "failed"):
            label = f" (item={item})" if item is not None else ""
            msg = f": {result['msg']}" if status == "failed" and result.get("msg") else ""
            if "censored" in result:
                msg = ": censored (no_log)"
            print(f"    {status}: {self._task}{label}{msg}", file=self.out)

    def recap(self, guest: str, recap: Recap) -> None:
        print(f"    {self.label}: ok={recap.ok} changed={recap.changed} "
              f"skipped={recap.skipped} failed={recap.failed}", file=self.out)
