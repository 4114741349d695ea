"""A real vde_switch per lab, and a real QEMU joining it (no guest runs: -S)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provision9p.boot import switch
from provision9p.lab import validate_text
from provision9p.lab.model import LabSpec
from provision9p.qemu_user import qemu_user

pytestmark = [pytest.mark.tree,
              pytest.mark.skipif(shutil.which("vde_switch") is None,
                                 reason="vde2 is not installed")]


@pytest.fixture()
def lab() -> Iterator[LabSpec]:
    # Not under pytest's 0700 tmp: the switch runs as QEMU's user, which must get in.
    base = Path(tempfile.mkdtemp(prefix="p9-net-", dir="/var/tmp"))
    base.chmod(0o755)
    spec = validate_text(textwrap.dedent("""
        name: sw
        guests:
          a: {}
          b: {}
        """), "lab.yml", base)
    yield spec
    switch.stop(spec)
    shutil.rmtree(base, ignore_errors=True)


def test_switch_starts_once_as_qemus_user_and_stops(lab: LabSpec) -> None:
    run_as = qemu_user(lab.guests[0], create=True)
    pid, started = switch.ensure(lab, run_as)
    assert started
    assert switch.ensure(lab, run_as) == (pid, False)
    assert os.stat(f"/proc/{pid}").st_uid == run_as.uid
    paths = switch.SwitchPaths.of(lab)
    assert (paths.ctl / "ctl").exists() and paths.ctl.parent == lab.state_dir / "net"
    st = switch.status(lab, 0)
    assert (st.state, st.pid, st.ports) == ("running", pid, 0)
    assert switch.stop(lab)
    assert not os.path.exists(f"/proc/{pid}") or \
        Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    assert switch.status(lab, 0).state == "stopped"
    assert not switch.stop(lab)


def test_a_killed_switch_is_down_and_ensure_restarts_it(lab: LabSpec) -> None:
    run_as = qemu_user(lab.guests[0], create=True)
    pid, _ = switch.ensure(lab, run_as)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while switch.running_pid(lab) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    st = switch.status(lab, 2)
    assert st.state == "down" and "died or was killed" in st.describe()
    new, started = switch.ensure(lab, run_as)
    assert started and new != pid


QEMU = shutil.which("qemu-system-x86_64")


@pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed")
def test_qemu_as_its_user_joins_the_switch(lab: LabSpec) -> None:
    """The second NIC's options as qemu_argv writes them: QEMU, unprivileged, takes a
    port of the lab's switch (the switch counts it) and gives it back on exit."""
    run_as = qemu_user(lab.guests[0], create=True)
    switch.ensure(lab, run_as)
    ctl = switch.socket_dir(lab)
    mac = lab.guests[0].mac
    argv = [str(QEMU), "-machine", "pc", "-accel", "tcg", "-nodefaults", "-no-user-config",
            "-display", "none", "-S", "-qmp", "stdio",
            "-netdev", f"vde,id=net1,sock={ctl}",
            "-device", f"virtio-net-pci,id=labnic,netdev=net1,mac={mac},romfile="]
    as_user = run_as.uid != os.geteuid()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            user=run_as.uid if as_user else None,
                            group=run_as.gid if as_user else None)
    assert proc.stdin is not None
    try:
        deadline = time.monotonic() + 30
        while switch.ports_in_use(lab) != 1 and time.monotonic() < deadline \
                and proc.poll() is None:
            time.sleep(0.1)
        assert switch.ports_in_use(lab) == 1, proc.stderr.read() if proc.stderr else ""
    finally:
        _out, err = proc.communicate('{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n',
                                    timeout=30)
    assert proc.returncode == 0, err
    deadline = time.monotonic() + 5
    while switch.ports_in_use(lab) != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert switch.ports_in_use(lab) == 0
