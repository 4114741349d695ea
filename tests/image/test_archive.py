"""Images of a small tree with every kind of object: deterministic bytes, the true
metadata, diff by field, and refusal of damaged or escaping archives."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import zstandard
from integration import fidelity

from provision9p.image import diff, store
from provision9p.image.archive import BootFile, Reader, write_image
from provision9p.image.errors import ImageError
from provision9p.image.normalize import Rules
from provision9p.rootfs.security import security_model

pytestmark = pytest.mark.tree
EPOCH = 1_700_000_000
HOST_UID, HOST_GID = 4321, 4322


def _mapped_tree(where: Path) -> Path:
    """fidelity's tree with a guest's leftovers, converted as a build converts it."""
    fidelity.make_source(where)
    for rel, text in (("etc/machine-id", "0123abcd\n"), ("etc/ssh/ssh_host_ed25519_key", "k"),
                      ("var/log/dpkg.log", "log"), ("etc/shadow", "root:*:20412:0:::::\n")):
        (where / rel).parent.mkdir(parents=True, exist_ok=True)
        (where / rel).write_text(text)
    security_model("mapped-xattr").convert(where, host_uid=HOST_UID, host_gid=HOST_GID)
    return where


def _image(tree: Path, out: Path, boot: list[BootFile] | None = None) -> str:
    st = security_model("mapped-xattr").store(tree, HOST_UID, HOST_GID)
    digest, size = write_image(st, out, rules=Rules(EPOCH), boot=boot or [],
                               manifest={"guest": "t"})
    assert size == out.stat().st_size
    return digest


def _cli(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "provision9p", *args], capture_output=True,
                          text=True, env={**os.environ, "PROVISION9P_CACHE": str(cache)})


def test_same_tree_other_times_and_secrets_same_bytes(tmp_path: Path) -> None:
    a = _mapped_tree(tmp_path / "a")
    b = tmp_path / "b"
    subprocess.run(["cp", "-a", "--no-preserve=timestamps", str(a), str(b)], check=True)
    (b / "etc/machine-id").write_text("ffffffff\n")  # what differs by chance
    (b / "etc/ssh/ssh_host_ed25519_key").write_text("another key")
    (b / "var/log/dpkg.log").write_text("another log")
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"kernel")
    boot = [BootFile("boot/vmlinuz-1", kernel)]
    assert _image(a, tmp_path / "a.tar.zst", boot) == _image(b, tmp_path / "b.tar.zst", boot)
    members = {m.path: m for m in Reader(tmp_path / "a.tar.zst")}
    assert "etc/ssh/ssh_host_ed25519_key" not in members and "var/log/dpkg.log" not in members
    assert members["etc/machine-id"].data == b""
    assert members["etc/shadow"].data == f"root:*:{EPOCH // 86400}:0:::::\n".encode()
    assert members["boot/vmlinuz-1"].data == b"kernel"
    # the guest's view, not the host's 0600 files owned by QEMU's user
    owned = members["owned"].info
    assert (owned.uid, owned.gid, owned.mode) == (1234, 5678, 0o600)
    assert members["null"].info.ischr() and members["null"].info.devmajor == 1
    assert members["rel"].info.issym() and members["rel"].info.linkname == "d/plain"
    assert members["hl2"].info.islnk() and members["hl2"].info.linkname == "./hl1"
    assert "SCHILY.acl.access" in members["acl"].info.pax_headers
    assert all(m.info.mtime <= EPOCH and m.info.uname == "" for m in members.values())


def test_diff_names_path_and_field(tmp_path: Path) -> None:
    a = _mapped_tree(tmp_path / "a")
    b = tmp_path / "b"
    subprocess.run(["cp", "-a", str(a), str(b)], check=True)
    st = security_model("mapped-xattr").store(b, HOST_UID, HOST_GID)
    st.chmod("suid", 0o755)
    st.chown("owned", 1234, 0)
    st.write_bytes("d/plain", b"planted\n", 0o644, 0, 0)
    os.utime(b / "d/plain", (1_000, 1_000))  # older than the epoch: the clamp keeps it
    st.unlink("fifo")
    (b / "new").write_text("new")
    st.record("new", 0o100644, 0, 0)
    ia, ib = tmp_path / "a.tar.zst", tmp_path / "b.tar.zst"
    _image(a, ia)
    _image(b, ib)
    lines = diff.diff(ia, ib)
    assert "/suid: mode 4755 -> 0755" in lines
    assert "/owned: owner 1234:5678 -> 1234:0" in lines
    assert "/fifo: only in A" in lines and "/new: only in B" in lines
    plain = [line for line in lines if line.startswith("/d/plain: ")]
    assert [p.split(":")[1].split()[0] for p in plain] == ["content", "time"], plain
    assert diff.diff(ia, ia) == []
    done = _cli("image", "diff", str(ia), str(ib), cache=tmp_path / "cache")
    assert done.returncode == 1 and "/suid: mode 4755 -> 0755" in done.stdout


def test_damaged_image_refused_with_both_digests(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    tree = _mapped_tree(tmp_path / "t")
    cache = tmp_path / "cache"
    monkeypatch.setenv("PROVISION9P_CACHE", str(cache))
    out = tmp_path / "x.tar.zst"
    digest = _image(tree, out)
    image, new = store.add(out, digest, {"guest": "t"})
    assert new and store.verified(digest[:8]) == image.archive
    data = bytearray(image.archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    image.archive.write_bytes(bytes(data))
    with pytest.raises(ImageError) as err:
        store.verified(digest[:8])
    found = store.sha256_of(image.archive)
    assert f"expected sha256:{digest}" in str(err.value)
    assert f"is sha256:{found}" in str(err.value)
    done = _cli("image", "verify", digest[:12], cache=cache)
    assert done.returncode == 1 and f"expected sha256:{digest}" in done.stderr
    assert "Traceback" not in done.stderr
    with image.archive.open("r+b") as f:  # truncated
        f.truncate(1000)
    assert _cli("image", "diff", digest, digest, cache=cache).returncode == 1
    done = _cli("image", "rm", digest[:6], cache=cache)
    assert done.returncode == 0 and not image.archive.parent.exists()
    done = _cli("image", "rm", digest[:6], cache=cache)
    assert done.returncode == 2 and "no stored image" in done.stderr


def _evil(path: Path, members: list[tarfile.TarInfo]) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"provision9p.image": '{"format": 1}'}) as tar:
        for info in members:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isreg() else None)
    path.write_bytes(zstandard.ZstdCompressor().compress(raw.getvalue()))


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = 1 if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize(("members", "why"), [
    ([_member("./../evil")], "climbs out of the tree"),
    ([_member("/etc/passwd")], "absolute name"),
    ([_member("./a", tarfile.SYMTYPE, "/etc"), _member("./a/passwd")], "under the symlink 'a'"),
    ([_member("./a", tarfile.SYMTYPE, "/"), _member("./a/etc", tarfile.DIRTYPE)],
     "under the symlink"),
    ([_member("./h", tarfile.LNKTYPE, "/etc/shadow")], "hard link out of the tree"),
    ([_member("./s", tarfile.SYMTYPE, "/etc/shadow"), _member("./h", tarfile.LNKTYPE, "./s")],
     "not an earlier regular file"),
])
def test_escaping_archive_refused(tmp_path: Path, members: list[tarfile.TarInfo],
                                  why: str) -> None:
    evil = tmp_path / "evil.tar.zst"
    _evil(evil, [_member(".", tarfile.DIRTYPE), *members])
    with pytest.raises(ImageError, match="nothing was unpacked") as err:
        list(Reader(evil))
    assert why in str(err.value)
    done = _cli("image", "verify", str(evil), cache=tmp_path / "cache")
    assert done.returncode == 1 and why in done.stderr


def test_a_plain_symlink_to_an_absolute_target_is_fine(tmp_path: Path) -> None:
    ok = tmp_path / "ok.tar.zst"
    _evil(ok, [_member(".", tarfile.DIRTYPE), _member("./abs", tarfile.SYMTYPE, "/etc/x"),
               _member("./abs2")])
    assert [m.path for m in Reader(ok)] == ["", "abs", "abs2"]
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)


@pytest.mark.parametrize("model", ["mapped-xattr", "mapped-file"])
def test_unpack_then_image_again_same_bytes(tmp_path: Path, model: str) -> None:
    """Owners, modes, devices, links, xattrs and ACLs survive an unpack into the model's
    form, as a non-root user would make it (host files owned by someone else)."""
    from provision9p.image.unpack import unpack

    tree = _mapped_tree(tmp_path / "t")
    first = tmp_path / "first.tar.zst"
    digest = _image(tree, first)
    out = tmp_path / "out"
    assert unpack(first, out, security_model(model), 4000, 4001) > 20
    assert os.stat(out / "owned").st_uid == 4000  # the host owner; the guest's in metadata
    st = security_model(model).store(out, 4000, 4001)
    again = tmp_path / "again.tar.zst"
    got, _ = write_image(st, again, rules=Rules(EPOCH), boot=[], manifest={"guest": "t"})
    assert got == digest, diff.diff(first, again)


def test_refused_unpack_leaves_nothing(tmp_path: Path) -> None:
    from provision9p.image.unpack import unpack

    evil = tmp_path / "evil.tar.zst"
    _evil(evil, [_member(".", tarfile.DIRTYPE), _member("./ok"), _member("./../x")])
    with pytest.raises(ImageError, match="climbs out"):
        unpack(evil, tmp_path / "out", security_model("mapped-xattr"), 4000, 4001)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar.zst"]


def test_hard_link_whose_first_name_is_dropped_keeps_its_data(tmp_path: Path) -> None:
    tree = tmp_path / "t"
    (tree / "var/log").mkdir(parents=True)
    (tree / "var/log/a.log").write_text("shared\n")  # first in walk order, dropped
    (tree / "x").mkdir()
    os.link(tree / "var/log/a.log", tree / "x/one")
    os.link(tree / "var/log/a.log", tree / "x/two")
    security_model("mapped-xattr").convert(tree, host_uid=HOST_UID, host_gid=HOST_GID)
    out = tmp_path / "i.tar.zst"
    _image(tree, out)
    members = {m.path: m for m in Reader(out)}
    assert "var/log/a.log" not in members and "var/log" in members
    assert members["x/one"].info.isreg() and members["x/one"].data == b"shared\n"
    assert members["x/two"].info.islnk() and members["x/two"].info.linkname == "./x/one"
