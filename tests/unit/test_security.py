"""The security model objects: one per QEMU model, agreeing with the lab, the stores and
the tools that consume them (QEMU argv, libvirt XML, QEMU's user, verify)."""

from __future__ import annotations

import os
import stat
import subprocess
import textwrap
from pathlib import Path

import pytest
import xattr

from provision9p.boot.libvirt_xml import libvirt_domain_xml
from provision9p.boot.qemu_argv import BootFiles, fsdev_args
from provision9p.errors import UsageError
from provision9p.lab import validate_text
from provision9p.lab.model import MAPPED_MODELS, SECURITY_MODELS, Share
from provision9p.qemu_user import qemu_user
from provision9p.rootfs.metadata import open_store
from provision9p.rootfs.metadata.stores import (
    MappedFileStore,
    MappedStore,
    PlainStore,
    XattrStore,
)
from provision9p.rootfs.security import MODELS, OwnerOnHost, model_of, security_model

HOST_UID, HOST_GID = 4321, 4322


def test_one_object_per_canonical_name_the_lab_accepts() -> None:
    assert sorted(MODELS) == sorted(SECURITY_MODELS)
    assert sorted(n for n, m in MODELS.items() if m.mapped) == sorted(MAPPED_MODELS)
    assert all(security_model(n).name == n for n in SECURITY_MODELS)


def test_the_alias_mapped_ends_at_validation() -> None:
    lab = validate_text(textwrap.dedent("""
        guests:
          web:
            rootfs: {security_model: mapped}
        """), "lab.yml", Path("/srv/lab"))
    root = lab.guest("web").root
    assert root.security_model == "mapped-xattr"
    assert model_of(root) is MODELS["mapped-xattr"]
    with pytest.raises(ValueError, match="unknown security model 'mapped'"):
        security_model("mapped")


def test_what_each_model_tells_qemu_libvirt_and_verify() -> None:
    table = {m.name: (m.fsdev_options(), m.libvirt_accessmode, m.qemu_needs_root,
                      m.needs_user_xattrs, m.owner_on_host) for m in MODELS.values()}
    assert table == {
        "mapped-xattr": (["security_model=mapped-xattr"], "mapped", False, True,
                         OwnerOnHost.XATTRS),
        "mapped-file": (["security_model=mapped-file"], None, False, False,
                        OwnerOnHost.METADATA_FILES),
        "passthrough": (["security_model=passthrough"], "passthrough", True, False,
                        OwnerOnHost.HOST_OWNER),
        "none": (["security_model=none"], "squash", False, False, OwnerOnHost.NOT_STORED),
    }
    kept = {o for o in OwnerOnHost if o.guest_owner_kept}
    apart = {o for o in OwnerOnHost if o.kept_apart}
    assert kept == {OwnerOnHost.XATTRS, OwnerOnHost.METADATA_FILES, OwnerOnHost.HOST_OWNER}
    assert apart == {OwnerOnHost.XATTRS, OwnerOnHost.METADATA_FILES}


def test_fsdev_and_qemu_user_come_from_the_model() -> None:
    share = Share(path=Path("/srv/x"), mount_tag="x", security_model="mapped-file")
    assert fsdev_args(share, "fs0")[1] == "local,id=fs0,path=/srv/x,security_model=mapped-file"
    assert qemu_user(Share(path=Path("/srv/x"), mount_tag="x",
                           security_model="passthrough")).is_root


def test_one_passthrough_share_anywhere_runs_qemu_as_root() -> None:
    """The lab warns "QEMU will run as root" for an extra passthrough share: so it must."""
    guest = validate_text(textwrap.dedent("""
        allow_passthrough: true
        guests:
          web:
            shares:
              - {path: data, mount_tag: data, mount: /mnt/data, security_model: passthrough}
        """), "lab.yml", Path("/srv/lab")).guest("web")
    assert not model_of(guest.root).qemu_needs_root
    assert qemu_user(guest, create=False).is_root


def test_libvirt_refuses_mapped_file_naming_what_works() -> None:
    guest = validate_text(textwrap.dedent("""
        guests:
          web:
            rootfs: {security_model: mapped-file}
        """), "lab.yml", Path("/srv/lab")).guest("web")
    run = BootFiles(kernel=Path("/k"), initrd=None, ssh_port=10022,
                    console_log=Path("/c"), qmp_socket=Path("/q"), pidfile=Path("/p"),
                    accel="tcg")
    with pytest.raises(UsageError) as info:
        libvirt_domain_xml(guest, run)
    assert info.value.message == "libvirt has no access mode for mapped-file (share rootfs)"
    assert info.value.hint == "use mapped-xattr, passthrough or none for libvirt"


def test_the_mapped_stores_share_their_bodies() -> None:
    """Each mapped store says only where the fields live; every operation is MappedStore's."""
    own = {name for name, value in vars(MappedStore).items() if callable(value)}
    assert {"write_bytes", "mkdir", "symlink", "mknod", "chown", "chmod", "lstat",
            "readlink", "record"} <= own
    for cls in (XattrStore, MappedFileStore):
        overridden = {n for n, v in vars(cls).items() if callable(v) and n in own}
        assert overridden <= {"_fields", "_set_fields"}, cls


@pytest.mark.tree
@pytest.mark.parametrize("model", SECURITY_MODELS)
def test_every_store_gives_the_guest_the_same_view(tmp_path: Path, model: str) -> None:
    """The same operations through each model's store read back the same guest view."""
    root = tmp_path / "share"
    root.mkdir()
    os.chown(root, HOST_UID, HOST_GID)
    store = security_model(model).store(root, HOST_UID, HOST_GID)
    store.mkdir("d", 0o2750, 1000, 2000)
    store.write_bytes("d/f", b"data", 0o4755, 1000, 2000)
    store.symlink("d/f", "l", 1001, 2001)
    store.mknod("null", stat.S_IFCHR | 0o666, os.makedev(1, 3), 0, 0)
    store.mknod("fifo", stat.S_IFIFO | 0o620, 0, 0, 5)
    store.chown("d/f", 1002, 2002)
    store.chmod("d/f", 0o640)
    view = {rel: store.lstat(rel) for rel in ("d", "d/f", "l", "null", "fifo")}
    assert {rel: (st.mode, st.uid, st.gid) for rel, st in view.items()} == {
        "d": (stat.S_IFDIR | 0o2750, 1000, 2000),
        "d/f": (stat.S_IFREG | 0o640, 1002, 2002),
        "l": (stat.S_IFLNK | 0o777, 1001, 2001),
        "null": (stat.S_IFCHR | 0o666, 0, 0),
        "fifo": (stat.S_IFIFO | 0o620, 0, 5),
    }
    assert view["null"].rdev == os.makedev(1, 3)
    assert store.readlink("l") == "d/f"
    assert store.read_bytes("d/f") == b"data"
    assert store.listdir("") == ["d", "fifo", "l", "null"]
    with pytest.raises(FileExistsError):  # as symlink(2) and mknod(2): the name is taken
        store.symlink("elsewhere", "l", 0, 0)
    with pytest.raises(FileExistsError):
        store.mknod("fifo", stat.S_IFIFO | 0o600, 0, 0, 0)
    assert store.readlink("l") == "d/f" and store.lstat("fifo").gid == 5
    if security_model(model).mapped:  # QEMU's user owns the host side, 0600/0700
        for rel in ("d", "d/f", "l", "null"):
            st = os.lstat(root / rel)
            assert (st.st_uid, st.st_gid) == (HOST_UID, HOST_GID)
            assert stat.S_IMODE(st.st_mode) in (0o600, 0o700)
    for rel in ("d/f", "l", "null", "fifo"):
        store.unlink(rel)
    store.rmdir("d")
    assert store.listdir("") == []
    # mapped-file's bookkeeping for removed objects goes with them
    left = sorted(os.listdir(root))
    assert left in ([], [".virtfs_metadata"]), left
    if left:
        assert os.listdir(root / ".virtfs_metadata") == []


@pytest.mark.tree
def test_one_acl_mapping_serves_conversion_and_export(tmp_path: Path) -> None:
    """mapped-xattr moves an ACL to user.virtfs.<name> and reads it back under <name>;
    mapped-file and passthrough keep it where Linux keeps it."""
    for model in ("mapped-xattr", "mapped-file", "passthrough"):
        tree = tmp_path / model
        tree.mkdir()
        (tree / "f").write_text("x")
        subprocess.run(["setfacl", "-m", "u:1234:rw", str(tree / "f")], check=True)
        acl = xattr.get(str(tree / "f"), b"system.posix_acl_access")
        xattr.set(str(tree / "f"), b"user.note", b"kept")
        m = security_model(model)
        m.convert(tree, host_uid=HOST_UID, host_gid=HOST_GID)
        store = m.store(tree, HOST_UID, HOST_GID)
        assert store.guest_xattrs("f") == {b"system.posix_acl_access": acl,
                                           b"user.note": b"kept"}, model
        on_host = set(xattr.list(str(tree / "f")))
        assert store.acl_names[b"system.posix_acl_access"] in on_host, model
        out = tmp_path / f"{model}.out"
        m.export(tree, out)
        assert xattr.get(str(out / "f"), b"system.posix_acl_access") == acl, model


@pytest.mark.tree
@pytest.mark.parametrize("model", SECURITY_MODELS)
def test_a_new_share_directory(tmp_path: Path, model: str) -> None:
    """QEMU's user can write to it; a mapped guest sees root's 0755 directory."""
    path = tmp_path / "share"
    path.mkdir(mode=0o755)
    m = security_model(model)
    m.new_share_dir(path, HOST_UID, HOST_GID)
    host = os.lstat(path)
    want_host = (0, 0) if m.qemu_needs_root else (HOST_UID, HOST_GID)
    assert (host.st_uid, host.st_gid) == want_host
    guest = open_store(model, path, HOST_UID, HOST_GID).lstat("")
    if m.mapped:
        assert (guest.mode, guest.uid, guest.gid) == (stat.S_IFDIR | 0o755, 0, 0)
    else:
        assert isinstance(m.store(path), PlainStore)
