"""`image disk`: a small image with every kind of object as ext4 and qcow2, made twice
with the same bytes, and the ext4 (mounted read-only) holding the true metadata.

No guest boots here (test_disk_boot.py boots one); needs root (mknod, chown, a loop mount),
as CI has.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from integration import fidelity

from provision9p.boot.initramfs import guest_files_bytes
from provision9p.boot.qemu_argv import disk_root_args, disk_root_cmdline
from provision9p.cli import build_parser
from provision9p.commands.image import boot_argv
from provision9p.image import disk, disk_boot, store
from provision9p.image.archive import write_image
from provision9p.image.errors import ImageError
from provision9p.image.normalize import Rules
from provision9p.image.unpack import unpack
from provision9p.rootfs.security import security_model

pytestmark = pytest.mark.tree
EPOCH = 1_700_000_000


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.fail("these tests need root (device nodes, owners, a loop mount), as CI has")
    work = tmp_path_factory.mktemp("disk")
    src = work / "src"
    fidelity.make_source(src)
    (src / "etc").mkdir()
    (src / "etc/fstab").write_text("rootfs / 9p trans=virtio 0 0\n")
    os.setxattr(src / "d/plain", "user.note", b"kept")
    (src / "big").write_bytes(os.urandom(3 * 2**20))  # does not fit in 2 MiB
    old = os.environ.get("PROVISION9P_CACHE")
    os.environ["PROVISION9P_CACHE"] = str(work / "cache")
    try:
        store.images_dir().mkdir(parents=True)
        tmp = store.images_dir() / "new.tar.zst"
        digest, _ = write_image(security_model("passthrough").store(src, 0, 0), tmp,
                                rules=Rules(EPOCH), boot=[],
                                manifest={"guest": "t", "source_date_epoch": EPOCH})
        store.add(tmp, digest, {"guest": "t"})
        yield digest
    finally:
        if old is None:
            del os.environ["PROVISION9P_CACHE"]
        else:
            os.environ["PROVISION9P_CACHE"] = old


def test_two_builds_same_bytes(image: str, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    first = {d.format: d.sha256 for d in disk.build_disks(image, ["ext4", "qcow2"])}
    again = {d.format: d.sha256 for d in disk.build_disks(image, ["ext4", "qcow2"],
                                                         force=True)}
    assert first == again
    # and in another, empty cache (another path, another working tree)
    archive = store.verified(image)
    with monkeypatch.context() as m:
        m.setenv("PROVISION9P_CACHE", str(tmp_path / "other"))
        (store.images_dir() / image).mkdir(parents=True)
        shutil.copy(archive, store.images_dir() / image / store.ARCHIVE)
        other = {d.format: d.sha256 for d in disk.build_disks(image, ["qcow2", "ext4"])}
    assert other == first
    assert set(first) == {"ext4", "qcow2"}
    assert disk.stored_disks(image)["ext4"]["sha256"] == first["ext4"]
    info = subprocess.run(["qemu-img", "info", str(disk.disk_path(image, "qcow2"))],
                          capture_output=True, text=True, check=True).stdout
    assert "file format: qcow2" in info
    # the qcow2 holds the same file system: converted back, the raw bytes match
    back = disk.disk_path(image, "ext4").with_name("back.raw")
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(disk.disk_path(image, "qcow2")),
                    str(back)], check=True)
    assert back.read_bytes() == disk.disk_path(image, "ext4").read_bytes()
    back.unlink()


def test_ext4_holds_the_true_metadata(image: str, tmp_path: Path) -> None:
    (made,) = disk.build_disks(image, ["ext4"])
    subprocess.run(["e2fsck", "-fn", str(made.path)], check=True, capture_output=True)
    expected = tmp_path / "unpacked"  # the image as a passthrough tree: true owners
    unpack(store.verified(image), expected, security_model("passthrough"), 0, 0)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-o", "loop,ro", str(made.path), str(mnt)], check=True)
    try:
        got = fidelity.host_view(mnt)
        want = fidelity.host_view(expected)
        for view in (got, want):
            view.pop(b"etc/fstab")
        assert got.pop(b"lost+found").startswith("41c0 0 0 ")
        assert got == want
        assert os.getxattr(mnt / "d/plain", "user.note") == b"kept"
        assert (mnt / "etc/fstab").read_text().splitlines()[-1].split()[:3] == \
            ["/dev/vda", "/", "ext4"]
        st = os.lstat(mnt / "d/plain")
        assert (st.st_mtime, st.st_atime, st.st_ctime) == (EPOCH, EPOCH, EPOCH)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_size_option(image: str) -> None:
    (made,) = disk.build_disks(image, ["ext4"], "96M")
    assert made.size == made.path.stat().st_size == 96 * 2**20
    with pytest.raises(ImageError, match="too small --size"):
        disk.build_disks(image, ["ext4"], "2M")
    assert disk.stored_disks(image)["ext4"]["size"] == 96 * 2**20  # the failed one left none
    assert not list(store.images_dir().glob(f"{image}/.disk-*"))


@pytest.mark.unit
def test_parse_size() -> None:
    assert disk.parse_size("2G") == 2 * 2**30
    assert disk.parse_size("1536M") == 1536 * 2**20
    assert disk.parse_size("5000") == 8192  # whole 4 KiB blocks
    with pytest.raises(ImageError, match="not a size"):
        disk.parse_size("lots")


@pytest.mark.unit
def test_used_inodes_from_dumpe2fs() -> None:
    text = ("Inodes per group:         8\n"
            "Group 0: (Blocks 0-99)\n  Free inodes: 4-5, 8\n"
            "Group 1: (Blocks 100-199)\n  Free inodes: 9-16\n"
            "Group 2: (Blocks 200-299)\n  Free inodes: \n")
    assert disk.used_inodes(text) == [1, 2, 3, 6, 7, *range(17, 25)]


@pytest.mark.unit
def test_guest_files_archive_appends_to_an_initramfs(tmp_path: Path) -> None:
    data = guest_files_bytes({"etc/ssh/key": (b"secret\n", 0o600),
                              "etc/hostname": (b"x\n", 0o644)}, "ssh-ed25519 AAAA c")
    assert data == guest_files_bytes({"etc/hostname": (b"x\n", 0o644),
                                      "etc/ssh/key": (b"secret\n", 0o600)},
                                     "ssh-ed25519 AAAA c")  # same files, same bytes
    rows = _newc(gzip.decompress(data))
    assert rows["guest/files/etc/ssh/key"] == (0o100600, b"secret\n")
    assert rows["guest/files/etc/ssh"][0] == 0o40755
    assert rows["guest/authorized_key"] == (0o100644, b"ssh-ed25519 AAAA c\n")


def _newc(raw: bytes) -> dict[str, tuple[int, bytes]]:
    """name -> (mode, data) of a cpio newc archive (the format the kernel unpacks)."""
    out, pos = {}, 0
    while True:
        assert raw[pos:pos + 6] == b"070701"
        fields = [int(raw[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        name_end = pos + 110 + fields[11]
        name = raw[pos + 110:name_end - 1].decode()
        data_at = name_end + (-name_end % 4)
        if name == "TRAILER!!!":
            return out
        out[name] = (fields[1], raw[data_at:data_at + fields[6]])
        pos = data_at + fields[6] + (-(data_at + fields[6]) % 4)


@pytest.mark.unit
def test_disk_root_argv() -> None:
    assert disk_root_args(Path("/x,y/root.qcow2"), "qcow2") == [
        "-blockdev", "driver=file,filename=/x,,y/root.qcow2,node-name=f0",
        "-blockdev", "driver=qcow2,file=f0,node-name=root0",
        "-device", "virtio-blk-pci,drive=root0"]
    line = disk_root_cmdline("x86_64").split()
    assert line[:4] == ["root=/dev/vda", "rootfstype=ext4", "rootflags=rw", "rw"]
    assert "console=ttyS0" in line and "no_timer_check" in line


def test_damaged_disk_is_refused(image: str) -> None:
    disk.build_disks(image, ["ext4"], "96M")
    assert disk.verify_disks(image) == [disk.disk_path(image, "ext4")]
    path = disk.disk_path(image, "ext4")
    with open(path, "r+b") as f:
        f.seek(2 * 2**20)
        f.write(b"bit rot")
    with pytest.raises(ImageError, match="is damaged: its digest is sha256:"):
        disk.verify_disks(image)
    with pytest.raises(ImageError, match="is damaged"):
        disk_boot.boot_disk(image, "ext4", ["true"])  # refused before anything boots
    disk.build_disks(image, ["ext4"], "96M", force=True)
    assert disk.verify_disks(image)


@pytest.mark.unit
@pytest.mark.parametrize(("argv", "fmt", "timeout", "command"), [
    (["abc"], "ext4", 900.0, []),
    (["abc", "--format", "qcow2", "--", "findmnt", "-n", "/"], "qcow2", 900.0,
     ["findmnt", "-n", "/"]),
    (["--format", "qcow2", "abc", "--", "ls", "-l"], "qcow2", 900.0, ["ls", "-l"]),
    (["abc", "--timeout", "5"], "ext4", 5.0, []),
    (["abc", "uname", "-r"], "ext4", 900.0, ["uname", "-r"]),
])
def test_boot_grammar(argv: list[str], fmt: str, timeout: float, command: list[str]) -> None:
    args = build_parser().parse_args(["image", "boot", *argv])
    assert (boot_argv(args), args.ref, args.format, args.timeout) == \
        (command, "abc", fmt, timeout)
