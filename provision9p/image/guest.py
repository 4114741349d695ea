"""A guest whose root is `rootfs.image`: its tree comes straight from the archive.

No debootstrap and no roles' tree phase (the SSH phase still runs after boot). The image
is checked against its digest, unpacked in the root share's security model's form for
QEMU's user, and given what is the guest's own: its hostname, fstab, a new SSH host key
(pinned before the first boot, as for a built tree) and the lab's client key. The kernel
and initramfs come from the image's /boot.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

from provision9p import ui
from provision9p.image import store as image_store
from provision9p.image.errors import ImageError
from provision9p.image.unpack import unpack_into
from provision9p.lab.network import network_file
from provision9p.rootfs import keys
from provision9p.rootfs.build import check_host_ready
from provision9p.rootfs.guest_setup import fstab
from provision9p.rootfs.metadata.base import MetadataStore
from provision9p.rootfs.safe_fs import staged
from provision9p.rootfs.security import model_of
from provision9p.state import BuildRecord
from provision9p.target import Target


def image_key(ref: str) -> str:
    """What the build fingerprint holds for an image: a path's identity changes with it."""
    path = Path(ref)
    if path.is_file():
        st = path.stat()
        return f"{path}:{st.st_size}:{st.st_mtime_ns}"
    return ref


def build_from_image(target: Target, fingerprint: str) -> float:
    """Make the guest's root tree and boot files from its image; seconds it took."""
    start = time.monotonic()
    guest, st, run_as = target.guest, target.state, target.run_as
    assert guest.rootfs.image is not None
    archive = image_store.verified(guest.rootfs.image)  # refused before anything is made
    model = check_host_ready(target)
    client_key_path, client_pub = keys.lab_client_key(target.client_key)
    host_key = keys.generate(f"{guest.name}-host")
    stages: dict[str, float] = {}
    with staged(guest.root.path) as staging:
        t0 = time.monotonic()
        with ui.step(f"{guest.name}: root tree from {archive} ({model.name})"):
            count, manifest = unpack_into(archive, staging, model, run_as.uid, run_as.gid)
            ui.info(f"    {count} objects")
        stages["unpack"] = round(time.monotonic() - t0, 2)
        tree = model.store(staging, run_as.uid, run_as.gid)
        _own(tree, guest.name, fstab(guest), host_key, client_pub)
        if guest.address is not None and guest.mac is not None:
            _lab_nic(tree, network_file(guest.mac, guest.address))
        st.build_json.unlink(missing_ok=True)
        initrd = _boot_files(tree, manifest, st.boot_dir, st.kernel, st.initrd)
    st.write_host_key(host_key.public_line)
    st.write_build(BuildRecord(
        fingerprint=fingerprint, kernel=f"image {archive}",
        release=str(manifest.get("kernel_release", "")),
        verdict="initramfs" if initrd else "builtin", initrd=initrd, run_as=run_as.name,
        client_key=str(client_key_path), stages=stages,
        built=time.strftime("%Y-%m-%dT%H:%M:%S%z")))
    for share in guest.shares:  # as a built guest's: missing share dirs made for QEMU
        if not share.path.exists():
            share.path.mkdir(parents=True)
            model_of(share).new_share_dir(share.path, run_as.uid, run_as.gid)
    return time.monotonic() - start


def _own(tree: MetadataStore, name: str, fstab_text: str, host_key: keys.KeyPair,
         client_pub: str) -> None:
    """What makes the image this guest: name, fstab, its host key, the lab's client key."""
    files: dict[str, tuple[bytes | str, int]] = {
        "etc/hostname": (f"{name}\n", 0o644),
        "etc/hosts": (f"127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n"
                      "::1\t\tlocalhost ip6-localhost ip6-loopback\n", 0o644),
        "etc/fstab": (fstab_text, 0o644),
        "etc/ssh/ssh_host_ed25519_key": (host_key.private_openssh, 0o600),
        "etc/ssh/ssh_host_ed25519_key.pub": (host_key.public_line + "\n", 0o644),
    }
    _ensure_dir(tree, "root/.ssh", 0o700)
    for rel, (text, mode) in files.items():
        tree.write_bytes(rel, text if isinstance(text, bytes) else text.encode(), mode, 0, 0)
    # the lab's client key beside what the image's roles authorized
    try:
        keys_now = tree.read_bytes("root/.ssh/authorized_keys")
    except FileNotFoundError:
        keys_now = b""
    if client_pub.encode() not in keys_now:
        keys_now = keys_now.rstrip(b"\n") + (b"\n" if keys_now.strip() else b"")
        tree.write_bytes("root/.ssh/authorized_keys", keys_now + client_pub.encode() + b"\n",
                         0o600, 0, 0)


# systemd-networkd as `systemctl enable` leaves it (its [Install] section, systemd 252)
NETWORKD_LINKS = (
    ("etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
     "/lib/systemd/system/systemd-networkd.service"),
    ("etc/systemd/system/sockets.target.wants/systemd-networkd.socket",
     "/lib/systemd/system/systemd-networkd.socket"),
    ("etc/systemd/system/dbus-org.freedesktop.network1.service",
     "/lib/systemd/system/systemd-networkd.service"),
)


def _lab_nic(tree: MetadataStore, network: str) -> None:
    """The lab NIC's networkd config, as a built guest's tree has it (rootfs/guest_setup.py),
    and networkd enabled: the image's source guest may have had no lab network."""
    _ensure_dir(tree, "etc/systemd/network", 0o755)
    tree.write_bytes("etc/systemd/network/30-lab.network", network.encode(), 0o644, 0, 0)
    for rel, target in NETWORKD_LINKS:
        _ensure_dir(tree, os.path.dirname(rel), 0o755)
        if not _exists(tree, rel):
            tree.symlink(target, rel, 0, 0)


def _exists(tree: MetadataStore, rel: str) -> bool:
    try:
        tree.lstat(rel)
    except FileNotFoundError:
        return False
    return True


def _ensure_dir(tree: MetadataStore, rel: str, mode: int) -> None:
    """A directory owned by root, made when missing (an existing one is left as it is)."""
    if not _exists(tree, rel):
        tree.mkdir(rel, mode, 0, 0)


def _boot_files(tree: MetadataStore, manifest: dict[str, Any], boot_dir: Path,
                kernel: Path, initrd: Path) -> bool:
    """The image's kernel (and initramfs) where QEMU boots them; whether there is one."""
    boot_dir.mkdir(parents=True, exist_ok=True)
    wanted = [(manifest.get("kernel"), kernel), (manifest.get("initrd"), initrd)]
    if not isinstance(wanted[0][0], str):
        raise ImageError("the image's manifest names no kernel",
                         hint="build the image with `provision9p image build`")
    for member, dest in wanted:
        if not isinstance(member, str):
            dest.unlink(missing_ok=True)
            continue
        st = tree.lstat(member)
        if not stat.S_ISREG(st.mode):
            raise ImageError(f"the image's {member} is not a regular file",
                             hint="build the image with `provision9p image build`")
        tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
        tmp.write_bytes(tree.read_bytes(member))
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    return isinstance(wanted[1][0], str)
