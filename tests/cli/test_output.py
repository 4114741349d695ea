"""Output for people and for programs: plain lines when piped, rich tables on a terminal,
one JSON document with `--json`, the verify report and its JUnit XML, and a closed pipe
that ends every command quietly."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from provision9p.outcomes import GuestOutcome, UpRun

from provision9p.cli import main
from provision9p.tables import plain_table, print_table
from provision9p.verify.report import CheckResult, check_name, print_report, write_junit

pytestmark = pytest.mark.unit

LAB = "name: out\nguests:\n  a:\n    memory: 512\n    groups: [web]\n  b:\n    memory: 512\n"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture()
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROVISION9P_HOME", str(tmp_path / "home"))
    path = tmp_path / "lab.yml"
    path.write_text(LAB)
    return path


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    code = main(list(args))
    return code, json.loads(capsys.readouterr().out)


def test_plain_table_is_aligned_without_trailing_blanks() -> None:
    assert plain_table(("A", "BB", "C"), [["xyz", "1", "ok"], ["q", "", "failed"]]) == (
        "A    BB  C\n"
        "xyz  1   ok\n"
        "q        failed\n")
    assert plain_table(None, []) == ""


def test_piped_output_has_no_box_or_colour() -> None:
    out = io.StringIO()
    print_table(("GUEST", "STATE"), [["a", "running"]], status_column=1, file=out)
    assert out.getvalue() == "GUEST  STATE\na      running\n"
    out = io.StringIO()
    print_table(("GUEST", "STATE"), [["a", "running"]], plain="a: running", file=out)
    assert out.getvalue() == "a: running\n"


def test_a_terminal_gets_a_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("TERM", "xterm-256color")
    out = Terminal()
    print_table(("GUEST", "STATE"), [["a", "running"], ["b", "crashed"]], status_column=1,
                plain="not this", file=out)
    text = out.getvalue()
    assert "─" in text and "not this" not in text
    assert "\x1b[3" not in text  # NO_COLOR: no colour codes (bold may stay)
    words = re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert [line.split() for line in words.splitlines() if line.strip()][-2:] == [
        ["a", "running"], ["b", "crashed"]]


def test_status_json(lab: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = _json(capsys, "-f", str(lab), "status", "--json")
    assert code == 0
    assert doc["schema"] == 1
    guests = doc["guests"]
    assert isinstance(guests, list)
    assert [g["name"] for g in guests] == ["a", "b"]
    assert set(guests[0]) == {"name", "state", "pid", "ssh_port", "accel", "uptime_seconds",
                              "groups", "lab_address", "timings", "console_tail"}
    assert guests[0]["state"] == "stopped, not built"
    assert guests[0]["groups"] == ["out", "web"]


def test_validate_json(lab: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = _json(capsys, "-f", str(lab), "validate", "--json")
    assert code == 0
    assert doc["valid"] is True and doc["name"] == "out"
    assert doc["groups"] == {"all": ["a", "b"], "ungrouped": [], "out": ["a", "b"],
                             "web": ["a"]}
    guests = doc["guests"]
    assert isinstance(guests, list)
    assert guests[0]["memory_mib"] == 512
    assert guests[0]["root"]["mount"] == "/"


def test_doctor_json(lab: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = _json(capsys, "-f", str(lab), "doctor", "--json")
    assert code == (0 if doc["ok"] else 1)
    checks = doc["checks"]
    assert isinstance(checks, list) and checks
    assert set(checks[0]) == {"name", "ok", "required", "status", "detail", "fix", "package"}


def _results() -> list[CheckResult]:
    return [
        CheckResult("demo", "data", "mounted", detail="9p2000.L msize=512000", seconds=0.2),
        CheckResult("demo", "data", "readonly as asked", "failed", "rw", 0.1,
                    message="cannot write to /mnt/data: Permission denied",
                    command="touch /mnt/data/x", output="exit status 1\nstderr: denied"),
        CheckResult("demo", "ro", "guest write reaches host", "skipped",
                    message="readonly share", warnings=["slow"]),
        CheckResult("web", "test_web.py", check_name("test_sshd_runs")),
    ]


def test_verify_report_lines() -> None:
    out = io.StringIO()
    print_report(_results(), file=out)
    assert out.getvalue() == (
        "demo  data         mounted 9p2000.L msize=512000  ok\n"
        "demo  data         readonly as asked rw           failed\n"
        "demo  ro           guest write reaches host       skipped\n"
        "web   test_web.py  sshd runs                      ok\n"
        "warning: demo ro guest write reaches host: slow\n"
        "\n"
        "demo data readonly as asked: FAILED\n"
        "  cannot write to /mnt/data: Permission denied\n"
        "  last command: touch /mnt/data/x\n"
        "    exit status 1\n"
        "    stderr: denied\n")


def test_verify_junit_parses(tmp_path: Path) -> None:
    path = tmp_path / "out" / "verify.xml"
    write_junit(_results(), path)
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("4", "1", "1")
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == {"demo", "web"}
    cases = suites["demo"].findall("testcase")
    assert [c.get("name") for c in cases] == [
        "mounted 9p2000.L msize=512000", "readonly as asked rw", "guest write reaches host"]
    failure = cases[1].find("failure")
    assert failure is not None
    assert failure.get("message") == "cannot write to /mnt/data: Permission denied"
    assert "last command: touch /mnt/data/x" in (failure.text or "")
    assert cases[2].find("skipped") is not None
    assert cases[0].get("classname") == "demo.data"


def test_check_json_keys() -> None:
    assert set(_results()[0].as_json()) == {
        "guest", "share", "check", "outcome", "detail", "seconds", "message", "command",
        "output", "warnings"}


@pytest.mark.parametrize("args", [
    ["status"], ["status", "--json"], ["validate"], ["validate", "--json"], ["doctor"],
    ["doc", "--list"], ["inventory"], ["ssh-config"], ["qemu-cmd", "a"],
    ["libvirt-xml", "a"], ["--help"],
], ids=lambda a: " ".join(a))
def test_a_closed_pipe_ends_quietly(lab: Path, args: list[str]) -> None:
    # stdout is a pipe whose reader is gone before the first byte: every write fails.
    read, write = os.pipe()
    os.close(read)
    try:
        res = subprocess.run([sys.executable, "-m", "provision9p", "-f", str(lab), *args],
                             stdout=write, stderr=subprocess.PIPE, text=True, timeout=120,
                             env={**os.environ})
    finally:
        os.close(write)
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr, res.stderr
    assert res.returncode in (0, 1, 141), res.stderr


def _run(outcome: GuestOutcome, seconds: float) -> UpRun:
    from provision9p.jobs import Outcome
    from provision9p.outcomes import UpRun

    result = Outcome(outcome.name, outcome, None, 0.0, seconds)
    return UpRun("lab", [result], {outcome.name: outcome}, seconds)


def test_up_ends_with_the_verify_report(capsys: pytest.CaptureFixture[str]) -> None:
    from provision9p.commands.updown import print_up
    from provision9p.errors import VerifyError
    from provision9p.outcomes import GuestOutcome

    ok = [r for r in _results() if r.outcome != "failed"]
    print_up(_run(GuestOutcome("demo", booted=True, checks_passed=2, checks=ok), 12.0),
             as_json=False)
    out = capsys.readouterr().out
    assert out.endswith(
        "changed; 1 guest(s) in 12.0 s\n\n"
        "demo  data         mounted 9p2000.L msize=512000  ok\n"
        "demo  ro           guest write reaches host       skipped\n"
        "web   test_web.py  sshd runs                      ok\n"
        "warning: demo ro guest write reaches host: slow\n"), out
    failed = GuestOutcome("demo", booted=True, checks=_results(),
                          checks_failed=["demo data readonly as asked"])
    with pytest.raises(VerifyError):
        print_up(_run(failed, 1.0), as_json=False)
    out = capsys.readouterr().out
    assert "  failed: " not in out  # the report below says it, with the command
    assert out.endswith("    stderr: denied\n")
