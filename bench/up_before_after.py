"""`up` of a built guest to its first SSH command: this checkout against an earlier one.

A change to the boot or to `up` is judged on what a user waits for: `provision9p up GUEST
--no-verify` of the built, stopped guest, then `provision9p ssh GUEST -- true`, timed
from the start of `up` to the end of `ssh`, as bench/virtme_ng.py times our side. Each
version runs with its own code (the earlier one from a checkout, e.g. `git worktree add
/tmp/before COMMIT`) on its own lab file, so each boots a guest its own code built; the
rounds alternate A B A B, and each guest is stopped again before the other one starts.

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


def run(code: Path, lab: Path, guest: str) -> float:
    env = dict(os.environ, PYTHONPATH=str(code))
    p9 = [sys.executable, "-m", "provision9p", "-f", str(lab)]
    subprocess.run([*p9, "down", guest], check=True, capture_output=True, env=env)
    start = time.monotonic()
    subprocess.run([*p9, "up", guest, "--no-verify"], check=True, capture_output=True, env=env)
    subprocess.run([*p9, "ssh", guest, "--", "true"], check=True, env=env)
    took = time.monotonic() - start
    subprocess.run([*p9, "down", guest], check=True, capture_output=True, env=env)
    return took


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
    for r in range(args.rounds):
        loads.append(os.getloadavg()[0])
        before.append(run(args.before, args.before_lab, args.guest))
        after.append(run(REPO, args.lab, args.guest))
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


if __name__ == "__main__":
    main()
