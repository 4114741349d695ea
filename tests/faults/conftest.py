"""Fault injection against real runs: kill -9 at each stage, then `up` again.

Guests boot under TCG on a shared host, so a module shares one lab and one guest and its
tests run in file order, each leaving the guest up for the next. Everything the tests
start is found again by pid and killed at the end; none may be left over (`orphans`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

HOME = "/var/lib/p9-labinput"


def argv(verb: str, lab: Path, *guests: str, extra: tuple[str, ...] = ()) -> list[str]:
    """The command line for `verb` on `lab` (and guests): the one place that knows the
    CLI grammar (`-f LAB`, then the command, then guests as positional names)."""
    return ["-f", str(lab), *verb.split(), *guests, *extra]


def env(**more: str) -> dict[str, str]:
    return {**os.environ, "PROVISION9P_HOME": HOME, **more}


def run(args: list[str], timeout: float = 900, **more: str
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "provision9p", *args], capture_output=True,
                          text=True, timeout=timeout, env=env(**more))


@dataclass
class Spawned:
    """A provision9p run in the background, its output in a file we can watch."""

    proc: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 600) -> str:
        """Block until the output matches `pattern`; fail if the run ends first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text()
            m = re.search(pattern, text)
            if m:
                return m.group(0)
            if self.proc.poll() is not None:
                pytest.fail(f"the run ended ({self.proc.returncode}) before {pattern!r}:\n"
                            f"{text[-3000:]}")
            time.sleep(0.1)
        pytest.fail(f"no {pattern!r} after {timeout} s:\n{self.text()[-3000:]}")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def finish(self, timeout: float = 900) -> int:
        return self.proc.wait(timeout=timeout)


def spawn(args: list[str], log: Path, **more: str) -> Spawned:
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "provision9p", *args], stdout=out,
                                stderr=subprocess.STDOUT, env=env(**more))
    return Spawned(proc, log)


def processes_mentioning(text: str, exclude: set[int] | None = None) -> list[str]:
    """Live processes whose command line, root or working directory mention `text`."""
    out = []
    mark = os.fsencode(text)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in (exclude or set()) or \
                int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            seen = [cmdline, os.fsencode(os.readlink(proc / "root")),
                    os.fsencode(os.readlink(proc / "cwd"))]
            state = (proc / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(mark in s for s in seen):
            words = cmdline.replace(b"\0", b" ").decode(errors="replace")
            out.append(f"{proc.name}: {words}")
    return out


def qemu_pid(state_dir: Path, guest: str) -> int | None:
    try:
        boot = json.loads((state_dir / "guests" / guest / "boot.json").read_text())
    except (OSError, ValueError):
        return None
    pid = boot.get("qemu_pid")
    return pid if isinstance(pid, int) and Path(f"/proc/{pid}").exists() else None


@dataclass
class Lab:
    dir: Path
    file: Path
    guest: str

    @property
    def state(self) -> Path:
        return self.dir / ".provision9p"

    def orphans(self) -> list[str]:
        """Processes of ours still about, but for a running guest's own QEMU and the SSH
        master `up` opened for it (connect/openssh.py): both end with the guest, so with
        the guest stopped they count."""
        pid = qemu_pid(self.state, self.guest)
        if pid is None:
            return processes_mentioning(str(self.dir))
        return [line for line in processes_mentioning(str(self.dir), exclude={pid})
                if not _ssh_master(line)]


def _ssh_master(line: str) -> bool:
    words = line.split(": ", 1)[1].split()
    return words[:1] == ["ssh"] and "-N" in words and any(
        w.startswith("ControlPath=") for w in words)


def make_lab(guest: str, body: str = "") -> Lab:
    # Not under /tmp/pytest-of-root (0700): QEMU runs as another user and must get in.
    path = Path(tempfile.mkdtemp(prefix=f"p9-faults-{guest}-", dir="/var/tmp"))
    path.chmod(0o755)
    lab = path / "lab.yml"
    # no_timer_check: under TCG on a loaded host the kernel's IO-APIC timer check can
    # fail ("IO-APIC + timer doesn't work!") and panic; the check is for real hardware.
    lab.write_text(f"name: {guest}\nguests:\n  {guest}:\n    memory: 768\n"
                   "    kernel: {cmdline: no_timer_check}\n    rootfs:\n"
                   "      packages: [acl, python3, python3-apt]  # the suites' shared base\n"
                   + body)
    return Lab(path, lab, guest)


def tear_down(lab: Lab) -> None:
    # nothing in the guest is worth a clean shutdown's wait: kill its QEMU, `down` notes it
    pid = qemu_pid(lab.state, lab.guest)
    if pid is not None:
        os.kill(pid, signal.SIGKILL)
    run(argv("down", lab.file), timeout=120)
    for line in processes_mentioning(str(lab.dir)):
        os.kill(int(line.split(":")[0]), signal.SIGKILL)
    shutil.rmtree(lab.dir, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _root() -> None:
    if os.geteuid() != 0:
        pytest.fail("the fault tests need root (debootstrap, mounts), as CI has")

