"""What `up` reports when its guests are done: a summary for people, one JSON document
for programs, and the error (exit status) the run ends with.

Kept apart from the pipeline so the summary's form can change without touching the
sequencing, and so a lab-wide step (a lab network, say) can add its own fields in one
place (`guest_json`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from provision9p.errors import Provision9pError, VerifyError
from provision9p.jobs import Cancelled, Outcome
from provision9p.verify.report import CheckResult


@dataclass
class GuestOutcome:
    """One guest's `up`, filled in as it goes, so a failure still says how far it got."""

    name: str
    built: bool = False
    booted: bool = False
    roles_changed: int = 0
    checks_passed: int = 0
    checks_failed: list[str] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)  # the verify report's lines
    notes: list[str] = field(default_factory=list)
    pid: int | None = None
    ssh_port: int | None = None
    # stage -> seconds: build's (kernel, debootstrap, setup, ...), boot's milestones
    timings: dict[str, Any] = field(default_factory=dict)
    #: the lab's own line (names and shares across guests), not a guest
    lab_wide: bool = False
    #: its /etc/hosts got the lab's block in its own job (the lab's pass skips it)
    hosts_written: bool = False


class GuestsFailed(Provision9pError):
    """Some guests of a run failed; each one's own error was shown with its name."""

    def __init__(self, message: str, hint: str | None, exit_code: int) -> None:
        super().__init__(message, hint)
        self.exit_code = exit_code


@dataclass(frozen=True)
class UpRun:
    """A finished `up`: every guest's job outcome and its GuestOutcome (also when it
    failed: what it reached before)."""

    lab: str
    results: list[Outcome[GuestOutcome]]
    guests: dict[str, GuestOutcome]
    seconds: float
    # the lab as a whole (its network's names, shares across guests), when it has several
    lab_wide: GuestOutcome | None = None

    def state(self, name: str) -> str:
        """up | failed | checks failed | cancelled"""
        result = next(r for r in self.results if r.name == name)
        if isinstance(result.error, Cancelled):
            return "cancelled"
        if result.error is not None:
            return "failed"
        return "checks failed" if self.guests[name].checks_failed else "up"

    @property
    def changed(self) -> bool:
        return any(g.built or g.booted or g.roles_changed for g in self.guests.values())

    @property
    def failed(self) -> list[str]:
        return [r.name for r in self.results if self.state(r.name) != "up"]


def first_line(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, Provision9pError) else f"{type(exc).__name__}: {exc}"
    return text.splitlines()[0] if text else type(exc).__name__


def summary_lines(run: UpRun) -> list[str]:
    """Per guest: `name: ok|FAILED`, where to reach it and how long it took, its notes and
    failures; then one line for the run."""
    lines = []
    for r in run.results:
        g = run.guests[r.name]
        state = run.state(r.name)
        word = "ok" if state == "up" else state.upper() if state != "checks failed" else "FAILED"
        checks = f", {g.checks_passed} checks passed" if g.checks_passed else ""
        where = [f"ssh 127.0.0.1:{g.ssh_port}"] if g.ssh_port and state == "up" else []
        where += [f"pid {g.pid}"] if g.pid and state == "up" else []
        where.append(f"{r.seconds:.1f} s")
        lines.append(f"{r.name}: {word}{checks} ({', '.join(where)})")
        lines += [f"  {note}" for note in g.notes]
        lines += [f"  failed: {f}" for f in g.checks_failed if not g.checks]  # else the report
        if r.error is not None:
            lines.append(f"  error: {first_line(r.error)}")
    if (lw := run.lab_wide) is not None:
        lines.append(f"{lw.name}: {'FAILED' if lw.checks_failed else 'ok'}")
        lines += [f"  {note}" for note in lw.notes]
        lines += [f"  failed: {f}" for f in lw.checks_failed]
    failed = run.failed
    tail = f"; {len(failed)} failed: {', '.join(failed)}" if failed else ""
    lines.append(f"{'changed' if run.changed else 'no change'}; {len(run.results)} guest(s) "
                 f"in {run.seconds:.1f} s{tail}")
    return lines


def error_json(exc: BaseException | None) -> dict[str, Any] | None:
    if exc is None:
        return None
    if isinstance(exc, Provision9pError):
        return {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint,
                "exit_code": exc.exit_code}
    return {"type": type(exc).__name__, "message": str(exc), "hint": None, "exit_code": 1}


def guest_json(run: UpRun, result: Outcome[GuestOutcome]) -> dict[str, Any]:
    g = run.guests[result.name]
    return {
        "state": run.state(result.name), "pid": g.pid, "ssh_port": g.ssh_port,
        "seconds": round(result.seconds, 2), "timings": g.timings, "built": g.built,
        "booted": g.booted, "roles_changed": g.roles_changed,
        "checks": {"passed": g.checks_passed, "failed": g.checks_failed,
                   "results": [c.as_json() for c in g.checks]},
        "notes": g.notes, "error": error_json(result.error),
    }


def to_json(run: UpRun) -> dict[str, Any]:
    """The document `up --json` prints: stable keys, one object per guest by name."""
    return {
        "lab": run.lab, "ok": final_error(run) is None, "changed": run.changed,
        "seconds": round(run.seconds, 2), "failed": run.failed,
        "guests": {r.name: guest_json(run, r) for r in run.results},
        "lab_checks": None if run.lab_wide is None else {
            "notes": run.lab_wide.notes, "failed": run.lab_wide.checks_failed},
    }


def final_error(run: UpRun) -> Provision9pError | BaseException | None:
    """What the run ends with: None when every guest is up.

    A run of one guest ends with that guest's own error, exactly as before there were
    several; with more, one error naming the failed guests, exit 2 only when every
    failure was bad input (and 1 when any check or run failed)."""
    failed = run.failed
    lab_failed = run.lab_wide is not None and bool(run.lab_wide.checks_failed)
    if not failed and not lab_failed:
        return None
    if not failed:
        return VerifyError("the lab's cross-guest checks failed (see above)",
                           hint="`provision9p verify` reruns them")
    errors = [r.error for r in run.results if r.error is not None]
    if len(run.results) == 1 and errors:
        return errors[0]
    codes = {e.exit_code if isinstance(e, Provision9pError) else 1 for e in errors}
    checks_only = not errors
    if checks_only:
        return VerifyError("some checks failed (see above)",
                           hint="`provision9p verify` reruns them; `provision9p console GUEST` "
                                "shows the boot log")
    came_up = len(run.results) > len(failed)
    return GuestsFailed(
        f"{len(failed)} of {len(run.results)} guest(s) failed: {', '.join(failed)}",
        f"fix it and run `provision9p up {' '.join(failed)}`"
        + ("; the guests that came up stay up" if came_up else ""),
        2 if codes == {2} and len(errors) == len(failed) else 1)
