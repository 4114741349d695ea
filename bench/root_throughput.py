"""Root file system throughput and boot time per 9P cache mode of the root share.

    .venv/bin/python bench/root_throughput.py [--suite SUITE] [MODE...]
        (default: loose mmap none, on bookworm)

One guest per mode (rootfs.layout: overlay, so each costs a few MB), booted once: boot to
SSH from timings.json, then in the guest 256 MiB with dd to a file on the root, written
(conv=fsync: the data reached the host) and read back after dropping the guest's caches,
plus the same write with O_DIRECT. --suite: the guests' Debian suite, and so their kernel
(trixie's 6.12 has the netfs-based 9p client, bookworm's 6.1 the older page cache code).
Run as root. Numbers depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

LAB = """\
name: tput
defaults:
  memory: 1024
  cpus: 2
  rootfs:
    layout: overlay
    suite: {suite}
    packages: [acl, python3, python3-apt]
guests:
{guests}
"""
DD = ("sync; dd if=/dev/zero of=/root/dd.bin bs=1M count=256 conv=fsync 2>&1 | tail -1;"
      " echo 3 > /proc/sys/vm/drop_caches; dd if=/root/dd.bin of=/dev/null bs=1M 2>&1 | tail -1;"
      " rm -f /root/dd.bin; dd if=/dev/zero of=/root/dd.bin bs=1M count=256 oflag=direct 2>&1"
      " | tail -1; rm -f /root/dd.bin")


def p9(lab: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "provision9p", "-f", str(lab), *args],
                          capture_output=True, text=True)


def rate(line: str) -> str:
    m = re.search(r"([\d.,]+ [kMG]?B/s)", line)
    return m.group(1) if m else line.strip()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--suite", default="bookworm")
    ap.add_argument("modes", nargs="*")
    args = ap.parse_args()
    modes = args.modes or ["loose", "mmap", "none"]
    work = Path(tempfile.mkdtemp(prefix="p9-tput-", dir="/var/tmp"))
    work.chmod(0o755)
    lab = work / "lab.yml"
    guests = "\n".join(f"  {m}:\n    rootfs: {{cache: {m}}}" for m in modes)
    lab.write_text(LAB.format(suite=args.suite, guests=guests))
    print(f"suite {args.suite}\n")
    print("| root cache | boot to SSH | write (fsync) | read | write (O_DIRECT) |")
    print("|---|---|---|---|---|")
    for mode in modes:
        try:
            res = p9(lab, "up", "--no-verify", mode)
            if res.returncode != 0:
                print(f"| {mode} | failed: {res.stderr.strip()[-200:]} | | | |")
                continue
            timings = json.loads((work / f".provision9p/guests/{mode}/timings.json").read_text())
            out = p9(lab, "ssh", mode, "--", "sh", "-c", DD).stdout.splitlines()
            w, r, d = (rate(x) for x in [*out, "", "", ""][:3])
            print(f"| {mode} | {timings['boot_total']} s | {w} | {r} | {d} |", flush=True)
        finally:
            p9(lab, "down", mode)
            p9(lab, "rootfs", "remove", mode)
    subprocess.run(["rm", "-rf", str(work)])


if __name__ == "__main__":
    main()
