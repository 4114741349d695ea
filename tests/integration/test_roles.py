"""Roles on real guests, and the compatibility proof against real ansible-playbook.

Two guests boot from the same base: `p9` gets the plain-Ansible role `compat` from
provision9p (on its tree during the build, then over SSH); `ans` gets the same role
from ansible-playbook over SSH. Their files, contents, owners and modes must agree,
and each tool must find nothing to change on the other's result.

The role `features` (with `features_lib`) does the same for everyday Ansible: blocks,
includes, loops, lookups, filters, facts and the modules public roles use. Its two
guests live in two labs, so the Ansible side converges (and is checked) on its own:
when provision9p cannot load the role, only the tests that need provision9p fail.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import re
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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

ROLES = Path(__file__).parent / "roles"
ROLE_SRC = ROLES / "compat"

# Ansible needs python3(-apt). sudo and cron are in the base because installing them
# (with exim4, which cron recommends) took Ansible 5 of its 14 minutes on the guest
# under TCG; the features role still installs debconf-utils, so both tools install.
LAB = """\
name: roles-it
defaults:
  memory: 768
  cpus: 1
  rootfs:
    layout: overlay  # a layer per guest over the shared base: no copy
    packages: [acl, python3, python3-apt, sudo, cron]  # one base tree for both modules
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
def pool() -> Iterator[ThreadPoolExecutor]:
    """Two ansible-playbook runs at once: each keeps one TCG guest (one host core) busy
    and little else, so on two cores the pair takes about as long as the longer one."""
    with ThreadPoolExecutor(2) as executor:
        yield executor


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


@pytest.fixture(scope="module")
def compat_runs(lab: Path, pool: ThreadPoolExecutor
                ) -> dict[str, Future[subprocess.CompletedProcess[str]]]:
    """Ansible converges `ans` while its --check reads `p9`: the guests are separate."""
    return {"converge": pool.submit(ansible_playbook, lab, "ans", "compat"),
            "check": pool.submit(ansible_playbook, lab, "p9", "compat", "--check", "--diff")}


def test_same_role_same_result_under_ansible_playbook(
        lab: Path, compat_runs: dict[str, Future[subprocess.CompletedProcess[str]]]) -> None:
    first = compat_runs["converge"].result()
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


def test_ansible_finds_nothing_to_change_on_provision9ps_guest(
        compat_runs: dict[str, Future[subprocess.CompletedProcess[str]]]) -> None:
    res = compat_runs["check"].result()
    assert res.returncode == 0, res.stdout + res.stderr
    counts = recap(res.stdout, "p9")
    assert counts["changed"] == 0 and counts["failed"] == 0, res.stdout


def test_provision9p_finds_nothing_to_change_on_ansibles_guest(
        lab: Path, compat_runs: dict[str, Future[subprocess.CompletedProcess[str]]]) -> None:
    compat_runs["converge"].result()  # on Ansible's result, not while it is being made
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


# --- everyday Ansible: the `features` role -------------------------------------------

FEATURES_LAB = """\
name: {name}
defaults:
  memory: 768
  cpus: 1
  rootfs:
    layout: overlay  # a layer per guest over the shared base: no copy
    packages: [acl, python3, python3-apt, sudo, cron]
guests:
  {guest}:
    roles: {roles}
"""
# The env lookup reads the controller's environment: the same for both tools.
FEATURES_ENV = {"FEATURES_CONTROLLER_VAR": "from the controller"}
FEATURES_ROOTS = ["/srv/features"]
FEATURES_PATHS = ["/etc/sudoers.d/features", "/etc/cron.d/features", "/etc/localtime",
                  "/etc/timezone", "/home/dave"]
# replace/lineinfile backups are named FILE.PID.YYYY-MM-DD@HH:MM:SS~
BACKUP = re.compile(r"\.\d+\.\d{4}-\d\d-\d\d@\d\d:\d\d:\d\d~$")


def _features_lab(lab_dir: Path, name: str, guest: str, roles: str) -> Path:
    base = lab_dir / name
    base.mkdir()
    for role in ("features", "features_lib"):
        shutil.copytree(ROLES / role, base / "roles" / role)
    path = base / "lab.yml"
    path.write_text(FEATURES_LAB.format(name=name, guest=guest, roles=roles))
    return path


def _tree(conn: SSHConnection, root: str) -> dict[str, Any]:
    """Every entry under root: type, mode, owner, link target; small text files whole."""
    res = conn.run(["find", root, "-printf", r"%P\t%y\t%m\t%u\t%g\t%l\n"])
    out: dict[str, Any] = {}
    for line in sorted(res.stdout.splitlines()):
        rel, kind, mode, user, group, target = line.split("\t")
        item: dict[str, Any] = {"type": kind, "mode": mode, "owner": f"{user}:{group}"}
        if kind == "l":
            item["target"] = target
        elif kind == "f":
            data = conn.read_file(f"{root}/{rel}")
            item["sha256"] = hashlib.sha256(data).hexdigest()
            if len(data) < 4096:
                item["text"] = data.decode(errors="replace")
        out[f"{root}/{BACKUP.sub('.BACKUP~', rel)}"] = item
    return out


def features_snapshot(conn: SSHConnection) -> dict[str, Any]:
    """What the features role manages, as comparable values (no names, times or pids)."""
    out: dict[str, Any] = {}
    for root in FEATURES_ROOTS:
        out.update(_tree(conn, root))
    for path in FEATURES_PATHS:
        st = conn.stat(path)
        if st is None:
            out[path] = None
            continue
        item: dict[str, Any] = {"type": st.mode >> 12, "mode": oct(st.mode & 0o7777),
                                "uid": st.uid, "gid": st.gid}
        if st.is_link:
            item["target"] = conn.readlink(path)
        elif st.is_reg:
            item["text"] = conn.read_file(path).decode(errors="replace")
        out[path] = item
    for db in ("/etc/passwd", "/etc/group"):
        for line in conn.read_file(db).decode().splitlines():
            if line.split(":")[0] in ("dave", "sudo"):
                out[f"{db}:{line.split(':')[0]}"] = line
    # crontab -l leaves out the header crontab(1) stamps with a time and a file name.
    out["crontab -l"] = conn.run(["crontab", "-l", "-u", "root"]).stdout
    out["debconf tzdata/Areas"] = [
        line for line in conn.run(["debconf-show", "tzdata"]).stdout.splitlines()
        if "tzdata/Areas:" in line]
    out["packages"] = conn.run(["dpkg-query", "-W", "-f", "${Package} ${Version} ${Status}\n",
                                "sudo", "cron", "debconf-utils"]).stdout
    out["leftover tempfiles"] = conn.run(
        ["find", "/tmp", "-maxdepth", "1", "-name", "*.features"]).stdout
    return out


@pytest.fixture(scope="module")
def features_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in FEATURES_ENV.items():
            mp.setenv(key, value)
        yield


def _down(p9: Any, path: Path) -> None:
    p9("-f", str(path), "down", "--timeout", "5")


@pytest.fixture(scope="module")
def features_ans_lab(lab_dir: Path, p9: Any, features_env: None) -> Iterator[Path]:
    """A guest without roles, for ansible-playbook."""
    path = _features_lab(lab_dir, "features-ans", "fans", "[]")
    res = p9("-f", str(path), "up")
    try:
        assert res.returncode == 0, res.stdout + res.stderr
        yield path
    finally:
        _down(p9, path)


def _ansible_features(lab: Path, guest: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return ansible_playbook(lab, guest, "features", *extra, gather_facts=True,
                            env=FEATURES_ENV)


@pytest.fixture(scope="module")
def features_converge(features_ans_lab: Path, pool: ThreadPoolExecutor
                      ) -> Future[subprocess.CompletedProcess[str]]:
    return pool.submit(_ansible_features, features_ans_lab, "fans")


@pytest.fixture(scope="module")
def features_check(features_p9_lab: Path, pool: ThreadPoolExecutor
                   ) -> Future[subprocess.CompletedProcess[str]]:
    """Ansible's --check on provision9p's guest, run while Ansible converges its own."""
    return pool.submit(_ansible_features, features_p9_lab, "fp9", "--check", "--diff")


@pytest.fixture(scope="module")
def ansible_features(request: pytest.FixtureRequest, features_ans_lab: Path,
                     features_converge: Future[subprocess.CompletedProcess[str]]
                     ) -> dict[str, Any]:
    """ansible-playbook converges the role: its snapshot.

    provision9p's guest comes up, and Ansible's --check on it starts, while the converge
    runs; when that guest fails to come up, only the tests that need it fail.

    No second ansible-playbook run to prove the role idempotent under Ansible (it cost
    ~6 min of CI under TCG): provision9p's result equals this snapshot, and Ansible's
    --check finds nothing to change on provision9p's result, so a role that Ansible does
    not leave converged fails those tests anyway."""
    with contextlib.suppress(Exception):  # reported by the tests that use it
        request.getfixturevalue("features_check")
    first = features_converge.result()
    assert first.returncode == 0, first.stdout + first.stderr
    counts = recap(first.stdout, "fans")
    assert counts["failed"] == 0 and counts["changed"] > 0, first.stdout
    spec = load_lab(features_ans_lab)
    conn = connect(resolve(spec, spec.guest("fans")))
    try:
        return features_snapshot(conn)
    finally:
        conn.close()


def _assert_features_did_what_they_say(snap: dict[str, Any]) -> None:
    """The role's own expectations on a guest's snapshot."""
    report = snap["/srv/features/report.txt"]["text"]
    for expected in (
            "os vars file: Debian.yml", "rescued: inner step failed: A command that fails.",
            "whoami: dave", "environment: hello from environment", "retried attempts: 3",
            "password hash: $6$rounds=656000$saltsaltsalt$", "from env: from the controller",
            "from file: read by the file lookup", "first found: lookup.txt",
            "open ports: 22,443", 'flat: ["a", "b", "c", "d", "e"]',
            'flat1: ["a", "b", "c", ["d", "e"]]', "version found: 12.4",
            "tests: True False True True False True", "getent: x:2346:2346:",
            "slurped: family=Debian major=12", "tempfile under: /tmp",
            "extra vars: blue 3", "debian family"):
        assert expected in report, report
    merged = '"server": {"port": 8080, "tls": true}, "clients": ["alpha", "beta"]'
    assert merged in report, report
    assert snap["/srv/features/included-first.txt"]["text"] == "item first\n"
    assert snap["/srv/features/lib/extra-include.txt"]["text"].startswith(
        "extra via include: hello from the defaults (from vars/other)\nvars_from was read")
    assert snap["/srv/features/lib/main.txt"]["text"] == \
        "main: hello from the defaults (from vars/main)\n"
    assert snap["/srv/features/flushed.txt"]["text"] == "handler ran\n"
    assert snap["/srv/features/rescue.txt"]["text"].startswith("rescued: inner step")
    assert sorted(k.rsplit("/", 1)[1] for k in snap if "/seq/" in k) == ["n01", "n05", "n09"]
    assert snap["/srv/features/loose.txt"]["mode"] == "644"
    assert snap["/srv/features/private"]["mode"] == "750"
    assert snap["/srv/features/private/symbolic.txt"]["mode"] == "640"
    assert snap["/srv/features/payload.txt"]["mode"] == "640"
    assert snap["/srv/features/site/sub/page.txt"]["mode"] == "640"
    assert snap["/srv/features/service.conf.BACKUP~"]["text"].startswith("# service")
    assert snap["/srv/features/service.conf"]["text"] == (
        "# service settings\nport=9090\nuser=nobody\ngroup=nogroup\nworkers=2\n[extra]\n"
        "timeout=30\n")
    assert "*/15 2-4 * * * /usr/bin/find" in snap["crontab -l"]
    assert snap["/etc/localtime"]["target"].endswith("zoneinfo/Europe/Paris")
    assert snap["debconf tzdata/Areas"] and "Europe" in snap["debconf tzdata/Areas"][0]
    assert snap["leftover tempfiles"] == ""


# Slow: Ansible's own converge of the features role takes 8 to 15 minutes under TCG. The CI
# ring proves the role under provision9p (expectations, then nothing to change); the
# compat pair above is its comparison against real ansible-playbook.
_SLOW = pytest.mark.slow(
    covered_by="tests/integration/test_roles.py::test_features_role_does_what_it_says_"
               "under_provision9p_and_again_changes_nothing")


def slow_features(test: Any) -> Any:
    """Slow ring, and a ceiling above the converge's own 1800 s subprocess timeout."""
    return _SLOW(pytest.mark.timeout(3600)(test))


@pytest.fixture(scope="module")
def features_p9_lab(lab_dir: Path, p9: Any, features_env: None) -> Iterator[Path]:
    """A guest that provision9p gives the role during the build, then over SSH."""
    path = _features_lab(lab_dir, "features-p9", "fp9", "[features]")
    res = p9("-f", str(path), "up")
    try:
        assert res.returncode == 0, res.stdout + res.stderr
        assert re.search(r"roles on the tree: ok=\d+ changed=([1-9]\d*)", res.stderr), \
            res.stderr
        assert re.search(r"roles over SSH: ok=\d+ changed=0 ", res.stderr), res.stderr
        yield path
    finally:
        _down(p9, path)


def test_features_role_does_what_it_says_under_provision9p_and_again_changes_nothing(
        features_p9_lab: Path, p9: Any) -> None:
    """The CI ring's proof of the features role: the role's own expectations hold on
    provision9p's guest, and applying it again changes nothing. Runs before the slow
    tests, whose Ansible --check then reads the same guest."""
    spec = load_lab(features_p9_lab)
    conn = connect(resolve(spec, spec.guest("fp9")))
    try:
        _assert_features_did_what_they_say(features_snapshot(conn))
    finally:
        conn.close()
    again = p9("-f", str(features_p9_lab), "apply")
    assert again.returncode == 0, again.stdout + again.stderr
    counts = recap(again.stdout, "fp9")
    assert counts["changed"] == 0 and counts["failed"] == 0, again.stdout


@slow_features
def test_features_role_does_what_it_says_under_ansible_playbook(
        ansible_features: dict[str, Any]) -> None:
    """The role's own expectations, checked on Ansible's result: so a difference later
    is provision9p's, not the role's."""
    _assert_features_did_what_they_say(ansible_features)


@slow_features
def test_features_role_same_result_under_provision9p(
        features_p9_lab: Path, ansible_features: dict[str, Any],
        features_check: Future[subprocess.CompletedProcess[str]]) -> None:
    features_check.exception()  # a snapshot taken while Ansible works there could differ
    spec = load_lab(features_p9_lab)
    conn = connect(resolve(spec, spec.guest("fp9")))
    try:
        ours = features_snapshot(conn)
    finally:
        conn.close()
    diff = {k: (ours.get(k), ansible_features.get(k))
            for k in sorted(set(ours) | set(ansible_features))
            if ours.get(k) != ansible_features.get(k)}
    assert not diff, "\n".join(f"{k}:\n  provision9p: {a}\n  ansible:     {b}"
                               for k, (a, b) in diff.items())


@slow_features
def test_ansible_finds_nothing_to_change_on_provision9ps_features_guest(
        features_check: Future[subprocess.CompletedProcess[str]]) -> None:
    res = features_check.result()
    assert res.returncode == 0, res.stdout + res.stderr
    counts = recap(res.stdout, "fp9")
    assert counts["changed"] == 0 and counts["failed"] == 0, res.stdout


@slow_features
def test_provision9p_finds_nothing_to_change_on_ansibles_features_guest(
        features_ans_lab: Path, ansible_features: dict[str, Any]) -> None:
    spec: LabSpec = load_lab(features_ans_lab)
    guest = dataclasses.replace(spec.guest("fans"), roles=(RoleRef("features"),))
    conn = connect(resolve(spec, guest))
    out = io.StringIO()
    try:
        result = run_play(conn, guest, spec, check=True, diff=True,
                          reporter=Reporter(out, True))
    finally:
        conn.close()
    assert result.failed == 0 and result.changed == 0, out.getvalue()
