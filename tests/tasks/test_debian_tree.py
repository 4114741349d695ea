"""Modules that run programs (useradd, apt, systemctl) and the shipped roles, on a copy
of a real debootstrapped tree through the tree connection, as the build runs them."""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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
    tree = tmp_path / "tree"
    subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(tree)], check=True)
    with TreeConnection(tree, PlainStore(tree), "g") as c:
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
