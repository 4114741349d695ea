"""Every command with bad arguments: exit 2 and a message, never a traceback.

Each case runs the CLI as a user does (a fresh process, its own home), with a lab whose
one guest `g` was never built unless the case builds a stand-in for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from provision9p.cli import main

PROJECT = Path(__file__).resolve().parents[2]
LAB = "name: t\nguests:\n  g:\n    memory: 512\n"

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture()
def lab(tmp_path: Path) -> Path:
    path = tmp_path / "labs" / "lab.yml"
    path.parent.mkdir()
    path.write_text(LAB)
    return path


@pytest.fixture()
def p9(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
       capsys: pytest.CaptureFixture[str]) -> Run:
    """The CLI's main() in this process (a fresh process per case is seconds each), with
    its own home and working directory. An exception main() lets through fails the test:
    that is the traceback a user would see."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    for name, value in {"HOME": home, "PROVISION9P_HOME": home / "p9home",
                        "PROVISION9P_CACHE": home / "cache"}.items():
        monkeypatch.setenv(name, str(value))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out.out, out.err)
    return run


def assert_refused(res: subprocess.CompletedProcess[str], *words: str) -> None:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr + res.stdout
    assert res.stderr.startswith(("error: ", "usage: ")), res.stderr
    for word in words:
        assert word in res.stderr, (word, res.stderr)


# Every command that takes a lab, with the arguments it needs otherwise.
LAB_COMMANDS = [
    ["validate"], ["doctor"], ["rootfs", "build"], ["rootfs", "export", "g", "-o", "out"],
    ["up"], ["down"], ["status"], ["ssh", "g"], ["console", "g"], ["qemu-cmd", "g"],
    ["libvirt-xml", "g"], ["apply"], ["verify"],
]
GUEST_COMMANDS = [
    ["up", "nope"], ["down", "nope"], ["status", "g", "nope"], ["ssh", "nope", "--", "true"],
    ["console", "nope"], ["qemu-cmd", "nope"], ["libvirt-xml", "nope"], ["apply", "nope"],
    ["verify", "nope"], ["rootfs", "build", "nope"], ["rootfs", "export", "nope", "-o", "x"],
]
NOT_BUILT = [  # (command, what the message says)
    (["apply", "g"], "not built"), (["apply"], "not built"),
    (["rootfs", "export", "g", "-o", "out.tar"], "not built"),
    (["verify", "g"], "not running"), (["ssh", "g", "--", "true"], "not running"),
    (["console", "g"], "no console log"),
]


@pytest.mark.parametrize("command", LAB_COMMANDS, ids=" ".join)
def test_missing_lab_file(p9: Run, tmp_path: Path, command: list[str]) -> None:
    assert_refused(p9("-f", str(tmp_path / "nope.yml"), *command), "cannot read the lab file")


@pytest.mark.parametrize("command", LAB_COMMANDS, ids=" ".join)
def test_lab_file_that_is_a_directory(p9: Run, tmp_path: Path, command: list[str]) -> None:
    # --lab after the command's name, before its guest (after it, `ssh` takes all as COMMAND)
    at = 2 if command[0] == "rootfs" else 1
    args = [*command[:at], "--lab", str(tmp_path), *command[at:]]
    assert_refused(p9(*args), "cannot read the lab file")


@pytest.mark.parametrize("command", GUEST_COMMANDS, ids=" ".join)
def test_guest_that_does_not_exist(p9: Run, lab: Path, command: list[str]) -> None:
    assert_refused(p9("-f", str(lab), *command), "no guest named 'nope'", "guests: g")


@pytest.mark.parametrize(("command", "says"), NOT_BUILT, ids=lambda c: " ".join(c)
                         if isinstance(c, list) else c)
def test_guest_not_built_or_not_running(p9: Run, lab: Path, command: list[str],
                                         says: str) -> None:
    assert_refused(p9("-f", str(lab), *command), says)
    # Refusing wrote nothing into the lab's directory but its state dir.
    assert {p.name for p in lab.parent.iterdir()} <= {"lab.yml", ".provision9p"}


def test_usage_mistakes(p9: Run, lab: Path) -> None:
    for args in (["up", "--no-such-option"], ["ssh"], ["qemu-cmd", "g", "--port", "many"],
                 ["rootfs", "export", "g"], ["nosuchcommand"], ["kernel", "check"],
                 ["-f", str(lab), "libvirt-xml", "g", "--accel", "hvf"]):
        assert_refused(p9(*args))


def test_kernel_sources_that_are_not_files(p9: Run, tmp_path: Path) -> None:
    assert_refused(p9("kernel", "check", str(tmp_path / "nope")), "does not exist")
    assert_refused(p9("kernel", "check", str(tmp_path)), "is a directory")
    assert_refused(p9("kernel", "check", str(tmp_path), "--package", "x"), "exactly one kernel")


@pytest.fixture()
def built(lab: Path) -> Path:
    """A stand-in for a built guest: its root tree and its build record (as `build` writes)."""
    root = lab.parent / "guests" / "g" / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("g\n")
    state = lab.parent / ".provision9p" / "guests" / "g"
    state.mkdir(parents=True)
    (state / "build.json").write_text(json.dumps({
        "fingerprint": "x", "kernel": "k", "release": "r", "verdict": "builtin",
        "initrd": False, "run_as": "root", "client_key": "k"}))
    return root


def test_export_output_places(p9: Run, lab: Path, built: Path, tmp_path: Path) -> None:
    export = ["-f", str(lab), "rootfs", "export", "g", "-o"]
    assert_refused(p9(*export, str(tmp_path / "missing" / "out.tar")),
                   f"{tmp_path / 'missing'} is not a directory")
    assert_refused(p9(*export, "/proc/provision9p-out"), "cannot write in /proc")
    assert_refused(p9(*export, "/proc/self/provision9p.tar"), "cannot write in /proc/self")
    assert_refused(p9(*export, str(lab)), "exists; export never overwrites")
    assert_refused(p9(*export, str(tmp_path)), "exists; export never overwrites")
    assert not (tmp_path / "missing").exists()


def test_a_closed_pipe_ends_quietly(lab: Path, built: Path) -> None:
    run = lab.parent / ".provision9p" / "guests" / "g" / "run"
    run.mkdir()
    (run / "console.log").write_bytes(b"a console line\n" * 200_000)  # far past a pipe buffer
    proc = subprocess.Popen([sys.executable, "-m", "provision9p", "-f", str(lab), "console",
                             "g"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(PROJECT)})
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(100)
    proc.stdout.close()  # as `| head -c 100` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert err == ""


NET_LABS = [  # (lab text, what the message says, at which key)
    ("name: t\nguests:\n  a: {network: {address: 10.89.0.7}}\n"
     "  b: {network: {address: 10.89.0.7}}\n",
     "10.89.0.7 is also guest a's address", "guests.b.network.address"),
    ("name: t\nguests:\n  a: {network: {address: 10.90.0.7}}\n  b: {}\n",
     "10.90.0.7 is outside the lab's subnet 10.89.0.0/24", "guests.a.network.address"),
    ("name: t\nnetwork: {subnet: 10.89.0.0/30}\nguests:\n  a: {}\n  b: {}\n  c: {}\n",
     "10.89.0.0/30 has room for 2 guest(s), the lab has 3", "network.subnet"),
    ("name: t\nnetwork: {subnet: 10.0.0.0/16}\nguests:\n  a: {}\n  b: {}\n",
     "overlaps 10.0.2.0/24, QEMU's user network", "network.subnet"),
    ("name: t\nguests:\n  a: {network: {address: 10.89.0.255}}\n  b: {}\n",
     "broadcast address", "guests.a.network.address"),
    ("name: t\nnetwork: {subnet: lan}\nguests:\n  a: {}\n  b: {}\n",
     'expected an IPv4 subnet such as 10.89.0.0/24, got "lan"', "network.subnet"),
    ("name: t\nnetwork: {enabled: false}\nguests:\n  a: {network: {address: 10.89.0.3}}\n",
     "the lab network is off", "guests.a.network.address"),
]


@pytest.mark.parametrize(("text", "says", "key"), NET_LABS,
                         ids=["same-address", "outside", "too-small", "slirp", "broadcast",
                              "not-a-subnet", "network-off"])
@pytest.mark.parametrize("command", [["validate"], ["up"], ["status"]], ids=" ".join)
def test_bad_lab_network(p9: Run, tmp_path: Path, text: str, says: str, key: str,
                         command: list[str]) -> None:
    lab = tmp_path / "net.yml"
    lab.write_text(text)
    assert_refused(p9("-f", str(lab), *command), says, f" {key}: ")
    assert not (tmp_path / ".provision9p").exists()  # refused before anything started


def test_lab_network_without_vde_switch(p9: Run, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    lab = tmp_path / "net.yml"
    lab.write_text("name: t\nguests:\n  a: {}\n  b: {}\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert_refused(p9("-f", str(lab), "validate"), "guests: the lab network needs vde_switch",
                   "apt-get install vde2")
    lab.write_text("name: t\nnetwork: {subnet: 10.77.0.0/24}\nguests:\n  a: {}\n")
    assert_refused(p9("-f", str(lab), "up"), "network: the lab network needs vde_switch")
    # a lab without a network does not need it
    lab.write_text("name: t\nguests:\n  a: {}\n")
    assert p9("-f", str(lab), "validate").returncode == 0
