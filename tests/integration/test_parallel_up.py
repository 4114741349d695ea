"""Parallel `up`: two guests at once, one made to fail by its role at build time; the
other comes up anyway, the run ends with exit 1 and says which failed, and `down` stops
them together. One boot for the module (the failing guest never boots)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from integration.labs import lab_file

pytestmark = [pytest.mark.vm, pytest.mark.network]

LAB = """\
name: par
defaults:
  memory: 512
  boot_timeout: 600  # a loaded CI host: two guests build while this one boots
  kernel: {cmdline: no_timer_check}
  rootfs:
    layout: overlay  # a layer per guest over the shared base: no copy
    packages: [acl, python3, python3-apt]  # the suite's one base tree
guests:
  good: {}
  bad:
    roles: [broken]
"""


@pytest.fixture(scope="module")
def lab(lab_dir: Path, p9: Any) -> Iterator[Path]:
    with lab_file(lab_dir, "par", LAB, p9) as path:
        tasks = path.parent / "roles" / "broken" / "tasks"
        tasks.mkdir(parents=True)
        (tasks / "main.yml").write_text("- name: break on purpose\n  fail:\n"
                                        "    msg: broken on purpose\n")
        yield path


def test_one_failing_guest_does_not_stop_the_other(lab: Path, p9: Any) -> None:
    res = p9("-f", str(lab), "up", "--jobs", "2", "--json")
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-3000:]
    doc = json.loads(res.stdout)  # stdout is the document alone
    good, bad = doc["guests"]["good"], doc["guests"]["bad"]
    assert good["state"] == "up", good["error"]
    assert good["pid"] and good["ssh_port"] and good["timings"]["boot"]["ssh"] > 0
    assert good["checks"]["passed"] > 0 and good["checks"]["failed"] == []
    assert bad["state"] == "failed" and bad["pid"] is None
    assert bad["error"]["type"] == "TaskFailed" and bad["error"]["exit_code"] == 1, bad
    assert "broken on purpose" in bad["error"]["message"]
    assert doc["failed"] == ["bad"] and doc["ok"] is False
    status = p9("-f", str(lab), "status").stdout
    assert "good: running" in status and "bad: stopped" in status, status


def test_again_plain_lines_and_a_summary(lab: Path, p9: Any) -> None:
    res = p9("-f", str(lab), "up")
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-3000:]
    err = res.stderr
    # not a terminal: every progress line says whose it is
    assert re.search(r"^\[bad\] +failed: broken : break on purpose", err, re.M), err
    assert re.search(r"^\[bad\] FAILED after [\d.]+ s: ", err, re.M), err
    assert re.search(r"^\[good\] up in [\d.]+ s$", err, re.M), err
    assert "\x1b[" not in err
    assert "error: [bad] " in err and "broken on purpose" in err
    assert "error: 1 of 2 guest(s) failed: bad" in err
    lines = res.stdout.splitlines()
    assert any(re.match(r"good: ok \(ssh 127\.0\.0\.1:\d+, pid \d+, [\d.]+ s\)", ln)
               for ln in lines), res.stdout
    assert "  running and unchanged; nothing to do" in lines
    assert any(ln.startswith("bad: FAILED (") for ln in lines), res.stdout
    assert lines[-1].endswith("1 failed: bad"), res.stdout


def test_down_stops_them_together(lab: Path, p9: Any) -> None:
    res = p9("-f", str(lab), "down")
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(r"^good: stopped in [\d.]+ s$", res.stdout, re.M), res.stdout
    assert "bad: not running" in res.stdout
