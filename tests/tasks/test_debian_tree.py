"""Modules that run programs (useradd, apt, systemctl) and the shipped roles, on a copy
of a real debootstrapped tree through the tree connection, as the build runs them."""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scratch_tree import scratch_tree

from provision9p.connect.tree import TreeConnection
from provision9p.errors import TaskError
from provision9p.host.mirror import host_mirror
from provision9p.lab import load_lab
from provision9p.lab.model import RootfsSpec
from provision9p.rootfs.debootstrap import base_tree
from provision9p.rootfs.metadata.stores import PlainStore
from provision9p.tasks.engine import BriefReporter, run_play
from provision9p.tasks.modules import MODULES, ModuleContext, coerce_args

pytestmark = [pytest.mark.network]

# Every test lab asks for these packages, so the whole suite debootstraps one base tree
# (acl for getfacl in the fidelity checks, python3 and python3-apt for ansible-playbook).
SUITE_PACKAGES = ("acl", "python3", "python3-apt")


@pytest.fixture(scope="module")
def base() -> Path:
    if os.geteuid() != 0:
        pytest.fail("these tests need root (debootstrap, chroot), as CI has")
    return base_tree(RootfsSpec(packages=SUITE_PACKAGES), "amd64", host_mirror()).path


@pytest.fixture
def conn(base: Path, tmp_path: Path) -> Iterator[TreeConnection]:
    with scratch_tree(base, tmp_path / "scratch") as tree, \
            TreeConnection(tree, PlainStore(tree), "g") as c:
        yield c


def run(conn: TreeConnection, module: str, check: bool = False, **args: Any) -> dict[str, Any]:
    ctx = ModuleContext(check=check, role_path=Path("/nonexistent"), render=lambda t: t)
    return MODULES[module].run(conn, coerce_args(module, args), ctx)


def passwd(conn: TreeConnection, name: str) -> list[str] | None:
    for line in conn.read_file("/etc/passwd").decode().splitlines():
        if line.split(":")[0] == name:
            return line.split(":")
    return None


def test_group_and_user_created_changed_and_removed(conn: TreeConnection) -> None:
    assert run(conn, "group", name="lab", gid=2000)["changed"]
    assert not run(conn, "group", name="lab", gid=2000)["changed"]
    assert run(conn, "user", check=True, name="ann", uid=1500)["changed"]
    assert passwd(conn, "ann") is None  # check mode ran nothing
    res = run(conn, "user", name="ann", uid=1500, group="lab", groups=["users"],
              shell="/bin/bash")
    assert res["changed"] and res["uid"] == 1500 and res["group"] == 2000
    assert passwd(conn, "ann") == ["ann", "x", "1500", "2000", "", "/home/ann", "/bin/bash"]
    home = conn.stat("/home/ann")
    assert home is not None and home.is_dir and (home.uid, home.gid) == (1500, 2000)
    assert "ann" in conn.read_file("/etc/group").decode().split("\nusers:")[1].split("\n")[0]
    assert not run(conn, "user", name="ann", uid=1500, group="lab", groups=["users"],
                   shell="/bin/bash")["changed"]
    assert run(conn, "user", name="ann", shell="/bin/sh")["changed"]
    assert passwd(conn, "ann")[6] == "/bin/sh"  # type: ignore[index]
    assert run(conn, "user", name="ann", state="absent", remove=True)["changed"]
    assert passwd(conn, "ann") is None and conn.stat("/home/ann") is None
    assert not run(conn, "user", name="ann", state="absent")["changed"]


def test_user_with_unknown_group_fails_clearly(conn: TreeConnection) -> None:
    with pytest.raises(TaskError, match="no group 'nope'"):
        run(conn, "user", name="bob", group="nope")


def test_apt_knows_what_is_installed(conn: TreeConnection) -> None:
    assert not run(conn, "apt", name=["bash", "openssh-server"])["changed"]
    assert not run(conn, "apt", name="hello", state="absent")["changed"]
    res = run(conn, "apt", check=True, name="hello")
    assert res["changed"] and "hello" in res["msg"]
    assert conn.stat("/usr/bin/hello") is None


def test_apt_installs_in_the_chroot_and_starts_nothing(conn: TreeConnection) -> None:
    res = run(conn, "apt", name="hello")
    assert res["changed"] and conn.stat("/usr/bin/hello") is not None
    assert not run(conn, "apt", name="hello")["changed"]
    assert run(conn, "apt", name="hello", state="absent")["changed"]
    assert conn.stat("/usr/bin/hello") is None
    # The session's policy-rc.d and host resolv.conf go away with the connection.
    conn.close()
    assert conn.stat("/usr/sbin/policy-rc.d") is None


def test_service_enable_disable_offline(conn: TreeConnection) -> None:
    assert run(conn, "service", name="ssh", enabled=True, state="started")["changed"] is False
    assert run(conn, "systemd", name="ssh", enabled=False)["changed"]
    assert conn.stat("/etc/systemd/system/multi-user.target.wants/ssh.service") is None
    assert run(conn, "systemd", name="ssh", enabled=True)["changed"]
    assert conn.stat("/etc/systemd/system/multi-user.target.wants/ssh.service") is not None
    assert run(conn, "systemd", name="ssh", masked=True)["changed"]
    assert conn.readlink("/etc/systemd/system/ssh.service") == "/dev/null"
    assert run(conn, "systemd", name="ssh", masked=False)["changed"]
    with pytest.raises(TaskError, match=r"no unit 'nosuch\.service'"):
        run(conn, "service", name="nosuch.service", enabled=True)


def test_sysctl_and_mount_write_their_files(conn: TreeConnection) -> None:
    assert run(conn, "sysctl", name="vm.swappiness", value=10)["changed"]
    assert run(conn, "sysctl", name="vm.swappiness", value="10")["changed"] is False
    assert b"vm.swappiness=10\n" in conn.read_file("/etc/sysctl.conf")
    assert run(conn, "sysctl", name="vm.swappiness", value=20)["changed"]
    assert conn.read_file("/etc/sysctl.conf").count(b"vm.swappiness") == 1
    opts = "trans=virtio,version=9p2000.L,nofail"
    res = run(conn, "mount", src="data", path="/mnt/my data", fstype="9p", opts=opts,
              state="mounted")
    assert res["changed"] and conn.stat("/mnt/my data") is not None
    assert f"data /mnt/my\\040data 9p {opts} 0 0" in conn.read_file("/etc/fstab").decode()
    assert not run(conn, "mount", src="data", path="/mnt/my data", fstype="9p", opts=opts,
                   state="mounted")["changed"]
    assert run(conn, "mount", path="/mnt/my data", state="absent")["changed"]
    assert "my\\040data" not in conn.read_file("/etc/fstab").decode()


def test_the_default_labs_roles_converge_on_the_tree(conn: TreeConnection) -> None:
    lab = load_lab(None)
    guest = lab.guests[0]
    out = io.StringIO()
    first = run_play(conn, guest, lab, reporter=BriefReporter("tree", out=out))
    assert first.changed > 0 and first.failed == 0
    second = run_play(conn, guest, lab, reporter=BriefReporter("tree", out=out))
    assert second.changed == 0, out.getvalue()
    fstab = conn.read_file("/etc/fstab").decode()
    assert any(line.startswith("data /mnt/data 9p trans=virtio,") for line in fstab.splitlines())
    assert conn.stat("/mnt/data") is not None
    assert passwd(conn, "demo") == ["demo", "x", "1000", "2000", "", "/home/demo", "/bin/bash"]
    assert conn.read_file("/etc/hostname") == b"demo\n"
    assert conn.readlink("/etc/localtime") == "/usr/share/zoneinfo/Etc/UTC"


def test_the_base_role_keeps_the_lab_block_in_etc_hosts(conn: TreeConnection,
                                                        tmp_path: Path) -> None:
    """In a lab of several guests the base role writes /etc/hosts with the lab's block
    (provision9p_hosts_block), so the lab's pass finds nothing to rewrite and the roles
    pass nothing to change on the next `up` (before: both rewrote it on every `up`)."""
    from provision9p.lab.network import with_hosts_block
    from provision9p.rootfs.guest_setup import lab_hosts_block

    (tmp_path / "lab.yml").write_text(
        "name: pair\ndefaults:\n  roles: [base]\nguests:\n  one: {}\n  two: {}\n")
    lab = load_lab(tmp_path / "lab.yml")
    out = io.StringIO()
    first = run_play(conn, lab.guest("one"), lab, reporter=BriefReporter("tree", out=out))
    assert first.failed == 0, out.getvalue()
    hosts = conn.read_file("/etc/hosts").decode()
    block = lab_hosts_block(lab)
    assert block is not None and "two.pair two" in block
    assert with_hosts_block(hosts, lab.name, block) == hosts, hosts  # the pass: no change
    again = run_play(conn, lab.guest("one"), lab, reporter=BriefReporter("tree", out=out))
    assert again.changed == 0, out.getvalue()


@contextlib.contextmanager
def _serve(root: Path) -> Iterator[str]:
    """A plain HTTP server on the host's loopback for one directory."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def _ctx_run(conn: TreeConnection, module: str, role: Path, check: bool = False,
             **args: Any) -> dict[str, Any]:
    ctx = ModuleContext(check=check, role_path=role, render=lambda t: t)
    return MODULES[module].run(conn, coerce_args(module, args), ctx)


def test_commands_validate_hard_links_touch_getent_on_a_real_tree(
        conn: TreeConnection) -> None:
    res = run(conn, "command", argv=["cat"], stdin="hi there")
    assert res["changed"] and res["stdout"] == "hi there" and res["rc"] == 0
    assert run(conn, "shell", cmd="echo ${BASH_VERSION:+bash}", executable="/bin/bash")[
        "stdout"] == "bash"
    assert run(conn, "command", cmd="pwd", chdir="/etc")["stdout"] == "/etc"
    assert not run(conn, "command", cmd="false", creates="/etc/hostname")["changed"]
    assert run(conn, "command", cmd="true", check=True)["skipped"]
    assert run(conn, "command", cmd="true", removes="/etc/hostname", check=True)["changed"]
    assert run(conn, "command", cmd="false")["failed"]
    # validate: the new content is judged on a temporary copy before it is put in place
    with pytest.raises(TaskError, match="failed to validate"):
        run(conn, "copy", content="bad\n", dest="/etc/v.conf", validate="grep -q ok %s")
    assert conn.stat("/etc/v.conf") is None
    assert run(conn, "copy", content="ok\n", dest="/etc/v.conf", validate="grep -q ok %s")[
        "changed"]
    with pytest.raises(TaskError, match="failed to validate"):
        run(conn, "lineinfile", path="/etc/v.conf", regexp="^ok", line="broken",
            validate="grep -q ^ok %s")
    assert conn.read_file("/etc/v.conf") == b"ok\n"
    assert not any(n.startswith(".provision9p-validate") for n in conn.listdir("/tmp"))
    # state=hard: a second name for the same inode, once
    assert run(conn, "file", path="/etc/v.hard", src="/etc/v.conf", state="hard")["changed"]
    assert not run(conn, "file", path="/etc/v.hard", src="/etc/v.conf", state="hard")[
        "changed"]
    assert os.stat(conn.tree / "etc/v.hard").st_ino == os.stat(conn.tree / "etc/v.conf").st_ino
    # touch: new times on an existing file
    os.utime(conn.tree / "etc/v.conf", (1_000_000, 1_000_000))
    assert run(conn, "file", path="/etc/v.conf", state="touch")["changed"]
    assert os.stat(conn.tree / "etc/v.conf").st_mtime > 1_000_000
    # getent through the guest's own getent
    res = run(conn, "getent", database="passwd", key="root")
    assert res["ansible_facts"]["getent_passwd"]["root"][:2] == ["x", "0"]
    res = run(conn, "getent", database="services", key="ssh", fail_key=False)
    assert "getent_services" in res["ansible_facts"]


def test_user_password_groups_append_and_move_home(conn: TreeConnection) -> None:
    hashed = "$6$saltsalt$" + "a" * 86
    res = run(conn, "user", name="bob", password=hashed, groups="users", shell="/bin/sh")
    assert res["changed"]
    shadow = conn.read_file("/etc/shadow").decode()
    assert f"bob:{hashed}:" in shadow
    assert not run(conn, "user", name="bob", password=hashed, groups=["users"])["changed"]
    assert not run(conn, "user", name="bob", password="other", update_password="on_create")[
        "changed"]
    assert run(conn, "user", name="bob", groups="audio", append=True)["changed"]
    assert not run(conn, "user", name="bob", groups="audio", append=True)["changed"]
    group = conn.read_file("/etc/group").decode()
    assert any(ln.startswith("users:") and "bob" in ln for ln in group.splitlines())
    assert any(ln.startswith("audio:") and "bob" in ln for ln in group.splitlines())
    assert run(conn, "user", name="bob", home="/srv/bob", move_home=True)["changed"]
    assert conn.stat("/srv/bob") is not None and conn.stat("/home/bob") is None
    assert run(conn, "user", name="bob", expires=1_900_000_000, password_lock=True)["changed"]
    assert not run(conn, "user", name="bob", expires=1_900_000_000, password_lock=True)[
        "changed"]
    fields = conn.read_file("/etc/shadow").decode().split("\nbob:")[1].split(":")
    assert fields[0].startswith("!") and fields[6] == str(1_900_000_000 // 86400)
    assert run(conn, "user", name="bob", expires=-1, password_lock=False)["changed"]
    assert not run(conn, "user", name="bob", expires=-1, password_lock=False)["changed"]
    assert run(conn, "group", name="ops", gid=2500, system=True)["changed"]
    assert not run(conn, "group", name="ops", gid=2500)["changed"]


def test_apt_deb_package_cache_and_autoremove_offline(conn: TreeConnection,
                                                      tmp_path: Path) -> None:
    control = ("Package: p9-hello\nVersion: 1.0\nArchitecture: all\n"
               "Maintainer: t <t@example.org>\nDescription: test\n")
    conn.mkdir("/tmp/pkg")
    conn.mkdir("/tmp/pkg/DEBIAN")
    conn.write_file("/tmp/pkg/DEBIAN/control", control.encode())
    run(conn, "command", argv=["dpkg-deb", "--build", "/tmp/pkg", "/tmp/p9-hello.deb"])
    assert run(conn, "apt", deb="/tmp/p9-hello.deb", check=True)["changed"]
    assert not run(conn, "package", name="p9-hello", state="absent")["changed"]
    assert run(conn, "apt", deb="/tmp/p9-hello.deb")["changed"]
    assert not run(conn, "apt", deb="/tmp/p9-hello.deb")["changed"]
    assert not run(conn, "package", name=["p9-hello", "bash"])["changed"]
    www = tmp_path / "www"
    www.mkdir()
    (www / "p9-hello.deb").write_bytes(conn.read_file("/tmp/p9-hello.deb"))
    with _serve(www) as url:
        assert not run(conn, "apt", deb=f"{url}/p9-hello.deb")["changed"]
    assert not run(conn, "apt", name="p9-hello=1.*")["changed"]
    assert run(conn, "apt", name="p9-hello=2.*", check=True)["changed"]
    assert run(conn, "package", name="p9-hello", state="absent")["changed"]
    assert not run(conn, "apt", autoremove=True)["changed"]
    # the tree was built from these very lists: nothing to upgrade, nothing to clean
    assert not run(conn, "apt", upgrade="dist")["changed"]
    assert not run(conn, "apt", upgrade="yes", autoclean=True)["changed"]
    assert not run(conn, "apt", name="bash", state="latest")["changed"]
    res = run(conn, "apt", update_cache=True, cache_valid_time=10**9)
    assert not res["changed"] and not res["cache_updated"]
    # debconf: preseed, once
    assert run(conn, "debconf", name="tzdata", question="tzdata/Areas", vtype="select",
               value="Europe")["changed"]
    assert not run(conn, "debconf", name="tzdata", question="tzdata/Areas", vtype="select",
                   value="Europe")["changed"]


def test_unarchive_tar_from_role_files_and_zip_needs_unzip(conn: TreeConnection,
                                                           tmp_path: Path) -> None:
    import tarfile
    import zipfile

    role = tmp_path / "role"
    src = tmp_path / "src/app-1.0"
    (src / "bin").mkdir(parents=True)
    (src / "bin/app").write_text("#!/bin/sh\necho app\n")
    (src / "README").write_text("read me\n")
    (role / "files").mkdir(parents=True)
    with tarfile.open(role / "files/app.tar.gz", "w:gz") as tf:
        tf.add(src, arcname="app-1.0")
    with zipfile.ZipFile(role / "files/app.zip", "w") as zf:
        zf.write(src / "README", "README")
    conn.mkdir("/opt/app")
    assert _ctx_run(conn, "unarchive", role, check=True, src="app.tar.gz",
                    dest="/opt/app")["changed"]
    assert conn.listdir("/opt/app") == []
    res = _ctx_run(conn, "unarchive", role, src="app.tar.gz", dest="/opt/app",
                   list_files=True, owner="nobody")
    assert res["changed"] and "app-1.0/bin/app" in res["files"]
    assert conn.read_file("/opt/app/app-1.0/README") == b"read me\n"
    st = conn.stat("/opt/app/app-1.0/README")
    assert st is not None and st.uid == 65534
    assert not _ctx_run(conn, "unarchive", role, src="app.tar.gz", dest="/opt/app",
                        owner="nobody")["changed"]
    conn.mkdir("/opt/flat")
    assert _ctx_run(conn, "unarchive", role, src="app.tar.gz", dest="/opt/flat",
                    extra_opts=["--strip-components=1"])["changed"]
    assert conn.stat("/opt/flat/bin/app") is not None
    assert not _ctx_run(conn, "unarchive", role, src="app.tar.gz", dest="/opt/flat",
                        extra_opts=["--strip-components=1"])["changed"]
    conn.remove("/opt/flat/README")
    assert _ctx_run(conn, "unarchive", role, src="app.tar.gz", dest="/opt/flat",
                    extra_opts=["--strip-components=1"])["changed"]
    assert not _ctx_run(conn, "unarchive", role, src="/opt/none.tgz", dest="/opt/flat",
                        remote_src=True, creates="/opt/flat/bin/app")["changed"]
    conn.mkdir("/opt/web")
    with _serve(role / "files") as url:
        assert _ctx_run(conn, "unarchive", role, src=f"{url}/app.tar.gz", dest="/opt/web",
                        remote_src=True)["changed"]
        assert not _ctx_run(conn, "unarchive", role, src=f"{url}/app.tar.gz",
                            dest="/opt/web", remote_src=True)["changed"]
    assert conn.read_file("/opt/web/app-1.0/README") == b"read me\n"
    conn.mkdir("/opt/zip")
    with pytest.raises(TaskError, match="unzip is not installed"):
        _ctx_run(conn, "unarchive", role, src="app.zip", dest="/opt/zip")
