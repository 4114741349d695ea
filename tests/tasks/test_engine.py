"""The roles engine on a real root tree (the tree connection), plain and mapped-xattr."""

from __future__ import annotations

import io
import os
import stat
import textwrap
from pathlib import Path

import pytest

from provision9p.connect.tree import TreeConnection
from provision9p.errors import RoleError, TaskError
from provision9p.lab import validate_text
from provision9p.lab.model import LabSpec
from provision9p.rootfs.metadata import open_store
from provision9p.tasks.engine import Reporter, run_play

ROLE_TASKS = """\
- name: motd from a template
  template:
    src: motd.j2
    dest: /etc/motd
    mode: "0640"
    owner: daemon
  notify: note it
- name: a directory
  file:
    path: /srv/app/conf
    state: directory
    mode: "0750"
- name: settings, one per item
  lineinfile:
    path: /srv/app/conf/app.ini
    line: "{{ item.key }}={{ item.value }}"
    regexp: "^{{ item.key }}="
    create: true
  loop: "{{ settings | dict2items }}"
- name: only when asked
  copy:
    content: "extra\\n"
    dest: /srv/app/extra
  when: with_extra
- name: look at it
  stat:
    path: /etc/motd
  register: motd
- name: fails unless the mode is right
  debug:
    msg: "mode {{ motd.stat.mode | default('-') }}"
  failed_when: motd.stat.exists and motd.stat.mode != "0640"
- name: tagged
  copy:
    content: "tagged\\n"
    dest: /srv/app/tagged
  tags: [later]
"""
HANDLERS = """\
- name: note it
  copy:
    content: "handler ran\\n"
    dest: /srv/app/handler
"""
DEFAULTS = "greeting: hello\nwith_extra: false\nsettings:\n  a: '1'\n"


def _lab(tmp_path: Path, extra_vars: str = "") -> LabSpec:
    role = tmp_path / "roles" / "demo"
    for sub, text in (("tasks/main.yml", ROLE_TASKS), ("handlers/main.yml", HANDLERS),
                      ("defaults/main.yml", DEFAULTS),
                      ("templates/motd.j2", "{{ greeting }} from {{ inventory_hostname }}\n")):
        (role / sub).parent.mkdir(parents=True, exist_ok=True)
        (role / sub).write_text(text)
    text = textwrap.dedent(f"""\
        name: t
        roles_path: [roles]
        guests:
          g:
            roles: [demo]
            vars:
              settings: {{a: '1', b: '2'}}
        {extra_vars}""")
    return validate_text(text, str(tmp_path / "lab.yml"), tmp_path)


def _tree(tmp_path: Path, model: str) -> TreeConnection:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "srv").mkdir()
    (tree / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\ndaemon:x:1:1::/:/bin/false\n")
    (tree / "etc/group").write_text("root:x:0:\ndaemon:x:1:\n")
    store = open_store(model, tree, 4321, 4321)
    if model == "mapped-xattr":
        for rel in ("", "etc", "srv", "etc/passwd", "etc/group"):
            st = os.lstat(tree / rel)
            store.chown(rel, 0, 0)
            store.chmod(rel, stat.S_IMODE(st.st_mode))
    return TreeConnection(tree, store, "g")


def _play(conn: TreeConnection, lab: LabSpec, **kw: object) -> tuple[object, str]:
    out = io.StringIO()
    recap = run_play(conn, lab.guests[0], lab, reporter=Reporter(out, diff=bool(kw.get("diff"))),
                     **kw)  # type: ignore[arg-type]
    return recap, out.getvalue()


@pytest.mark.parametrize("model", ["passthrough", "mapped-xattr"])
def test_role_applies_then_changes_nothing(tmp_path: Path, model: str) -> None:
    lab = _lab(tmp_path)
    conn = _tree(tmp_path, model)
    recap, out = _play(conn, lab)
    assert "PLAY RECAP" in out
    assert recap.failed == 0, out  # type: ignore[attr-defined]
    assert conn.read_file("/etc/motd") == b"hello from g\n"
    motd = conn.stat("/etc/motd")
    assert motd is not None and (motd.uid, stat.S_IMODE(motd.mode)) == (1, 0o640)
    assert conn.read_file("/srv/app/conf/app.ini") == b"a=1\nb=2\n"
    assert conn.read_file("/srv/app/handler") == b"handler ran\n"
    assert conn.stat("/srv/app/extra") is None  # when: false
    assert conn.stat("/srv/app/tagged") is not None
    if model == "mapped-xattr":  # the owner lives in the xattrs, not on the host file
        assert os.lstat(tmp_path / "tree/etc/motd").st_uid == 4321
    again, out2 = _play(conn, lab)
    assert again.changed == 0, out2  # type: ignore[attr-defined]
    assert "handler ran" not in out2 and "TASK [demo : note it]" not in out2


def test_check_mode_changes_nothing_and_diff_shows_content(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    conn = _tree(tmp_path, "passthrough")
    recap, out = _play(conn, lab, check=True, diff=True)
    assert recap.changed > 0  # type: ignore[attr-defined]
    assert conn.stat("/etc/motd") is None and conn.stat("/srv/app") is None
    assert "+hello from g" in out


def test_tags_select_tasks(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    conn = _tree(tmp_path, "passthrough")
    _play(conn, lab, skip_tags={"later"})
    assert conn.stat("/etc/motd") is not None and conn.stat("/srv/app/tagged") is None
    conn.remove("/etc/motd")
    recap, _ = _play(conn, lab, tags={"later"})
    assert conn.stat("/srv/app/tagged") is not None
    assert conn.stat("/etc/motd") is None  # untagged tasks did not run
    assert recap.changed == 1  # type: ignore[attr-defined]


def test_unknown_parameter_is_refused_before_anything_runs(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    tasks = tmp_path / "roles/demo/tasks/main.yml"
    tasks.write_text(ROLE_TASKS + "- name: typo\n  copy:\n    dest: /x\n    contnet: y\n")
    conn = _tree(tmp_path, "passthrough")
    with pytest.raises(RoleError, match=r"role demo, tasks/main.yml:38, task 'typo'.*contnet"):
        _play(conn, lab)
    assert conn.stat("/etc/motd") is None


def test_failed_when_stops_the_play_with_where(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    (tmp_path / "roles/demo/tasks/main.yml").write_text(
        "- name: boom\n  command: 'false'\n  changed_when: false\n")
    conn = _tree(tmp_path, "passthrough")
    with pytest.raises(TaskError, match="boom"):
        _play(conn, lab)


def test_commands_are_refused_on_a_mapped_tree(tmp_path: Path) -> None:
    conn = _tree(tmp_path, "mapped-xattr")
    with pytest.raises(TaskError, match="security model is applied"):
        conn.run("true")


def test_render_keeps_types_only_for_a_lone_expression() -> None:
    from provision9p.tasks.templating import render

    assert render("{{ xs }}", {"xs": [1, 2]}) == [1, 2]
    assert render("{{ tz }}\n", {"tz": "Etc/UTC"}) == "Etc/UTC\n"
    assert render(" {{ n }}", {"n": 3}) == " 3"
    with pytest.raises(TaskError, match="undefined"):
        render("{{ item.nope }}", {"item": "text"})


def test_variables_that_are_templates_resolve_through_each_other() -> None:
    from provision9p.tasks.templating import resolve_vars

    out = resolve_vars({"a": "{{ b }}", "b": "{{ c | length }}", "c": [1, 2, 3],
                        "broken": "{{ missing }}"})
    assert out["a"] == 3 and out["b"] == 3
    assert out["broken"] == "{{ missing }}"  # fails only where it is used


def test_omit_subelements_and_result_tests() -> None:
    from provision9p.tasks.filters import OMIT
    from provision9p.tasks.templating import condition, render

    users = [{"name": "ann", "keys": ["k1", "k2"]}, {"name": "bob"}]
    assert render("{{ users | subelements('keys', skip_missing=True) }}",
                  {"users": users}) == [[users[0], "k1"], [users[0], "k2"]]  # as Ansible 2.19
    assert render("{{ u.uid | default(omit) }}", {"u": {}, "omit": OMIT}) == OMIT
    assert condition("r is changed", {"r": {"changed": True}})
    assert condition("r is not failed", {"r": {"changed": True}})


def test_tags_on_the_role_reference_tag_every_task(tmp_path: Path) -> None:
    _lab(tmp_path)  # writes the role
    text = tmp_path / "lab.yml"
    text.write_text(textwrap.dedent("""\
        name: t
        roles_path: [roles]
        guests:
          g:
            roles: [{role: demo, tags: [web]}]
            vars:
              settings: {a: '1', b: '2'}
        """))
    lab = validate_text(text.read_text(), str(text), tmp_path)
    conn = _tree(tmp_path, "passthrough")
    recap, _ = _play(conn, lab, tags={"other"})
    assert conn.stat("/etc/motd") is None and recap.changed == 0  # type: ignore[attr-defined]
    _play(conn, lab, tags={"web"})
    assert conn.stat("/etc/motd") is not None


def test_a_phase_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    (tmp_path / "roles/demo/tasks/main.yml").write_text(
        "- name: later\n  command: 'true'\n  phase: booted\n")
    conn = _tree(tmp_path, "passthrough")
    with pytest.raises(RoleError, match=r"tasks/main.yml:1, task 'later': phase must be one of"):
        _play(conn, lab)


def test_ssh_phase_tasks_wait_for_the_booted_guest(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    (tmp_path / "roles/demo/tasks/main.yml").write_text(
        "- name: only booted\n  copy: {content: x, dest: /srv/booted}\n  phase: ssh\n")
    conn = _tree(tmp_path, "passthrough")
    recap, out = _play(conn, lab)
    assert recap.skipped == 1 and "runs in the ssh phase" not in out  # type: ignore[attr-defined]
    assert conn.stat("/srv/booted") is None


@pytest.mark.parametrize(("args", "message"), [
    ("path: /x\n    line: y\n    create: maybe", "create must be a boolean"),
    ("path: /x\n    state: gone", "state must be one of file, directory"),
    ("path: /x\n    mode: rwxr-xr-x", "not an octal mode"),
])
def test_bad_values_are_refused_at_load_with_where(tmp_path: Path, args: str,
                                                   message: str) -> None:
    lab = _lab(tmp_path)
    module = "lineinfile" if "line:" in args else "file"
    (tmp_path / "roles/demo/tasks/main.yml").write_text(
        f"- name: ok\n  debug: {{msg: hi}}\n- name: bad\n  {module}:\n    {args}\n")
    conn = _tree(tmp_path, "passthrough")
    with pytest.raises(RoleError, match=rf"tasks/main.yml:3, task 'bad': .*{message}"):
        _play(conn, lab)


def test_booleans_as_ansible_spells_them(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    (tmp_path / "roles/demo/tasks/main.yml").write_text(
        "- name: no create\n  lineinfile: {path: /srv/none, line: x, create: 'no'}\n"
        "  ignore_errors: true\n"
        "- name: create from a template\n"
        "  lineinfile: {path: /srv/made, line: x, create: '{{ \"yes\" }}'}\n")
    conn = _tree(tmp_path, "passthrough")
    recap, out = _play(conn, lab)
    assert recap.ignored == 1 and "set create: true" in out  # type: ignore[attr-defined]
    assert conn.stat("/srv/none") is None and conn.read_file("/srv/made") == b"x\n"
