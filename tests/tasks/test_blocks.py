"""The task tree: blocks, static imports, dynamic includes, roles within roles,
handlers, meta, dependencies; on a real tree (busybox chroot)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tasks.roleplay import lab, play, tree, write_role

from provision9p.errors import RoleError, TaskError

pytestmark = pytest.mark.tree  # roles run in a busybox chroot on a real tree


def test_include_tasks_when_gates_the_whole_include(tmp_path: Path) -> None:
    # The bug of issue 10: the included tasks ran although the include's `when` was false.
    write_role(tmp_path, "demo", {
        "tasks/main.yml": """\
            - include_tasks: disable.yml
              when: swap_enabled
            - include_tasks: enable.yml
              when: swap_enabled
            """,
        "tasks/disable.yml": "- copy: {content: gone, dest: /srv/disabled}\n",
        "tasks/enable.yml": "- copy: {content: on, dest: /srv/enabled}\n",
        "defaults/main.yml": "swap_enabled: false\n",
    })
    conn = tree(tmp_path)
    recap, out = play(conn, lab(tmp_path))
    assert conn.stat("/srv/disabled") is None and conn.stat("/srv/enabled") is None, out
    assert recap.skipped == 2


def test_block_inherits_when_vars_tags_and_rescue_sees_the_failure(tmp_path: Path) -> None:
    write_role(tmp_path, "demo", {"tasks/main.yml": """\
        - name: outer
          vars: {word: blocky}
          tags: [web]
          block:
            - copy: {content: "{{ word }}", dest: /srv/one}
            - name: breaks
              command: /bin/false
            - copy: {content: never, dest: /srv/never}
          rescue:
            - copy:
                content: "{{ ansible_failed_task.name }} {{ ansible_failed_result.rc }}"
                dest: /srv/rescued
          always:
            - copy: {content: always, dest: /srv/always}
        - block:
            - copy: {content: x, dest: /srv/skipped}
          when: false
        - block:
            - copy: {content: x, dest: /srv/notifier}
          notify: from block
          tags: web
        """, "handlers/main.yml": """\
        - name: from block
          copy: {content: heard, dest: /srv/heard}
        """})
    conn = tree(tmp_path)
    recap, out = play(conn, lab(tmp_path), tags={"web"})
    assert conn.read_file("/srv/one") == b"blocky"
    assert conn.stat("/srv/never") is None
    assert conn.read_file("/srv/rescued") == b"breaks 1"
    assert conn.read_file("/srv/always") == b"always"
    assert conn.stat("/srv/skipped") is None
    assert conn.read_file("/srv/heard") == b"heard"  # a block's notify, on its tasks
    assert (recap.failed, recap.rescued) == (0, 1), out
    assert "rescued=1" in out


def test_a_failure_without_rescue_still_runs_always_then_stops(tmp_path: Path) -> None:
    write_role(tmp_path, "demo", {"tasks/main.yml": """\
        - block:
            - command: /bin/false
          always:
            - copy: {content: a, dest: /srv/always}
        - copy: {content: a, dest: /srv/after}
        """})
    conn = tree(tmp_path)
    with pytest.raises(TaskError, match="failed"):
        play(conn, lab(tmp_path))
    assert conn.stat("/srv/always") is not None and conn.stat("/srv/after") is None


def test_import_tasks_is_static_and_passes_its_keywords(tmp_path: Path) -> None:
    write_role(tmp_path, "demo", {
        "tasks/main.yml": """\
            - import_tasks: sub/files.yml
              vars: {what: imported}
              when: do_it
            - import_tasks: "{{ role_path }}/tasks/sub/files.yml"
              vars: {what: second}
              when: not do_it
            """,
        "tasks/sub/files.yml": "- import_tasks: deeper.yml\n",
        "tasks/sub/deeper.yml": "- copy: {content: '{{ what }}', dest: '/srv/{{ what }}'}\n",
        "defaults/main.yml": "do_it: true\n",
    })
    conn = tree(tmp_path)
    play(conn, lab(tmp_path))
    assert conn.read_file("/srv/imported") == b"imported"
    assert conn.stat("/srv/second") is None


@pytest.mark.parametrize(("content", "message"), [
    ("- import_tasks: missing.yml\n", "import_tasks: no file missing.yml"),
    ("- import_tasks: bad.yml\n", r"tasks/bad.yml:1.*not supported by provision9p: module"),
])
def test_static_imports_fail_at_load(tmp_path: Path, content: str, message: str) -> None:
    write_role(tmp_path, "demo", {"tasks/main.yml": "- copy: {content: a, dest: /srv/a}\n"
                                                    + content,
                                  "tasks/bad.yml": "- nosuchmodule: {x: 1}\n"})
    conn = tree(tmp_path)
    with pytest.raises(RoleError, match=message):
        play(conn, lab(tmp_path))
    assert conn.stat("/srv/a") is None  # nothing ran


def test_dynamic_includes_fail_only_when_reached(tmp_path: Path) -> None:
    write_role(tmp_path, "demo", {
        "tasks/main.yml": """\
            - include_tasks: "{{ os_file }}"
            - include_tasks: RedHat.yml
              when: os == 'RedHat'
            - include_tasks: each.yml
              loop: [a, b]
              loop_control: {loop_var: name}
            - include_tasks:
                file: tagged.yml
                apply: {tags: [deep]}
              tags: [deep]
            """,
        "tasks/Debian.yml": "- copy: {content: deb, dest: /srv/debian}\n",
        "tasks/RedHat.yml": "- yum: {name: x}\n",
        "tasks/each.yml": "- copy: {content: '{{ name }}', dest: '/srv/each-{{ name }}'}\n",
        "tasks/tagged.yml": "- copy: {content: t, dest: /srv/tagged}\n",
        "defaults/main.yml": "os: Debian\nos_file: '{{ os }}.yml'\n",
    })
    conn = tree(tmp_path)
    _recap, _out = play(conn, lab(tmp_path))
    assert conn.read_file("/srv/debian") == b"deb"
    assert conn.read_file("/srv/each-b") == b"b" and conn.stat("/srv/tagged") is not None
    conn.remove("/srv/tagged")
    play(conn, lab(tmp_path), tags={"deep"})  # apply's tags reach the included task
    assert conn.stat("/srv/tagged") is not None
    spec = lab(tmp_path, guest_extra="vars: {os: RedHat}\n")
    with pytest.raises(RoleError, match=r"RedHat.yml:1.*not supported by provision9p: "
                                        r"module 'yum'"):
        play(conn, spec)


def test_import_and_include_role_with_from_files(tmp_path: Path) -> None:
    write_role(tmp_path, "demo", {"tasks/main.yml": """\
        - import_role: {name: lib, tasks_from: setup, vars_from: extra.yml}
        - include_role:
            name: lib
            tasks_from: setup.yml
            defaults_from: other
            handlers_from: more
        - meta: flush_handlers
        - shell: echo after >> /srv/order
          changed_when: false
        """})
    write_role(tmp_path, "lib", {
        "tasks/setup.yml": """\
            - copy:
                content: "{{ lib_word }} {{ lib_extra | default('-') }} {{ role_name }}"
                dest: "/srv/{{ lib_word }}"
              notify: lib changed
            """,
        "defaults/main.yml": "lib_word: default\n",
        "defaults/other.yml": "lib_word: other\n",
        "vars/extra.yml": "lib_extra: fromvars\n",
        "handlers/more.yml": """\
            - name: "lib {{ 'changed' }}"
              shell: echo handled >> /srv/order
            """,
    })
    conn = tree(tmp_path)
    _recap, out = play(conn, lab(tmp_path))
    assert conn.read_file("/srv/default") == b"default fromvars lib"
    assert conn.read_file("/srv/other") == b"other fromvars lib"  # import_role is public
    assert conn.read_file("/srv/order") == b"handled\nafter\n", out  # flushed first
    recap2, out2 = play(conn, lab(tmp_path))
    assert recap2.changed == 0, out2


def test_handlers_listen_and_end_play(tmp_path: Path) -> None:
    write_role(tmp_path, "demo", {
        "tasks/main.yml": """\
            - copy: {content: a, dest: /srv/a}
              notify: [restart web]
            - meta: flush_handlers
            - meta: end_play
              when: stop_here
            - copy: {content: b, dest: /srv/b}
            """,
        "handlers/main.yml": """\
            - name: one
              shell: echo x >> /srv/heard
              listen: restart web
            - name: two
              shell: echo y >> /srv/heard
              listen: [restart web]
            - name: never
              copy: {content: n, dest: /srv/never}
            """,
        "defaults/main.yml": "stop_here: true\n",
    })
    conn = tree(tmp_path)
    recap, _out = play(conn, lab(tmp_path))
    assert conn.read_file("/srv/heard") == b"x\ny\n"
    assert conn.stat("/srv/b") is None and conn.stat("/srv/never") is None
    assert recap.failed == 0


def test_dependencies_with_vars_duplicates_and_vars_dirs(tmp_path: Path) -> None:
    write_role(tmp_path, "demo", {
        "meta/main.yml": """\
            galaxy_info: {author: me}
            dependencies:
              - role: dep
                vars: {dep_name: first}
              - {role: dep, dep_name: second}
              - {role: dep, dep_name: second}
            """,
        "tasks/main.yaml": "- copy: {content: '{{ a }}{{ b }}', dest: /srv/demo}\n",
        "defaults/main/one.yml": "a: 1\n",
        "defaults/main/two.yaml": "b: 2\n",
        "meta/argument_specs.yml": "argument_specs: {main: {options: {}}}\n",
    })
    write_role(tmp_path, "dep", {
        "tasks/main.yml": "- shell: echo {{ dep_name }} >> /srv/deps\n",
    })
    conn = tree(tmp_path)
    play(conn, lab(tmp_path))
    assert conn.read_file("/srv/deps") == b"first\nsecond\n"  # the same params: once
    assert conn.read_file("/srv/demo") == b"12"
    (tmp_path / "roles/dep/meta").mkdir()
    (tmp_path / "roles/dep/meta/main.yml").write_text("allow_duplicates: true\n")
    conn.remove("/srv/deps")
    play(conn, lab(tmp_path))
    assert conn.read_file("/srv/deps") == b"first\nsecond\nsecond\n"


def test_a_notify_nobody_listens_to_is_an_error(tmp_path: Path) -> None:
    write_role(tmp_path, "demo", {"tasks/main.yml": """\
        - copy: {content: a, dest: /srv/a}
          notify: restart nothing
        """})
    with pytest.raises(TaskError, match="no handler named or listening to 'restart nothing'"):
        play(tree(tmp_path), lab(tmp_path))


def test_imported_role_vars_are_public_afterwards(tmp_path: Path) -> None:
    write_role(tmp_path, "demo", {"tasks/main.yml": """\
        - import_role: {name: lib}
        - include_role: {name: other, public: true}
        - copy: {content: "{{ lib_default }} {{ lib_var }} {{ other_default }}", dest: /srv/p}
        """})
    write_role(tmp_path, "lib", {"defaults/main.yml": "lib_default: d\n",
                                 "vars/main.yml": "lib_var: v\n",
                                 "tasks/main.yml": "- debug: {msg: lib}\n"})
    write_role(tmp_path, "other", {"defaults/main.yml": "other_default: o\n",
                                   "tasks/main.yml": "- debug: {msg: other}\n"})
    conn = tree(tmp_path)
    play(conn, lab(tmp_path))
    assert conn.read_file("/srv/p") == b"d v o"


def test_include_tasks_with_first_found_searches_tasks(tmp_path: Path) -> None:
    write_role(tmp_path, "demo", {
        "tasks/main.yml": """\
            - include_tasks: "{{ item }}"
              with_first_found:
                - "{{ os }}-{{ release }}.yml"
                - "{{ os }}.yml"
                - default.yml
            - include_role: {name: "{{ item }}"}
              loop: [lib]
            """,
        "tasks/Debian.yml": "- copy: {content: deb, dest: /srv/found}\n",
        "tasks/default.yml": "- copy: {content: default, dest: /srv/found}\n",
        "defaults/main.yml": "os: Debian\nrelease: trixie\n",
    })
    write_role(tmp_path, "lib", {"tasks/main.yml": "- copy: {content: lib, dest: /srv/lib}\n"})
    conn = tree(tmp_path)
    play(conn, lab(tmp_path))
    assert conn.read_file("/srv/found") == b"deb" and conn.read_file("/srv/lib") == b"lib"


def test_imported_and_included_roles_run_their_dependencies_once(tmp_path: Path) -> None:
    write_role(tmp_path, "demo", {"tasks/main.yml": """\
        - import_role: {name: app}
        - include_role: {name: app}
        """})
    write_role(tmp_path, "app", {
        "meta/main.yml": "dependencies: [{role: common, common_word: app}]\n",
        "tasks/main.yml": "- shell: echo 'app {{ common_default }}' >> /srv/log\n"})
    write_role(tmp_path, "common", {
        "defaults/main.yml": "common_default: cd\n",
        "tasks/main.yml": "- shell: echo 'common {{ common_word }}' >> /srv/log\n"})
    conn = tree(tmp_path)
    play(conn, lab(tmp_path))
    assert conn.read_file("/srv/log") == b"common app\napp cd\napp cd\n"


def test_argument_specs_are_checked_when_the_role_starts(tmp_path: Path) -> None:
    write_role(tmp_path, "demo", {
        "tasks/main.yml": "- copy: {content: '{{ mode }}', dest: /srv/mode}\n",
        "defaults/main.yml": "mode: fast\n",
        "meta/argument_specs.yml": """\
            argument_specs:
              main:
                options:
                  mode: {type: str, choices: [fast, slow]}
                  port: {type: int, required: true}
            """})
    conn = tree(tmp_path)
    with pytest.raises(TaskError, match="missing required argument: port"):
        play(conn, lab(tmp_path))
    assert conn.stat("/srv/mode") is None
    with pytest.raises(TaskError, match="mode: 'fastest' is not one of"):
        play(conn, lab(tmp_path, guest_extra="vars: {port: 80, mode: fastest}\n"))
    recap, _ = play(conn, lab(tmp_path, guest_extra="vars: {port: '80'}\n"))
    assert conn.read_file("/srv/mode") == b"fast" and recap.ok == 1
