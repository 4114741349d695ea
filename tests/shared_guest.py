"""The suite's shared guest and the helpers every guest-booting test uses: the CLI in a
fresh process, and a lab directory's removal (mounts first). The fixtures that use them
(`p9`, `shared_lab`) are in tests/conftest.py, so every test directory can reach the one
shared guest of the session (integration, security)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from integration.labs import MULTIDEVS_MOUNTS, SHARED_LAB


def run_cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, in a fresh process."""
    return subprocess.run([sys.executable, "-m", "provision9p", *args], capture_output=True,
                          text=True, timeout=timeout)


def remove_tree(path: Path) -> None:
    """Remove a module's labs as the module ends: what is mounted under it first (overlay
    roots, which a plain rmtree would empty through the mount), then the files."""
    real = os.path.realpath(path)
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for point in sorted((m for m in mounts if m.startswith(real + "/")), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    shutil.rmtree(path, ignore_errors=True)


def shared_lab() -> Iterator[Path]:
    """The shared guest's lab file, the guest up (verify is the modules' own to run);
    tests/conftest.py makes it the session's fixture."""
    if os.geteuid() != 0:
        raise RuntimeError("the shared guest needs root (debootstrap), as CI has")
    where = Path(tempfile.mkdtemp(prefix="p9-shared-", dir="/var/tmp"))
    where.chmod(0o755)
    path = where / "lab.yml"
    path.write_text(SHARED_LAB)
    try:
        for share in MULTIDEVS_MOUNTS:
            for fs in ("a", "b"):
                (where / share / fs).mkdir(parents=True)
                subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs",
                                str(where / share / fs)], check=True)
                (where / share / fs / "f").write_text(f"{fs}\n")
        res = run_cli("-f", str(path), "up", "--no-verify")
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        yield path
    finally:
        run_cli("-f", str(path), "down", "--timeout", "5")
        remove_tree(where)
