"""A lab of 8 guests against one guest, from the cached base: wall time, memory, disk.

    .venv/bin/python bench/lab_scale.py [--guests 8] [--memory 256] [--jobs N [N...]]
                                        [--no-overlay] [--out FILE.json]

In one run: `up` of a one-guest lab, then `up` of an N-guest lab (copy layout; once per
`--jobs` value), every guest then opening TCP port 22 on every other by name, then the
same N-guest lab with `rootfs.layout: overlay`, then the one guest again (other work on
the host moves its time a lot; the ratio is given against the faster and the slower).
Each lab is new, so every `up` builds its trees from the cached base (the first run on a
machine fills that cache) and boots them.
Measured: `up`'s wall time, the sum of the lab's QEMU RSS sampled every 0.5 s (peak),
the drop of the host's MemAvailable below its value before `up` (peak; other work on the
host moves it too), `du -sxc` of the trees (for overlay: each guest's own upper and work
dirs, plus the shared lower layers counted once), and the load average around each run.
Run as root (the overlay mount). Not a test: compare numbers within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

PACKAGES = "[acl, python3, python3-apt]"  # the test suite's base: cached on a CI host


def lab_text(name: str, guests: int, memory: int, layout: str) -> str:
    lines = [f"name: {name}", "network: {}" if guests == 1 else "", "defaults:",
             f"  memory: {memory}", "  cpus: 1",
             f"  rootfs: {{packages: {PACKAGES}, layout: {layout}}}", "guests:"]
    lines += [f"  g{i}: {{}}" for i in range(1, guests + 1)]
    return "\n".join(line for line in lines if line) + "\n"


def p9(*args: str, check: bool = True, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "provision9p", *args], capture_output=True,
                          text=True, check=check, timeout=timeout)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def mem_available_kib() -> int:
    m = re.search(r"^MemAvailable:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    assert m is not None
    return int(m[1])


def qemu_rss_kib(marker: str) -> int:
    """Sum of VmRSS of the QEMU processes whose command line names `marker` (our dir)."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if not cmd.startswith(b"qemu-system") and b"/qemu-system" not in cmd.split(b"\0")[0]:
                continue
            if marker.encode() not in cmd:
                continue
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:  # gone meanwhile
            continue
        m = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        total += int(m[1]) if m else 0
    return total


class Sampler(threading.Thread):
    """Peak QEMU RSS and lowest MemAvailable while it runs."""

    def __init__(self, marker: str) -> None:
        super().__init__(daemon=True)
        self.marker, self.stop = marker, threading.Event()
        self.base_avail = mem_available_kib()
        self.peak_rss, self.min_avail = 0, self.base_avail

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak_rss = max(self.peak_rss, qemu_rss_kib(self.marker))
            self.min_avail = min(self.min_avail, mem_available_kib())
            self.stop.wait(0.5)

    def result(self) -> dict[str, float]:
        return {"peak_qemu_rss_mib": round(self.peak_rss / 1024, 1),
                "memavailable_drop_mib": round((self.base_avail - self.min_avail) / 1024, 1)}


def du_kib(paths: list[Path]) -> int:
    """`du -sxc`: hard links shared between the paths counted once."""
    out = subprocess.run(["du", "-sxck", *map(str, paths)], capture_output=True, text=True,
                         check=True).stdout
    return int(out.splitlines()[-1].split()[0])


def overlay_lowers(root: Path) -> list[Path]:
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if fields[1] == str(root) and fields[2] == "overlay":
            m = re.search(r"lowerdir=([^,]+)", fields[3])
            return [Path(p) for p in m[1].split(":")] if m else []
    return []


def tree_disk(lab: Path) -> dict[str, Any]:
    guests = json.loads(p9("-f", str(lab), "validate", "--json").stdout)["guests"]
    roots = [Path(g["root"]["path"]) for g in guests]
    lowers = overlay_lowers(roots[0])
    if not lowers:
        return {"layout": "copy", "one_tree_mib": du_kib(roots[:1]) // 1024,
                "all_trees_mib": du_kib(roots) // 1024}
    own = [p for r in roots for p in (r.with_name(f"{r.name}-upper"),
                                      r.with_name(f"{r.name}-work"))]
    return {"layout": "overlay", "shared_lower_mib": du_kib(lowers) // 1024,
            "own_layers_one_mib": du_kib(own[:2]) // 1024,
            "own_layers_all_mib": du_kib(own) // 1024,
            "all_with_lower_mib": du_kib([*lowers, *own]) // 1024}


def reach_all(lab: Path, names: list[str]) -> dict[str, list[str]]:
    """Per guest, the lab names it could not open TCP port 22 on."""
    script = " ".join(f"timeout 5 bash -c '</dev/tcp/{n}/22' 2>/dev/null || echo {n};"
                      for n in names)
    missing = {}
    for g in names:
        res = p9("-f", str(lab), "ssh", g, "--", script, check=False, timeout=300)
        missing[g] = res.stdout.split() if res.returncode == 0 else [f"ssh rc {res.returncode}"]
    return missing


def one_lab(work: Path, name: str, guests: int, memory: int, layout: str,
            jobs: int | None) -> dict[str, Any]:
    lab = work / name / "lab.yml"
    lab.parent.mkdir()
    lab.parent.chmod(0o755)
    lab.write_text(lab_text(name, guests, memory, layout))
    names = [f"g{i}" for i in range(1, guests + 1)]
    sampler = Sampler(f"{lab.parent}/")
    result: dict[str, Any] = {"lab": name, "guests": guests, "memory_mib": memory,
                              "layout": layout, "jobs": jobs, "load_before": loadavg()}
    sampler.start()
    start = time.monotonic()
    try:
        res = p9("-f", str(lab), "up", "--no-verify", "--json",
                 *(["-j", str(jobs)] if jobs else []), check=False)
        result["up_seconds"] = round(time.monotonic() - start, 1)
        result["load_after_up"] = loadavg()
        result["up_rc"] = res.returncode
        doc = json.loads(res.stdout) if res.stdout.strip() else {}
        result["per_guest_seconds"] = {g: v.get("seconds") for g, v in
                                       doc.get("guests", {}).items()}
        if res.returncode != 0:
            result["up_stderr_tail"] = res.stderr[-2000:]
        if guests > 1:
            t = time.monotonic()
            missing = reach_all(lab, names)
            result["reach_seconds"] = round(time.monotonic() - t, 1)
            result["unreached"] = {g: m for g, m in missing.items() if m}
    finally:
        sampler.stop.set()
        sampler.join()
        result.update(sampler.result())
        try:
            result["disk"] = tree_disk(lab)
        finally:
            p9("-f", str(lab), "down", "--timeout", "10", check=False)
            p9("-f", str(lab), "rootfs", "remove", check=False)
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--guests", type=int, default=8)
    ap.add_argument("--memory", type=int, default=256)
    ap.add_argument("--jobs", type=int, nargs="+", default=[0],
                    help="up's -j for the big lab, one copy-layout run per value "
                         "(0: up's own default); overlay runs with the last")
    ap.add_argument("--no-overlay", action="store_true")
    ap.add_argument("--no-copy", action="store_true", help="no copy-layout big lab")
    ap.add_argument("--out", type=Path)
    opts = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="p9-labscale-", dir="/var/tmp"))
    work.chmod(0o755)
    runs = []
    try:
        runs.append(one_lab(work, "solo", 1, opts.memory, "copy", None))
        print(json.dumps(runs[-1]), flush=True)
        for jobs in [] if opts.no_copy else opts.jobs:
            runs.append(one_lab(work, f"scale-j{jobs}", opts.guests, opts.memory, "copy",
                                jobs or None))
            print(json.dumps(runs[-1]), flush=True)
        if not opts.no_overlay:
            runs.append(one_lab(work, "scaleov", opts.guests, opts.memory, "overlay",
                                opts.jobs[-1] or None))
            print(json.dumps(runs[-1]), flush=True)
        # the one guest again: other work on the host moves it a lot
        runs.append(one_lab(work, "solo-after", 1, opts.memory, "copy", None))
        print(json.dumps(runs[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {"machine": f"{platform.node()}, {os.cpu_count()} cpus, {platform.platform()}",
              "runs": runs}
    solos = [r["up_seconds"] for r in runs if r["guests"] == 1 and r["up_rc"] == 0]
    for r in runs:
        if r["guests"] > 1 and solos:  # against the faster and the slower of the one-guest runs
            r["up_ratio_to_one"] = [round(r["up_seconds"] / max(solos), 2),
                                    round(r["up_seconds"] / min(solos), 2)]
    text = json.dumps(report, indent=2) + "\n"
    print(text)
    if opts.out:
        opts.out.write_text(text)


if __name__ == "__main__":
    main()
