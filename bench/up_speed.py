"""The default lab's `up`, cold and from the cache, each to its first SSH command.

    .venv/bin/python bench/up_speed.py [--out bench/results/up-speed.md] [--keep DIR]

In a scratch state and cache directory (never the shared cache), with a lab file that
is the built-in default lab plus a second guest of the same kind:
1. cold: `up demo --no-verify` with an empty cache (the base tree built with
   mmdebstrap, the kernel downloaded), then `ssh demo -- true` (--no-cold: from the
   host's shared cache instead);
2. a second guest from the cache: `up demo2 --no-verify` (its tree from the cached base,
   its boot, its roles), then `ssh demo2 -- true`;
3. the built guest again: `down demo`, `up demo --no-verify`, `ssh demo -- true`.
Each with its stages from the guest's timings.json, the roles pass and the load
average when it started. Run as root. Not a test: compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT = REPO / "provision9p" / "lab" / "default.yml"


def lab_text() -> str:
    """The default lab with `demo2`, a copy of `demo`, added."""
    import yaml

    lab = yaml.safe_load(DEFAULT.read_text())
    lab["name"] = "speed"
    lab["guests"]["demo2"] = json.loads(json.dumps(lab["guests"]["demo"]))
    return yaml.safe_dump(lab, sort_keys=False)


def p9(env: dict[str, str], lab: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "provision9p", "-f", str(lab), *args],
                          env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"provision9p {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def to_first_command(env: dict[str, str], lab: Path, guest: str, label: str
                     ) -> dict[str, Any]:
    load = os.getloadavg()[0]
    start = time.monotonic()
    up = p9(env, lab, "up", guest, "--no-verify")
    t_up = time.monotonic() - start
    p9(env, lab, "ssh", guest, "--", "true")
    total = time.monotonic() - start
    timings = json.loads((lab.parent / ".provision9p" / "guests" / guest / "timings.json"
                          ).read_text())
    roles = next((line.split("done in ", 1)[1] for line in up.stderr.splitlines()
                  if "roles over SSH: done in" in line), "?")
    row = {"run": label, "load": round(load, 1), "up": round(t_up, 1),
           "first_command": round(total, 1), "build": timings.get("build_total"),
           "boot_to_ssh": timings.get("boot_total"), "roles_over_ssh": roles,
           "stages": timings}
    print(json.dumps(row), file=sys.stderr, flush=True)
    print(up.stderr, file=sys.stderr, flush=True)  # where the time went, step by step
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=REPO / "bench/results/up-speed.md")
    ap.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    ap.add_argument("--no-cold", action="store_true",
                    help="skip the cold run: the first guest comes from the shared cache")
    opts = ap.parse_args()
    work = opts.keep or Path(tempfile.mkdtemp(prefix="p9-speed-", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)
    lab = work / "lab.yml"
    lab.write_text(lab_text())
    env = {**os.environ, "PROVISION9P_HOME": str(work / "home")}
    if not opts.no_cold:
        env["PROVISION9P_CACHE"] = str(work / "cache")
    rows = []
    try:
        rows.append(to_first_command(env, lab, "demo", "a guest from the shared cache"
                                     if opts.no_cold else "cold: empty cache"))
        rows.append(to_first_command(env, lab, "demo2", "a second guest from the cache"))
        p9(env, lab, "down", "demo")
        rows.append(to_first_command(env, lab, "demo", "the built guest, booted again"))
    finally:
        subprocess.run([sys.executable, "-m", "provision9p", "-f", str(lab), "down"],
                       env=env, capture_output=True, check=False)
        if not opts.keep:
            shutil.rmtree(work, ignore_errors=True)
    write(opts.out, rows)


def write(out: Path, rows: list[dict[str, Any]]) -> None:
    lines = [f"## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, "
             f"{os.cpu_count()} cpus, TCG", "",
             "| run | load avg at start | to first SSH command | up | build | boot to SSH "
             "| roles over SSH |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['load']} | {r['first_command']} s | {r['up']} s | "
                     f"{r['build']} s | {r['boot_to_ssh']} s | {r['roles_over_ssh']} |")
    lines += ["", "Stages (timings.json: build stages, console milestones since QEMU "
              "started):", "", "```"]
    lines += [f"{r['run']}: {json.dumps(r['stages'], sort_keys=True)}" for r in rows]
    lines += ["```", ""]
    text = "\n".join(lines)
    print(text)
    if not out.exists():
        out.write_text("# `up` of the default lab to its first SSH command "
                       "(bench/up_speed.py)\n\nGoals (issue 14): cold `up` under 40 s; a "
                       "second guest from the cache under 8 s to SSH.\n\n")
    with out.open("a") as f:
        f.write("\n" + text)


if __name__ == "__main__":
    main()
