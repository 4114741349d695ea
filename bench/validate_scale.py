"""`provision9p validate` of labs of N guests (each with one extra share of its own),
this checkout against another, interleaved in one run.

    .venv/bin/python bench/validate_scale.py OLD_CHECKOUT [--sizes 100 300 1000 3000]
                                              [--old-max 1000]

Whole-process wall time of `python -m provision9p -f LAB validate`, each checkout on
PYTHONPATH in turn (bytecode compiled beforehand), best of 3. The old checkout is run only
up to --old-max guests (it was quadratic: 3,000 guests took 150 s). Not a test: compare
the two columns and the growth within this one run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NEW = Path(__file__).resolve().parents[1]


def lab(where: Path, n: int) -> Path:
    lines = [f"name: scale{n}", "network: {subnet: 10.80.0.0/16}", "guests:"]
    for i in range(n):
        lines.append(f"  g{i}:\n    memory: 256\n    shares:\n"
                     f"      - {{path: ./data/g{i}, mount_tag: data, mount: /mnt/data}}")
    path = where / f"lab{n}.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def seconds(checkout: Path, lab_file: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    best = float("inf")
    for _ in range(3):
        start = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "provision9p", "-f", str(lab_file),
                               "validate"], env=env, capture_output=True, text=True, cwd="/")
        best = min(best, time.monotonic() - start)
        if done.returncode != 0:
            raise SystemExit(f"validate failed ({checkout}): {done.stdout}{done.stderr}")
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("old", type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000, 3000])
    parser.add_argument("--old-max", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for checkout in (NEW, args.old):  # compile the bytecode once, outside the timing
            seconds(checkout, lab(Path(tmp), 1))
        print("guests  this checkout  old checkout")
        for n in args.sizes:
            path = lab(Path(tmp), n)
            new = seconds(NEW, path)
            old = f"{seconds(args.old.resolve(), path):.2f} s" if n <= args.old_max else "-"
            print(f"{n:6d}  {new:11.2f} s  {old:>12s}", flush=True)


if __name__ == "__main__":
    main()
