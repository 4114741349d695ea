"""Task keywords around a module's run, on a real tree (busybox chroot): check_mode,
diff, environment, no_log, until/retries, ignore_errors, loops and register, magic
variables, facts, and what fails at load."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tasks.roleplay import lab, play, tree, write_role

from provision9p.errors import LabError, RoleError, TaskError
from provision9p.tasks.modules import MODULES
from provision9p.tasks.modules.base import Module
from provision9p.tasks.modules.spec import P, Spec

pytestmark = pytest.mark.tree  # roles run in a busybox chroot on a real tree


def _role(tmp_path: Path, tasks: str, defaults: str = "") -> None:
    write_role(tmp_path, "demo", {"tasks/main.yml": tasks, "defaults/main.yml": defaults})


def test_check_mode_false_runs_under_check(tmp_path: Path) -> None:
    # The bug of issue 10: `check_mode: false` was ignored, so stdout was missing later.
    _role(tmp_path, """\
        - shell: echo probed; touch /srv/ran
          check_mode: false
          changed_when: false
          register: probe
        - copy: {content: "{{ probe.stdout }}", dest: /srv/out}
        - shell: touch /srv/forced-check
          check_mode: true
        - copy: {content: "{{ ansible_check_mode }}", dest: /srv/mode}
          check_mode: false
        """)
    conn = tree(tmp_path)
    play(conn, lab(tmp_path), check=True)
    assert conn.stat("/srv/ran") is not None and conn.stat("/srv/out") is None
    assert conn.read_file("/srv/mode") == b"False"
    play(conn, lab(tmp_path))
    assert conn.read_file("/srv/out") == b"probed"
    assert conn.stat("/srv/forced-check") is None


def test_ignore_errors_is_templated_and_judged_as_a_boolean(tmp_path: Path) -> None:
    # The bug of issue 10: the string "False" counted as true.
    _role(tmp_path, """\
        - command: /bin/false
          ignore_errors: "{{ ansible_check_mode }}"
        """)
    conn = tree(tmp_path)
    with pytest.raises(TaskError, match="failed"):
        play(conn, lab(tmp_path))
    recap, _ = play(conn, lab(tmp_path), check=True)  # check mode: command is skipped
    assert recap.failed == 0


def test_environment_diff_and_no_log(tmp_path: Path) -> None:
    _role(tmp_path, """\
        - shell: echo "$GREETING $OTHER" > /srv/env
          environment:
            GREETING: "{{ word }}"
            OTHER: there
        - copy: {content: "secret {{ word }}\\n", dest: /srv/secret}
          no_log: true
        - copy: {content: "shown\\n", dest: /srv/shown}
          diff: true
        """, defaults="word: hello\n")
    conn = tree(tmp_path)
    _recap, out = play(conn, lab(tmp_path))
    assert conn.read_file("/srv/env") == b"hello there\n"
    assert "censored" in out and "secret hello" not in out
    assert "+shown" in out  # the task's diff keyword, without --diff


def test_until_retries_and_attempts(tmp_path: Path) -> None:
    _role(tmp_path, """\
        - shell: echo x >> /srv/count; wc -l < /srv/count
          register: counted
          until: counted.stdout | int >= 3
          retries: 5
          delay: 0
        - copy: {content: "{{ counted.attempts }}", dest: /srv/attempts}
        - shell: "false"
          register: never
          until: never.rc == 0
          retries: 1
          delay: 0
          ignore_errors: true
        - copy: {content: "{{ never.attempts }}", dest: /srv/never}
        """)
    conn = tree(tmp_path)
    recap, _out = play(conn, lab(tmp_path))
    assert conn.read_file("/srv/attempts") == b"3"
    assert conn.read_file("/srv/never") == b"2"  # retries + 1 attempts, as Ansible
    assert recap.ignored == 1


def test_loops_register_and_loop_control(tmp_path: Path) -> None:
    _role(tmp_path, """\
        - shell: echo {{ x }}-{{ i }}-{{ ansible_loop.first }}-{{ ansible_loop.length }}
          loop: [a, b]
          loop_control: {loop_var: x, index_var: i, extended: true, label: "L{{ x }}"}
          register: out
          changed_when: false
        - copy:
            content: >-
              {{ out.results | map(attribute='stdout') | join(',') }} {{ out.results[1].x }}
            dest: /srv/loop
        - copy: {content: x, dest: /srv/none}
          loop: []
          register: empty
        - copy: {content: "{{ empty.skipped }}", dest: /srv/empty}
        - copy: {content: "{{ item }}", dest: "/srv/w-{{ item }}"}
          with_items: [[p, q], r]
          when: [item != 'q', true]
          tags: "one, two"
        """)
    conn = tree(tmp_path)
    _recap, out = play(conn, lab(tmp_path))
    assert conn.read_file("/srv/loop") == b"a-0-True-2,b-1-False-2 b"
    assert "(item=La)" in out
    assert conn.read_file("/srv/empty") == b"True"
    assert conn.stat("/srv/w-p") and conn.stat("/srv/w-r") and not conn.stat("/srv/w-q")
    conn.remove("/srv/w-p")
    play(conn, lab(tmp_path), tags={"two"})
    assert conn.stat("/srv/w-p") is not None


def test_magic_variables(tmp_path: Path) -> None:
    _role(tmp_path, """\
        - copy:
            dest: /srv/magic
            content: >-
              {{ inventory_hostname }} {{ inventory_hostname_short }} {{ role_name }}
              {{ hostvars[inventory_hostname].color }} {{ groups.all | join(',') }}
              {{ play_hosts }} {{ ansible_version.major }} {{ ansible_check_mode }}
              {{ ansible_run_tags }} {{ playbook_dir == lab_dir }} {{ role_path | basename }}
              {{ ansible_facts is mapping }}
        """)
    spec = lab(tmp_path, guest_extra=f"vars: {{color: blue, lab_dir: '{tmp_path}'}}\n")
    conn = tree(tmp_path)
    play(conn, spec)
    assert conn.read_file("/srv/magic").decode().split() == [
        "g", "g", "demo", "blue", "g", "['g']", "2", "False", "['all']", "True", "demo",
        "True"]


def test_module_facts_join_the_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    # A module returning ansible_facts as setup does; set_fact is the real one.
    def facts(conn: object, args: dict[str, object], ctx: object) -> dict[str, object]:
        return {"changed": False, "ansible_facts": dict(args)}
    monkeypatch.setitem(MODULES, "facts_probe", Module(
        facts, Spec({"mine": P(), "ansible_os": P()})))
    _role(tmp_path, """\
        - facts_probe: mine={{ base }}-x ansible_os=Debian
        - copy:
            content: "{{ mine }} {{ ansible_os }} {{ ansible_facts.os }} {{ ansible_facts.mine }}"
            dest: /srv/f
        - set_fact: mine=again
        - copy: {content: "{{ mine }} {{ ansible_facts.mine }}", dest: /srv/s}
        - meta: clear_facts
        - copy: {content: "{{ mine | default('cleared') }}", dest: /srv/c}
        """, defaults="base: b\nmine: role-default\n")
    conn = tree(tmp_path)
    play(conn, lab(tmp_path))
    assert conn.read_file("/srv/f") == b"b-x Debian Debian b-x"
    assert conn.read_file("/srv/s") == b"again b-x"  # set_fact gives a variable only
    assert conn.read_file("/srv/c") == b"role-default"


def test_gather_facts_keys_in_the_lab(tmp_path: Path) -> None:
    _role(tmp_path, "- debug: {msg: hi}\n")
    spec = lab(tmp_path, guest_extra="gather_subset: [min]\n",
               top_extra="defaults:\n  gather_facts: false\n")
    g = spec.guests[0]
    assert (g.gather_facts, g.gather_subset) == (False, ("min",))
    assert lab(tmp_path).guests[0].gather_subset == ("all",)
    with pytest.raises(LabError, match="gather_facts: expected true or false"):
        lab(tmp_path, guest_extra="gather_facts: sometimes\n")
    recap, _ = play(tree(tmp_path), spec)
    assert recap.ok == 1


@pytest.mark.parametrize(("task", "what"), [
    ("- command: 'true'\n  delegate_to: localhost\n", "task keyword 'delegate_to'"),
    ("- command: 'true'\n  colour: red\n", "task keyword 'colour'"),
    ("- frobnicate: {x: 1}\n", "module 'frobnicate'"),
    ("- meta: end_universe\n", "meta: end_universe"),
    ("- debug: {msg: x}\n  with_inventory_hostnames: all\n", "loop 'with_inventory_hostnames'"),
    ("- command: 'true'\n  become_method: pbrun\n", "become_method 'pbrun'"),
    ("- block: [{debug: {msg: x}}]\n  register: r\n", "block keyword 'register'"),
    ("- debug: {msg: \"{{ x | frobnicate }}\"}\n", "the filter 'frobnicate'"),
    ("- debug: {msg: x}\n  when: x is frobbed\n", "the test 'frobbed'"),
])
def test_what_is_not_supported_fails_at_load(tmp_path: Path, task: str, what: str) -> None:
    _role(tmp_path, "- name: first\n  copy: {content: a, dest: /srv/a}\n" + task)
    conn = tree(tmp_path)
    with pytest.raises(RoleError, match=r"role demo, tasks/main.yml:3.*not supported by "
                                        r"provision9p: " + what.replace("(", r"\(")):
        play(conn, lab(tmp_path))
    assert conn.stat("/srv/a") is None


def test_free_form_key_value_arguments(tmp_path: Path) -> None:
    _role(tmp_path, """\
        - file: path=/srv/d state=directory mode=0750
        - copy: dest=/srv/d/f content='a b' mode="0600"
        - lineinfile: path=/srv/d/g line="{{ 'x' | upper }} y" create=yes
        - command: touch made chdir=/srv/d creates=/srv/d/made
        - shell: echo "$((1+2))" > /srv/d/sum removes=/srv/d/f
        """)
    conn = tree(tmp_path)
    _recap, _out = play(conn, lab(tmp_path))
    st = conn.stat("/srv/d")
    assert st is not None and st.mode & 0o7777 == 0o750
    assert conn.read_file("/srv/d/f") == b"a b" and conn.read_file("/srv/d/g") == b"X y\n"
    assert conn.stat("/srv/d/made") is not None and conn.read_file("/srv/d/sum") == b"3\n"
    again, _ = play(conn, lab(tmp_path))
    assert again.changed == 1  # only the shell task, which has no creates=


def test_loop_control_pause_waits_between_items(tmp_path: Path) -> None:
    _role(tmp_path, """\
        - debug: {msg: "{{ item }}"}
          loop: [1, 2, 3]
          loop_control: {pause: 0.3}
        """)
    start = time.monotonic()
    play(tree(tmp_path), lab(tmp_path))
    assert time.monotonic() - start >= 0.6  # two pauses: between items, not before


def test_a_multiline_shell_script_keeps_its_lines_and_until_retries_it(tmp_path: Path
                                                                     ) -> None:
    # A `shell: |` script is free-form text: its newlines separate commands (they were
    # joined into one line, so the script below succeeded at once with attempts 1).
    write_role(tmp_path, "demo", {"tasks/main.yml": """
- name: Start
  command: rm -f /run/features-counter
  changed_when: false
  check_mode: false
- name: retry
  shell: |
    n=$(cat /run/features-counter || echo 0)
    n=$((n + 1))
    echo "$n" > /run/features-counter
    test "$n" -ge 3
  register: features_retried
  until: features_retried.rc == 0
  retries: 5
  delay: 0
  changed_when: false
  check_mode: false
- copy: {content: "attempts {{ features_retried.attempts }}\\n", dest: /srv/r}
"""})
    conn = tree(tmp_path)
    for d in ("/run", "/srv"):
        if conn.stat(d) is None:
            conn.mkdir(d, mode=0o755)
    play(conn, lab(tmp_path))
    assert conn.read_file("/srv/r") == b"attempts 3\n"


def test_groups_and_hostvars_of_the_lab(tmp_path: Path) -> None:
    # The groups of `provision9p inventory`; another guest by its vars and groups, and
    # by its facts once a play of it gathered them in this run.
    from provision9p.lab import validate_text
    from provision9p.tasks import scope

    _role(tmp_path, """\
        - copy:
            dest: /srv/groups
            content: >-
              {{ groups | dictsort | map('first') | join(',') }}
              {{ groups.web | join(',') }} {{ groups.ungrouped | length }}
              {{ groups['my_lab'] | join(',') }} {{ group_names | join(',') }}
              {{ hostvars | list | join(',') }} {{ hostvars.h.color }}
              {{ hostvars.h.group_names | join(',') }} {{ hostvars.h.ansible_port is defined }}
              {{ hostvars.h.ansible_facts.distribution | default('none') }}
        """)
    text = ("name: my-lab\nroles_path: [roles]\nguests:\n"
            "  g: {roles: [demo], groups: [web, db]}\n  h: {groups: [web], vars: {color: red}}\n")
    spec = validate_text(text, str(tmp_path / "lab.yml"), tmp_path)
    conn = tree(tmp_path)
    play(conn, spec)
    assert conn.read_file("/srv/groups").decode().split() == [
        "all,db,my_lab,ungrouped,web", "g,h", "0", "g,h", "db,my_lab,web", "g,h", "red",
        "my_lab,web", "False", "none"]
    # As if h's play had gathered its facts earlier in this run.
    scope._GATHERED[(str(spec.state_dir), "h")] = {"distribution": "Debian"}
    try:
        conn.remove("/srv/groups")
        play(conn, spec)
    finally:
        del scope._GATHERED[(str(spec.state_dir), "h")]
    assert conn.read_file("/srv/groups").decode().split()[-1] == "Debian"
