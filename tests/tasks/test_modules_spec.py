"""The parameter declarations: load-time checks, run-time coercion, symbolic modes and
`provision9p doc`, exact messages included."""

from __future__ import annotations

from typing import Any

import pytest

from provision9p.cli import main
from provision9p.errors import TaskError
from provision9p.tasks.modules import MODULES, check_args, coerce_args
from provision9p.tasks.modules.base import parse_mode


@pytest.mark.parametrize(("module", "args", "message"), [
    ("copy", {"dest": "/x", "contnet": "y"}, r"copy has no parameter 'contnet'"),
    ("apt", {"name": "x", "state": "gone"}, r"apt: state must be one of present, absent"),
    ("copy", {"dest": "/x", "src": "a", "content": "b"},
     r"copy: src and content are mutually exclusive"),
    ("copy", {"dest": "/x"}, r"copy needs one of: src, content"),
    ("template", {"dest": "/x"}, r"template: missing required parameter src"),
    ("lineinfile", {"path": "/x"}, r"lineinfile: state=present needs line"),
    ("lineinfile", {"path": "/x", "line": "a", "create": "maybe"},
     r"lineinfile: create must be a boolean"),
    ("user", {"name": "a", "uid": "many"}, r"user: uid must be an integer"),
    ("file", {"path": "/x", "mode": "rwxr-xr-x"}, r"not an octal mode"),
    ("debconf", {"name": "tzdata", "question": "q"}, r"go together \(missing vtype\)"),
    ("file", {"path": "/x", "dest": "/y"}, r"dest and another alias of path"),
])
def test_load_time_check_refuses_with_a_reason(module: str, args: dict[str, Any],
                                               message: str) -> None:
    with pytest.raises(TaskError, match=message):
        check_args(module, args)


def test_unknown_parameter_says_what_was_meant() -> None:
    with pytest.raises(TaskError) as exc:
        check_args("copy", {"dest": "/x", "contnet": "y"})
    assert exc.value.hint is not None and exc.value.hint.startswith("did you mean 'content'?")


def test_unsupported_parameter_fails_at_load_and_says_so() -> None:
    with pytest.raises(TaskError, match="not supported by provision9p: copy seuser"):
        check_args("copy", {"dest": "/x", "content": "", "seuser": "system_u"})
    with pytest.raises(TaskError, match="not supported by provision9p: pause prompt"):
        check_args("pause", {"prompt": "Press return"})
    with pytest.raises(TaskError, match="not supported by provision9p: user generate_ssh_key"):
        check_args("user", {"name": "a", "generate_ssh_key": True})


def test_templates_wait_for_run_time() -> None:
    check_args("apt", {"name": "x", "state": "{{ wanted }}"})
    with pytest.raises(TaskError, match="mutually exclusive"):
        check_args("copy", {"dest": "/x", "src": "{{ a }}", "content": "{{ b }}"})
    check_args("lineinfile", {"path": "/x", "line": "{{ l }}", "create": "{{ c }}"})
    with pytest.raises(TaskError, match="state must be one of"):
        coerce_args("apt", {"name": "x", "state": "gone"})


def test_coercion_folds_aliases_fills_defaults_and_converts() -> None:
    out = coerce_args("apt", {"pkg": "a,b", "update_cache": "yes", "cache_valid_time": "60"})
    assert out["name"] == ["a", "b"] and "pkg" not in out
    assert out["update_cache"] is True and out["cache_valid_time"] == 60
    assert out["state"] == "present" and out["purge"] is False
    out = coerce_args("lineinfile", {"dest": "/etc/x", "line": 5, "create": "on"})
    assert out == {**out, "path": "/etc/x", "line": "5", "create": True, "state": "present"}
    assert coerce_args("set_fact", {"a": [1], "cacheable": "no"}) == {"a": [1],
                                                                      "cacheable": False}
    assert coerce_args("get_url", {"url": "u", "dest": "/d", "headers": '{"A": "b"}'}
                       )["headers"] == {"A": "b"}


def test_every_module_declares_typed_known_parameters() -> None:
    for name, module in MODULES.items():
        spec = module.spec
        assert spec.help, name
        for pname, p in spec.params.items():
            assert p.type in ("str", "bool", "int", "float", "path", "list", "dict",
                              "raw"), (name, pname)
            assert not set(p.aliases) & set(spec.params), (name, pname)
        for group in (*spec.mutually_exclusive, *spec.required_one_of,
                      *spec.required_together):
            assert set(group) <= set(spec.params), (name, group)
        assert module.params >= set(spec.params)


@pytest.mark.parametrize(("mode", "current", "is_dir", "expected"), [
    ("u+rwx,g-w,o=r", 0o666, False, 0o744),
    ("go-w", 0o777, False, 0o755),
    ("a+X", 0o600, True, 0o711),
    ("a+X", 0o600, False, 0o600),
    ("a+X", 0o700, False, 0o711),
    ("u=rw,g=r,o=", 0o777, False, 0o640),
    ("g=u", 0o750, False, 0o770),
    ("u+s,+t", 0o755, True, 0o5755),
    ("=r", 0o777, False, 0o444),
    ("0640", 0o777, False, 0o640),
    (0o600, 0o777, False, 0o600),
])
def test_symbolic_modes_as_chmod_computes_them(mode: Any, current: int, is_dir: bool,
                                               expected: int) -> None:
    assert parse_mode(mode, current, is_dir) == expected


def test_doc_page_and_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doc", "ansible.builtin.lineinfile"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("lineinfile - ")
    assert "  path (path; required; aliases: dest, destfile, name)" in out
    assert "  state (str; default: present; choices: present, absent)" in out
    assert "mutually exclusive: insertbefore, insertafter" in out
    assert "state=present needs line" in out
    assert main(["doc", "--list"]) == 0
    listing = capsys.readouterr().out
    assert all(f"\n{name} " in "\n" + listing for name in MODULES)


def test_doc_unknown_module_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doc", "lineinfle"]) == 2
    err = capsys.readouterr().err
    assert "no module 'lineinfle'" in err and "did you mean 'lineinfile'?" in err


def test_package_passes_backend_parameters_to_apt_when_it_runs(tmp_path: Any) -> None:
    # Ansible's package hands the rest to the backend: a yum-only parameter loads (its
    # task may sit in a RedHat branch) and fails, as apt's, only if it runs on Debian.
    from provision9p.connect.tree import TreeConnection
    from provision9p.rootfs.metadata.stores import PlainStore
    from provision9p.tasks.modules import ModuleContext

    check_args("package", {"name": "git", "enablerepo": "epel"})
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/apt-get").write_text("")
    ctx = ModuleContext(check=True, role_path=tmp_path, render=lambda t: t)
    with TreeConnection(tmp_path, PlainStore(tmp_path), "g") as conn, \
            pytest.raises(TaskError, match="apt has no parameter 'enablerepo'"):
        MODULES["package"].run(conn, coerce_args("package", {"name": "git",
                                                             "enablerepo": "epel"}), ctx)
