"""Why a boot failed, from the console's text."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision9p.boot.console import ConsoleWatch, likely_cause


@pytest.mark.parametrize("text, expect", [
    ("...\nprovision9p-initramfs: cannot mount root tag rootfs with options x\n",
     "cannot mount root tag rootfs with options x"),
    ("virtio: Unknown symbol virtio_break_device (err -2)\n", "depends on"),
    ("9pnet_virtio: no channels available for device rootfs\n", "mount tag"),
    ("VFS: Unable to mount root fs on unknown-block(0,0)\n", "could not mount the 9P root"),
    ("You are in emergency mode.\n", "/etc/fstab"),
    ("", "printed nothing"),
])
def test_likely_cause(text: str, expect: str) -> None:
    cause = likely_cause(text)
    assert cause is not None and expect in cause


def test_no_cause_for_a_healthy_log() -> None:
    assert likely_cause("Linux version 6.1\nReached target Multi-User System\n") is None


def test_watch_follows_growth_and_milestones(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    watch = ConsoleWatch(log)
    assert watch.poll() == ""
    log.write_text("SeaBIOS\nLinux version 6.1.0\n")
    assert "Linux version" in watch.poll()
    with log.open("a") as f:
        f.write("Run /init as init process\n")
    assert watch.poll() == "Run /init as init process\n"
    assert watch.reached() == ["kernel", "initramfs"]
    assert watch.tail(1) == "Run /init as init process"
