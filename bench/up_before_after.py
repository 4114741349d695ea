"""`up` of a built guest to its first SSH command: this checkout against an earlier one.

A change to the boot or to `up` is judged on what a user waits for: `provision9p up GUEST
--no-verify` of the built, stopped guest, then `provision9p ssh GUEST -- true`, timed
from the start of `up` to the end of `ssh`, as bench/virtme_ng.py times our side. Each
version runs with its own code (the earlier one from a checkout, e.g. `git worktree add
/tmp/before COMMIT`) on its own lab file, so each boots a guest its own code built; the
rounds alternate A B A B, and each guest is stopped again before the other one starts.
After each timed round, systemd's own clock says where the boot went (seconds since the
kernel started: its generators, its unit loading, sshd, sysinit.target); that second
table is printed below the first, as medians per version.

Usage (as root, both guests built once by their own version; PROVISION9P_HOME as for `up`):
  .venv/bin/python bench/up_before_after.py --before DIR --before-lab LAB2 -f LAB
      [--guest demo] [--rounds 5] > bench/results/x.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


# (label, systemctl show argument, property): monotonic microseconds since the kernel
MILESTONES = (
    ("systemd started", "", "UserspaceTimestampMonotonic"),
    ("generators done", "", "GeneratorsFinishTimestampMonotonic"),
    ("units loaded", "", "UnitsLoadFinishTimestampMonotonic"),
    ("ssh.service active", "ssh.service", "ActiveEnterTimestampMonotonic"),
    ("sysinit.target", "sysinit.target", "ActiveEnterTimestampMonotonic"),
    ("basic.target", "basic.target", "ActiveEnterTimestampMonotonic"),
    ("boot finished", "", "FinishTimestampMonotonic"),
)


def breakdown(p9: list[str], guest: str, env: dict[str, str]) -> dict[str, float]:
    """Seconds since the kernel started, per milestone, from the guest's systemd."""
    script = "; ".join(
        f"systemctl show {unit} -p {prop} --value" for _, unit, prop in MILESTONES)
    out = subprocess.run([*p9, "ssh", guest, "--",
                          f"systemctl is-system-running --wait >/dev/null; {script}"],
                         capture_output=True, text=True, env=env).stdout.split()
    return {label: int(v) / 1e6 for (label, _, _), v in zip(MILESTONES, out, strict=False)}


def run(code: Path, lab: Path, guest: str) -> tuple[float, dict[str, float]]:
    # -P: `python -m` would put the working directory first on sys.path, ahead of
    # PYTHONPATH, and a bench started from this checkout ran this code for both versions
    env = dict(os.environ, PYTHONPATH=str(code))
    p9 = [sys.executable, "-P", "-m", "provision9p", "-f", str(lab)]
    subprocess.run([*p9, "down", guest], check=True, capture_output=True, env=env)
    start = time.monotonic()
    subprocess.run([*p9, "up", guest, "--no-verify"], check=True, capture_output=True, env=env)
    subprocess.run([*p9, "ssh", guest, "--", "true"], check=True, env=env)
    took = time.monotonic() - start
    marks = breakdown(p9, guest, env)
    subprocess.run([*p9, "down", guest], check=True, capture_output=True, env=env)
    return took, marks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", type=Path, required=True, help="the earlier checkout")
    ap.add_argument("--before-lab", type=Path, required=True)
    ap.add_argument("-f", "--lab", type=Path, required=True)
    ap.add_argument("--guest", default="demo")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    base = subprocess.run(["git", "-C", str(args.before), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    before: list[float] = []
    after: list[float] = []
    loads: list[float] = []
    marks: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for r in range(args.rounds):
        loads.append(os.getloadavg()[0])
        for name, code, lab, times in (("before", args.before, args.before_lab, before),
                                       ("after", REPO, args.lab, after)):
            took, seen = run(code, lab, args.guest)
            times.append(took)
            marks[name].append(seen)
        print(f"round {r + 1}: before {before[-1]:.2f} s, after {after[-1]:.2f} s",
              file=sys.stderr, flush=True)
    print(f"{args.rounds} interleaved rounds on "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, before = {base}, "
          f"after = {head}; seconds from `up` to the end of the first `ssh GUEST -- true`\n")
    print("| round | load avg at its start | before (s) | after (s) | after/before |")
    print("|---|---|---|---|---|")
    for i, (b, a, lo) in enumerate(zip(before, after, loads, strict=True)):
        print(f"| {i + 1} | {lo:.1f} | {b:.2f} | {a:.2f} | {a / b:.2f} |")
    mb, ma = statistics.median(before), statistics.median(after)
    print(f"\nMedian: before {mb:.2f} s, after {ma:.2f} s ({ma / mb:.2f}); after faster in "
          f"{sum(a < b for a, b in zip(after, before, strict=True))} of {args.rounds} pairs")
    print("\nThe guest's systemd, seconds since the kernel started (median over the rounds):\n")
    print("| milestone | before | after |")
    print("|---|---|---|")
    for label, _, _ in MILESTONES:
        cells = []
        for name in ("before", "after"):
            values = [m[label] for m in marks[name] if label in m]
            cells.append(f"{statistics.median(values):.2f}" if values else "-")
        print(f"| {label} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
