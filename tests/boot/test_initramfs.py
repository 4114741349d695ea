"""The Python initramfs writer: byte-for-byte reproducible, a valid newc archive, and a
real boot that reaches its /init and fails with the one-line reason (vm marker)."""

from __future__ import annotations

import gzip
import stat
import subprocess
import time
from pathlib import Path

import pytest

from provision9p.boot.initramfs import INIT, build_initramfs, initramfs_bytes

BUSYBOX = Path("/bin/busybox")
needs_busybox = pytest.mark.skipif(not BUSYBOX.exists(), reason="busybox-static not installed")


def read_newc(data: bytes) -> list[tuple[str, dict[str, int], bytes]]:
    """Parse a newc archive independently of the writer: (name, header fields, data)."""
    keys = ["ino", "mode", "uid", "gid", "nlink", "mtime", "filesize", "devmajor",
            "devminor", "rdevmajor", "rdevminor", "namesize", "check"]
    out: list[tuple[str, dict[str, int], bytes]] = []
    pos = 0
    while True:
        assert data[pos:pos + 6] == b"070701", f"bad magic at {pos}"
        fields = {k: int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16)
                  for i, k in enumerate(keys)}
        pos += 110
        name = data[pos:pos + fields["namesize"] - 1].decode()
        pos = (pos + fields["namesize"] + 3) & ~3
        body = data[pos:pos + fields["filesize"]]
        pos = (pos + fields["filesize"] + 3) & ~3
        if name == "TRAILER!!!":
            assert set(data[pos:]) <= {0}
            return out
        out.append((name, fields, body))


def fake_modules(tmp_path: Path) -> list[Path]:
    mods = []
    for name in ("virtio_ring.ko", "virtio.ko", "9p.ko"):
        p = tmp_path / name
        p.write_bytes(b"\x7fELF" + name.encode())
        mods.append(p)
    return mods


@needs_busybox
def test_reproducible_and_well_formed(tmp_path: Path) -> None:
    mods = fake_modules(tmp_path)
    first = initramfs_bytes(modules=mods, busybox=BUSYBOX)
    assert first == initramfs_bytes(modules=mods, busybox=BUSYBOX)
    assert first[4:8] == b"\0\0\0\0"  # gzip header mtime
    entries = read_newc(gzip.decompress(first))
    names = [e[0] for e in entries]
    assert len(set(names)) == len(names)
    assert {f["uid"] for _, f, _ in entries} == {0}
    assert {f["mtime"] for _, f, _ in entries} == {0}
    assert [f["ino"] for _, f, _ in entries] == list(range(1, len(entries) + 1))
    by_name = {n: (f, b) for n, f, b in entries}
    console = by_name["dev/console"][0]
    assert stat.S_ISCHR(console["mode"]) and (console["rdevmajor"], console["rdevminor"]) == (5, 1)
    assert by_name["bin/busybox"][1] == BUSYBOX.read_bytes()
    assert by_name["init"][1] == INIT.encode() and by_name["init"][0]["mode"] & 0o111
    order = by_name["lib/modules/order"][1].decode().split()
    assert order == ["00-virtio_ring.ko", "01-virtio.ko", "02-9p.ko"]
    assert by_name["lib/modules/02-9p.ko"][1] == b"\x7fELF9p.ko"
    # a different load order is a different archive
    assert initramfs_bytes(modules=mods[::-1], busybox=BUSYBOX) != first


@needs_busybox
def test_written_atomically(tmp_path: Path) -> None:
    dest = tmp_path / "out" / "initrd.gz"
    dest.parent.mkdir()
    build_initramfs(dest, modules=fake_modules(tmp_path), busybox=BUSYBOX)
    assert dest.read_bytes() == initramfs_bytes(modules=fake_modules(tmp_path), busybox=BUSYBOX)
    assert [p.name for p in dest.parent.iterdir()] == ["initrd.gz"]


@needs_busybox
def test_init_is_valid_busybox_sh() -> None:
    res = subprocess.run([str(BUSYBOX), "sh", "-n", "-c", INIT], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "provision9p-initramfs: " in INIT and "poweroff -f" in INIT


ORDER = ["virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev",
         "virtio_pci", "virtio_mmio", "9pnet", "9pnet_virtio", "netfs", "fscache", "9p"]


def _kernel_and_modules() -> tuple[Path, list[Path]]:
    """Debian's kernel for the default lab, fetched through the mirror (cached)."""
    from provision9p.host.mirror import host_mirror
    from provision9p.kernel import module_load_order
    from provision9p.lab import load_lab
    from provision9p.rootfs.guest_kernel import prepare_kernel

    kernel = prepare_kernel(load_lab(None).guests[0], host_mirror())
    assert kernel.modules_dir is not None
    mods = module_load_order(kernel.modules_dir, kernel.release, list(kernel.report.modules))
    assert [m.name.removesuffix(".ko") for m in mods] == ORDER
    return kernel.image, mods


def _boot_until_poweroff(tmp_path: Path, kernel: Path, initrd: Path, append: str) -> str:
    """Boot under TCG with one 9P share; /init must power off by itself. Returns the log."""
    log = tmp_path / "console.log"
    share = tmp_path / "share"
    share.mkdir(exist_ok=True)
    argv = ["qemu-system-x86_64", "-nodefaults", "-no-user-config", "-display", "none",
            "-no-reboot", "-machine", "pc", "-accel", "tcg,thread=multi", "-cpu", "max",
            "-m", "512", "-smp", "1", "-kernel", str(kernel), "-initrd", str(initrd),
            "-append", f"console=ttyS0 panic=-1 {append}",
            "-fsdev", f"local,id=fs0,path={share},security_model=none",
            "-device", "virtio-9p-pci,fsdev=fs0,mount_tag=realtag",
            "-serial", f"file:{log}"]
    proc = subprocess.Popen(argv)
    try:
        proc.wait(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return log.read_text(errors="replace")


@pytest.mark.vm
@pytest.mark.network
@needs_busybox
def test_boot_reports_unmountable_root(tmp_path: Path) -> None:
    kernel, mods = _kernel_and_modules()
    initrd = tmp_path / "initrd.gz"
    build_initramfs(initrd, modules=mods, busybox=BUSYBOX)
    start = time.monotonic()
    log = _boot_until_poweroff(tmp_path, kernel, initrd,
                               "root=nosuchtag rootfstype=9p rootflags=trans=virtio")
    # every module loaded (no failure line for them), then the mount of a wrong tag failed
    assert "provision9p-initramfs: cannot mount root tag nosuchtag with options trans=virtio" \
        in log, log[-2000:]
    assert "loading module" not in log
    assert time.monotonic() - start < 240


@pytest.mark.vm
@pytest.mark.network
@needs_busybox
def test_boot_reports_bad_module(tmp_path: Path) -> None:
    kernel, mods = _kernel_and_modules()
    bad = tmp_path / "broken.ko"
    bad.write_bytes(b"not an ELF module")
    initrd = tmp_path / "initrd.gz"
    build_initramfs(initrd, modules=[bad, *mods], busybox=BUSYBOX)
    log = _boot_until_poweroff(tmp_path, kernel, initrd, "root=realtag rootfstype=9p")
    assert "provision9p-initramfs: loading module broken.ko failed" in log, log[-2000:]
