"""How `up` ends: the per-guest summary, the JSON document and the exit status."""

from __future__ import annotations

import functools
import json

import pytest

from provision9p.cli import main
from provision9p.commands.updown import print_up
from provision9p.errors import BootError, RoleError, UsageError, VerifyError
from provision9p.jobs import Job, run_jobs
from provision9p.outcomes import GuestOutcome, GuestsFailed, UpRun, final_error, to_json


def _run(*jobs: tuple[str, object]) -> UpRun:
    guests = {name: GuestOutcome(name) for name, _ in jobs}

    def job(name: str, what: object) -> GuestOutcome:
        g = guests[name]
        if isinstance(what, BaseException):
            g.notes.append("built in 4.0 s")  # how far it got before failing
            raise what
        g.booted, g.pid, g.ssh_port = True, 4242, 40022
        g.timings = {"boot": {"ssh": 13.2}, "boot_total": 13.2}
        if what == "checks":
            g.checks_failed.append("share_checks.py::test_mounted[web:data]")
        else:
            g.checks_passed = 7
        return g

    results = run_jobs([Job(n, functools.partial(job, n, w)) for n, w in jobs], limit=2)
    return UpRun("lab", results, guests, 20.0)


def test_one_failed_guest_of_two(capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(("web", "ok"), ("db", BootError("db did not come up: QEMU exited",
                                             hint="see the console log")))
    with pytest.raises(GuestsFailed) as exc:
        print_up(run, as_json=False)
    assert exc.value.exit_code == 1
    assert "1 of 2 guest(s) failed: db" in exc.value.message
    out, err = capsys.readouterr()
    assert out.splitlines()[1:] == [
        "web: ok, 7 checks passed (ssh 127.0.0.1:40022, pid 4242, " + out.split("pid 4242, ")[1]
        .splitlines()[0],
        "db: FAILED (" + out.split("db: FAILED (")[1].splitlines()[0],
        "  built in 4.0 s",
        "  error: db did not come up: QEMU exited",
        "changed; 2 guest(s) in 20.0 s; 1 failed: db",
    ]
    # the failed guest's whole error, hint included, with its name
    assert "error: [db] db did not come up: QEMU exited\n  hint: see the console log" in err


def test_the_json_document(capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(("web", "ok"), ("db", BootError("db did not come up", hint="look")))
    with pytest.raises(GuestsFailed):
        print_up(run, as_json=True)
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["ok"] is False and doc["failed"] == ["db"] and doc["lab"] == "lab"
    web, db = doc["guests"]["web"], doc["guests"]["db"]
    assert (web["state"], web["pid"], web["ssh_port"]) == ("up", 4242, 40022)
    assert web["timings"] == {"boot": {"ssh": 13.2}, "boot_total": 13.2}
    assert web["checks"] == {"passed": 7, "failed": [], "results": []} and web["error"] is None
    assert db["state"] == "failed" and db["pid"] is None
    assert db["error"] == {"type": "BootError", "message": "db did not come up",
                           "hint": "look", "exit_code": 1}
    assert err == ""  # the error is in the document, not said twice


def test_everything_up_is_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert print_up(_run(("web", "ok"), ("db", "ok")), as_json=False) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "changed; 2 guest(s) in 20.0 s"


def test_one_guest_ends_with_its_own_error() -> None:
    error = UsageError("web is not built", hint="build it")
    assert final_error(_run(("web", error))) is error


def test_failed_checks_are_a_verify_error() -> None:
    err = final_error(_run(("web", "checks"), ("db", "ok")))
    assert isinstance(err, VerifyError) and err.exit_code == 1
    assert to_json(_run(("web", "checks")))["guests"]["web"]["state"] == "checks failed"


@pytest.mark.parametrize(("errors", "code"), [
    ((UsageError("a"), RoleError("b")), 2),          # every failure bad input: 2
    ((UsageError("a"), BootError("b")), 1),          # any failed run: 1
    ((KeyError("a"), UsageError("b")), 1),           # a bug is no bad input
])
def test_exit_status_of_several_failures(errors: tuple[BaseException, ...], code: int) -> None:
    err = final_error(_run(("a", errors[0]), ("b", errors[1]), ("c", "ok")))
    assert isinstance(err, GuestsFailed) and err.exit_code == code


def test_jobs_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["up", "--jobs", "0"])
    assert exc.value.code == 2
    assert "expected at least 1, got 0" in capsys.readouterr().err
