"""Roles on real guests, and the compatibility proof against real ansible-playbook.

Two guests boot from the same base: `p9` gets the plain-Ansible role `compat` from
provision9p (on its tree during the build, then over SSH); `ans` gets the same role
from ansible-playbook over SSH. Their files, contents, owners and modes must agree,
and each tool must find nothing to change on the other's result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from integration.ansible_run import ansible_playbook, recap

from provision9p.connect.ssh import SSHConnection, connect
from provision9p.lab import load_lab
from provision9p.lab.model import LabSpec, RoleRef
from provision9p.target import resolve
from provision9p.tasks.engine import Reporter, run_play

pytestmark = [pytest.mark.vm, pytest.mark.network]

ROLE_SRC = Path(__file__).parent / "roles" / "compat"

LAB = """\
name: roles-it
defaults:
  memory: 768
  cpus: 1
  rootfs:
    packages: [acl, python3, python3-apt]  # Ansible needs python3(-apt); one base tree
guests:
  p9:
    roles: [compat]
  ans: {}
"""

# What the role manages, compared between the two guests.
PATHS = ["/srv/compat", "/srv/compat/app.conf", "/srv/compat/hello.txt",
         "/srv/compat/settings.ini", "/srv/compat/stat.txt", "/srv/compat/made-by-command",
         "/srv/compat/where.txt", "/srv/compat/handler.txt", "/etc/motd", "/etc/compat.conf",
         "/etc/sysctl.d/60-compat.conf", "/home/carol", "/usr/bin/hello"]


@pytest.fixture(scope="module")
def lab(lab_dir: Path, p9: Any) -> Iterator[Path]:
    base = lab_dir / "roles-lab"
    base.mkdir()
    shutil.copytree(ROLE_SRC, base / "roles" / "compat")
    path = base / "lab.yml"
    path.write_text(LAB)
    res = p9("-f", str(path), "up")
    try:
        assert res.returncode == 0, res.stdout + res.stderr
        # The tree phase did the work; over SSH the same play finds nothing to do.
        assert re.search(r"roles on the tree: ok=\d+ changed=([1-9]\d*)", res.stderr), \
            res.stderr
        assert re.search(r"roles over SSH: ok=\d+ changed=0 ", res.stderr), res.stderr
        yield path
    finally:
        p9("-f", str(path), "down", "--timeout", "5")


def snapshot(conn: SSHConnection) -> dict[str, Any]:
    """Type, owner, mode and content of every managed path, plus the accounts."""
    out: dict[str, Any] = {}
    for path in PATHS:
        st = conn.stat(path)
        if st is None:
            out[path] = None
            continue
        item: dict[str, Any] = {"type": st.mode >> 12, "mode": oct(st.mode & 0o7777),
                                "uid": st.uid, "gid": st.gid}
        if st.is_link:
            item["target"] = conn.readlink(path)
        elif st.is_reg:
            item["sha256"] = hashlib.sha256(conn.read_file(path)).hexdigest()
        out[path] = item
    for db, names in (("/etc/passwd", ("carol",)), ("/etc/group", ("compat", "users"))):
        for line in conn.read_file(db).decode().splitlines():
            if line.split(":")[0] in names:
                out[f"{db}:{line.split(':')[0]}"] = line
    enabled = conn.run(["systemctl", "is-enabled", "ssh"]).stdout.strip()
    out["ssh enabled"] = enabled
    return out


def test_same_role_same_result_under_ansible_playbook(lab: Path) -> None:
    first = ansible_playbook(lab, "ans", "compat")
    assert first.returncode == 0, first.stdout + first.stderr
    assert recap(first.stdout, "ans")["changed"] > 0

    spec = load_lab(lab)
    p9_conn = connect(resolve(spec, spec.guest("p9")))
    ans_conn = connect(resolve(spec, spec.guest("ans")))
    try:
        ours, theirs = snapshot(p9_conn), snapshot(ans_conn)
    finally:
        p9_conn.close()
        ans_conn.close()
    assert ours["/srv/compat/app.conf"] is not None
    assert ours == theirs


def test_ansible_finds_nothing_to_change_on_provision9ps_guest(lab: Path) -> None:
    res = ansible_playbook(lab, "p9", "compat", "--check", "--diff")
    assert res.returncode == 0, res.stdout + res.stderr
    counts = recap(res.stdout, "p9")
    assert counts["changed"] == 0 and counts["failed"] == 0, res.stdout


def test_provision9p_finds_nothing_to_change_on_ansibles_guest(lab: Path) -> None:
    spec: LabSpec = load_lab(lab)
    ans = dataclasses.replace(spec.guest("ans"), roles=(RoleRef("compat"),))
    conn = connect(resolve(spec, ans))
    out = io.StringIO()
    try:
        result = run_play(conn, ans, spec, check=True, diff=True, reporter=Reporter(out, True))
    finally:
        conn.close()
    assert result.failed == 0 and result.changed == 0, out.getvalue()


def test_apply_again_changes_nothing_and_check_mode_changes_nothing(lab: Path, p9: Any
                                                                   ) -> None:
    spec = load_lab(lab)
    conn = connect(resolve(spec, spec.guest("p9")))
    try:
        conn.run(["sed", "-i", "s/workers=4/workers=2/", "/srv/compat/settings.ini"])
        before = conn.read_file("/srv/compat/settings.ini")
    finally:
        conn.close()
    check = p9("-f", str(lab), "apply", "p9", "--check", "--diff")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "changed=1" in check.stdout and "-workers=2\n+workers=4" in check.stdout
    conn = connect(resolve(spec, spec.guest("p9")))
    try:
        assert conn.read_file("/srv/compat/settings.ini") == before  # --check changed nothing
    finally:
        conn.close()
    fix = p9("-f", str(lab), "apply", "p9")
    assert fix.returncode == 0 and "changed=1" in fix.stdout, fix.stdout + fix.stderr
    again = p9("-f", str(lab), "apply", "p9")
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout
