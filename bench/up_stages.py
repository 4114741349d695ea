"""Time `provision9p up` to the first SSH command, cold and warm, broken down by stage.

    .venv/bin/python bench/up_stages.py [--runs N] [--cold] [--out bench/results/up.md]

cold: an empty package/tree cache (debootstrap and the kernel download included);
warm: the base tree cached, the guest's tree rebuilt (`--rebuild`). Stages come from
the guest's timings.json (build stages, console milestones since QEMU started). Run
as root. Not a test: numbers depend on the machine; compare within one run.
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

LAB = """\
name: bench
guests:
  b:
    memory: 1024
    cpus: 2
    shares:
      - path: data
        mount_tag: data
        mount: /mnt/data
"""


def run(args: list[str], env: dict[str, str]) -> float:
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "provision9p", "-q", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def one(lab: Path, env: dict[str, str], rebuild: bool) -> dict[str, object]:
    t_up = run(["-f", str(lab), "up", "--no-verify", *(["--rebuild"] if rebuild else [])], env)
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "provision9p", "ssh", "--lab", str(lab), "b", "true"],
                   check=True, env=env)
    t_ssh = time.monotonic() - start
    timings = json.loads((lab.parent / ".provision9p/guests/b/timings.json").read_text())
    run(["-f", str(lab), "down"], env)
    return {"up_to_first_ssh": round(t_up + t_ssh, 1), **timings}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--cold", action="store_true", help="also one run with an empty cache")
    ap.add_argument("--out", type=Path)
    opts = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="p9-bench-", dir="/var/tmp"))
    work.chmod(0o755)
    lab = work / "lab.yml"
    lab.write_text(LAB)
    env = dict(os.environ)
    results: list[tuple[str, dict[str, object]]] = []
    try:
        if opts.cold:
            cold_cache = work / "cache"
            cold_env = {**env, "PROVISION9P_CACHE": str(cold_cache)}
            results.append(("cold", one(lab, cold_env, rebuild=True)))
        for _ in range(opts.runs):
            results.append(("warm", one(lab, env, rebuild=True)))
    finally:
        subprocess.run([sys.executable, "-m", "provision9p", "-f", str(lab), "down"],
                       env=env, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    lines = [f"machine: {platform.node()}, {os.cpu_count()} cpus, {platform.platform()}", ""]
    for kind, r in results:
        lines.append(f"{kind}: {json.dumps(r, sort_keys=True)}")
    text = "\n".join(lines) + "\n"
    print(text)
    if opts.out:
        opts.out.parent.mkdir(parents=True, exist_ok=True)
        with opts.out.open("a") as f:
            f.write(f"\n## {time.strftime('%Y-%m-%d %H:%M')}\n\n```\n{text}```\n")


if __name__ == "__main__":
    main()
