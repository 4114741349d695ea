"""State files: stale pidfiles and the lab lock."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from provision9p.errors import StateError
from provision9p.lab import validate_text
from provision9p.state import GuestState, lab_lock

LAB = "name: t\nguests:\n  g:\n    memory: 512\n"


def _lab(tmp_path: Path):  # type: ignore[no-untyped-def]
    return validate_text(LAB, str(tmp_path / "lab.yml"), tmp_path)


def test_pidfile_of_a_dead_process_is_stale(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    st = GuestState.of(lab, lab.guests[0])
    st.run_dir.mkdir(parents=True)
    proc = subprocess.Popen(["true"])
    proc.wait()
    st.pidfile.write_text(f"{proc.pid}\n")
    assert st.running_pid() is None


def test_pidfile_of_an_unrelated_live_process_is_stale(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    st = GuestState.of(lab, lab.guests[0])
    st.run_dir.mkdir(parents=True)
    st.pidfile.write_text(f"{os.getpid()}\n")  # alive, but not a QEMU naming this pidfile
    assert st.running_pid() is None


def test_live_process_naming_its_pidfile_is_running(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    st = GuestState.of(lab, lab.guests[0])
    st.run_dir.mkdir(parents=True)
    proc = subprocess.Popen(["sh", "-c", "echo started; sleep 30; true", str(st.pidfile)],
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # exec'd: its cmdline is sh's now, not the forked parent's
        st.pidfile.write_text(f"{proc.pid}\n")
        assert st.running_pid() == proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_second_holder_of_the_lab_lock_is_refused(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    with lab_lock(lab, "up"):
        child = subprocess.run(
            ["python3", "-c", "import fcntl,os,sys; fd=os.open(sys.argv[1], os.O_RDWR);"
             "fcntl.flock(fd, fcntl.LOCK_EX|fcntl.LOCK_NB)", str(lab.state_dir / "lock")],
            capture_output=True, text=True)
        assert child.returncode != 0 and "BlockingIOError" in child.stderr
        with pytest.raises(StateError, match="busy"), lab_lock(lab, "up"):
            pass
