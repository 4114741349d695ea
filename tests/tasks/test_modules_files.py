"""copy, template, file, lineinfile, blockinfile, replace, stat on a real tree: each run
twice (the second changes nothing) and in check mode (nothing changes, the result says
what would)."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from provision9p.connect.tree import TreeConnection
from provision9p.errors import TaskError
from provision9p.rootfs.metadata import open_store
from provision9p.tasks.modules import MODULES, ModuleContext, coerce_args

ROLE = Path(__file__).parent  # replaced per test by the role fixture


@pytest.fixture(params=["passthrough", "mapped-xattr"])
def conn(tmp_path: Path, request: pytest.FixtureRequest) -> TreeConnection:
    tree = tmp_path / "tree"
    store = open_store(request.param, tree, 4321, 4321)
    tree.mkdir()
    store.chown("", 0, 0)
    c = TreeConnection(tree, store, "g")
    for d in ("/etc", "/home", "/srv", "/tmp"):
        c.mkdir(d)
    c.mkdir("/home/ann", mode=0o750, uid=1000, gid=1000)
    c.write_file("/etc/passwd", b"root:x:0:0::/root:/bin/sh\nann:x:1000:1000::/home/ann:/bin/sh\n")
    c.write_file("/etc/group", b"root:x:0:\nann:x:1000:\n")
    return c


@pytest.fixture
def role(tmp_path: Path) -> Path:
    r = tmp_path / "role"
    (r / "files/site/css").mkdir(parents=True)
    (r / "files/motd").write_text("hello\n")
    (r / "files/site/index.html").write_text("<h1>hi</h1>\n")
    (r / "files/site/css/a.css").write_text("p {}\n")
    (r / "templates").mkdir()
    (r / "templates/cfg.j2").write_text("name={{ name }}\n")
    return r


def run(conn: TreeConnection, module: str, check: bool = False, role: Path = ROLE,
        **args: Any) -> dict[str, Any]:
    ctx = ModuleContext(check=check, role_path=role, render=lambda t: t.replace(
        "{{ name }}", "web"))
    return MODULES[module].run(conn, coerce_args(module, args), ctx)


def twice(conn: TreeConnection, module: str, **args: Any) -> dict[str, Any]:
    """Check mode says it would change and changes nothing; the run changes; the
    second run does not."""
    snapshot = _snapshot(conn)
    assert run(conn, module, check=True, **args)["changed"]
    assert _snapshot(conn) == snapshot
    first = run(conn, module, **args)
    assert first["changed"]
    assert not run(conn, module, **args)["changed"]
    assert not run(conn, module, check=True, **args)["changed"]
    return first


def _snapshot(conn: TreeConnection) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def walk(top: str) -> None:
        for name in conn.listdir(top):
            path = f"{top.rstrip('/')}/{name}"
            st = conn.stat(path)
            assert st is not None
            out[path] = (st.mode, st.uid, st.gid, conn.read_file(path) if st.is_reg else None)
            if st.is_dir:
                walk(path)
    walk("/")
    return out


def mode_of(conn: TreeConnection, path: str) -> int:
    st = conn.stat(path)
    assert st is not None
    return stat.S_IMODE(st.mode)


# --- copy / template ------------------------------------------------------------

def test_copy_content_mode_owner(conn: TreeConnection) -> None:
    twice(conn, "copy", content="x=1\n", dest="/etc/x.conf", mode="u=rw,g=r,o=",
          owner="ann")
    st = conn.stat("/etc/x.conf")
    assert st is not None and (st.uid, stat.S_IMODE(st.mode)) == (1000, 0o640)


def test_copy_src_from_role_files_into_a_directory(conn: TreeConnection, role: Path) -> None:
    twice(conn, "copy", role=role, src="motd", dest="/srv/")
    assert conn.read_file("/srv/motd") == b"hello\n"


def test_copy_force_false_keeps_an_existing_file(conn: TreeConnection, role: Path) -> None:
    conn.write_file("/etc/motd", b"mine\n")
    res = run(conn, "copy", role=role, src="motd", dest="/etc/motd", force=False)
    assert not res["changed"] and conn.read_file("/etc/motd") == b"mine\n"
    assert run(conn, "copy", role=role, src="motd", dest="/etc/motd")["changed"]


def test_copy_backup_keeps_the_old_file(conn: TreeConnection) -> None:
    conn.write_file("/etc/a", b"old\n", mode=0o600)
    res = run(conn, "copy", content="new\n", dest="/etc/a", backup=True)
    assert res["backup_file"].startswith("/etc/a.") and res["backup_file"].endswith("~")
    assert conn.read_file(res["backup_file"]) == b"old\n"
    assert mode_of(conn, res["backup_file"]) == 0o600
    assert "backup_file" not in run(conn, "copy", content="new\n", dest="/etc/a", backup=True)


def test_copy_directory_trailing_slash_semantics(conn: TreeConnection, role: Path) -> None:
    twice(conn, "copy", role=role, src="site", dest="/srv", directory_mode="0750")
    assert conn.read_file("/srv/site/css/a.css") == b"p {}\n"
    assert mode_of(conn, "/srv/site/css") == 0o750
    twice(conn, "copy", role=role, src="site/", dest="/srv/www")
    assert conn.read_file("/srv/www/index.html") == b"<h1>hi</h1>\n"
    assert conn.stat("/srv/www/site") is None


def test_copy_remote_src_file_and_directory(conn: TreeConnection) -> None:
    conn.mkdir("/srv/a")
    conn.write_file("/srv/a/one", b"1\n")
    twice(conn, "copy", src="/srv/a/one", dest="/etc/one", remote_src=True)
    assert conn.read_file("/etc/one") == b"1\n"
    twice(conn, "copy", src="/srv/a/", dest="/srv/b", remote_src=True)
    assert conn.read_file("/srv/b/one") == b"1\n"


def test_template_renders_from_templates_dir(conn: TreeConnection, role: Path) -> None:
    twice(conn, "template", role=role, src="cfg.j2", dest="/etc/cfg", mode="0600")
    assert conn.read_file("/etc/cfg") == b"name=web\n"


def test_validate_without_a_placeholder_fails_and_writes_nothing(
        conn: TreeConnection) -> None:
    # validate runs a command, which needs a tree with programs: test_debian_tree has
    # the real runs. Here: the %s rule, checked before anything is written.
    with pytest.raises(TaskError, match="validate must contain %s"):
        run(conn, "copy", content="x", dest="/etc/v", validate="visudo -c")
    assert conn.stat("/etc/v") is None


# --- file -------------------------------------------------------------------------

def test_file_directory_recurse_with_symbolic_mode(conn: TreeConnection) -> None:
    twice(conn, "file", path="/srv/d/e", state="directory", mode="0700")
    conn.write_file("/srv/d/e/f", b"", mode=0o600)
    res = twice(conn, "file", path="/srv/d", state="directory", recurse=True,
                mode="go+rX", owner="ann")
    assert res["path"] == "/srv/d"
    assert mode_of(conn, "/srv/d/e") == 0o755 and mode_of(conn, "/srv/d/e/f") == 0o644
    st = conn.stat("/srv/d/e/f")
    assert st is not None and st.uid == 1000


def test_file_touch_reports_changed_each_time_as_ansible(conn: TreeConnection) -> None:
    assert run(conn, "file", path="/etc/t", state="touch", mode="0640")["changed"]
    assert mode_of(conn, "/etc/t") == 0o640
    assert run(conn, "file", path="/etc/t", state="touch")["changed"]
    assert run(conn, "file", path="/etc/new", state="touch", check=True)["changed"]
    assert conn.stat("/etc/new") is None


def test_file_link_needs_force_to_replace_a_file(conn: TreeConnection) -> None:
    conn.write_file("/etc/target", b"t")
    twice(conn, "file", path="/etc/l", src="/etc/target", state="link")
    assert conn.readlink("/etc/l") == "/etc/target"
    conn.write_file("/etc/plain", b"p")
    with pytest.raises(TaskError, match="refusing to turn the file /etc/plain"):
        run(conn, "file", path="/etc/plain", src="target", state="link")
    twice(conn, "file", path="/etc/plain", src="target", state="link", force=True)
    with pytest.raises(TaskError, match="src nowhere does not exist"):
        run(conn, "file", path="/etc/dangling", src="nowhere", state="link")


def test_file_follow_sets_the_targets_mode(conn: TreeConnection) -> None:
    conn.write_file("/etc/real", b"r", mode=0o600)
    conn.symlink("real", "/etc/alias")
    twice(conn, "file", path="/etc/alias", mode="0644")
    assert mode_of(conn, "/etc/real") == 0o644


def test_file_absent(conn: TreeConnection) -> None:
    conn.write_file("/etc/gone", b"")
    twice(conn, "file", path="/etc/gone", state="absent")


# --- lineinfile -------------------------------------------------------------------

CFG = b"# top\nPort 22\n#PermitRootLogin yes\nUsePAM yes\nMatch all\n"


def test_lineinfile_insertbefore_regex(conn: TreeConnection) -> None:
    # Before the fix insertbefore with a regexp was accepted and ignored (appended).
    conn.write_file("/etc/ssh_config", CFG)
    twice(conn, "lineinfile", path="/etc/ssh_config", line="X11Forwarding no",
          insertbefore="^Match")
    assert conn.read_file("/etc/ssh_config") == (
        b"# top\nPort 22\n#PermitRootLogin yes\nUsePAM yes\nX11Forwarding no\nMatch all\n")


def test_lineinfile_insertafter_regex_firstmatch_and_bof(conn: TreeConnection) -> None:
    conn.write_file("/etc/c", b"a=1\nb=2\na=3\n")
    twice(conn, "lineinfile", path="/etc/c", line="new", insertafter="^a=", firstmatch=True)
    assert conn.read_file("/etc/c") == b"a=1\nnew\nb=2\na=3\n"
    twice(conn, "lineinfile", path="/etc/c", line="last-a", insertafter="^a=")
    assert conn.read_file("/etc/c") == b"a=1\nnew\nb=2\na=3\nlast-a\n"
    twice(conn, "lineinfile", path="/etc/c", line="# head", insertbefore="BOF")
    assert conn.read_file("/etc/c").startswith(b"# head\na=1\n")


def test_lineinfile_regexp_replaces_last_match_and_backrefs(conn: TreeConnection) -> None:
    conn.write_file("/etc/ssh_config", CFG)
    twice(conn, "lineinfile", path="/etc/ssh_config", regexp="^#?PermitRootLogin",
          line="PermitRootLogin no")
    assert b"\nPermitRootLogin no\nUsePAM" in conn.read_file("/etc/ssh_config")
    twice(conn, "lineinfile", path="/etc/ssh_config", regexp=r"^Port (22)$",
          line=r"Port \g<1>0", backrefs=True)
    assert b"\nPort 220\n" in conn.read_file("/etc/ssh_config")
    # backrefs and no match: nothing changes, nothing is appended
    res = run(conn, "lineinfile", path="/etc/ssh_config", regexp="^Nope (.*)", line=r"\1",
              backrefs=True)
    assert not res["changed"]


def test_lineinfile_search_string_absent_and_create(conn: TreeConnection) -> None:
    conn.write_file("/etc/c", b"a.b = 1\nkeep\n")
    twice(conn, "lineinfile", path="/etc/c", search_string="a.b =", line="a.b = 2")
    assert conn.read_file("/etc/c") == b"a.b = 2\nkeep\n"
    res = twice(conn, "lineinfile", path="/etc/c", regexp="^a\\.b", state="absent")
    assert res["found"] == 1 and conn.read_file("/etc/c") == b"keep\n"
    twice(conn, "lineinfile", path="/srv/new/file", line="x", create=True)
    assert conn.read_file("/srv/new/file") == b"x\n"


def test_lineinfile_diff_and_backup(conn: TreeConnection) -> None:
    conn.write_file("/etc/c", b"a\n")
    res = run(conn, "lineinfile", path="/etc/c", line="b", backup=True)
    assert res["diff"]["before"] == "a\n" and res["diff"]["after"] == "a\nb\n"
    assert conn.read_file(res["backup"]) == b"a\n"


# --- blockinfile / replace --------------------------------------------------------

def test_blockinfile_insertafter_and_marker(conn: TreeConnection) -> None:
    conn.write_file("/etc/hosts", b"127.0.0.1 localhost\n::1 localhost\n")
    twice(conn, "blockinfile", path="/etc/hosts", block="10.0.0.2 web", insertafter="^127",
          marker="# {mark} lab")
    assert conn.read_file("/etc/hosts") == (b"127.0.0.1 localhost\n# BEGIN lab\n10.0.0.2 web\n"
                                            b"# END lab\n::1 localhost\n")
    twice(conn, "blockinfile", path="/etc/hosts", block="10.0.0.3 db", marker="# {mark} lab")
    assert b"10.0.0.3 db\n# END lab\n::1" in conn.read_file("/etc/hosts")
    twice(conn, "blockinfile", path="/etc/hosts", marker="# {mark} lab", state="absent")
    assert conn.read_file("/etc/hosts") == b"127.0.0.1 localhost\n::1 localhost\n"


def test_replace_multiline_between_after_and_before(conn: TreeConnection) -> None:
    conn.write_file("/etc/r", b"x=1\n[main]\nx=2\nx=3\n[other]\nx=4\n")
    res = twice(conn, "replace", path="/etc/r", regexp=r"^x=(\d)$", replace=r"y=\1",
                after=r"\[main\]", before=r"\[other\]")
    assert res["msg"] == "2 replacements made"
    assert conn.read_file("/etc/r") == b"x=1\n[main]\ny=2\ny=3\n[other]\nx=4\n"
    res = run(conn, "replace", path="/etc/r", regexp="x", after="nomatch")
    assert not res["changed"] and "did not match" in res["msg"]
    with pytest.raises(TaskError, match="does not exist"):
        run(conn, "replace", path="/etc/none", regexp="x")


def test_stat_reports_names_and_checksum(conn: TreeConnection) -> None:
    conn.write_file("/home/ann/f", b"abc", mode=0o640, uid=1000, gid=1000)
    st = run(conn, "stat", path="/home/ann/f", checksum_algorithm="sha256")["stat"]
    assert st["pw_name"] == "ann" and st["gr_name"] == "ann" and st["mode"] == "0640"
    assert st["checksum"] == ("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    assert st["rusr"] and not st["xusr"] and st["rgrp"] and not st["roth"]
    assert run(conn, "stat", path="/nope")["stat"] == {"exists": False}


def test_file_touch_preserving_times_is_idempotent(conn: TreeConnection) -> None:
    twice(conn, "file", path="/etc/flag", state="touch", mode="0600",
          modification_time="preserve", access_time="preserve")
    assert mode_of(conn, "/etc/flag") == 0o600
    with pytest.raises(TaskError, match="must be one of preserve, now"):
        run(conn, "file", path="/etc/flag", state="touch", modification_time="202401010000")


def test_copy_and_template_follow_write_through_a_link(conn: TreeConnection,
                                                       role: Path) -> None:
    conn.write_file("/etc/real.conf", b"old\n")
    conn.symlink("real.conf", "/etc/link.conf")
    twice(conn, "copy", content="new\n", dest="/etc/link.conf", follow=True)
    assert conn.readlink("/etc/link.conf") == "real.conf"
    assert conn.read_file("/etc/real.conf") == b"new\n"
    twice(conn, "template", role=role, src="cfg.j2", dest="/etc/link.conf", follow=True)
    assert conn.read_file("/etc/real.conf") == b"name=web\n"
    twice(conn, "copy", content="replaced\n", dest="/etc/link.conf")
    st = conn.stat("/etc/link.conf")
    assert st is not None and st.is_reg
