"""The verify report: one line per check that a person reads, JSON and JUnit XML for CI.

pytest runs the checks (runner.py); its own terminal output is switched off and each
test's outcome becomes a CheckResult: guest, share (or the lab's test file), a readable
check name with what it found (`mounted 9p2000.L msize=512000`), and on failure the
message and the last command the check ran on the guest, with its output.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from provision9p.tables import print_table

#: The built-in checks by their test function (verify/share_checks.py).
CHECK_NAMES = {
    "test_mounted_as_9p": "mounted",
    "test_msize": "msize",
    "test_readonly_as_asked": "readonly as asked",
    "test_guest_write_reaches_host": "guest write reaches host",
    "test_host_write_seen_in_guest": "host write seen in guest",
    "test_no_failed_units": "systemd units",
    "test_inode_numbers_apart": "inode numbers apart",
}
#: Lines of a failing command's output shown under its check.
OUTPUT_LINES = 20


@dataclass
class CheckResult:
    guest: str
    share: str  # the share's mount tag; for the lab's own files, the file's name
    check: str
    outcome: str = "ok"  # ok | failed | skipped
    detail: str = ""  # what the check found, e.g. "9p2000.L msize=512000"
    seconds: float = 0.0
    message: str = ""  # why it failed or was skipped
    command: str = ""  # the last command it ran on the guest, when it failed
    output: str = ""  # that command's exit status and output
    warnings: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.check} {self.detail}".strip()

    def as_json(self) -> dict[str, Any]:
        return {k: (round(v, 3) if k == "seconds" else v) for k, v in asdict(self).items()}


def check_name(function: str) -> str:
    """`test_web_answers` -> `web answers`; the built-in ones by their own names."""
    return CHECK_NAMES.get(function) or function.removeprefix("test_").replace("_", " ")


def failures(results: Sequence[CheckResult]) -> list[CheckResult]:
    return [r for r in results if r.outcome == "failed"]


def print_report(results: Sequence[CheckResult], file: TextIO | None = None) -> None:
    """The table, then under it each failure's message, command and output."""
    rows = [[r.guest, r.share, r.label, r.outcome] for r in results]
    print_table(("GUEST", "SHARE", "CHECK", "RESULT"), rows, status_column=3,
                show_header=False, file=file)
    out = file
    for r in results:
        for w in r.warnings:
            print(f"warning: {r.guest} {r.share} {r.check}: {w}", file=out)
    for r in failures(results):
        print(f"\n{r.guest} {r.share} {r.check}: FAILED", file=out)
        for line in r.message.splitlines() or ["(no message)"]:
            print(f"  {line}", file=out)
        if r.command:
            print(f"  last command: {r.command}", file=out)
            for line in r.output.splitlines()[-OUTPUT_LINES:]:
                print(f"    {line}", file=out)


def write_junit(results: Sequence[CheckResult], path: Path) -> None:
    """JUnit XML, one testsuite per guest, as CI systems display it."""
    root = ET.Element("testsuites", name="provision9p verify")
    by_guest: dict[str, list[CheckResult]] = {}
    for r in results:
        by_guest.setdefault(r.guest, []).append(r)
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    for guest, items in by_guest.items():
        counts = {"tests": len(items), "failures": len(failures(items)),
                  "skipped": sum(r.outcome == "skipped" for r in items)}
        attrib = {"name": guest, "errors": "0", **{k: str(v) for k, v in counts.items()},
                  "time": f"{sum(r.seconds for r in items):.3f}"}
        suite = ET.SubElement(root, "testsuite", attrib)
        for k, v in counts.items():
            totals[k] += v
        for r in items:
            case = ET.SubElement(suite, "testcase", classname=f"{guest}.{r.share}",
                                 name=r.label, time=f"{r.seconds:.3f}")
            if r.outcome == "failed":
                fail = ET.SubElement(case, "failure", message=r.message.splitlines()[0]
                                     if r.message else "failed")
                text = r.message
                if r.command:
                    text += f"\nlast command: {r.command}\n{r.output}"
                fail.text = text
            elif r.outcome == "skipped":
                ET.SubElement(case, "skipped", message=r.message)
            if r.warnings:
                ET.SubElement(case, "system-err").text = "\n".join(r.warnings)
    root.attrib.update({k: str(v) for k, v in totals.items()})
    root.set("errors", "0")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True)
    tmp.replace(path)
