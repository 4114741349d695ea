"""`image disk`: an image's tree as a raw ext4 file system and as qcow2, byte for byte
reproducible, for CI users who want a block-device root where 9P is not wanted.

The ext4 is made by `mke2fs -d` from the image unpacked as root with its true owners,
modes, devices, xattrs and ACLs (mke2fs copies what it sees on the host). What would vary
is pinned: our own mke2fs.conf (the host's is not read), the UUID and directory hash seed
derived from the image digest, every inode's creation time by E2FSPROGS_FAKE_TIME, and
lazy init off so every table is written. mke2fs 1.47.0 copies the host's ctime and atime
of each file, which the unpack cannot set, so a debugfs pass sets both to the image's
SOURCE_DATE_EPOCH on every inode in use. qcow2 is `qemu-img convert` of that ext4 with
its options pinned; it writes clusters in order (no -W), so the bytes repeat.

Stored beside the archive: images/<sha256>/disk.ext4, disk.qcow2, and for `image boot`
the image's kernel and an initramfs that mounts an ext4 root from virtio-blk.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision9p import ui
from provision9p.image import store
from provision9p.image.archive import sha256_of
from provision9p.image.errors import ImageError
from provision9p.image.unpack import unpack_into
from provision9p.rootfs.security import security_model

FORMATS = ("ext4", "qcow2")
DISK_META = "disks.json"
KERNEL = "disk-vmlinuz"
INITRD = "disk-initrd.img"
BLOCK = 4096
INODE_SIZE = 256
# Pinned here so the host's /etc/mke2fs.conf cannot change the bytes. Features a 6.1
# kernel mounts (no orphan_file, no metadata_csum_seed: older guests' kernels too).
MKE2FS_CONF = """\
[defaults]
\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
\tdefault_mntopts = acl,user_xattr
\tenable_periodic_fsck = 0
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384

[fs_types]
\text4 = {
\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
\t}
"""
QCOW2_OPTIONS = "compat=1.1,cluster_size=65536,refcount_bits=16,lazy_refcounts=off"
FSTAB = ("# provision9p: the root is the ext4 disk on virtio-blk (image disk)\n"
         "/dev/vda / ext4 rw,errors=remount-ro 0 0\n")
# Modules the disk initramfs loads (with their dependencies from the image's modules):
# crc32c_generic because ext4's metadata_csum asks the crypto API for crc32c, which
# nothing in the initramfs could load on demand.
DISK_MODULES = ("virtio_pci", "virtio_blk", "crc32c_generic", "ext4", "virtio_net")


@dataclass(frozen=True)
class Disk:
    format: str
    path: Path
    sha256: str
    size: int  # the file system's size in bytes (the qcow2's virtual size)


def disk_path(digest: str, fmt: str) -> Path:
    return store.images_dir() / digest / f"disk.{fmt}"


def stored_disks(digest: str) -> dict[str, dict[str, Any]]:
    """The disks made of an image: format -> {sha256, size, ...} (what `image list` shows)."""
    meta = store.images_dir() / digest / DISK_META
    try:
        found = json.loads(meta.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(found, dict):
        return {}
    return {f: v for f, v in found.items()
            if isinstance(v, dict) and disk_path(digest, f).is_file()}


def parse_size(text: str) -> int:
    """`2G`, `1536M`, `800000K` or bytes -> bytes, a whole number of 4 KiB blocks."""
    m = re.fullmatch(r"(\d+)([KMGT]?)(i?B)?", text.strip(), re.IGNORECASE)
    if not m:
        raise ImageError(f"--size {text!r} is not a size", hint="e.g. --size 2G or 1536M")
    value: int = int(m.group(1)) * 1024 ** " KMGT".index((m.group(2) or " ").upper())
    if value % BLOCK:
        value += BLOCK - value % BLOCK
    return value


def tree_bytes(tree: Path) -> int:
    """What the tree needs on ext4, from sizes and counts (not du, which depends on the
    host's file system): each file rounded up to a block, plus an inode per object."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(tree):
        total += BLOCK + INODE_SIZE
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            total += -(-st.st_size // BLOCK) * BLOCK + INODE_SIZE
        total += INODE_SIZE * sum(1 for d in dirnames if os.path.islink(os.path.join(dirpath, d)))
    return total


def default_size(tree: Path) -> int:
    """The tree plus headroom: a third more and 256 MiB for the journal and a guest's
    writes, rounded up to 64 MiB."""
    need = tree_bytes(tree) * 4 // 3 + 256 * 2**20
    step = 64 * 2**20
    return -(-need // step) * step


def _derived_uuid(digest: str, purpose: str) -> str:
    raw = hashlib.sha256(f"provision9p-disk:{purpose}:{digest}".encode()).hexdigest()[:32]
    return str(uuid.UUID(hex=raw, version=4))


def _run(argv: list[str], what: str, env: dict[str, str] | None = None) -> str:
    if shutil.which(argv[0]) is None:
        package = "qemu-utils" if argv[0] == "qemu-img" else "e2fsprogs"
        raise ImageError(f"{argv[0]} is not installed; it is needed {what}",
                         hint=f"apt-get install {package}")
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise ImageError(f"{argv[0]} failed {what} (exit {done.returncode}):\n{tail}",
                         hint="see the message above; a full disk or a too small --size "
                              "are the usual causes")
    return done.stdout


def make_ext4(tree: Path, out: Path, *, digest: str, epoch: int, size: int,
              work: Path) -> None:
    """`tree` (true owners on the host) as a new ext4 file `out` of `size` bytes."""
    conf = work / "mke2fs.conf"
    conf.write_text(MKE2FS_CONF)
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
           "MKE2FS_CONFIG": str(conf), "E2FSPROGS_FAKE_TIME": str(epoch),
           "LC_ALL": "C"}  # mke2fs walks directories in alphasort order: C collation
    extended = ",".join([f"hash_seed={_derived_uuid(digest, 'hash_seed')}", "root_owner=0:0",
                         "lazy_itable_init=0", "lazy_journal_init=0", "nodiscard"])
    _run(["mke2fs", "-q", "-F", "-t", "ext4", "-T", "default", "-b", str(BLOCK),
          "-I", str(INODE_SIZE), "-L", "rootfs", "-U", _derived_uuid(digest, "uuid"),
          "-E", extended, "-d", str(tree), str(out), f"{size // 1024}k"],
         "making the ext4 file system", env)
    used = used_inodes(_run(["dumpe2fs", str(out)], "reading the new file system", env))
    commands = work / "times.debugfs"
    commands.write_text("".join(f"sif <{i}> {field} @{epoch}\n"
                                for i in used for field in ("ctime", "atime")))
    _run(["debugfs", "-w", "-f", str(commands), str(out)], "fixing the inode times", env)
    _run(["e2fsck", "-fn", str(out)], "checking the new file system", env)


def used_inodes(dumpe2fs: str) -> list[int]:
    """Inode numbers in use, from dumpe2fs's per-group free inode ranges."""
    found = re.search(r"^Inodes per group:\s+(\d+)", dumpe2fs, re.M)
    if found is None:
        raise ImageError("dumpe2fs printed no inode count", hint="report this as a bug")
    per_group = int(found.group(1))
    groups = re.findall(r"^Group (\d+):.*?^\s+Free inodes: ?([^\n]*)", dumpe2fs, re.M | re.S)
    used: list[int] = []
    for number, ranges in groups:
        first = int(number) * per_group + 1
        free: set[int] = set()
        for part in filter(None, (p.strip() for p in ranges.split(","))):
            lo, _, hi = part.partition("-")
            free.update(range(int(lo), int(hi or lo) + 1))
        used.extend(i for i in range(first, first + per_group) if i not in free)
    if not used:
        raise ImageError("dumpe2fs listed no inodes in use", hint="report this as a bug")
    return used


def tool_versions() -> dict[str, str]:
    out = {}
    for tool, flag in (("mke2fs", "-V"), ("qemu-img", "--version")):
        done = subprocess.run([tool, flag], capture_output=True, text=True)
        found = re.search(r"\b(\d+\.\d+[.\d]*)", done.stdout + done.stderr)
        out[tool] = found.group(1) if found else "?"
    return out


def make_qcow2(raw: Path, out: Path) -> None:
    _run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-o", QCOW2_OPTIONS,
          str(raw), str(out)], "converting the ext4 to qcow2")


def build_disks(ref: str, formats: list[str], size: str | None = None, *,
                force: bool = False) -> list[Disk]:
    """Make (or find) the image's disks in the given formats; the ext4 always comes first
    as the qcow2 is made from it."""
    archive = store.verified(ref)
    digest = archive.parent.name
    if archive.parent.parent != store.images_dir() or archive.name != store.ARCHIVE:
        raise ImageError(f"{archive} is not in the image store",
                         hint="disks are kept beside a stored image: build it with "
                              "`provision9p image build`, or copy it into the store")
    want_size = parse_size(size) if size is not None else None
    have = stored_disks(digest)
    fresh = [f for f in formats
             if f in have and (want_size is None or have[f]["size"] == want_size)]
    if not force and fresh == formats:
        return [Disk(f, disk_path(digest, f), have[f]["sha256"], have[f]["size"])
                for f in formats]
    if os.geteuid() != 0:
        raise ImageError("making a disk image needs root: the tree is unpacked with its "
                         "true owners and device nodes for mke2fs to copy",
                         hint="run `provision9p image disk` as root (CI runs as root)")
    entry = store.images_dir() / digest
    work = entry / f".disk-{os.getpid()}"
    work.mkdir()
    try:
        return _build(archive, digest, formats, want_size, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _build(archive: Path, digest: str, formats: list[str], want_size: int | None,
           work: Path) -> list[Disk]:
    tree = work / "tree"
    tree.mkdir(0o755)
    with ui.step(f"unpacking sha256:{digest[:12]} with its true owners"):
        _, manifest = unpack_into(archive, tree, security_model("passthrough"), 0, 0)
    epoch = int(manifest.get("source_date_epoch") or 0)
    if not epoch:
        raise ImageError("the image's manifest has no SOURCE_DATE_EPOCH",
                         hint="build the image again with `provision9p image build`")
    fstab = tree / "etc/fstab"
    if fstab.parent.is_dir() and not fstab.parent.is_symlink():
        fstab.unlink(missing_ok=True)  # the archive's says the root is 9P (and a
        # symlink there must not lead the write out of the tree)
        fd = os.open(fstab, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(FSTAB)
        os.chmod(fstab, 0o644)
        os.utime(fstab, (epoch, epoch))
        os.utime(fstab.parent, (epoch, epoch))
    size = want_size or default_size(tree)
    boot = _boot_files(tree, manifest, work)  # before mke2fs: it reads the tree
    raw = work / "disk.ext4"
    with ui.step(f"ext4 of {size / 2**20:.0f} MiB"):
        make_ext4(tree, raw, digest=digest, epoch=epoch, size=size, work=work)
    made = [Disk("ext4", raw, sha256_of(raw), size)]
    if "qcow2" in formats:
        q = work / "disk.qcow2"
        with ui.step("qcow2 of the ext4"):
            make_qcow2(raw, q)
        made.append(Disk("qcow2", q, sha256_of(q), size))
    tools = tool_versions()  # another e2fsprogs or QEMU may write other bytes
    entry = store.images_dir() / digest
    meta = stored_disks(digest)
    for name in (KERNEL, INITRD):
        (entry / name).unlink(missing_ok=True)
    if boot is not None:
        (work / INITRD).write_bytes(boot)
        os.replace(work / KERNEL, entry / KERNEL)
        os.replace(work / INITRD, entry / INITRD)
    kept = []
    for d in made:  # the ext4 too when only qcow2 was asked for: it is the same disk
        dest = disk_path(digest, d.format)
        os.replace(d.path, dest)
        meta[d.format] = {"sha256": d.sha256, "size": size, "path": str(dest),
                          "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                          "tools": tools}
        kept.append(Disk(d.format, dest, d.sha256, size))
    for fmt in [f for f in meta if f not in {d.format for d in made}]:
        if meta[fmt]["size"] != size:  # made from an ext4 that is no longer there
            disk_path(digest, fmt).unlink(missing_ok=True)
            del meta[fmt]
    tmp = work / DISK_META
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, entry / DISK_META)
    return [d for d in kept if d.format in formats]


def _boot_files(tree: Path, manifest: dict[str, Any], work: Path) -> bytes | None:
    """For `image boot`: the image's kernel copied to work/KERNEL and the bytes of an
    initramfs for a disk root; None (said) when the image's kernel cannot boot a disk."""
    from provision9p.image.disk_boot import disk_initramfs

    name = manifest.get("kernel")
    if not isinstance(name, str) or not (tree / name).is_file():
        ui.warn("the image's manifest names no kernel in its /boot: its disks cannot be "
                "booted by `image boot`")
        return None
    try:
        initrd = disk_initramfs(tree, manifest)
    except ImageError as exc:
        ui.warn(f"{exc.message}: its disks cannot be booted by `image boot`")
        return None
    shutil.copyfile(tree / name, work / KERNEL)
    return initrd



def verify_disks(digest: str) -> list[Path]:
    """The image's disks, each checked against the digest recorded when it was made."""
    return [check_disk(digest, fmt) for fmt in sorted(stored_disks(digest))]


def check_disk(digest: str, fmt: str) -> Path:
    path = disk_path(digest, fmt)
    expected = stored_disks(digest).get(fmt, {}).get("sha256")
    if (found := sha256_of(path)) != expected:
        raise ImageError(f"{path} is damaged: its digest is sha256:{found}, expected "
                         f"sha256:{expected}; nothing was booted or copied",
                         hint=f"make it again: `provision9p image disk {digest[:12]} "
                              f"--format {fmt} --force`")
    return path
