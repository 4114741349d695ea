"""Which -cpu boots an aarch64 guest fastest under TCG on this x86-64 host.

Takes a built, stopped aarch64 guest's QEMU command (`provision9p qemu-cmd GUEST`), swaps
-cpu and the SSH port, and boots it once per variant per round (rounds interleaved, so
load drifts hit every variant alike), timing the Linux banner, the initramfs's
switch_root and the SSH banner from QEMU's start. Prints a Markdown table.
Usage (as root, in the lab's directory):
  .venv/bin/python bench/aarch64_cpu.py LAB GUEST [rounds] [cpu ...]
"""

from __future__ import annotations

import select
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

CPUS = ["max", "max,pauth-impdef=on", "max,pauth=off", "cortex-a57", "cortex-a72"]
PORT = 10822
LIMIT = 400.0


class BannerProbe:
    """One connection at a time to the forwarded port, polled without blocking: slirp
    accepts at once and closes once the guest refuses, while an emulated sshd takes
    seconds to send its banner (giving up early would only start another sshd)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None

    def poll(self) -> bool:
        if self.sock is None:
            try:
                self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=1)
            except OSError:
                return False
            self.sock.setblocking(False)
        ready, _, _ = select.select([self.sock], [], [], 0)
        if not ready:
            return False
        try:
            data = self.sock.recv(64)
        except OSError:
            data = b""
        if data.startswith(b"SSH-"):
            return True
        self.close()  # refused or reset: try again on the next poll
        return False

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def base_argv(lab: str, guest: str) -> tuple[list[str], str]:
    out = subprocess.run([sys.executable, "-m", "provision9p", "-f", lab, "qemu-cmd", guest],
                         capture_output=True, text=True, check=True).stdout
    argv = shlex.split(out.splitlines()[0])
    # QEMU runs as the owner of the root tree (the lab's unprivileged QEMU user)
    fsdev = argv[argv.index("-fsdev") + 1]
    root = next(o.removeprefix("path=") for o in fsdev.split(",") if o.startswith("path="))
    owner = subprocess.run(["stat", "-c", "%U", root], capture_output=True, text=True,
                           check=True).stdout.strip()
    return argv, "" if owner == "root" else owner


def variant(argv: list[str], cpu: str, log: Path) -> list[str]:
    out = list(argv)
    out[out.index("-cpu") + 1] = cpu
    i = out.index("-netdev") + 1
    out[i] = out[i].split("hostfwd=")[0] + f"hostfwd=tcp:127.0.0.1:{PORT}-:22"
    j = out.index("-chardev") + 1
    out[j] = f"file,id=con0,path={log}"
    for opt in ("-qmp", "-pidfile"):  # the lab's own sockets stay untouched
        k = out.index(opt)
        del out[k:k + 2]
    return out


def boot_once(argv: list[str], owner: str, log: Path) -> dict[str, float]:
    log.unlink(missing_ok=True)
    cmd = ["runuser", "-u", owner, "--", *argv] if owner else argv
    start = time.monotonic()
    proc = subprocess.Popen(cmd)
    marks: dict[str, float] = {}
    probe = BannerProbe(PORT)
    try:
        while time.monotonic() - start < LIMIT and proc.poll() is None:
            text = log.read_text(errors="replace") if log.exists() else ""
            now = time.monotonic() - start
            if "Linux version" in text:
                marks.setdefault("linux", now)
            if "provision9p: switch_root" in text:
                marks.setdefault("switch_root", now)
            if probe.poll():
                marks["ssh"] = now
                break
            time.sleep(0.2)
    finally:
        probe.close()
        proc.terminate()  # only the QEMU this run started, by its handle
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return marks


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def main() -> None:
    lab, guest = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    cpus = sys.argv[4:] or CPUS
    argv, owner = base_argv(lab, guest)
    log = Path("/var/tmp") / f"p9-aarch64-cpu-{guest}.log"
    print("| -cpu | round | load | Linux banner (s) | switch_root (s) | SSH banner (s) |")
    print("|---|---|---|---|---|---|")
    for r in range(rounds):
        for cpu in cpus:
            before = load()
            m = boot_once(variant(argv, cpu, log), owner, log)
            cells = [f"{m[k]:.1f}" if k in m else "-" for k in ("linux", "switch_root", "ssh")]
            print(f"| {cpu} | {r + 1} | {before} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
