"""Run one job per guest, at most N at a time, each to its own end.

The work of a guest (copying a tree, waiting for QEMU, SSH round trips) is subprocesses
and I/O, so threads suffice. A job that fails is recorded and the others go on: one
broken guest must not leave the rest of a lab down. What jobs share is passed in frozen
(Target) or guarded where it lives (the cache's per-entry locks).
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Generic, TypeVar

from provision9p import ui
from provision9p.errors import Provision9pError

T = TypeVar("T")


def default_jobs() -> int:
    """The host's cores (the ones this process may run on)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Job(Generic[T]):
    name: str
    run: Callable[[], T]


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """How one job ended: its value, or the error that stopped it."""

    name: str
    value: T | None
    error: BaseException | None
    started: float  # time.monotonic() when it began
    seconds: float
    # the traceback of an error that is no Provision9pError (a bug): shown with --debug
    trace: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


class Cancelled(Provision9pError):
    """The run was interrupted before this job started or finished."""


def run_jobs(jobs: Sequence[Job[T]], *, limit: int,
             on_end: Callable[[Outcome[T]], None] | None = None) -> list[Outcome[T]]:
    """Run every job, at most `limit` at once; outcomes in the jobs' order.

    Ctrl-C stops jobs not yet started (their outcome: Cancelled) and lets the running
    ones reach their end, since they own subprocesses and staging dirs they clean up.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    stop = threading.Event()
    outcomes: dict[str, Outcome[T]] = {}

    def one(job: Job[T]) -> Outcome[T]:
        start = time.monotonic()
        if stop.is_set():
            return Outcome(job.name, None, Cancelled(f"{job.name}: not started (interrupted)"),
                           start, 0.0)
        with ui.guest(job.name):
            ui.guest_started(job.name)
            try:
                value = job.run()
            except Exception as exc:
                trace = "" if isinstance(exc, Provision9pError) else traceback.format_exc()
                out: Outcome[T] = Outcome(job.name, None, exc, start,
                                          time.monotonic() - start, trace)
            else:
                out = Outcome(job.name, value, None, start, time.monotonic() - start)
            # its live line stops here; `on_end` may put a better word on it
            ui.guest_finished(job.name, "done" if out.ok else "failed", out.ok)
        return out

    if limit == 1 or len(jobs) == 1:
        # no thread needed: the same code path, run here (a debugger sees a plain stack)
        for job in jobs:
            outcomes[job.name] = one(job)
            if on_end is not None:
                on_end(outcomes[job.name])
        return [outcomes[j.name] for j in jobs]

    with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="guest") as pool:
        futures: dict[Future[Outcome[T]], Job[T]] = {pool.submit(one, j): j for j in jobs}
        pending = set(futures)
        try:
            while pending:
                # a timeout, so Ctrl-C reaches this thread while the workers run
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for f in done:
                    outcomes[futures[f].name] = f.result()
                    if on_end is not None:
                        on_end(outcomes[futures[f].name])
        except KeyboardInterrupt:
            stop.set()
            for f in pending:
                f.cancel()
            raise
    return [outcomes[j.name] for j in jobs]
