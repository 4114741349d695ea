"""A guest that cannot boot fails fast with the console's tail and a reason, not a hang."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.vm, pytest.mark.network]

# The user's own kernel (image + modules directory) rather than the lab's package: here
# Debian's, as fetched and extracted for the default lab.
LAB = """\
name: broken
guests:
  broken:
    memory: 512
    cpus: 1
    boot_timeout: 120
    kernel:
      image: {image}
      modules: {modules}
    rootfs:
      packages: [acl, python3, python3-apt]  # the suite's one base tree
"""


def _debian_kernel() -> tuple[Path, Path]:
    from provision9p.host.mirror import host_mirror
    from provision9p.lab import load_lab
    from provision9p.rootfs.guest_kernel import prepare_kernel

    kernel = prepare_kernel(load_lab(None).guests[0], host_mirror())
    assert kernel.modules_dir is not None
    return kernel.image, kernel.modules_dir


def test_tree_without_init_fails_with_reason(lab_dir: Path, p9: Any) -> None:
    lab = lab_dir / "broken" / "lab.yml"
    lab.parent.mkdir()
    lab.parent.chmod(0o755)
    image, modules = _debian_kernel()
    lab.write_text(LAB.format(image=image, modules=modules))
    res = p9("-f", str(lab), "rootfs", "build")
    assert res.returncode == 0, res.stdout + res.stderr
    # Break the built tree the way a bad role or a botched upgrade could.
    init = lab.parent / "guests/broken/root/usr/sbin/init"
    assert init.exists()
    init.unlink()
    start = time.monotonic()
    res = p9("-f", str(lab), "up")
    took = time.monotonic() - start
    try:
        assert res.returncode == 1, res.stdout + res.stderr
        assert "broken did not come up" in res.stderr
        assert "likely cause:" in res.stderr
        # the reason is the initramfs's own line, read from the console
        assert "the root tree has no /sbin/init" in res.stderr, res.stderr
        assert "last console lines" in res.stderr
        assert "Traceback" not in res.stderr
        assert took < 110, "the failure should be seen long before boot_timeout"
        status = p9("-f", str(lab), "status")
        assert "broken: stopped" in status.stdout
    finally:
        p9("-f", str(lab), "down", "--timeout", "1")
    print(f"failed boot reported after {took:.1f} s")
