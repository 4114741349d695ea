"""The supervisor's view of a guest from its state files and a real process standing in
for QEMU (a shell naming the pidfile, as QEMU's command line does): booting, running,
crashed, and how `down` and a second `up` treat a boot in progress."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provision9p.boot import supervisor
from provision9p.errors import BootError
from provision9p.lab import LabSpec, validate_text
from provision9p.state import BuildRecord, GuestState, write_json
from provision9p.target import Target, resolve

LAB = "name: t\nguests:\n  g:\n    memory: 512\n    boot_timeout: 10\n"


@pytest.fixture()
def lab(tmp_path: Path) -> LabSpec:
    return validate_text(LAB, str(tmp_path / "lab.yml"), tmp_path)


@pytest.fixture()
def target(lab: LabSpec) -> Target:
    return resolve(lab, lab.guests[0])


@pytest.fixture()
def st(lab: LabSpec) -> GuestState:
    st = GuestState.of(lab, lab.guests[0])
    st.run_dir.mkdir(parents=True)
    return st


@pytest.fixture()
def fake_qemu(st: GuestState) -> Iterator[subprocess.Popen[bytes]]:
    """A live process whose command line names the pidfile, like QEMU's -pidfile."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)",
         str(st.pidfile)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.readline()  # exec'd: /proc/PID/cmdline names the pidfile now
    st.pidfile.write_text(f"{proc.pid}\n")
    yield proc
    proc.kill()
    proc.wait()


def _record(st: GuestState, pid: int, **extra: object) -> None:
    write_json(st.boot_json, {"ssh_port": 1, "accel": "tcg", "accel_reason": "test",
                              "argv": [], "run_as": "root", "qemu_pid": pid,
                              "started_at": time.time() - 3, **extra})


def test_running_guest_with_ssh_is_running(target: Target, st: GuestState,
                                           fake_qemu: subprocess.Popen[bytes]) -> None:
    _record(st, fake_qemu.pid, ssh_ready="now")
    status = supervisor.status(target)
    assert status.state == "running" and status.pid == fake_qemu.pid
    assert not supervisor.boot_in_progress(target)
    assert status.describe().startswith(f"running (pid {fake_qemu.pid}, tcg, ssh 127.0.0.1:1")


def test_running_guest_without_ssh_yet_is_booting(target: Target, st: GuestState,
                                                  fake_qemu: subprocess.Popen[bytes]) -> None:
    _record(st, fake_qemu.pid)
    assert supervisor.status(target).state == "booting"
    assert supervisor.boot_in_progress(target)
    assert "booting (no SSH yet)" in supervisor.status(target).describe()


def test_killed_qemu_is_crashed_with_the_console_tail(target: Target, st: GuestState,
                                                      fake_qemu: subprocess.Popen[bytes]) -> None:
    _record(st, fake_qemu.pid, ssh_ready="now")
    st.console.write_text("".join(f"line {i}\n" for i in range(30)) + "login: ")
    fake_qemu.kill()
    fake_qemu.wait()
    status = supervisor.status(target)
    assert status.state == "crashed"
    text = status.describe()
    assert text.startswith("crashed: QEMU died without shutting down")
    assert "    line 29" in text and "line 20" not in text
    # `down` acknowledges the crash; then it is plainly stopped
    assert supervisor.stop(target) is False
    assert supervisor.status(target).state == "stopped, not built"


def test_cleanly_exited_qemu_is_stopped(target: Target, st: GuestState) -> None:
    # QEMU removes its pidfile when it exits normally (a poweroff in the guest)
    _record(st, 1, ssh_ready="now")
    st.write_build(BuildRecord(fingerprint="f", kernel="k", release="r", verdict="builtin",
                               initrd=False, run_as="root", client_key="c"))
    assert supervisor.status(target).state == "stopped"


def test_down_of_a_booting_guest_does_not_wait_for_a_clean_shutdown(
        target: Target, st: GuestState, fake_qemu: subprocess.Popen[bytes]) -> None:
    _record(st, fake_qemu.pid)
    started = time.monotonic()
    assert supervisor.stop(target, timeout=30) is True
    # no sshd and no QMP socket: straight to the kill, not 30 s of waiting
    assert time.monotonic() - started < 3
    assert fake_qemu.wait(timeout=5) == -9
    assert (boot := st.read_boot()) is not None and boot.stopped is not None
    assert supervisor.status(target).state == "stopped, not built"


def test_resume_of_a_boot_whose_qemu_dies_fails_and_says_why(
        target: Target, st: GuestState, fake_qemu: subprocess.Popen[bytes]) -> None:
    _record(st, fake_qemu.pid)
    st.console.write_text("Linux version 6.1\nKernel panic - not syncing: VFS\n")
    subprocess.Popen(["sh", "-c", f"sleep 1; kill -9 {fake_qemu.pid}"])
    started = time.monotonic()
    with pytest.raises(BootError) as info:
        supervisor.resume_boot(target)
    assert time.monotonic() - started < 5
    assert "g did not come up: QEMU exited" in info.value.message
    assert "likely cause: the kernel panicked" in info.value.message


def test_resume_without_a_boot_record_for_this_qemu_stops_it(
        target: Target, st: GuestState, fake_qemu: subprocess.Popen[bytes]) -> None:
    _record(st, fake_qemu.pid + 100000)  # a record of another QEMU
    assert supervisor.resume_boot(target) is None
    assert fake_qemu.wait(timeout=5) == -9


def test_console_tail_drops_terminal_colours(target: Target, st: GuestState) -> None:
    st.console.write_text("[\x1b[0;32m  OK  \x1b[0m] Reached target \x1b[0;1;39mbasic\x1b[0m.\r\n")
    _record(st, 1, ssh_ready="now")
    st.pidfile.write_text("1\n")  # not a QEMU of ours: it died
    assert supervisor.status(target).console_tail == "[  OK  ] Reached target basic."
