"""The no-change pass over SSH asks the guest only what it must: facts only when a play
can read them, the mount table over the file channel. Commands run for real on this
host, which stands in for a booted guest (read-only commands only)."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tasks.roleplay import lab, write_role

from provision9p.connect.base import RunResult
from provision9p.lab import load_lab, validate_text
from provision9p.rootfs.metadata.base import GuestStat
from provision9p.tasks.engine import Reporter, load_play, run_play
from provision9p.tasks.facts import COLLECTORS, facts_of, probe
from provision9p.tasks.facts.needed import NOT_FACTS, facts_use, text_uses
from provision9p.tasks.modules import MODULES, ModuleContext, coerce_args

pytestmark = pytest.mark.unit


class HostAsGuest:
    """This host as a booted guest, counting the commands it is asked to run."""

    phase = "ssh"
    guest = "g"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.commands: list[str | list[str]] = []

    def run(self, command: str | list[str], **_: Any) -> RunResult:
        self.commands.append(command)
        proc = subprocess.run(command, shell=isinstance(command, str), capture_output=True,
                              text=True, check=False)
        return RunResult(proc.returncode, proc.stdout, proc.stderr)

    def read_file(self, path: str) -> bytes:
        # /proc as it is; anything else from the test's own directory
        host = Path(path) if path.startswith("/proc/") else self.root / path.lstrip("/")
        return host.read_bytes()

    def stat(self, path: str) -> GuestStat | None:
        host = self.root / path.lstrip("/")
        if not host.exists():
            return None
        st = host.lstat()
        return GuestStat(mode=st.st_mode, uid=st.st_uid, gid=st.st_gid, size=st.st_size,
                         mtime=st.st_mtime)


FACT_ROLE = {"tasks/main.yml": """\
    - name: say
      debug:
        msg: "{{ ansible_os_family }}"
    """}
PLAIN_ROLE = {"tasks/main.yml": """\
    - name: say
      debug:
        msg: "{{ greeting }} from {{ inventory_hostname }} ({{ ansible_check_mode }})"
      vars:
        greeting: hello
    - name: file
      template: {src: t.j2, dest: /nowhere, mode: "0644"}
      when: false
    """, "templates/t.j2": "# {{ ansible_managed }}\n{{ greeting }}\n"}


def run(tmp_path: Path, role: dict[str, str], **lab_kw: Any) -> tuple[HostAsGuest, str]:
    write_role(tmp_path, "demo", role)
    spec = lab(tmp_path, **lab_kw)
    conn = HostAsGuest(tmp_path)
    out = io.StringIO()
    recap = run_play(conn, spec.guests[0], spec, reporter=Reporter(out))  # type: ignore[arg-type]
    assert recap.failed == 0, out.getvalue()
    return conn, out.getvalue()


def test_a_play_that_reads_no_fact_runs_no_facts_command(tmp_path: Path) -> None:
    conn, out = run(tmp_path, PLAIN_ROLE)
    assert conn.commands == []
    assert "ok: [g]" in out


def test_a_play_that_reads_a_fact_still_gets_it(tmp_path: Path) -> None:
    conn, out = run(tmp_path, FACT_ROLE)
    assert conn.commands == [["/bin/sh", "-c", probe.SCRIPT]]  # the facts script, once
    assert "ok: [g]" in out


def test_another_guests_hostvars_make_this_guest_gather(tmp_path: Path) -> None:
    write_role(tmp_path, "demo", PLAIN_ROLE)
    write_role(tmp_path, "peek", {"tasks/main.yml": """\
        - debug: {msg: "{{ hostvars['g'].ansible_hostname | default('') }}"}
        """})
    write_role(tmp_path, "own", FACT_ROLE)
    spec = validate_text("name: t\nroles_path: [roles]\nguests:\n  g: {roles: [demo]}\n"
                         "  own: {roles: [own]}\n  peek: {roles: [peek]}\n",
                         str(tmp_path / "lab.yml"), tmp_path)
    g, own, peek = (spec.guest(n) for n in ("g", "own", "peek"))
    plain = load_play(g, spec)
    assert facts_use(g, plain, [(own, load_play(own, spec))]) is None  # its own facts only
    assert "hostvars" in str(facts_use(g, plain, [(peek, load_play(peek, spec))]))
    assert "could not be checked" in str(facts_use(g, plain, [(peek, None)]))
    # and in a run: the lab's other plays are looked at
    out = io.StringIO()
    conn = HostAsGuest(tmp_path)
    run_play(conn, g, spec, reporter=Reporter(out))  # type: ignore[arg-type]
    assert len(conn.commands) == 1, out.getvalue()


@pytest.mark.parametrize(("text", "kind"), [
    ("{{ ansible_distribution }}", "fact"),
    ("{{ ansible_facts.os_family }}", "fact"),
    ("{{ vars['ansible_' ~ iface] }}", "vars"),
    ("{{ vars[name] }}", "vars"),
    ("{{ hostvars[inventory_hostname] }}", "hostvars"),
    ("{{ lookup('vars', 'x') }}", "unknown"),
    ("{{ query('varnames', '^a') }}", "unknown"),
    ("{% include 'other.j2' %}", "unknown"),
    ("msg: \"{{ q('file', 'x') }}\"", "unknown"),
])
def test_what_counts_as_reading_facts(text: str, kind: str) -> None:
    assert [k for k, _ in text_uses(text)][:1] == [kind]


@pytest.mark.parametrize("text", [
    "# {{ ansible_managed }}", "when: ansible_check_mode", "vars:\n  a: 1",
    '{"vars": {"a": 1}}', "include_vars: x", "{{ item.vars }}", "loop_control: {loop_var: x}",
    "{{ ansible_loop.index }} {{ ansible_failed_task.name }}",
])
def test_what_does_not(text: str) -> None:
    assert list(text_uses(text)) == []


@pytest.mark.parametrize(("tasks", "why"), [
    ("- include_tasks: more.yml\n", "include_tasks"),
    ("- debug: {msg: '{{ item }}'}\n  with_file: [a]\n", "with_file"),
    ("- template: {src: '{{ name }}.j2', dest: /x}\n", "template src"),
])
def test_what_only_the_run_knows_counts_as_a_use(tmp_path: Path, tasks: str, why: str
                                                 ) -> None:
    write_role(tmp_path, "demo", {"tasks/main.yml": tasks, "tasks/more.yml": "[]\n"})
    spec = lab(tmp_path)
    assert why in str(facts_use(spec.guests[0], load_play(spec.guests[0], spec)))


def test_an_absolute_template_is_read_too(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.j2"
    outside.write_text("{{ ansible_fqdn }}\n")
    write_role(tmp_path, "demo", {"tasks/main.yml": f"- template: {{src: {outside}, "
                                                    "dest: /x}\n"})
    spec = lab(tmp_path)
    assert "ansible_fqdn" in str(facts_use(spec.guests[0], load_play(spec.guests[0], spec)))


def test_the_default_labs_roles_read_no_fact() -> None:
    spec = load_lab(None)
    guest = spec.guests[0]
    assert facts_use(guest, load_play(guest, spec)) is None


def test_no_magic_name_is_also_a_fact() -> None:
    """Facts of this host, every collector: none is named like a magic variable."""
    out = subprocess.run(["/bin/sh", "-c", probe.SCRIPT], capture_output=True, text=True,
                         check=False).stdout
    facts = facts_of(probe.parse(out), set(COLLECTORS))
    facts.update(gather_subset=["all"], module_setup=True)
    assert len(facts) > 40
    assert not {f"ansible_{k}" for k in facts} & NOT_FACTS


def test_mount_reads_the_mount_table_without_a_command(tmp_path: Path) -> None:
    """state=mounted on what is mounted: no change, and no command run for it."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/fstab").write_text("proc /proc proc defaults 0 0\n")
    conn = HostAsGuest(tmp_path)
    args = coerce_args("mount", {"src": "proc", "path": "/proc", "fstype": "proc",
                                 "opts": "defaults", "state": "mounted"})
    ctx = ModuleContext(check=True, role_path=tmp_path, render=str)
    res = MODULES["mount"].run(conn, args, ctx)  # type: ignore[arg-type]
    assert not res["changed"] and conn.commands == []
    args["path"] = str(tmp_path / "not-mounted")
    res = MODULES["mount"].run(conn, args, ctx)  # type: ignore[arg-type]
    assert res["changed"] and conn.commands == []  # check mode: planned, not done
