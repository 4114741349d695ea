"""Sweep an extra share's msize on a running guest several times and write the result.

    .venv/bin/python bench/msize_sweep.py -f LAB [GUEST] [--runs 3] [--out bench/results/msize.md]

Each run is one `provision9p tune msize --json` (all sizes, in order); the page shows the
median per size, the spread (max-min over the median) across runs, each run's own
recommendation and the one from the medians. Not a test: numbers depend on the machine
and on whatever else runs on it; the host's load average is written down beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from provision9p.tune.chart import charts, table
from provision9p.tune.recommend import METRICS, Sample, recommend, rows_of


def one_run(lab: str, guest: list[str], extra: list[str]) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-m", "provision9p", "-q", "-f", lab, "tune",
                          "msize", *guest, "--json", *extra], check=True,
                         capture_output=True, text=True).stdout
    result: dict[str, object] = json.loads(out)
    return result


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-f", "--lab", required=True)
    ap.add_argument("guest", nargs="?")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench/results/msize.md"))
    ap.add_argument("extra", nargs=argparse.REMAINDER, help="more tune msize options")
    args = ap.parse_args()
    guest = [args.guest] if args.guest else []
    runs, loads, seconds = [], [], []
    for i in range(args.runs):
        start = time.monotonic()
        runs.append(one_run(args.lab, guest, args.extra))
        seconds.append(time.monotonic() - start)
        loads.append(os.getloadavg()[0])
        print(f"run {i + 1}: recommended {runs[-1]['recommended']} "
              f"({seconds[-1]:.0f} s, load {loads[-1]:.1f})", file=sys.stderr)
    samples = [Sample(**s) for r in runs for s in r["samples"]]  # type: ignore[attr-defined]
    rows = rows_of(samples)
    chosen = recommend(rows)
    first = runs[0]
    lines = [
        "# msize sweep (`provision9p tune msize`)",
        "",
        f"`bench/msize_sweep.py`, {time.strftime('%Y-%m-%d', time.gmtime())}: "
        f"{platform.node()}, {os.cpu_count()} CPUs shared with other work (1-minute load "
        f"average after each run: {', '.join(f'{x:.1f}' for x in loads)}), QEMU under TCG, "
        f"Debian 6.1 guest, share `{first['share']}` (mapped-xattr, cache=none), "
        f"{first['file_mib']} MiB sequential file (write with fsync; read after dropping "
        f"the guest's caches), {first['files']} small files created, listed with "
        f"`ls -l` and removed. {args.runs} runs, {sum(seconds):.0f} s in all.",
        "",
        f"**Recommended msize: {chosen}** (from the medians; per run: "
        f"{', '.join(str(r['recommended']) for r in runs)}).",
        "",
        "Medians, with the spread across runs ((max - min) / median); the score is the",
        "geometric mean of each workload's ratio to its best:",
        "",
        "```",
        table(rows, chosen),
        "```",
        "",
        "```",
        charts(rows),
        "```",
        "",
        "Every run, in MB/s (write / read) and metadata operations per second:",
        "",
        "| msize | " + " | ".join(f"run {i + 1}" for i in range(args.runs)) + " |",
        "|---|" + "---|" * args.runs,
    ]
    for r in rows:
        cells = [f"{s.write_mbs:.0f} / {s.read_mbs:.0f} / {s.meta_ops:.0f}" for s in r.runs]
        lines.append(f"| {r.msize} | " + " | ".join(cells) + " |")
    assert METRICS
    args.out.write_text("\n".join(lines) + "\n")
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
