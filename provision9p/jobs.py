"""Run one job per guest, at most N at a time, each to its own end.

The work of a guest (copying a tree, waiting for QEMU, SSH round trips) is subprocesses
and I/O, so threads suffice. A job that fails is recorded and the others go on: one
broken guest must not leave the rest of a lab down. What jobs share is passed in frozen
(Target) or guarded where it lives (the cache's per-entry locks).
"""

from __future__ import annotations

import os
import queue
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Future
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

    Ctrl-C ends the run at once: jobs not yet started never start, running ones are
    left behind as a killed run would leave them.
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

    todo: queue.SimpleQueue[Job[T]] = queue.SimpleQueue()
    for job in jobs:
        todo.put(job)
    ended: queue.SimpleQueue[Outcome[T]] = queue.SimpleQueue()

    def worker() -> None:
        while True:
            try:
                job = todo.get_nowait()
            except queue.Empty:
                return
            ended.put(one(job))

    # Daemon threads: on Ctrl-C the run ends without waiting for a guest's boot; what a
    # job leaves is what a killed `up` leaves (a QEMU booting on its own, a staging dir
    # for the next run to clear), which `up` and `down` already handle.
    for i in range(min(limit, len(jobs))):
        threading.Thread(target=worker, name=f"guest-{i}", daemon=True).start()
    try:
        while len(outcomes) < len(jobs):
            try:
                # a timeout, so Ctrl-C reaches this thread while the workers run
                out = ended.get(timeout=0.5)
            except queue.Empty:
                continue
            outcomes[out.name] = out
            if on_end is not None:
                on_end(out)
    except KeyboardInterrupt:
        stop.set()
        raise
    return [outcomes[j.name] for j in jobs]


def beside(work: Callable[[], T], name: str) -> Future[T]:
    """`work` in a thread of its own while this one goes on, its lines about this
    thread's guest; its value or error comes from the future.

    A daemon thread, as run_jobs' workers are: a run that ends under it (an error of the
    caller's, Ctrl-C) leaves what a killed run leaves, so `work` must write only what a
    kill leaves whole (staged directories, verified downloads) and start no process that
    outlives it (the kernel's `zstd -dc`, fed through a pipe, ends when the pipe does).
    """
    done: Future[T] = Future()
    guest_name = ui.current_guest()

    def run() -> None:
        if not done.set_running_or_notify_cancel():
            return
        try:
            if guest_name is None:
                value = work()
            else:
                with ui.guest(guest_name):
                    value = work()
        except BaseException as exc:  # handed over whole, as a worker thread's would be
            done.set_exception(exc)
        else:
            done.set_result(value)

    threading.Thread(target=run, name=name, daemon=True).start()
    return done
