"""Lookups (one registry for with_* loops and lookup()/query()/q() in templates) and
free-form key=value splitting."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from tasks.roleplay import lab, play, tree, write_role

from provision9p.errors import TaskError
from provision9p.tasks.kv import parse_kv, split_args
from provision9p.tasks.lookups import run_lookup
from provision9p.tasks.templating import render

pytestmark = pytest.mark.tree  # roles run in a busybox chroot on a real tree


@pytest.mark.parametrize(("text", "module", "args"), [
    ("name=foo state=present", "apt", {"name": "foo", "state": "present"}),
    ("path=/x state=directory mode=0755", "file",
     {"path": "/x", "state": "directory", "mode": "0755"}),
    ("name='a b' comment=\"c d\"", "user", {"name": "a b", "comment": "c d"}),
    ("msg={{ a | default('x y') }} other=1", "debug",
     {"msg": "{{ a | default('x y') }}", "other": "1"}),
    ("echo a=b 'c d' chdir=/tmp creates=/x", "command",
     {"_raw_params": "echo a=b 'c d'", "chdir": "/tmp", "creates": "/x"}),
    ("vars/{{ item }}", "include_vars_like", {"_raw_params": "vars/{{ item }}"}),
])
def test_parse_kv(text: str, module: str, args: dict[str, Any]) -> None:
    assert parse_kv(text, module, free_form=module.endswith("_like")) == args


def test_parse_kv_refuses_words_for_a_module_without_free_form() -> None:
    with pytest.raises(TaskError, match="apt takes key=value parameters, and 'foo'"):
        parse_kv("foo state=present", "apt")
    assert split_args("a {{ b  c }} 'd  e'") == ["a", "{{ b  c }}", "'d  e'"]


def _vars(tmp_path: Path) -> dict[str, Any]:
    role = write_role(tmp_path, "demo", {"files/a.conf": "A\n", "files/b.conf": "B\n",
                                         "files/sub/c.txt": "C\n",
                                         "templates/t.j2": "{{ greeting }}!\n",
                                         "vars/Debian.yml": "x: 1\n"})
    return {"role_path": str(role), "playbook_dir": str(tmp_path), "greeting": "hi",
            "app_port": 80, "app_name": "x"}


def test_loop_lookups(tmp_path: Path) -> None:
    v = _vars(tmp_path)
    assert run_lookup("items", [[1, 2], 3], v) == [1, 2, 3]
    assert run_lookup("list", [[1, 2], 3], v) == [[1, 2], 3]
    assert run_lookup("indexed_items", ["a", "b"], v) == [[0, "a"], [1, "b"]]
    assert run_lookup("dict", {"k": 1}, v) == [{"key": "k", "value": 1}]
    assert run_lookup("together", [[1, 2], ["a"]], v) == [[1, "a"], [2, None]]
    assert run_lookup("nested", [[1, 2], ["a", "b"]], v) == [
        [1, "a"], [1, "b"], [2, "a"], [2, "b"]]
    users = [{"n": "ann", "keys": ["k1", "k2"]}, {"n": "bob"}]
    assert run_lookup("subelements", [users, "keys", {"skip_missing": True}], v) == [
        [users[0], "k1"], [users[0], "k2"]]
    with pytest.raises(TaskError, match="skip_missing"):
        run_lookup("subelements", [users, "keys"], v)
    assert run_lookup("sequence", "start=1 end=3", v) == ["1", "2", "3"]
    assert run_lookup("sequence", "start=0 count=3 stride=2 format=h%02d", v) == [
        "h00", "h02", "h04"]
    assert run_lookup("sequence", ["4-8/2", "3", "2-3:x%d"], v) == [
        "4", "6", "8", "1", "2", "3", "x2", "x3"]
    assert run_lookup("random_choice", ["a", "b"], v)[0] in ("a", "b")
    assert run_lookup("community.general.flattened", [[1, [2, [3]]], 4], v) == [1, 2, 3, 4]


def test_file_lookups_search_the_role(tmp_path: Path) -> None:
    v = _vars(tmp_path)
    role = Path(v["role_path"])
    assert run_lookup("fileglob", "*.conf", v) == [str(role / "files/a.conf"),
                                                   str(role / "files/b.conf")]
    assert run_lookup("fileglob", "sub/*.txt", v) == [str(role / "files/sub/c.txt")]
    found = run_lookup("first_found", [{"files": ["RedHat.yml", "Debian.yml"],
                                        "paths": ["vars"]}], v)
    assert found == [str(role / "vars/Debian.yml")]
    assert run_lookup("first_found", [["nope.yml", "Debian.yml"]],
                      {**v, "__p9_subdir": "vars"}) == [str(role / "vars/Debian.yml")]
    assert run_lookup("first_found", [{"files": ["nope"], "skip": True}], v) == []
    with pytest.raises(TaskError, match="none of the files was found: nope"):
        run_lookup("first_found", ["nope"], v)
    assert run_lookup("file", "a.conf", v) == ["A"]
    assert run_lookup("template", "t.j2", v) == ["hi!\n"]


def test_lookups_from_templates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    v = _vars(tmp_path)
    monkeypatch.setenv("P9_LOOKUP_TEST", "from-env")
    assert render("{{ lookup('file', 'a.conf') }}", v) == "A"
    assert render("{{ lookup('env', 'P9_LOOKUP_TEST') }}", v) == "from-env"
    assert render("{{ lookup('vars', 'nope', default='d') }}", v) == "d"
    assert render("{{ lookup('vars', 'greeting') }}", v) == "hi"
    assert render("{{ query('varnames', '^app_') }}", v) == ["app_port", "app_name"]
    assert render("{{ lookup('varnames', '^app_') }}", v) == "app_port,app_name"
    assert render("{{ q('items', [1, 2]) }}", v) == [1, 2]
    assert render("{{ lookup('items', [1, 2], wantlist=True) }}", v) == [1, 2]
    assert render("{{ lookup('pipe', 'echo n $((40 + 2))') }}", v) == "n 42"
    assert render("{{ query('lines', 'printf \"a\\nb\\n\"') }}", v) == ["a", "b"]
    assert render("{{ lookup('file', 'nope', errors='ignore') }}", v) == ""
    assert render("{{ lookup('fileglob', '*.conf') }}", v).count(",") == 1
    with pytest.raises(TaskError, match="not supported by provision9p: lookup 'dig'"):
        render("{{ lookup('dig', 'example') }}", v)
    assert os.environ["P9_LOOKUP_TEST"] == "from-env"


def test_with_loops_in_a_role(tmp_path: Path) -> None:
    write_role(tmp_path, "demo", {
        "tasks/main.yml": """\
            - shell: echo "{{ item.key }}={{ item.value }}" >> /srv/dict
              with_dict: "{{ settings }}"
            - shell: echo "{{ item.0.name }}:{{ item.1 }}" >> /srv/sub
              with_subelements:
                - "{{ users }}"
                - keys
            - shell: echo "{{ item }}" >> /srv/seq
              with_sequence: start=1 end=3 format=n%d
            - copy: {src: "{{ item }}", dest: "/srv/{{ item | basename }}"}
              with_fileglob: ["*.conf"]
            - copy: {content: "{{ item }}", dest: /srv/first}
              with_first_found:
                - files: [missing.conf, b.conf]
            - shell: echo "{{ item.0 }}{{ item.1 }}" >> /srv/nested
              with_nested: [[a, b], [1, 2]]
            - shell: echo "{{ item.0 }}-{{ item.1 }}" >> /srv/indexed
              with_indexed_items: [x, y]
            - shell: echo "{{ item.0 }}{{ item.1 }}" >> /srv/together
              with_together: [[a, b], [1, 2]]
            """,
        "defaults/main.yml": """\
            settings: {a: 1, b: 2}
            users: [{name: ann, keys: [k1, k2]}]
            """,
        "files/a.conf": "A\n", "files/b.conf": "B\n",
    })
    conn = tree(tmp_path)
    recap, out = play(conn, lab(tmp_path))
    assert conn.read_file("/srv/dict") == b"a=1\nb=2\n"
    assert conn.read_file("/srv/sub") == b"ann:k1\nann:k2\n"
    assert conn.read_file("/srv/seq") == b"n1\nn2\nn3\n"
    assert conn.read_file("/srv/a.conf") == b"A\n" and conn.read_file("/srv/b.conf") == b"B\n"
    assert conn.read_file("/srv/first").decode().endswith("files/b.conf")
    assert conn.read_file("/srv/nested") == b"a1\na2\nb1\nb2\n"
    assert conn.read_file("/srv/indexed") == b"0-x\n1-y\n"
    assert conn.read_file("/srv/together") == b"a1\nb2\n"
    assert recap.failed == 0, out
