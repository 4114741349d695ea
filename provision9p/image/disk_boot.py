"""`image boot`: a smoke check that an image's disk boots with the image's own kernel.

The stored disk is never written: QEMU boots a throwaway qcow2 overlay backed by it.
What makes this boot a guest of its own (a new SSH host key, pinned before the boot; a
client key; a hostname) travels in a small second initramfs archive that /init copies
into the root after mounting it, so the shared disk image needs no per-guest copy.
"""

from __future__ import annotations

import base64
import contextlib
import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from provision9p import ui
from provision9p.boot.initramfs import guest_files_bytes, initramfs_bytes
from provision9p.boot.qemu_argv import (
    QEMU_BINARIES,
    disk_root_args,
    disk_root_cmdline,
    qemu_opts_escape,
)
from provision9p.errors import BootError
from provision9p.image import store
from provision9p.image.disk import DISK_MODULES, INITRD, KERNEL, check_disk, stored_disks
from provision9p.image.errors import ImageError
from provision9p.kernel.modules import module_load_order
from provision9p.qemu_user import ACCOUNT, RunAs
from provision9p.rootfs import keys

ARCHES = {"amd64": "x86_64", "arm64": "aarch64", "s390x": "s390x"}
HOSTNAME = "imageboot"


def disk_initramfs(tree: Path, manifest: dict[str, Any]) -> bytes:
    """The initramfs for a disk root: virtio-blk and ext4 with their dependencies, read
    from the image's own modules."""
    from provision9p.rootfs.build import busybox_path

    release = str(manifest.get("kernel_release") or "")
    mods = tree / "usr/lib/modules" / release
    if not release or not mods.is_dir():
        raise ImageError(f"the image has no modules for its kernel {release or '?'}",
                         hint="build the image with `provision9p image build`")
    present = [m for m in DISK_MODULES
               if any(mods.glob(f"kernel/**/{m}.ko*")) or m in _builtin(mods)]
    missing = {"virtio_blk", "ext4"} - set(present)
    if missing:
        raise ImageError(f"the image's kernel {release} has no {', '.join(sorted(missing))}",
                         hint="a disk root needs virtio_blk and ext4 (module or built in)")
    return initramfs_bytes(modules=module_load_order(mods, release, present),
                           busybox=busybox_path())


def _builtin(mods: Path) -> str:
    path = mods / "modules.builtin"
    return path.read_text().replace("-", "_") if path.is_file() else ""


@dataclass(frozen=True)
class BootResult:
    exit_status: int
    output: str
    seconds_to_ssh: float


def boot_disk(ref: str, fmt: str, command: list[str], *, memory_mib: int = 768,
              timeout: float = 900.0) -> BootResult:
    """Boot the image's `fmt` disk, run `command` over SSH (host key pinned), power off."""
    archive = store.verified(ref)
    digest = archive.parent.name
    disks = stored_disks(digest)
    entry = archive.parent
    if fmt not in disks:
        raise ImageError(f"sha256:{digest[:12]} has no {fmt} disk",
                         hint=f"make it: `provision9p image disk {digest[:12]} --format {fmt}`")
    disk = check_disk(digest, fmt)  # refused before anything boots from it
    if not (entry / KERNEL).is_file() or not (entry / INITRD).is_file():
        raise ImageError(f"sha256:{digest[:12]} has no kernel that boots from a disk (when "
                         "its disks were made: `image disk` said why)",
                         hint="an image from `provision9p image build` has one")
    arch = ARCHES.get(str(_manifest_arch(archive)), "?")
    if arch != "x86_64":
        raise ImageError(f"image boot knows amd64 images only (this one is "
                         f"{_manifest_arch(archive)})",
                         hint="boot its disk by hand: `qemu-img info` shows it")
    work = Path(tempfile.mkdtemp(prefix="p9-image-boot-", dir="/var/tmp"))
    try:
        return _boot(work, entry, disk, fmt, arch, command, memory_mib, timeout)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _manifest_arch(archive: Path) -> object:
    from provision9p.image.archive import Reader

    reader = Reader(archive)
    next(iter(reader), None)  # the manifest is in the global header, before any member
    return reader.manifest.get("arch")


def _boot(work: Path, entry: Path, disk: Path, fmt: str, arch: str, command: list[str],
          memory_mib: int, timeout: float) -> BootResult:
    overlay = work / "root.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F",
                    "raw" if fmt == "ext4" else "qcow2", "-b", str(disk), str(overlay)],
                   check=True, capture_output=True)
    host, client = keys.generate(f"{HOSTNAME}-host"), keys.generate("provision9p-image-boot")
    keys.write_private(work / "id_ed25519", client)
    files = {"etc/hostname": (f"{HOSTNAME}\n".encode(), 0o644),
             "etc/ssh/ssh_host_ed25519_key": (host.private_openssh, 0o600),
             "etc/ssh/ssh_host_ed25519_key.pub": (f"{host.public_line}\n".encode(), 0o644)}
    initrd = work / "initrd.img"
    initrd.write_bytes((entry / INITRD).read_bytes()
                       + guest_files_bytes(files, client.public_line))
    run_as = _qemu_account()
    if run_as is not None:  # QEMU's own unprivileged account, as for every guest
        for path in (work, overlay, initrd):
            os.chown(path, run_as.uid, run_as.gid)
    port = _free_port()
    console = work / "console.log"
    argv = [QEMU_BINARIES[arch], "-name", HOSTNAME, "-nodefaults", "-no-user-config",
            "-display", "none", "-no-reboot", "-machine", "pc" if arch == "x86_64" else "virt",
            "-accel", "tcg,thread=multi", "-cpu", "max", "-m", str(memory_mib),
            "-smp", "1", "-kernel", str(entry / KERNEL), "-initrd", str(initrd),
            "-append", disk_root_cmdline(arch), *disk_root_args(overlay, "qcow2"),
            "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:22",
            "-device", "virtio-net-pci,netdev=net0,romfile=",
            "-chardev", f"file,id=con0,path={qemu_opts_escape(str(console))}",
            "-serial", "chardev:con0"]
    start = time.monotonic()
    who = run_as.name if run_as else "this user"
    with ui.step(f"booting {disk.name} of sha256:{entry.name[:12]} (tcg, as {who})"):
        qemu = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            user=run_as.uid if run_as else None, group=run_as.gid if run_as else None,
            extra_groups=[] if run_as else None)
        try:
            client_ssh = _wait_for_ssh(qemu, port, host.public_line, work / "id_ed25519",
                                       console, start + timeout)
        except BaseException:
            _kill(qemu)
            raise
    waited = time.monotonic() - start
    try:
        _, out, err = client_ssh.exec_command(shlex.join(command), timeout=120)
        output = out.read().decode(errors="replace") + err.read().decode(errors="replace")
        status = out.channel.recv_exit_status()
        with contextlib.suppress(paramiko.SSHException, OSError):
            # --no-block: answer before sshd goes; closing the session earlier kills it
            _, off, _ = client_ssh.exec_command("systemctl poweroff --no-block", timeout=30)
            off.channel.recv_exit_status()
    finally:
        client_ssh.close()
        try:
            qemu.wait(60)
        except subprocess.TimeoutExpired:
            _kill(qemu)
    return BootResult(status, output, waited)


def _wait_for_ssh(qemu: subprocess.Popen[bytes], port: int, host_public: str,
                  client_key: Path, console: Path, deadline: float) -> paramiko.SSHClient:
    """A logged-in client once sshd answers with the pinned host key."""
    kind, blob = host_public.split()[:2]
    pinned = paramiko.PKey.from_type_string(kind, base64.b64decode(blob))
    while True:
        if qemu.poll() is not None:
            err = qemu.stderr.read().decode(errors="replace") if qemu.stderr else ""
            raise BootError(f"QEMU exited ({qemu.returncode}) before SSH answered:\n"
                            f"{err.strip()}{_tail(console)}",
                            hint="the console's last lines are above")
        client = paramiko.SSHClient()
        client.get_host_keys().add(f"[127.0.0.1]:{port}", kind, pinned)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect("127.0.0.1", port=port, username="root",
                           key_filename=str(client_key), look_for_keys=False,
                           allow_agent=False, timeout=5, banner_timeout=5, auth_timeout=5)
            return client
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise BootError("the guest answered with another host key than the one "
                            "pinned for this boot", hint="its initramfs did not copy the "
                            "key in; see the console") from exc
        except (paramiko.SSHException, EOFError, OSError):
            client.close()
        if time.monotonic() > deadline:
            raise BootError(f"no SSH before the timeout{_tail(console)}",
                            hint="the console's last lines are above")
        time.sleep(1.0)


def _qemu_account() -> RunAs | None:
    """When run as root: the unprivileged account QEMU runs as (made by a lab's first
    build); None to run QEMU as ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam(ACCOUNT)
    except KeyError:
        return None
    return RunAs(pw.pw_uid, pw.pw_gid, pw.pw_name)


def _tail(console: Path) -> str:
    try:
        lines = console.read_text(errors="replace").splitlines()[-15:]
    except OSError:
        return ""
    return "\n  console: " + "\n  console: ".join(lines) if lines else ""


def _free_port() -> int:
    from provision9p.boot.supervisor import free_port

    return free_port()


def _kill(qemu: subprocess.Popen[bytes]) -> None:
    if qemu.poll() is None:
        qemu.kill()
        qemu.wait()
