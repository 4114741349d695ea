"""`inventory` and `ssh-config` against the real readers: ansible-inventory parses the
inventory, `ssh -G` resolves the config; the guests "run" as real processes that name
their pidfile, as QEMU does."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from lab.helpers import problems

from provision9p import inventory
from provision9p.cli import main
from provision9p.lab import LabSpec, validate_text
from provision9p.state import BootRecord, GuestState

pytestmark = pytest.mark.unit

LAB = """\
name: web-lab
guests:
  web:
    groups: [frontends, debian]
  db:
    groups: [debian]
  idle: {}
"""
ANSIBLE_INVENTORY = Path(sys.executable).with_name("ansible-inventory")


@pytest.fixture()
def lab(tmp_path: Path) -> Iterator[LabSpec]:
    (tmp_path / "lab.yml").write_text(LAB)
    spec = validate_text(LAB, str(tmp_path / "lab.yml"), tmp_path)
    procs = []
    for port, name in ((40001, "web"), (40002, "db")):
        st = GuestState.of(spec, spec.guest(name))
        st.run_dir.mkdir(parents=True)
        # A live process whose command line names the pidfile passes running_pid's check.
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)",
                                 str(st.pidfile)])
        procs.append(proc)
        st.pidfile.write_text(f"{proc.pid}\n")
        st.write_boot(BootRecord(ssh_port=port, accel="tcg", accel_reason="", argv=[],
                                 run_as="root", qemu_pid=proc.pid))
        st.write_host_key(f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{name}key")
    try:
        yield spec
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def _cli(capsys: pytest.CaptureFixture[str], lab: LabSpec, *args: str) -> tuple[int, str, str]:
    code = main(["-f", lab.source, *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_groups_as_ansible_reads_them(lab: LabSpec) -> None:
    assert inventory.group_map(lab) == {
        "all": ["web", "db", "idle"], "ungrouped": [], "web_lab": ["web", "db", "idle"],
        "frontends": ["web"], "debian": ["web", "db"]}
    assert inventory.group_names(lab, lab.guest("web")) == ["debian", "frontends", "web_lab"]
    assert inventory.group_names(lab, lab.guest("idle")) == ["web_lab"]


@pytest.mark.skipif(not ANSIBLE_INVENTORY.exists(), reason="ansible-core is a dev dependency")
def test_inventory_read_by_ansible(lab: LabSpec, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(capsys, lab, "inventory")
    assert code == 0
    assert "idle is not running; left out" in err
    path = tmp_path / "inventory.yml"
    path.write_text(out)
    res = subprocess.run([str(ANSIBLE_INVENTORY), "-i", str(path), "--list"],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "ANSIBLE_INVENTORY_UNPARSED_WARNING": "True"})
    assert "[WARNING]" not in res.stderr, res.stderr
    data = json.loads(res.stdout)
    assert data["all"]["children"] == ["ungrouped", "web_lab", "frontends", "debian"]
    assert sorted(data["web_lab"]["hosts"]) == ["db", "web"]
    assert data["frontends"]["hosts"] == ["web"]
    assert sorted(data["debian"]["hosts"]) == ["db", "web"]
    web = data["_meta"]["hostvars"]["web"]
    known = lab.state_dir / "known_hosts"
    assert web == {
        "ansible_host": "127.0.0.1", "ansible_port": 40001, "ansible_user": "root",
        "ansible_ssh_private_key_file": str(lab.state_dir / "ssh" / "id_ed25519"),
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={known} "
                                   "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes",
        "lab_address": "10.89.0.1"}  # two guests: the lab network, web first in the lab
    assert data["_meta"]["hostvars"]["db"]["ansible_port"] == 40002
    assert data["_meta"]["hostvars"]["db"]["lab_address"] == "10.89.0.2"
    # Pinned by host and port, both running guests (the file serves every printout).
    assert known.read_text() == (
        "[127.0.0.1]:40001 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIwebkey\n"
        "[127.0.0.1]:40002 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIdbkey\n")


def test_inventory_of_named_guests(lab: LabSpec, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(capsys, lab, "inventory", "db")
    assert (code, err) == (0, "")
    assert "web" not in out.replace("web_lab", "")
    assert "ansible_port: 40002" in out


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs OpenSSH's client")
def test_ssh_config_read_by_openssh(lab: LabSpec, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = _cli(capsys, lab, "ssh-config")
    assert code == 0
    assert out.startswith("Host web\n  HostName 127.0.0.1\n  Port 40001\n")
    path = tmp_path / "lab.ssh"
    path.write_text(out)
    for name, port in (("web", "40001"), ("db", "40002")):
        res = subprocess.run(["ssh", "-G", "-F", str(path), name], capture_output=True,
                             text=True, check=True)
        conf = dict(line.split(" ", 1) for line in res.stdout.splitlines() if " " in line)
        assert conf["hostname"] == "127.0.0.1"
        assert conf["port"] == port
        assert conf["user"] == "root"
        assert conf["stricthostkeychecking"] in ("yes", "true")
        assert conf["userknownhostsfile"] == str(lab.state_dir / "known_hosts")
        assert conf["identityfile"] == str(lab.state_dir / "ssh" / "id_ed25519")


def test_a_path_with_spaces_is_quoted(tmp_path: Path) -> None:
    base = tmp_path / "my labs"
    base.mkdir()
    spec = validate_text(LAB, str(base / "lab.yml"), base)
    hosts = [inventory.Reachable("web", 40001, ("ssh-ed25519", "AAAA"))]
    assert f'IdentityFile "{base}/.provision9p/ssh/id_ed25519"' in inventory.ssh_config(
        spec, hosts)
    args = inventory.inventory(spec, spec.guests, hosts)["all"]["children"]["web_lab"][
        "hosts"]["web"]["ansible_ssh_common_args"]
    assert f"UserKnownHostsFile='{base}/.provision9p/known_hosts'" in args


def test_bad_groups(tmp_path: Path) -> None:
    text = textwrap.dedent("""\
        guests:
          a:
            groups: [all, 9lives, web-servers, ok, ok]
          b:
            groups: web
        """)
    assert [(p.path, p.message) for p in problems(text, tmp_path)] == [
        ("guests.a.groups[0]", "'all' is a group Ansible makes itself"),
        ("guests.a.groups[1]", "expected a group name (letters, digits, _; not starting "
                               "with a digit), got \"9lives\""),
        ("guests.a.groups[2]", "expected a group name (letters, digits, _; not starting "
                               "with a digit), got \"web-servers\""),
        ("guests.b.groups", "expected a list of strings, got \"web\""),
    ]
