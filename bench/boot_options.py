"""Where boot time goes: QEMU start -> "Linux version" -> initramfs switch_root -> SSH banner.

Boots a copy of a hand-made root tree (systemd + sshd) over 9P under TCG with one QEMU
option changed per variant, one guest at a time, and prints a Markdown table.
Usage: .venv/bin/python bench/boot_options.py SRC_DIR WORK_DIR [runs] [variant ...]
SRC_DIR holds kdeb/ (an extracted Debian kernel .deb) and exp1/ (the root tree).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from provision9p.boot.initramfs import build_initramfs

ORDER = ["virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev",
         "virtio_pci", "9pnet", "9pnet_virtio", "netfs", "fscache", "9p"]
MASKS = ("systemd.mask=getty-static.service systemd.mask=systemd-binfmt.service "
         "systemd.mask=apt-daily.timer systemd.mask=apt-daily-upgrade.timer "
         "systemd.mask=e2scrub_all.timer systemd.mask=e2scrub_reap.service "
         "systemd.mask=systemd-networkd-wait-online.service "
         "systemd.mask=modprobe@drm.service systemd.mask=modprobe@fuse.service "
         "systemd.mask=modprobe@configfs.service systemd.mask=modprobe@efi_pstore.service")
QUIET = "quiet loglevel=3"
PORT = 10722

# name -> (machine, extra qemu args, nic romfile off, cache, extra cmdline)
VARIANTS: dict[str, tuple[str, list[str], bool, str, str]] = {
    "pc-mmap": ("pc", [], False, "mmap", ""),
    "pc-loose": ("pc", [], False, "loose", ""),
    "q35-loose": ("q35", [], False, "loose", ""),
    "pc-qboot-loose": ("pc", ["-bios", "/usr/share/qemu/qboot.rom"], False, "loose", ""),
    "pc-romfile-off-loose": ("pc", [], True, "loose", ""),
    "pc-masks-loose": ("pc", [], False, "loose", MASKS),
    "pc-masks-quiet-loose": ("pc", [], False, "loose", f"{MASKS} {QUIET}"),
    "best": ("pc", ["-bios", "/usr/share/qemu/qboot.rom"], True, "mmap", f"{MASKS} {QUIET}"),
    "best-loose": ("pc", ["-bios", "/usr/share/qemu/qboot.rom"], True, "loose",
                   f"{MASKS} {QUIET}"),
}


def ssh_banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.settimeout(1)
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def boot_once(work: Path, name: str, kernel: Path, initrd: Path, root: Path) -> dict[str, float]:
    machine, extra, romoff, cache, cmdline = VARIANTS[name]
    log = work / f"{name}.log"
    log.unlink(missing_ok=True)
    flags = f"trans=virtio,version=9p2000.L,msize=512000,cache={cache}"
    argv = ["qemu-system-x86_64", "-nodefaults", "-no-user-config", "-display", "none",
            "-no-reboot", "-machine", machine, "-accel", "tcg,thread=multi", "-cpu", "max",
            "-m", "1024", "-smp", "2", *extra, "-kernel", str(kernel), "-initrd", str(initrd),
            "-append", f"root=rootfs rootfstype=9p rootflags={flags} rw console=ttyS0 "
            f"net.ifnames=0 panic=-1 {cmdline}".strip(),
            "-fsdev", f"local,id=fs0,path={root},security_model=passthrough",
            "-device", "virtio-9p-pci,fsdev=fs0,mount_tag=rootfs",
            "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{PORT}-:22",
            "-device", "virtio-net-pci,netdev=n0" + (",romfile=" if romoff else ""),
            "-serial", f"file:{log}"]
    start = time.monotonic()
    proc = subprocess.Popen(argv)
    marks: dict[str, float] = {}
    try:
        while time.monotonic() - start < 120 and proc.poll() is None:
            text = log.read_text(errors="replace") if log.exists() else ""
            now = time.monotonic() - start
            if "Linux version" in text:
                marks.setdefault("linux", now)
            if "provision9p: switch_root" in text:
                marks.setdefault("switch_root", now)
            if ssh_banner(PORT):
                marks["ssh"] = now
                break
            time.sleep(0.1)
    finally:
        proc.terminate()  # only the QEMU this run started, by its handle
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return marks


def main() -> None:
    src, work = Path(sys.argv[1]), Path(sys.argv[2])
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    names = sys.argv[4:] or list(VARIANTS)
    work.mkdir(parents=True, exist_ok=True)
    kernel = sorted((src / "kdeb/boot").glob("vmlinuz-*"))[-1]
    mods = {p.name.removesuffix(".ko"): p for p in (src / "kdeb").glob("lib/modules/*/**/*.ko")}
    initrd = work / "initrd.gz"
    build_initramfs(initrd, modules=[mods[m] for m in ORDER], busybox=Path("/bin/busybox"))
    root = work / "root"
    if not root.exists():  # never boot the source tree itself: the guest writes to its root
        subprocess.run(["cp", "-a", str(src / "exp1"), str(root)], check=True)
    print("| variant | run | Linux version (s) | switch_root (s) | SSH banner (s) |")
    print("|---|---|---|---|---|")
    for name in names:
        for i in range(runs):
            m = boot_once(work, name, kernel, initrd, root)
            cells = [f"{m[k]:.1f}" if k in m else "-" for k in ("linux", "switch_root", "ssh")]
            print(f"| {name} | {i + 1} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
