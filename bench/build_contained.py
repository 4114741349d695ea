"""The base tree's build contained (rootfs/contain.py --build) against the same build as
root's plain mmdebstrap root mode, from two checkouts, alternating.

Each build goes into a fresh PROVISION9P_CACHE holding only the .deb cache of a first
(untimed) build, hard-linked in: no download, the same packages, so the difference is
the containment (namespaces, id-mapped mounts) and mmdebstrap's unshare mode against its
root mode. Run as root:
`python bench/build_contained.py NEW_CHECKOUT OLD_CHECKOUT [ROUNDS]`; prints one line per
build and the ratios, pair by pair.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PACKAGES = ("acl", "iproute2", "kmod", "openssh-server", "python3", "python3-apt",
            "systemd-sysv", "udev")  # the default lab's base
BUILD = ("import sys; from provision9p.host.mirror import host_mirror; "
         "from provision9p.lab.model import RootfsSpec; "
         "from provision9p.rootfs.debootstrap import base_tree; "
         f"base_tree(RootfsSpec(packages={PACKAGES!r}), 'amd64', host_mirror())")


def one(checkout: Path, debs: Path | None) -> tuple[float, float, Path]:
    """Wall and CPU seconds of one build from `checkout`, and its cache."""
    cache = Path(tempfile.mkdtemp(prefix="p9bench-", dir="/var/tmp"))
    if debs is not None:
        subprocess.run(["cp", "-al", str(debs), str(cache / "mmdebstrap-debs")], check=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", BUILD], cwd="/", check=True,
                   env={**os.environ, "PROVISION9P_CACHE": str(cache),
                        "PYTHONPATH": str(checkout)},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, cache


def main() -> None:
    new, old = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    _, _, first = one(new, None)  # downloads the .debs once
    debs = first / "mmdebstrap-debs"
    pairs = []
    try:
        for n in range(rounds):
            order = [("contained", new), ("root mode", old)]
            if n % 2:
                order.reverse()
            got = {}
            for name, checkout in order:
                wall, cpu, cache = one(checkout, debs)
                shutil.rmtree(cache)
                got[name] = (wall, cpu)
                print(f"round {n + 1} {name:10s} wall {wall:6.1f} s  cpu {cpu:6.1f} s", flush=True)
            pairs.append((got["contained"][0] / got["root mode"][0],
                          got["contained"][1] / got["root mode"][1]))
    finally:
        shutil.rmtree(first)
    for label, values in (("wall", [p[0] for p in pairs]), ("cpu", [p[1] for p in pairs])):
        print(f"contained/root mode {label}: min {min(values):.2f} "
              f"median {statistics.median(values):.2f} max {max(values):.2f}")


if __name__ == "__main__":
    main()
