"""Ansible's Jinja tests (`is version`, `is match`, results, paths, sets) and conditions
(`when`), as tables, each case also judged by ansible-core's own Templar."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from provision9p.errors import TaskError
from provision9p.tasks.jinja.tests import loose_version
from provision9p.tasks.templating import condition

VARS: dict[str, Any] = {
    "ver": "7.0", "deb": "1:2.3-4", "s": "false", "t": True, "f": False, "n": 0,
    "u": {"x": 1}, "lst": [1, 2], "multi": "x\nabc", "v": "a1b",
    "ok": {"changed": False, "failed": False},
    "loop_res": {"results": [{"changed": False}, {"changed": True}]},
    "bad": {"failed": True, "changed": True}, "skip": {"skipped": True, "changed": False},
}

# Condition -> what provision9p (and Ansible) judges it.
CASES: list[tuple[str, bool]] = [
    # version: loose by default (distutils' LooseVersion), strict and semver on demand
    ("ver is version('6', '>=')", True),
    ("ver is version('7', '==')", False),  # [7, 0] != [7]
    ("ver is version('7.0.0', '<')", True),
    ("ver is version('7.0.1', 'lt')", True),
    ("ver is version('7.0', 'le')", True),
    ("ver is version('6.9', operator='gt')", True),
    ("ver is version('7.0', '!=')", False),
    ("ver is version('7.1', '<>')", True),
    ("ver is version('7.0', 'eq')", True),
    ("ver is version('7.0', '=')", True),
    ("ver is version_compare('10', '<')", True),
    ("'12' is version('9', 'gt')", True),
    ("'1.10' is version('1.9', '>')", True),
    ("deb is version('1:2.3-10', '<')", True),
    ("deb is version('1:2.3-4', 'eq')", True),
    ("'1:2.3' is version('2.3', '<')", True),
    ("'1.2rc1' is version('1.2', '>')", True),  # loose: [1, 2, 'rc', 1] > [1, 2]
    ("'2.3' is version('2.3', '==', strict=true)", True),
    ("'2.3.0' is version('2.3', '==', strict=true)", True),
    ("'2.3a1' is version('2.3', '<', strict=true)", True),
    ("'2.3b1' is version('2.3a2', '>', strict=true)", True),
    ("'1.0.0-alpha' is version('1.0.0', '<', version_type='semver')", True),
    ("'1.0.0-alpha.1' is version('1.0.0-alpha.beta', '<', version_type='semver')", True),
    ("'1.0.0-2' is version('1.0.0-11', '<', version_type='semver')", True),
    ("'1.0.0-rc.1' is version('1.0.0-beta.11', '>', version_type='semantic')", True),
    ("'1.0.0+b1' is version('1.0.0+b2', '==', version_type='semver')", True),
    ("ver is version('7', '>=', version_type='loose')", True),
    ("ver is ansible.builtin.version('6', '>=')", True),
    # regular expressions: match anchors at the start, search does not
    ("'abc' is match('b')", False),
    ("'abc' is search('b')", True),
    ("'ABC' is match('a', ignorecase=true)", True),
    ("multi is match('^a', multiline=true)", False),
    ("multi is search('^a', multiline=true)", True),
    ("multi is search('^a')", False),
    ("'abc' is regex('c$')", True),
    ("'abc' is regex('b', match_type='match')", False),
    ("v is match('a\\\\db')", True),  # in a condition '\\d' is Jinja's escape for \d
    ("v is search('\\d')", True),
    ("v is not match('x')", True),
    # truthiness
    ("'false' is truthy", True),
    ("'false' is truthy(convert_bool=true)", False),
    ("'no' is falsy(convert_bool=true)", True),
    ("'' is falsy", True),
    ("2 is truthy(convert_bool=true)", True),
    ("'on' is truthy(convert_bool=True)", True),
    # sets and containers
    ("[1, 2] is subset([1, 2, 3])", True),
    ("[1, 4] is subset([1, 2, 3])", False),
    ("[1, 2, 3] is superset([1, 2])", True),
    ("[1, 2] is issubset(lst)", True),
    ("lst is contains(2)", True),
    ("lst is not contains(3)", True),
    ("[true, false] is any", True),
    ("[true, false] is all", False),
    ("'nan' | float is nan", True),
    ("1 is nan", False),
    # paths on the controller
    ("'/etc/passwd' is file", True),
    ("'/etc' is directory", True),
    ("'/etc' is file", False),
    ("'/nonexistent/x' is exists", False),
    ("'/etc' is abs", True),
    ("'etc' is abs", False),
    ("'/' is mount", True),
    ("'/etc/passwd' is same_file('/etc/../etc/passwd')", True),
    ("'/etc/passwd' is link", False),
    # results
    ("ok is changed", False), ("ok is not changed", True), ("loop_res is changed", True),
    ("bad is failed", True), ("bad is succeeded", False), ("ok is success", True),
    ("ok is successful", True), ("bad is failure", True), ("skip is skipped", True),
    ("ok is skipped", False), ("ok is finished", True), ("ok is started", True),
    ("ok is unreachable", False), ("ok is reachable", True), ("bad is change", True),
    # URLs
    ("'http://example.org/a' is url", True), ("'example.org' is url", False),
    ("'file:///etc/hosts' is url", True), ("'urn:isbn:0451450523' is urn", True),
    ("'http://example.org' is urn", False), ("'mailto:a@b' is uri", True),
    ("'http://example.org' is uri(['https'])", False),
    # Jinja's type tests
    ("'x' is string", True), ("1 is number", True), ("u is mapping", True),
    ("lst is iterable", True), ("lst is sequence", True), ("t is boolean", True),
    ("1 is integer", True), ("1.5 is float", True), ("'x' is vault_encrypted", False),
    ("none is none", True),
    # conditions as roles write them
    ("t", True), ("f", False), ("not f", True), ("t and not f", True),
    ("u.x == 1 and t", True), ("u.q is defined", False), ("nope.q is defined", False),
    ("nope is undefined", True), ("nope.q.r is undefined", True), ("s | bool", False),
    ("lst | length > 1", True), ("'a' in lst", False), ("1 in lst", True),
    ("t and\n f", False), ("nope | default(true)", True),
    ("ansible_check_mode | default(false)", False), ("'{{ t }}'", True),
    ("ver is version('6', '>=') and u.x is defined", True),
]


@pytest.mark.parametrize(("expr", "expected"), CASES, ids=[c for c, _ in CASES])
def test_condition_table(expr: str, expected: bool) -> None:
    assert condition(expr, dict(VARS)) is expected


@pytest.fixture(scope="module")
def templar() -> Any:
    pytest.importorskip("ansible.template")
    import warnings

    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    return Templar(loader=DataLoader(), variables=dict(VARS))


def _judge(templar: Any, expr: str) -> Any:
    from ansible.template import trust_as_template

    return templar.evaluate_conditional(trust_as_template(expr))


# Ansible 2.19 refuses a template inside a condition whose value is untrusted; 2.15 to
# 2.18 rendered it first. Ours follows the older, accepting behaviour.
_ANSIBLE_219_REFUSES = {"'{{ t }}'"}


@pytest.mark.parametrize(("expr", "expected"), CASES, ids=[c for c, _ in CASES])
def test_condition_table_matches_real_ansible(templar: Any, expr: str, expected: bool) -> None:
    if expr in _ANSIBLE_219_REFUSES:
        pytest.skip("Ansible 2.19 refuses this; older Ansible accepted it")
    assert _judge(templar, expr) is expected


# Ansible refuses these too (a bad operator, an empty version, mixed loose parts, a bad
# strict version), each a TaskError that says why.
FAILING = [
    ("'1.2' is version('1.10', 'lessthan')", "invalid operator"),
    ("'' is version('1.10', '<')", "cannot be empty"),
    ("'1.a' is version('1.1', '<')", "version comparison failed"),
    ("'1.2.3.4' is version('1.2', '<', strict=true)", "version comparison failed"),
    ("'1.2' is version('1.3', '<', strict=true, version_type='loose')", "not both"),
    ("'x' is changed", "registered result"),
    ("nope", "'nope' is undefined"),
    ("u.x.y", "no attribute 'y'"),
]


@pytest.mark.parametrize(("expr", "message"), FAILING, ids=[e for e, _ in FAILING])
def test_what_ansible_refuses_is_a_task_error(expr: str, message: str) -> None:
    with pytest.raises(TaskError, match=message):
        condition(expr, dict(VARS))


@pytest.mark.parametrize(("expr", "message"), FAILING, ids=[e for e, _ in FAILING])
def test_ansible_refuses_them_too(templar: Any, expr: str, message: str) -> None:
    with pytest.raises(Exception):  # noqa: B017 - Ansible's own error types
        _judge(templar, expr)


@pytest.mark.parametrize(("text", "parts"), [
    ("1:2.3-4", [1, ":", 2, 3, "-", 4]),
    ("7.0", [7, 0]),
    ("1.2rc1", [1, 2, "rc", 1]),
    ("2.36-9+deb12u3", [2, 36, "-", 9, "+", "deb", 12, "u", 3]),
])
def test_loose_version_splits_as_distutils_did(text: str, parts: list[Any]) -> None:
    assert loose_version(text) == parts


def test_bare_string_variables_are_judged_by_jinja_truthiness() -> None:
    # Ansible before 2.19 (and 2.19 with ALLOW_BROKEN_CONDITIONALS): a non-empty string is
    # true, even "false"; `| bool` is how roles say what they mean.
    assert condition("s", {"s": "false"}) is True
    assert condition("s", {"s": ""}) is False
    assert condition("s | bool", {"s": "no"}) is False
    assert condition("{{ s }}", {"s": "false"}) is False  # rendered, then judged
    assert condition(True, {}) is True


def test_path_tests_look_at_this_host(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    os.symlink(tmp_path / "f", tmp_path / "l")
    where = {"d": str(tmp_path)}
    assert condition("(d ~ '/f') is file and (d ~ '/l') is link and d is directory", where)
    assert condition("(d ~ '/l') is same_file(d ~ '/f')", where)
    assert condition("(d ~ '/nope') is not exists", where)
