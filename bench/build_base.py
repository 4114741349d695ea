"""Cold base-tree builds, mmdebstrap against debootstrap, on the default lab's package set.

Each round builds into a fresh PROVISION9P_CACHE: `cold` with nothing cached (indexes and
.debs downloaded), `debs` with the builder's .deb cache copied in from the cold round.
Run as root: `python bench/build_base.py [ROUNDS]`; prints one line per build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provision9p.host.mirror import host_mirror
from provision9p.lab.model import RootfsSpec
from provision9p.rootfs.debootstrap import base_tree

PACKAGES = ("python3", "python3-apt")  # what the default lab's roles add to the base
DEB_DIRS = {"mmdebstrap": "mmdebstrap-debs", "debootstrap": "debootstrap-debs"}


def one(builder: str, cache: Path) -> float:
    os.environ["PROVISION9P_BUILDER"] = builder
    os.environ["PROVISION9P_CACHE"] = str(cache)
    start = time.monotonic()
    tree = base_tree(RootfsSpec(packages=PACKAGES), "amd64", host_mirror()).path
    seconds = time.monotonic() - start
    du = subprocess.run(["du", "-sm", str(tree)], capture_output=True, text=True).stdout.split()[0]
    files = sum(len(d) + len(f) for _, d, f in os.walk(tree))
    print(f"{builder:12s} {cache.name.split('-')[0]:5s} {seconds:6.1f} s  {du} MB  {files} objects",
          flush=True)
    return seconds


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    for _ in range(rounds):
        for builder in ("mmdebstrap", "debootstrap"):
            cold = Path(tempfile.mkdtemp(prefix="cold-", dir="/var/tmp"))
            warm = Path(tempfile.mkdtemp(prefix="debs-", dir="/var/tmp"))
            try:
                one(builder, cold)
                shutil.copytree(cold / DEB_DIRS[builder], warm / DEB_DIRS[builder])
                one(builder, warm)
            finally:
                shutil.rmtree(cold, ignore_errors=True)
                shutil.rmtree(warm, ignore_errors=True)


if __name__ == "__main__":
    main()
