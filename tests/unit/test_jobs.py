"""The job scheduler under `up` and `down`: bounded, independent, in order."""

from __future__ import annotations

import threading
import time

import pytest

from provision9p import ui
from provision9p.errors import BootError
from provision9p.jobs import Job, Outcome, beside, default_jobs, run_jobs


class Gauge:
    """How many jobs run at once, at most."""

    def __init__(self) -> None:
        self.now = self.peak = 0
        self.lock = threading.Lock()

    def work(self, seconds: float) -> str:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        time.sleep(seconds)
        with self.lock:
            self.now -= 1
        return ui.current_guest() or ""


def _fail() -> str:
    time.sleep(0.05)
    raise BootError("bad did not come up", hint="see its console")


def test_a_failing_job_does_not_stop_the_others() -> None:
    gauge = Gauge()
    jobs = [Job("a", lambda: gauge.work(0.2)), Job("bad", _fail),
            Job("c", lambda: gauge.work(0.3))]
    out = run_jobs(jobs, limit=3)
    assert [o.name for o in out] == ["a", "bad", "c"]  # the jobs' order, not the finish order
    assert [o.ok for o in out] == [True, False, True]
    assert out[0].value == "a" and out[2].value == "c"  # each ran as its own guest
    assert isinstance(out[1].error, BootError) and out[1].trace == ""


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_jobs_bounds_how_many_run_at_once(limit: int) -> None:
    gauge = Gauge()
    start = time.monotonic()
    out = run_jobs([Job(f"g{i}", lambda: gauge.work(0.3)) for i in range(6)], limit=limit)
    took = time.monotonic() - start
    assert all(o.ok for o in out)
    assert gauge.peak == limit
    # six 0.3 s jobs in ceil(6 / limit) waves: concurrency, not only a bound
    assert took < 0.3 * (6 // limit) + 1.0


def test_a_bug_in_a_job_keeps_its_traceback_for_debug() -> None:
    def broken() -> None:
        raise KeyError("x")

    (ok, bad) = run_jobs([Job("ok", lambda: None), Job("bad", broken)], limit=2)
    assert ok.ok and not bad.ok
    assert isinstance(bad.error, KeyError)
    assert "Traceback" in bad.trace and "broken" in bad.trace


def test_on_end_hears_each_job_once_as_it_ends() -> None:
    def slow() -> float:
        time.sleep(0.3)
        return 0.3

    heard: list[Outcome[float]] = []
    run_jobs([Job("slow", slow), Job("quick", lambda: 0.0)], limit=2, on_end=heard.append)
    assert [o.name for o in heard] == ["quick", "slow"]


def test_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        run_jobs([Job("a", lambda: None)], limit=0)


def test_default_jobs_is_the_host_cores() -> None:
    import os

    assert default_jobs() == len(os.sched_getaffinity(0))


# A process started in the background by a shell inherits SIGINT ignored, and Python then
# never installs its KeyboardInterrupt handler: CI run as `./.ci/run &` timed out here.
# The child takes Ctrl-C as a terminal's foreground process does.
CTRL_C = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
from provision9p.jobs import Job, run_jobs
def slow():
    sys.stdout.write("started\\n")  # one write: print's two could interleave between threads
    sys.stdout.flush()
    time.sleep(60)
try:
    run_jobs([Job("a", slow), Job("b", slow), Job("c", slow)], limit=2)
except KeyboardInterrupt:
    sys.stdout.write("interrupted\\n")  # one write, as "started" above
    sys.stdout.flush()
    os._exit(130)  # as cli.main does: a normal exit races the daemon threads' writes
"""


def test_ctrl_c_ends_the_run_without_waiting_for_running_jobs() -> None:
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", CTRL_C], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "started\n"
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    # a second job's "started" may land after "interrupted": its thread races the exit
    assert proc.returncode == 130 and "interrupted" in out.splitlines(), out
    assert time.monotonic() - start < 10  # not the jobs' 60 s
    assert out.count("started") <= 1  # the third job never started


def test_beside_hands_back_the_value_and_keeps_the_guest() -> None:
    with ui.guest("web"):
        job = beside(lambda: (ui.current_guest(), threading.current_thread().name),
                     "web-kernel")
    assert job.result(timeout=5) == ("web", "web-kernel")


def test_beside_hands_back_the_error_to_the_caller() -> None:
    job = beside(_fail, "bad-kernel")
    with pytest.raises(BootError, match="bad did not come up"):
        job.result(timeout=5)


def test_beside_runs_while_the_caller_goes_on() -> None:
    started = threading.Event()
    release = threading.Event()

    def work() -> int:
        started.set()
        release.wait(5)
        return 7

    job = beside(work, "slow")
    assert started.wait(5) and not job.done()  # the caller is not held up
    release.set()
    assert job.result(timeout=5) == 7
