"""set_fact, include_vars, assert, fail, debug, pause, timezone, cron, find, getent,
slurp, tempfile, apt_repository, debconf (reading), get_url on a tmp tree; the changing
ones run twice and in check mode."""

from __future__ import annotations

import base64
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provision9p.connect.tree import TreeConnection
from provision9p.errors import TaskError
from provision9p.rootfs.metadata import open_store
from provision9p.tasks.modules import MODULES, ModuleContext, coerce_args
from provision9p.tasks.modules.packages import repo_filename


@pytest.fixture(params=["passthrough", "mapped-xattr"])
def conn(tmp_path: Path, request: pytest.FixtureRequest) -> TreeConnection:
    tree = tmp_path / "tree"
    store = open_store(request.param, tree, 4321, 4321)
    tree.mkdir()
    store.chown("", 0, 0)
    c = TreeConnection(tree, store, "g")
    for d in ("/etc", "/home", "/srv", "/tmp", "/var", "/var/spool", "/var/spool/cron",
              "/usr", "/usr/share", "/usr/share/zoneinfo", "/usr/share/zoneinfo/Europe",
              "/usr/share/zoneinfo/Etc", "/etc/apt", "/etc/apt/sources.list.d"):
        c.mkdir(d)
    c.mkdir("/var/spool/cron/crontabs", mode=0o1730, gid=101)
    c.mkdir("/home/ann", mode=0o750, uid=1000, gid=1000)
    c.write_file("/etc/passwd", b"root:x:0:0::/root:/bin/sh\nann:x:1000:1000::/home/ann:/bin/sh\n")
    c.write_file("/etc/group", b"root:x:0:\ncrontab:x:101:\nann:x:1000:\n")
    c.write_file("/usr/share/zoneinfo/Europe/Paris", b"TZif-paris")
    c.write_file("/usr/share/zoneinfo/Etc/UTC", b"TZif-utc")
    c.symlink("/usr/share/zoneinfo/Etc/UTC", "/etc/localtime")
    c.write_file("/etc/apt/sources.list", b"deb http://deb.example/debian bookworm main\n")
    return c


def run(conn: TreeConnection, module: str, check: bool = False, role: Path | None = None,
        variables: dict[str, Any] | None = None, **args: Any) -> dict[str, Any]:
    ctx = ModuleContext(check=check, role_path=role or Path("/nonexistent"),
                        render=lambda t: t, variables=variables or {})
    return MODULES[module].run(conn, coerce_args(module, args), ctx)


def twice(conn: TreeConnection, module: str, **args: Any) -> dict[str, Any]:
    before = _files(conn)
    assert run(conn, module, check=True, **args)["changed"]
    assert _files(conn) == before
    first = run(conn, module, **args)
    assert first["changed"]
    assert not run(conn, module, **args)["changed"]
    return first


def _files(conn: TreeConnection, top: str = "/") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in conn.listdir(top):
        path = f"{top.rstrip('/')}/{name}"
        st = conn.stat(path)
        assert st is not None
        out[path] = (st.mode, st.uid, st.gid,
                     conn.read_file(path) if st.is_reg else
                     conn.readlink(path) if st.is_link else None)
        if st.is_dir:
            out.update(_files(conn, path))
    return out


# --- play-level modules -----------------------------------------------------------

def test_set_fact_returns_facts_and_checks_names(conn: TreeConnection) -> None:
    res = run(conn, "set_fact", a=1, b={"c": [1]}, cacheable=True)
    assert res == {"changed": False, "ansible_facts": {"a": 1, "b": {"c": [1]}}}
    with pytest.raises(TaskError, match="not a valid variable name"):
        run(conn, "set_fact", **{"bad-name": 1})


def test_include_vars_file_dir_name_and_filters(conn: TreeConnection, tmp_path: Path) -> None:
    role = tmp_path / "role"
    (role / "vars/os").mkdir(parents=True)
    (role / "vars/Debian.yml").write_text("pkg: apache2\nsvc: '{{ pkg }}'\n")
    (role / "vars/os/10-a.yml").write_text("x: 1\ny: 1\n")
    (role / "vars/os/20-b.yaml").write_text("y: 2\n")
    (role / "vars/os/skip.yml").write_text("y: 99\n")
    (role / "vars/os/notes.txt").write_text("not vars\n")
    (role / "extra.yml").write_text("z: 3\n")
    res = run(conn, "include_vars", role=role, file="Debian.yml")
    assert res["ansible_facts"] == {"pkg": "apache2", "svc": "{{ pkg }}"}
    assert run(conn, "include_vars", role=role, _raw_params="extra.yml")["ansible_facts"] == {
        "z": 3}
    res = run(conn, "include_vars", role=role, dir="os", ignore_files=["skip.yml"],
              ignore_unknown_extensions=True, name="osvars")
    assert res["ansible_facts"] == {"osvars": {"x": 1, "y": 2}}
    assert [Path(f).name for f in res["ansible_included_var_files"]] == ["10-a.yml",
                                                                          "20-b.yaml"]
    res = run(conn, "include_vars", role=role, dir="os", files_matching="^10-")
    assert res["ansible_facts"] == {"x": 1, "y": 1}
    with pytest.raises(TaskError, match="none of the extensions"):
        run(conn, "include_vars", role=role, dir="os")
    with pytest.raises(TaskError, match=r"could not find 'RedHat\.yml'"):
        run(conn, "include_vars", role=role, file="RedHat.yml")


def test_assert_fail_debug_pause(conn: TreeConnection) -> None:
    v = {"port": 22, "name": "web"}
    assert run(conn, "assert", variables=v, that=["port > 0", "name == 'web'"])[
        "msg"] == "All assertions passed"
    res = run(conn, "assert", variables=v, that="port > 100", fail_msg="low port")
    assert res["failed"] and res["msg"] == "low port" and res["assertion"] == "port > 100"
    assert run(conn, "assert", variables=v, that=["port < 1"], msg="m")["msg"] == "m"
    assert run(conn, "fail", msg="stop")["failed"]
    assert run(conn, "debug", variables=v, var="name") == {"changed": False, "name": "web"}
    assert run(conn, "debug", variables=v, var="nope")["nope"] == "VARIABLE IS NOT DEFINED!"
    assert run(conn, "debug", msg="hi", verbosity=2)["skipped"]
    assert run(conn, "pause", seconds=0)["user_input"] == ""


# --- system -----------------------------------------------------------------------

def test_timezone_link_and_file(conn: TreeConnection) -> None:
    res = twice(conn, "timezone", name="Europe/Paris")
    assert res["diff"] == {"before": {"name": "Etc/UTC"}, "after": {"name": "Europe/Paris"}}
    assert conn.readlink("/etc/localtime") == "/usr/share/zoneinfo/Europe/Paris"
    assert conn.read_file("/etc/timezone") == b"Europe/Paris\n"
    with pytest.raises(TaskError, match="no zone 'Mars/Base'"):
        run(conn, "timezone", name="Mars/Base")


def test_cron_user_crontab_as_ansible_writes_it(conn: TreeConnection) -> None:
    twice(conn, "cron", name="backup", minute="5", hour="2", job="/usr/local/bin/backup",
          user="ann")
    text = conn.read_file("/var/spool/cron/crontabs/ann")
    # `crontab`'s three header lines first: `crontab -l` hides up to three leading
    # comments, which would otherwise be the job's marker
    assert text.startswith(b"# DO NOT EDIT THIS FILE - edit the master and reinstall.\n")
    assert text.split(b"\n", 3)[3] == b"#Ansible: backup\n5 2 * * * /usr/local/bin/backup\n"
    st = conn.stat("/var/spool/cron/crontabs/ann")
    assert st is not None and (st.uid, st.gid, st.perm) == (1000, 101, 0o600)
    twice(conn, "cron", name="backup", minute="5", hour="3", job="/usr/local/bin/backup",
          user="ann", disabled=True)
    assert conn.read_file("/var/spool/cron/crontabs/ann").split(b"\n", 3)[3] == (
        b"#Ansible: backup\n#5 3 * * * /usr/local/bin/backup\n")
    twice(conn, "cron", name="PATH", env=True, job="/usr/bin:/bin", user="ann")
    assert conn.read_file("/var/spool/cron/crontabs/ann").split(b"\n", 3)[3].startswith(
        b"PATH=/usr/bin:/bin\n")
    twice(conn, "cron", name="backup", user="ann", state="absent")
    assert b"backup" not in conn.read_file("/var/spool/cron/crontabs/ann")


def test_cron_file_has_the_user_field(conn: TreeConnection) -> None:
    conn.mkdir("/etc/cron.d")
    res = twice(conn, "cron", name="reboot job", special_time="reboot", job="echo hi",
                cron_file="lab", user="root")
    assert res["jobs"] == ["reboot job"]
    assert conn.read_file("/etc/cron.d/lab") == b"#Ansible: reboot job\n@reboot root echo hi\n"


# --- reading the guest ------------------------------------------------------------

def test_find_patterns_regex_types_size_contains(conn: TreeConnection) -> None:
    conn.mkdir("/srv/logs")
    conn.mkdir("/srv/logs/old")
    conn.write_file("/srv/logs/a.log", b"ERROR one\n")
    conn.write_file("/srv/logs/b.log", b"x" * 2048)
    conn.write_file("/srv/logs/.hidden.log", b"")
    conn.write_file("/srv/logs/old/c.log", b"fine\n")
    conn.write_file("/srv/logs/c.txt", b"")
    res = run(conn, "find", paths="/srv/logs", patterns="*.log")
    assert sorted(f["path"] for f in res["files"]) == ["/srv/logs/a.log", "/srv/logs/b.log"]
    assert res["matched"] == 2 and res["examined"] == 4
    res = run(conn, "find", paths=["/srv/logs"], patterns=[r".*\.log$"], use_regex=True,
              recurse=True, hidden=True)
    assert res["matched"] == 4
    assert run(conn, "find", paths="/srv/logs", size="1k")["files"][0]["path"] == \
        "/srv/logs/b.log"
    assert [f["path"] for f in run(conn, "find", paths="/srv/logs", contains="ERROR",
                                   recurse=True)["files"]] == ["/srv/logs/a.log"]
    assert [f["path"] for f in run(conn, "find", paths="/srv/logs",
                                   file_type="directory")["files"]] == ["/srv/logs/old"]
    assert run(conn, "find", paths="/srv/logs", age="1d")["matched"] == 0
    assert run(conn, "find", paths="/nope")["skipped_paths"]


def test_getent_reads_the_colon_databases_without_commands(conn: TreeConnection) -> None:
    res = run(conn, "getent", database="passwd", key="ann")
    assert res["ansible_facts"] == {"getent_passwd": {"ann": ["x", "1000", "1000", "",
                                                              "/home/ann", "/bin/sh"]}}
    assert run(conn, "getent", database="group")["ansible_facts"]["getent_group"][
        "crontab"] == ["x", "101", ""]
    assert run(conn, "getent", database="passwd", key="bob")["failed"]
    assert run(conn, "getent", database="passwd", key="bob", fail_key=False)[
        "ansible_facts"] == {"getent_passwd": {"bob": None}}


def test_slurp_and_tempfile(conn: TreeConnection) -> None:
    conn.write_file("/etc/secret", b"\x00bin\xff")
    res = run(conn, "slurp", src="/etc/secret")
    assert base64.b64decode(res["content"]) == b"\x00bin\xff" and res["encoding"] == "base64"
    assert run(conn, "slurp", path="/etc/nope")["failed"]
    res = run(conn, "tempfile", state="directory", suffix=".build")
    assert res["changed"] and res["path"].startswith("/tmp/ansible.")
    assert res["path"].endswith(".build") and res["mode"] == "0700"
    other = run(conn, "tempfile")
    assert other["path"] != res["path"] and conn.stat(other["path"]) is not None
    assert run(conn, "tempfile", check=True)["skipped"]


# --- apt_repository / debconf -----------------------------------------------------

@pytest.mark.parametrize(("repo", "filename"), [
    ("deb http://dl.google.com/linux/chrome/deb/ stable main",
     "dl_google_com_linux_chrome_deb.list"),
    ("deb [arch=amd64 signed-by=/k.gpg] https://download.docker.com/linux/debian bookworm stable",
     "download_docker_com_linux_debian.list"),
    ("deb https://user:pw@repo.example.org/apt/ ./", "repo_example_org_apt.list"),
])
def test_apt_repository_names_the_file_as_ansible(repo: str, filename: str) -> None:
    assert repo_filename(repo, None) == filename
    assert repo_filename(repo, "mine") == "mine.list"


def test_apt_repository_present_and_absent(conn: TreeConnection) -> None:
    repo = "deb [signed-by=/k.gpg] http://dl.google.com/linux/chrome/deb/ stable main"
    res = twice(conn, "apt_repository", repo=repo, update_cache=False)
    path = "/etc/apt/sources.list.d/dl_google_com_linux_chrome_deb.list"
    assert res["sources_added"] == [path]
    assert conn.read_file(path) == (repo + "\n").encode()
    # already in sources.list (spacing differs): nothing to add
    assert not run(conn, "apt_repository", repo="deb  http://deb.example/debian bookworm main",
                   update_cache=False)["changed"]
    twice(conn, "apt_repository", repo=repo, state="absent", update_cache=False)
    assert conn.stat(path) is None


def test_debconf_reads_the_database_files(conn: TreeConnection) -> None:
    conn.mkdir("/var/cache")
    conn.mkdir("/var/cache/debconf")
    conn.write_file("/var/cache/debconf/config.dat", (
        b"Name: tzdata/Areas\nTemplate: tzdata/Areas\nValue: Europe\nOwners: tzdata\n"
        b"Flags: seen\n\nName: tzdata/Zones/Europe\nTemplate: tzdata/Zones/Europe\n"
        b"Value: Paris\nOwners: tzdata\n\n"))
    res = run(conn, "debconf", name="tzdata")
    assert res["current"] == {"tzdata/Areas": "Europe", "tzdata/Zones/Europe": "Paris"}
    assert not run(conn, "debconf", name="tzdata", question="tzdata/Areas", vtype="select",
                   value="Europe")["changed"]
    assert not run(conn, "debconf", name="tzdata", question="tzdata/Areas", vtype="seen",
                   value=True)["changed"]
    res = run(conn, "debconf", check=True, name="tzdata", question="tzdata/Areas",
              vtype="select", value="Asia")
    assert res["changed"] and res["diff"]["before"] == {"tzdata/Areas": "Europe"}


# --- get_url (tree phase: the host downloads) -------------------------------------

@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "tool.tar.gz").write_bytes(b"payload-1")
    digest = hashlib.sha256(b"payload-1").hexdigest()
    (root / "SHA256SUMS").write_text(f"{'0' * 64}  other.tar.gz\n{digest}  tool.tar.gz\n")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *a: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_get_url_checksum_file_and_idempotency(conn: TreeConnection, server: str) -> None:
    digest = hashlib.sha256(b"payload-1").hexdigest()
    res = twice(conn, "get_url", url=f"{server}/tool.tar.gz", dest="/srv/",
                checksum=f"sha256:{server}/SHA256SUMS", mode="0640")
    assert res["dest"] == "/srv/tool.tar.gz"
    assert conn.read_file("/srv/tool.tar.gz") == b"payload-1"
    conn.write_file("/srv/tool.tar.gz", b"tampered")
    assert run(conn, "get_url", url=f"{server}/tool.tar.gz", dest="/srv/tool.tar.gz",
               checksum=f"sha256:{digest}")["changed"]
    assert conn.read_file("/srv/tool.tar.gz") == b"payload-1"
    with pytest.raises(TaskError, match="expected 0000"):
        run(conn, "get_url", url=f"{server}/tool.tar.gz", dest="/srv/x",
            checksum="sha256:" + "0" * 64)
    assert conn.stat("/srv/x") is None
    with pytest.raises(TaskError, match="fetching"):
        run(conn, "get_url", url=f"{server}/missing", dest="/srv/m")


def test_get_url_file_url_names_a_file_of_the_guest(conn: TreeConnection) -> None:
    # In the tree phase the guest is the tree: file:// must not read the host's file.
    conn.write_file("/srv/src.txt", b"from the tree")
    digest = hashlib.sha256(b"from the tree").hexdigest()
    res = twice(conn, "get_url", url="file:///srv/src.txt", dest="/srv/copy.txt",
                checksum=f"sha256:{digest}")
    assert res["dest"] == "/srv/copy.txt"
    assert conn.read_file("/srv/copy.txt") == b"from the tree"
    with pytest.raises(TaskError, match="no file /etc/hostname-of-the-host in the guest"):
        run(conn, "get_url", url="file:///etc/hostname-of-the-host", dest="/srv/h")


def test_wait_for_a_path_its_content_and_a_timeout(conn: TreeConnection) -> None:
    conn.write_file("/srv/ready", b"state: booting\nstate: up 42\n")
    res = run(conn, "wait_for", path="/srv/ready", search_regex=r"up (\d+)", timeout=2)
    assert not res.get("failed") and res["match_groups"] == ["42"]
    assert not run(conn, "wait_for", path="/srv/gone", state="absent", timeout=1).get("failed")
    res = run(conn, "wait_for", path="/srv/never", timeout=1, sleep=1)
    assert res["failed"] and res["msg"] == "Timeout when waiting for file /srv/never"
    with pytest.raises(TaskError, match="only be waited for in a booted guest"):
        run(conn, "wait_for", port=22, timeout=1)


def test_sysctl_reads_booleans_as_ansible(conn: TreeConnection) -> None:
    assert run(conn, "sysctl", name="net.ipv4.ip_forward", value=True)["value"] == "1"
    assert conn.read_file("/etc/sysctl.conf") == b"net.ipv4.ip_forward=1\n"
    assert not run(conn, "sysctl", name="net.ipv4.ip_forward", value="yes")["changed"]
    assert run(conn, "sysctl", name="net.ipv4.ip_forward", value="off")["changed"]
    assert conn.read_file("/etc/sysctl.conf") == b"net.ipv4.ip_forward=0\n"
