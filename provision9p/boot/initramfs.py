"""A minimal initramfs for kernels that have 9P only as modules, written in Python.

A cpio "newc" archive (gzip, mtime 0) holding a static busybox, the modules in load
order and an /init that mounts the root named by `root=`/`rootfstype=`/`rootflags=` on
the kernel command line (a 9P tag, or a disk such as /dev/vda for `image boot`), so the
same command line boots a kernel with 9P built in. Same inputs,
same bytes: fixed inode numbers, times and owners, entries in a fixed order.
On failure /init prints one `provision9p-initramfs: <reason>` line and powers off,
so the supervisor reports a reason instead of waiting for a hang.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
from pathlib import Path

INIT = r"""#!/bin/busybox sh
# provision9p initramfs: load the 9P modules, mount the root share, switch to it.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() {
  echo "provision9p-initramfs: $*" > /dev/console
  sleep 1
  poweroff -f
}
while read -r mod; do
  [ -n "$mod" ] || continue
  insmod "/lib/modules/$mod" || fail "loading module ${mod#*-} failed"
done < /lib/modules/order
root=
fstype=9p
flags=
net=
init=/sbin/init
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    root=*) root="${arg#root=}" ;;
    rootfstype=*) fstype="${arg#rootfstype=}" ;;
    rootflags=*) flags="${arg#rootflags=}" ;;
    init=*) init="${arg#init=}" ;;
    provision9p.net=*) net="${arg#provision9p.net=}" ;;
  esac
done
# QEMU user networking's fixed address, so sshd answers as soon as it starts; systemd-
# networkd, where the tree enables it, keeps the same static address later.
if [ -n "$net" ] && [ -e /sys/class/net/eth0 ]; then
  # IPv4 only, as the tree's networkd file says (LinkLocalAddressing=no, IPv6AcceptRA=no):
  # networkd may not run afterwards, and QEMU's router advertisements would add an address
  v6=/proc/sys/net/ipv6/conf/eth0
  [ -e "$v6/accept_ra" ] && echo 0 > "$v6/accept_ra"
  [ -e "$v6/addr_gen_mode" ] && echo 1 > "$v6/addr_gen_mode"
  ip link set lo up
  ip link set eth0 up && ip addr add "${net%%:*}" dev eth0 && \
    ip route add default via "${net##*:}" || echo "provision9p: eth0 not configured"
fi
[ -n "$root" ] || fail "no root= on the kernel command line"
mkdir -p /newroot
what="tag $root"
[ "$fstype" = 9p ] || what="$root ($fstype)"
tries=0
until mount -t "$fstype" -o "${flags:-rw}" "$root" /newroot; do
  tries=$((tries + 1))
  [ "$tries" -lt 5 ] || fail "cannot mount root $what with options $flags"
  sleep 0.2
done
# A guest's own files over a shared disk image (image boot): its host key, hostname;
# the lab's client key is added to root's authorized_keys once.
if [ -d /guest/files ]; then
  (cd /guest/files && find . -type f) | while read -r f; do
    cp -p "/guest/files/$f" "/newroot/$f" || fail "cannot write $f into the root"
  done
fi
if [ -f /guest/authorized_key ]; then
  key=$(cat /guest/authorized_key)
  mkdir -p /newroot/root/.ssh && chmod 700 /newroot/root/.ssh
  grep -qxF "$key" /newroot/root/.ssh/authorized_keys 2>/dev/null || \
    echo "$key" >> /newroot/root/.ssh/authorized_keys
fi
[ -x "/newroot$init" ] || [ -L "/newroot$init" ] || \
  fail "the root tree has no $init (is it a complete tree?)"
mount --move /dev /newroot/dev
umount /proc /sys
# progress marker (not a failure): the boot-time study times the initramfs by it
echo "provision9p: switch_root to $root" > /dev/console
exec switch_root /newroot "$init" || fail "switch_root to $init failed"
"""


class _Cpio:
    """newc writer: deterministic inode numbers, zero times, root owner."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1

    def add(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)
            ) -> None:
        encoded = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, 2 if stat.S_ISDIR(mode) else 1, 0, len(data),
                  0, 0, rdev[0], rdev[1], len(encoded), 0]
        self.ino += 1
        self.buf.write(b"070701" + b"".join(b"%08X" % f for f in fields))
        self.buf.write(encoded)
        self._pad()
        self.buf.write(data)
        self._pad()

    def _pad(self) -> None:
        self.buf.write(b"\0" * (-self.buf.tell() % 4))

    def finish(self) -> bytes:
        self.add("TRAILER!!!", 0)
        self.buf.write(b"\0" * (-self.buf.tell() % 512))
        return self.buf.getvalue()


def initramfs_bytes(*, modules: list[Path], busybox: Path) -> bytes:
    """The compressed archive (exposed for tests: same inputs, same bytes)."""
    cpio = _Cpio()
    for d in ("bin", "dev", "lib", "lib/modules", "newroot", "proc", "sys", "sbin"):
        cpio.add(d, stat.S_IFDIR | 0o755)
    cpio.add("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    cpio.add("bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes())
    cpio.add("bin/sh", stat.S_IFLNK | 0o777, b"busybox")
    names = []
    for i, mod in enumerate(modules):
        name = f"{i:02d}-{mod.name}"
        names.append(name)
        cpio.add(f"lib/modules/{name}", stat.S_IFREG | 0o644, mod.read_bytes())
    order = "".join(f"{n}\n" for n in names).encode()
    cpio.add("lib/modules/order", stat.S_IFREG | 0o644, order)
    cpio.add("init", stat.S_IFREG | 0o755, INIT.encode())
    return gzip.compress(cpio.finish(), compresslevel=6, mtime=0)


def guest_files_bytes(files: dict[str, tuple[bytes, int]], authorized_key: str) -> bytes:
    """A second archive to append to an initramfs (the kernel unpacks both): files /init
    copies into the root (path -> (bytes, mode), owned by root) and a client key."""
    cpio = _Cpio()
    dirs = {"guest", "guest/files"}
    for path in files:
        parts = path.split("/")[:-1]
        dirs.update("/".join(["guest/files", *parts[:i + 1]]) for i in range(len(parts)))
    for d in sorted(dirs):
        cpio.add(d, stat.S_IFDIR | 0o755)
    for path, (data, mode) in sorted(files.items()):
        cpio.add(f"guest/files/{path}", stat.S_IFREG | mode, data)
    cpio.add("guest/authorized_key", stat.S_IFREG | 0o644, authorized_key.encode() + b"\n")
    return gzip.compress(cpio.finish(), compresslevel=6, mtime=0)


def build_initramfs(dest: Path, *, modules: list[Path], busybox: Path) -> None:
    """Write the initramfs to `dest` atomically.

    Modules must be uncompressed .ko files (busybox insmod cannot read .ko.xz).
    """
    data = initramfs_bytes(modules=modules, busybox=busybox)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, dest)
