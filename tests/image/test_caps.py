"""File capabilities and images. A 9P guest cannot hold one: QEMU 7.2 passes only user.*
xattrs and POSIX ACLs in every security model (hw/9pfs/9p-xattr.c), so the guest's view,
and with it the image, has none; an archive that carries one anyway is unpacked without
it and says which files lost what, and one that carries QEMU's own fields is refused."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
import xattr
import zstandard

from provision9p.image.archive import Reader, write_image
from provision9p.image.errors import ImageError
from provision9p.image.normalize import Rules
from provision9p.image.unpack import unpack
from provision9p.rootfs.security import security_model

pytestmark = pytest.mark.tree
EPOCH = 1_700_000_000
# cap_net_raw+ep as setcap writes it: VFS_CAP_REVISION_2 | effective, permitted bit 13.
CAP = bytes.fromhex("01000002" "00200000" "00000000" "00000000" "00000000")
CAP_KEY = "SCHILY.xattr.security.capability"


def _archive(path: Path, ping_headers: dict[str, str]) -> None:
    """An archive as GNU tar --xattrs would write /usr/bin/ping with the given xattrs."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"provision9p.image": '{"format": 1}'}) as tar:
        for name in (".", "./usr", "./usr/bin"):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, EPOCH
            tar.addfile(info)
        info = tarfile.TarInfo("./usr/bin/ping")
        info.size, info.mode, info.mtime, info.pax_headers = 4, 0o755, EPOCH, ping_headers
        tar.addfile(info, io.BytesIO(b"\x7fELF"))
    path.write_bytes(zstandard.ZstdCompressor().compress(raw.getvalue()))


def test_a_host_capability_is_neither_in_the_guest_view_nor_the_image(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("setting security.capability on the host needs CAP_SETFCAP")
    tree = tmp_path / "t"
    (tree / "usr/bin").mkdir(parents=True)
    ping = tree / "usr/bin/ping"
    ping.write_bytes(b"\x7fELF")
    xattr.set(str(ping), b"security.capability", CAP)
    xattr.set(str(ping), b"user.note", b"kept")
    st = security_model("passthrough").store(tree)
    assert st.guest_xattrs("usr/bin/ping") == {b"user.note": b"kept"}
    out = tmp_path / "i.tar.zst"
    write_image(st, out, rules=Rules(EPOCH), boot=[], manifest={"guest": "t"})
    member = next(m for m in Reader(out) if m.path == "usr/bin/ping")
    assert CAP_KEY not in member.info.pax_headers
    assert member.info.pax_headers["SCHILY.xattr.user.note"] == "kept"


@pytest.mark.parametrize(("model", "host_uid"), [("mapped-xattr", 4000),
                                                 ("mapped-file", 4000),
                                                 ("passthrough", 0)])
def test_a_capability_in_an_archive_is_left_out_with_a_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str, host_uid: int) -> None:
    if host_uid != os.geteuid() and os.geteuid() != 0:
        pytest.skip("unpacking for another host user needs root")
    archive = tmp_path / "a.tar.zst"
    _archive(archive, {CAP_KEY: CAP.decode("utf-8", "surrogateescape"),
                       "SCHILY.xattr.user.note": "kept"})
    assert next(
        m for m in Reader(archive) if m.path == "usr/bin/ping").info.pax_headers[CAP_KEY] \
        .encode("utf-8", "surrogateescape") == CAP  # the value survives tar's PAX coding
    out = tmp_path / "out"
    unpack(archive, out, security_model(model), host_uid, host_uid)
    st = security_model(model).store(out, host_uid, host_uid)
    assert st.guest_xattrs("usr/bin/ping") == {b"user.note": b"kept"}
    assert b"security.capability" not in xattr.list(str(out / "usr/bin/ping"))
    err = capsys.readouterr().err
    assert "warning:" in err and "usr/bin/ping (security.capability)" in err


def test_qemus_own_fields_in_an_archive_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.zst"
    _archive(archive, {"SCHILY.xattr.user.virtfs.uid": "\0\0\0\0"})
    with pytest.raises(ImageError, match=r"user\.virtfs\.uid, QEMU's own field"):
        unpack(archive, tmp_path / "out", security_model("mapped-xattr"), os.geteuid(),
               os.getegid())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.zst"]
