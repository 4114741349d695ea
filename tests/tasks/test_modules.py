"""File-based modules on a real tree: each idempotent, each honest in check mode."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from provision9p.connect.tree import TreeConnection
from provision9p.rootfs.metadata import open_store
from provision9p.tasks.modules import MODULES, ModuleContext, coerce_args


@pytest.fixture(params=["passthrough", "mapped-xattr"])
def conn(tmp_path: Path, request: pytest.FixtureRequest) -> TreeConnection:
    tree = tmp_path / "tree"
    store = open_store(request.param, tree, 4321, 4321)
    tree.mkdir()
    store.chown("", 0, 0)
    c = TreeConnection(tree, store, "g")
    for d in ("/etc", "/home"):
        c.mkdir(d)
    c.mkdir("/home/ann", mode=0o750, uid=1000, gid=1000)
    c.write_file("/etc/passwd", b"root:x:0:0::/root:/bin/sh\nann:x:1000:1000::/home/ann:/bin/sh\n")
    c.write_file("/etc/group", b"root:x:0:\nann:x:1000:\n")
    return c


def run(conn: TreeConnection, module: str, check: bool = False, **args: Any) -> dict[str, Any]:
    ctx = ModuleContext(check=check, role_path=Path("/nonexistent"), render=lambda t: t)
    return MODULES[module].run(conn, coerce_args(module, args), ctx)


def test_blockinfile_inserts_replaces_removes(conn: TreeConnection) -> None:
    conn.write_file("/etc/cfg", b"a\nb\n")
    assert run(conn, "blockinfile", path="/etc/cfg", block="x=1\ny=2")["changed"]
    assert conn.read_file("/etc/cfg") == (b"a\nb\n# BEGIN ANSIBLE MANAGED BLOCK\nx=1\ny=2\n"
                                          b"# END ANSIBLE MANAGED BLOCK\n")
    assert not run(conn, "blockinfile", path="/etc/cfg", block="x=1\ny=2")["changed"]
    assert run(conn, "blockinfile", path="/etc/cfg", block="x=3")["changed"]
    assert b"x=3\n# END" in conn.read_file("/etc/cfg") and b"y=2" not in conn.read_file("/etc/cfg")
    assert run(conn, "blockinfile", path="/etc/cfg", state="absent")["changed"]
    assert conn.read_file("/etc/cfg") == b"a\nb\n"


def test_hostname(conn: TreeConnection) -> None:
    assert run(conn, "hostname", name="web")["changed"]
    assert conn.read_file("/etc/hostname") == b"web\n"
    assert not run(conn, "hostname", name="web")["changed"]


def test_authorized_key_once_with_the_users_owner(conn: TreeConnection) -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx ann@laptop"
    assert not run(conn, "authorized_key", check=True, user="ann", key=key).get("failed")
    assert conn.stat("/home/ann/.ssh") is None  # check mode made nothing
    assert run(conn, "authorized_key", user="ann", key=key)["changed"]
    assert not run(conn, "authorized_key", user="ann", key=key)["changed"]
    # as Ansible: the same blob with another comment or options replaces the line
    assert run(conn, "authorized_key", user="ann", key=key + " other comment")["changed"]
    assert run(conn, "authorized_key", user="ann", key=key, key_options='from="10.0.0.1"'
               )["changed"]
    assert conn.read_file("/home/ann/.ssh/authorized_keys") == (
        b'from="10.0.0.1" ' + key.encode() + b"\n")
    two = key + "\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOther bob@pc"
    assert run(conn, "authorized_key", user="ann", key=two, exclusive=True)["changed"]
    assert not run(conn, "authorized_key", user="ann", key=two, exclusive=True)["changed"]
    assert conn.read_file("/home/ann/.ssh/authorized_keys").count(b"ssh-ed25519") == 2
    st = conn.stat("/home/ann/.ssh/authorized_keys")
    assert st is not None and (st.uid, st.gid, stat.S_IMODE(st.mode)) == (1000, 1000, 0o600)
    d = conn.stat("/home/ann/.ssh")
    assert d is not None and (d.uid, stat.S_IMODE(d.mode)) == (1000, 0o700)
    assert run(conn, "authorized_key", user="ann", key=key, state="absent")["changed"]
    assert conn.read_file("/home/ann/.ssh/authorized_keys") == (
        b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOther bob@pc\n")
