"""The .deb reader and extract_deb, on packages built here with dpkg-deb."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from provision9p.errors import KernelError
from provision9p.kernel import check_kernel, extract_deb
from provision9p.kernel.deb import ar_members, control_fields, read_kernel_deb
from provision9p.kernel.fragments import fragments_for

from .helpers import make_ko

RELEASE = "6.1.0-99-amd64"


def build_kernel_deb(tmp: Path, compression: str) -> Path:
    """A linux-image-like .deb: boot/config-*, modules (9p as a module), a symlink."""
    if shutil.which("dpkg-deb") is None:
        pytest.fail("dpkg-deb is required for this test (apt-get install dpkg)")
    root = tmp / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(
        "Package: linux-image-test\nVersion: 1\nArchitecture: amd64\n"
        "Maintainer: t <t@t>\nDescription: test\n")
    config = "CONFIG_X86_64=y\n" + "".join(f.read_text() for f in fragments_for("x86_64"))
    config = config.replace("CONFIG_9P_FS=y", "CONFIG_9P_FS=m")
    (root / "boot").mkdir()
    (root / f"boot/config-{RELEASE}").write_text(config)
    mods = root / f"lib/modules/{RELEASE}"
    (mods / "kernel/fs").mkdir(parents=True)
    (mods / "kernel/fs/9p.ko").write_bytes(make_ko("9p", ["netfs"]))
    (mods / "kernel/fs/netfs.ko").write_bytes(make_ko("netfs", []))
    (mods / "modules.builtin").write_text("kernel/drivers/virtio.ko\n")
    os.symlink(f"boot/config-{RELEASE}", root / "config-link")
    os.symlink("/usr/src/linux-headers", mods / "build")  # absolute links are kept as is
    deb = tmp / f"test-{compression}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", f"-Z{compression}", "--build",
                    str(root), str(deb)], check=True, capture_output=True)
    return deb


@pytest.mark.parametrize("compression", ["xz", "zstd", "gzip", "none"])
def test_read_and_check_a_kernel_deb(tmp_path: Path, compression: str) -> None:
    deb = build_kernel_deb(tmp_path, compression)
    info = read_kernel_deb(deb)
    assert info.release == RELEASE
    assert (info.package, info.version) == ("linux-image-test", "1")
    assert set(info.modules) == {"9p", "netfs"} and info.modules["9p"].depends == ("netfs",)
    assert info.builtin == {"virtio"}
    report = check_kernel(deb)
    assert (report.verdict, report.modules, report.origin) == ("initramfs", ("netfs", "9p"),
                                                              "deb")


def test_extract_deb_keeps_symlinks(tmp_path: Path) -> None:
    deb = build_kernel_deb(tmp_path, "xz")
    dest = tmp_path / "tree"
    extract_deb(deb, dest)
    assert (dest / f"boot/config-{RELEASE}").is_file()
    assert os.readlink(dest / "config-link") == f"boot/config-{RELEASE}"
    assert os.readlink(dest / f"lib/modules/{RELEASE}/build") == "/usr/src/linux-headers"
    assert (dest / f"lib/modules/{RELEASE}/kernel/fs/9p.ko").stat().st_mode & 0o777 == 0o644
    # extracting again over the tree works (links are replaced, not followed)
    extract_deb(deb, dest)
    assert os.readlink(dest / "config-link") == f"boot/config-{RELEASE}"


def _ar(members: list[tuple[str, bytes]]) -> bytes:
    out = b"!<arch>\n"
    for name, data in members:
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        out += data + (b"\n" if len(data) % 2 else b"")
    return out


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


CONTROL_TAR = _tar({"./control": b"Package: evil\nVersion: 1\nArchitecture: all\n"})


def test_extract_deb_refuses_paths_out_of_the_tree(tmp_path: Path) -> None:
    for evil in ("../escape", "link/escape"):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            link = tarfile.TarInfo("link")
            link.type, link.linkname = tarfile.SYMTYPE, str(tmp_path)
            tar.addfile(link)
            f = tarfile.TarInfo(evil)
            tar.addfile(f, io.BytesIO(b""))
        deb = tmp_path / "evil.deb"
        deb.write_bytes(_ar([("debian-binary", b"2.0\n"), ("control.tar", CONTROL_TAR),
                             ("data.tar", buf.getvalue())]))
        with pytest.raises(KernelError, match="refusing"):
            extract_deb(deb, tmp_path / "dest")
        assert not (tmp_path / "escape").exists()


def test_not_a_deb(tmp_path: Path) -> None:
    bad = tmp_path / "bad.deb"
    bad.write_bytes(b"!<arch>\nnot a header at all, this is too short" + b"x" * 60)
    with pytest.raises(KernelError, match=r"cannot read .*bad\.deb") as exc:
        list(ar_members(bad))
    assert exc.value.hint is not None and "fetch it again" in exc.value.hint
    bad.write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(KernelError, match="not a Debian package"):
        control_fields(bad)
    bad.write_bytes(_ar([("debian-binary", b"2.0\n"), ("control.tar", CONTROL_TAR)]))
    with pytest.raises(KernelError, match=r"not a valid Debian package: .*data\.tar"):
        extract_deb(bad, tmp_path / "x")
    bad.write_bytes(_ar([("debian-binary", b"2.0\n"), ("data.tar", _tar({}))]))
    with pytest.raises(KernelError, match=r"not a valid Debian package: .*control\.tar"):
        read_kernel_deb(bad)


def test_members_and_control_data(tmp_path: Path) -> None:
    deb = build_kernel_deb(tmp_path, "zstd")
    assert [name for name, _ in ar_members(deb)] == ["debian-binary", "control.tar.zst",
                                                      "data.tar.zst"]
    control = control_fields(deb)
    assert (control["Package"], control["Architecture"]) == ("linux-image-test", "amd64")


def test_truncated_data_is_a_corrupt_package(tmp_path: Path) -> None:
    deb = build_kernel_deb(tmp_path, "xz")
    data = deb.read_bytes()
    start = data.index(b"data.tar.xz")
    # keep the ar header's size but cut the xz stream in the middle
    deb.write_bytes(data[: start + 60 + 200] + b"\0" * (len(data) - start - 260))
    with pytest.raises(KernelError, match=r"data\.tar\.xz is corrupt") as exc:
        read_kernel_deb(deb)
    assert exc.value.hint is not None and "fetch it again" in exc.value.hint


def test_extract_deb_into_a_merged_usr_tree(tmp_path: Path) -> None:
    """A debootstrapped root has lib -> usr/lib; the kernel's lib/modules lands in usr."""
    deb = build_kernel_deb(tmp_path, "xz")
    tree = tmp_path / "root"
    (tree / "usr/lib").mkdir(parents=True)
    (tree / "lib").symlink_to("usr/lib")
    extract_deb(deb, tree)
    assert (tree / "lib").is_symlink()
    assert (tree / f"usr/lib/modules/{RELEASE}/kernel/fs/9p.ko").is_file()
