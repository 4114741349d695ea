"""Ansible's Jinja tests: `is version(...)`, `is match(...)`, results, paths on the
controller, sets and truthiness."""

from __future__ import annotations

import math
import operator as _op
import os
import re
from collections.abc import Callable, Mapping, MutableSequence
from typing import Any
from urllib.parse import urlparse

from provision9p.errors import TaskError

_OPERATORS = {"==": "eq", "=": "eq", "eq": "eq", "<": "lt", "lt": "lt", "<=": "le",
              "le": "le", ">": "gt", "gt": "gt", ">=": "ge", "ge": "ge", "!=": "ne",
              "<>": "ne", "ne": "ne"}


def loose_version(text: str) -> list[int | str]:
    """distutils' LooseVersion: runs of digits are numbers, runs of lower-case letters
    and every other character are text; dots only separate. '1:2.3-4' -> [1, ':', 2, 3,
    '-', 4]."""
    parts = re.split(r"(\d+|[a-z]+|\.)", text)
    return [int(p) if p.isdigit() else p for p in parts if p and p != "."]


def strict_version(text: str) -> tuple[tuple[int, int, int], tuple[int, str, int]]:
    """distutils' StrictVersion: 1.2, 1.2.3, 1.2a1, 1.2.3b2; a pre-release sorts first."""
    m = re.match(r"^(\d+)\.(\d+)(?:\.(\d+))?(?:([ab])(\d+))?$", text, re.ASCII)
    if not m:
        raise ValueError(f"invalid version number {text!r}")
    release = (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
    pre = (0, m.group(4), int(m.group(5))) if m.group(4) else (1, "", 0)
    return release, pre


_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
                     r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
                     r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
                     r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$")


def semantic_version(text: str) -> tuple[Any, ...]:
    """Semantic Versioning 2.0 precedence: build metadata is ignored; a pre-release sorts
    before its release; numeric identifiers sort before text ones."""
    m = _SEMVER.match(text)
    if not m:
        raise ValueError(f"invalid semantic version {text!r}")
    release = tuple(int(m.group(i)) for i in (1, 2, 3))
    if m.group(4) is None:
        return (release, 1, ())
    pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in m.group(4).split("."))
    return (release, 0, pre)


_PARSERS: dict[str, Callable[[str], Any]] = {
    "loose": loose_version, "strict": strict_version, "semver": semantic_version,
    "semantic": semantic_version,
}


def version_compare(value: Any, version: Any, operator: str = "eq", strict: Any = None,
                    version_type: str | None = None) -> bool:
    """`ansible_distribution_version is version('12', '>=')`; loose comparison unless
    strict=true or version_type= says otherwise."""
    if strict is not None and version_type is not None:
        raise TaskError("version: give strict or version_type, not both")
    if not value:
        raise TaskError("version: the input version value cannot be empty")
    if not version:
        raise TaskError("version: the version to compare against cannot be empty")
    kind = "strict" if strict else (version_type or "loose")
    if kind == "pep440":
        raise TaskError("not supported by provision9p: version_type='pep440'",
                        hint="use 'loose', 'strict' or 'semver'")
    if kind not in _PARSERS:
        raise TaskError(f"version: invalid version type {kind!r}",
                        hint="one of loose, strict, semver, semantic")
    if operator not in _OPERATORS:
        raise TaskError(f"version: invalid operator {operator!r}",
                        hint="one of " + ", ".join(repr(o) for o in _OPERATORS))
    parse = _PARSERS[kind]
    try:
        return bool(getattr(_op, _OPERATORS[operator])(parse(str(value)),
                                                           parse(str(version))))
    except (TypeError, ValueError) as exc:
        raise TaskError(f"version comparison failed: {exc}") from None


def _regex(value: Any, pattern: str, ignorecase: bool, multiline: bool, how: str) -> bool:
    flags = (re.I if ignorecase else 0) | (re.M if multiline else 0)
    return bool(getattr(re.compile(pattern, flags), how)(str(value)))


def match(value: Any, pattern: str = "", ignorecase: bool = False,
          multiline: bool = False) -> bool:
    return _regex(value, pattern, ignorecase, multiline, "match")


def search(value: Any, pattern: str = "", ignorecase: bool = False,
           multiline: bool = False) -> bool:
    return _regex(value, pattern, ignorecase, multiline, "search")


def regex(value: Any, pattern: str = "", ignorecase: bool = False, multiline: bool = False,
          match_type: str = "search") -> bool:
    if match_type not in ("search", "match", "fullmatch"):
        match_type = "search"  # Ansible falls back the same way
    return _regex(value, pattern, ignorecase, multiline, match_type)


_BOOL_TRUE = {"y", "yes", "on", "1", "true", "t"}
_BOOL_FALSE = {"n", "no", "off", "0", "false", "f"}


def truthy(value: Any, convert_bool: bool = False) -> bool:
    if convert_bool:
        if isinstance(value, bool):
            return value
        key = value.strip().lower() if isinstance(value, str) else value
        if isinstance(key, int | float) and key in (0, 1):
            return bool(key)
        if isinstance(key, str) and key in _BOOL_TRUE | _BOOL_FALSE:
            return key in _BOOL_TRUE
    return bool(value)


def falsy(value: Any, convert_bool: bool = False) -> bool:
    return not truthy(value, convert_bool)


def _result(name: str) -> Callable[[Any], Mapping[str, Any]]:
    def check(result: Any) -> Mapping[str, Any]:
        if not isinstance(result, Mapping):
            raise TaskError(f"the {name!r} test expects a registered result (a dictionary)",
                            hint="register: the task's result, then test that variable")
        return result
    return check


def changed(result: Any) -> bool:
    r = _result("changed")(result)
    if "changed" in r:
        return bool(r["changed"])
    results = r.get("results")
    return bool(isinstance(results, MutableSequence) and results
                and isinstance(results[0], Mapping)
                and any(x.get("changed") for x in results))


def failed(result: Any) -> bool:
    return bool(_result("failed")(result).get("failed"))


def skipped(result: Any) -> bool:
    return bool(_result("skipped")(result).get("skipped"))


def unreachable(result: Any) -> bool:
    return bool(_result("unreachable")(result).get("unreachable"))


def _async(key: str) -> Callable[[Any], bool]:
    # A task that was not async counts as started and finished (Ansible warns and agrees).
    return lambda result: bool(_result(key)(result).get(key, True))


def timedout(result: Any) -> bool:
    t = _result("timedout")(result).get("timedout")
    return bool(t and isinstance(t, Mapping) and t.get("period"))


def isnan(value: Any) -> bool:
    try:
        return math.isnan(value)
    except TypeError:
        return False


def vaulted_file(path: Any) -> bool:
    try:
        with open(str(path), "rb") as f:
            return f.read(15) == b"$ANSIBLE_VAULT;"
    except OSError as exc:
        raise TaskError(f"cannot test if the file {path!r} is a vault: {exc}") from None


def uri(value: Any, schemes: Any = None) -> bool:
    try:
        parts = urlparse(value)
    except (TypeError, ValueError, AttributeError):
        return False
    return not schemes or parts.scheme in schemes


def url(value: Any, schemes: Any = None) -> bool:
    return uri(value, schemes) and bool(urlparse(value).netloc or urlparse(value).scheme == "file")


TESTS: dict[str, Callable[..., bool]] = {
    "version": version_compare, "version_compare": version_compare,
    "match": match, "search": search, "regex": regex,
    "truthy": truthy, "falsy": falsy,
    "subset": lambda a, b: set(a) <= set(b), "superset": lambda a, b: set(a) >= set(b),
    "contains": lambda seq, value: value in seq, "nan": isnan,
    "any": any, "all": all, "uri": uri, "url": url, "urn": lambda v: uri(v, ["urn"]),
    # Paths are tested on the controller (this host), as Ansible tests them.
    "file": os.path.isfile, "directory": os.path.isdir, "link": os.path.islink,
    "exists": os.path.exists, "link_exists": os.path.lexists, "abs": os.path.isabs,
    "same_file": os.path.samefile, "mount": os.path.ismount,
    "changed": changed, "failed": failed, "succeeded": lambda r: not failed(r),
    "skipped": skipped, "unreachable": unreachable, "reachable": lambda r: not unreachable(r),
    "started": _async("started"), "finished": _async("finished"), "timedout": timedout,
    # Vault is not supported: no value is ever an encrypted one.
    "vault_encrypted": lambda value: False, "vaulted_file": vaulted_file,
}
for _alias, _name in {"issubset": "subset", "issuperset": "superset", "isnan": "nan",
                      "is_file": "file", "is_dir": "directory", "is_link": "link",
                      "is_abs": "abs", "is_same_file": "same_file", "is_mount": "mount",
                      "change": "changed", "failure": "failed", "success": "succeeded",
                      "successful": "succeeded", "skip": "skipped"}.items():
    TESTS[_alias] = TESTS[_name]
