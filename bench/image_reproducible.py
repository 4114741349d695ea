"""Build one lab's image twice, each time in its own empty cache, and compare the digests.

    .venv/bin/python bench/image_reproducible.py [--out bench/results/image-reproducible.md]
                                                  [--warm]

Each build: `rootfs build` (debootstrap and kernel download in a fresh PROVISION9P_CACHE
and PROVISION9P_HOME), then `image build`. The first build writes the lab's lock; the
second builds against it. With --warm both builds share the host's cache (the base tree
is copied, not debootstrapped), which shows the image step alone. When the digests
differ, `image diff` is written into the result. Run as root. Not a test: times depend
on the machine and its load.
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
name: repro
defaults:
  rootfs:
    packages: [acl, python3, python3-apt]
guests:
  g: {}
"""


def cli(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "provision9p", "-q", *args], env=env,
                          capture_output=True, text=True)
    if done.returncode not in (0, 1):
        sys.exit(f"provision9p {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return time.monotonic() - start, done.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("bench/results/image-reproducible.md"))
    ap.add_argument("--warm", action="store_true", help="share the host's cache")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="p9-bench-image-", dir="/var/tmp"))
    work.chmod(0o755)
    (work / "lab.yml").write_text(LAB)
    rows, digests, stores = [], [], []
    try:
        for n in (1, 2):
            env = {**os.environ, "PROVISION9P_HOME": str(work / f"home{n}")}
            if not args.warm:
                env["PROVISION9P_CACHE"] = str(work / f"cache{n}")
            env.pop("SOURCE_DATE_EPOCH", None)
            lab = ["-f", str(work / "lab.yml")]
            tree_s, _ = cli([*lab, "rootfs", "build", "--force"], env)
            if n == 1:
                cli([*lab, "lock", "--update"], env)
            image_s, out = cli([*lab, "image", "build", "--json"], env)
            result = json.loads(out)[0]
            digests.append(result["digest"])
            stores.append(result["path"])
            rows.append((n, tree_s, image_s, result["size"], result["digest"]))
        same = digests[0] == digests[1]
        lines = [
            "# Two image builds of one lab, each in its own "
            + ("shared cache" if args.warm else "empty cache"),
            "",
            f"`bench/image_reproducible.py{' --warm' if args.warm else ''}`, "
            f"{time.strftime('%Y-%m-%d')}, {platform.node()}, {os.cpu_count()} CPUs, "
            f"load {os.getloadavg()[0]:.1f} at the end.",
            "",
            "| build | rootfs build (s) | image build (s) | image size (MiB) | digest |",
            "|---|---|---|---|---|",
            *(f"| {n} | {t:.1f} | {i:.1f} | {s / 2**20:.1f} | `{d}` |"
              for n, t, i, s, d in rows),
            "",
            "Same digest: **" + ("yes" if same else "no") + "**.",
        ]
        if not same:
            _, text = cli(["image", "diff", stores[0], stores[1]], dict(os.environ))
            shown = text.splitlines()
            lines += ["", f"`image diff` ({len(shown)} lines, first 60):", "", "```",
                      *shown[:60], "```"]
        args.out.write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
