"""Ansible's filters on text: booleans, comments, regular expressions, paths, hashes,
encodings, times and URLs. Each follows Ansible's documented behaviour, edge cases
included; a value Ansible refuses is a TaskError here too."""

from __future__ import annotations

import base64
import datetime
import glob
import hashlib
import os
import random as _random
import re
import shlex
import time
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_plus, urlsplit

import jinja2

from provision9p.errors import TaskError

# Ansible's `bool` filter: only these spellings (case-insensitive, not stripped).
_TRUE = {"yes", "on", "true", "1"}
_FALSE = {"no", "off", "false", "0"}


def to_bool(value: Any) -> bool:
    if isinstance(value, str | int):  # bool is an int: True -> "true"
        text = str(value).lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    try:
        return bool(value == 1)  # Ansible's fallback for anything else
    except TypeError:
        return False


def ternary(value: Any, true_val: Any, false_val: Any, none_val: Any = None) -> Any:
    if value is None and none_val is not None:
        return none_val
    return true_val if value else false_val


def mandatory(value: Any, msg: str | None = None) -> Any:
    if isinstance(value, jinja2.Undefined):
        if msg is not None:
            raise TaskError(str(msg))
        name = getattr(value, "_undefined_name", None)
        label = f"{name!r} " if name else ""
        raise TaskError(f"Mandatory variable {label}not defined.",
                        hint="define it in the role's defaults or vars, or in the lab")
    return value


_COMMENT_STYLES: dict[str, dict[str, str]] = {
    "plain": {"decoration": "# "},
    "erlang": {"decoration": "% "},
    "c": {"decoration": "// "},
    "cblock": {"beginning": "/*", "decoration": " * ", "end": " */"},
    "xml": {"beginning": "<!--", "decoration": " - ", "end": "-->"},
}


def comment(text: Any, style: str = "plain", **kw: Any) -> str:
    """Text as a comment block: `{{ ansible_managed | comment }}` -> '#\\n# ...\\n#'."""
    if style not in _COMMENT_STYLES:
        raise TaskError(f"comment: invalid style {style!r}",
                        hint="styles: " + ", ".join(_COMMENT_STYLES))
    unknown = set(kw) - {"decoration", "beginning", "end", "prefix", "prefix_count",
                         "postfix", "postfix_count", "newline"}
    if unknown:
        raise TaskError(f"comment: unknown parameter {sorted(unknown)[0]!r}")
    opts: dict[str, Any] = {"newline": "\n", "beginning": "", "end": "", "prefix_count": 1,
            "postfix_count": 1, **_COMMENT_STYLES[style]}
    # The lines around the text use the decoration without its trailing blanks.
    edge = str(kw.get("decoration", opts["decoration"])).rstrip()
    opts.update(prefix=edge, postfix=edge)
    opts.update(kw)
    nl, deco = str(opts["newline"]), str(opts["decoration"])
    head = f"{opts['beginning']}{nl}" if opts["beginning"] else ""
    prefix = str(opts["prefix"])
    if prefix:
        head += (nl if prefix == nl else prefix + nl) * int(opts["prefix_count"])
    body = deco + str(text).replace(nl, nl + deco)
    body = body.replace(deco + nl, deco.rstrip() + nl)  # no trailing blanks on empty lines
    tail = "".join(nl + str(opts["postfix"]) for _ in range(int(opts["postfix_count"])))
    if opts["end"]:
        tail += nl + str(opts["end"])
    return head + body + tail


def _flags(ignorecase: bool, multiline: bool) -> int:
    return (re.I if ignorecase else 0) | (re.M if multiline else 0)


def regex_replace(value: Any = "", pattern: str = "", replacement: str = "",
                  ignorecase: bool = False, multiline: bool = False, count: int = 0,
                  mandatory_count: int = 0) -> str:
    out, subs = re.compile(pattern, _flags(ignorecase, multiline)).subn(
        replacement, str(value), count=count)
    if mandatory_count and mandatory_count != subs:
        raise TaskError(f"regex_replace: {pattern!r} should match {mandatory_count} times, "
                        f"but matches {subs} times in {value!r}")
    return out


def regex_findall(value: Any, regex: str, multiline: bool = False,
                  ignorecase: bool = False) -> list[Any]:
    return re.findall(regex, str(value), _flags(ignorecase, multiline))


def regex_search(value: Any, regex: str, *groups: str, ignorecase: bool = False,
                 multiline: bool = False) -> Any:
    """The match, or with '\\\\1' / '\\\\g<name>' arguments the list of those groups;
    None when nothing matches."""
    wanted: list[int | str] = []
    for arg in groups:
        named = re.match(r"\\g<(\S+)>", str(arg))
        numbered = re.match(r"\\(\d+)", str(arg))
        if named:
            wanted.append(named.group(1))
        elif numbered:
            wanted.append(int(numbered.group(1)))
        else:
            raise TaskError(f"regex_search: unknown argument {arg!r}",
                            hint="group arguments look like '\\\\1' or '\\\\g<name>'")
    found = re.search(regex, str(value), _flags(ignorecase, multiline))
    if not found:
        return None
    return [found.group(g) for g in wanted] if wanted else found.group()


def regex_escape(value: Any, re_type: str = "python") -> str:
    if re_type == "python":
        return re.escape(str(value))
    if re_type == "posix_basic":
        return re.sub(r"([].[^$*\\])", r"\\\1", str(value))
    if re_type == "posix_extended":
        raise TaskError("not supported by provision9p: regex_escape(re_type='posix_extended') "
                        "(Ansible does not implement it either)")
    raise TaskError(f"regex_escape: invalid regex type {re_type!r}",
                    hint="use 'python' or 'posix_basic'")


def split(value: Any, sep: str | None = None, maxsplit: int = -1) -> list[str]:
    return str(value).split(sep, maxsplit)


def quote(value: Any) -> str:
    return shlex.quote("" if value is None else str(value))


def path_join(paths: Any) -> str:
    if isinstance(paths, str):
        return paths
    if isinstance(paths, list | tuple):
        return os.path.join(*paths)
    raise TaskError(f"path_join expects a string or a list, got {type(paths).__name__}")


def commonpath(paths: Any) -> str:
    if not isinstance(paths, list | tuple):
        raise TaskError(f"commonpath expects a list, got {type(paths).__name__}")
    return os.path.commonpath(paths)


def relpath(path: str, start: str = os.curdir) -> str:
    return os.path.relpath(path, start)


def splitext(path: str) -> list[str]:
    return list(os.path.splitext(path))


def fileglob(pattern: str) -> list[str]:
    """Regular files matching a glob on the controller (this host), as Ansible's does."""
    return [p for p in glob.glob(pattern) if os.path.isfile(p)]


def get_hash(data: Any, hashtype: str = "sha1") -> str:
    try:
        h = hashlib.new(hashtype)
    except (ValueError, TypeError):
        raise TaskError(f"hash: unsupported hash type {hashtype!r}",
                        hint="e.g. sha1, md5, sha256, sha512") from None
    h.update(_bytes(data))
    return h.hexdigest()


def _bytes(data: Any, encoding: str = "utf-8") -> bytes:
    return data if isinstance(data, bytes) else str(data).encode(encoding, "surrogateescape")


def b64encode(value: Any, encoding: str = "utf-8", urlsafe: bool = False) -> str:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return encode(_bytes(value, encoding)).decode("ascii")


def b64decode(value: Any, encoding: str = "utf-8", urlsafe: bool = False) -> str:
    decode = base64.urlsafe_b64decode if urlsafe else base64.b64decode
    return decode(_bytes(value)).decode(encoding, "surrogateescape")


#: The namespace of Ansible's to_uuid: the same name gives the same UUID as in Ansible.
UUID_NAMESPACE_ANSIBLE = uuid.UUID("361E6D51-FAEC-444A-9079-341386DA8E2E")


def to_uuid(value: Any, namespace: Any = UUID_NAMESPACE_ANSIBLE) -> str:
    try:
        ns = namespace if isinstance(namespace, uuid.UUID) else uuid.UUID(str(namespace))
    except ValueError as exc:
        raise TaskError(f"to_uuid: invalid namespace {namespace!r}: {exc}") from None
    return str(uuid.uuid5(ns, str(value)))


def strftime(fmt: str, second: Any = None, utc: bool = False) -> str:
    if second is not None:
        try:
            second = float(second)
        except (TypeError, ValueError):
            raise TaskError(f"strftime: invalid epoch value {second!r}") from None
    return time.strftime(fmt, (time.gmtime if utc else time.localtime)(second))


def to_datetime(value: str, format: str = "%Y-%m-%d %H:%M:%S") -> datetime.datetime:
    return datetime.datetime.strptime(value, format)


def random(end: Any, start: int | None = None, step: int | None = None,
           seed: Any = None) -> Any:
    """A number in range(start, end, step), or an element of a list; the same for the same
    seed (Python's Random, as Ansible's: `random(seed=inventory_hostname)` matches)."""
    gen: _random.Random = _random.SystemRandom() if seed is None else _random.Random(seed)
    if isinstance(end, int):
        return gen.randrange(start or 0, end, step or 1)
    if isinstance(end, Iterable) and not isinstance(end, jinja2.Undefined):
        if start or step:
            raise TaskError("random: start and step only go with an integer end")
        return gen.choice(list(end) if not isinstance(end, str) else end)
    raise TaskError("random works on integers and sequences")


def shuffle(values: Any, seed: Any = None) -> list[Any]:
    out = list(values)
    (_random.Random(seed) if seed else _random.SystemRandom()).shuffle(out)
    return out


_URL_PARTS = ("fragment", "hostname", "netloc", "password", "path", "port", "query",
              "scheme", "username")


def url_split(value: str, query: str = "") -> Any:
    parts = urlsplit(value)
    fields = {name: getattr(parts, name) for name in _URL_PARTS}
    if not query:
        return fields
    if query not in fields:
        raise TaskError(f"urlsplit: unknown URL component {query!r}",
                        hint="one of " + ", ".join(_URL_PARTS))
    return fields[query]


def type_debug(value: Any) -> str:
    return type(value).__name__


def expanduser(path: str) -> str:
    return os.path.expanduser(path)


TEXT_FILTERS: dict[str, Any] = {
    "bool": to_bool, "ternary": ternary, "mandatory": mandatory, "comment": comment,
    "regex_replace": regex_replace, "regex_findall": regex_findall,
    "regex_search": regex_search, "regex_escape": regex_escape, "split": split,
    "quote": quote, "basename": os.path.basename, "dirname": os.path.dirname,
    "expanduser": expanduser, "expandvars": os.path.expandvars,
    "realpath": os.path.realpath, "relpath": relpath, "splitext": splitext,
    "normpath": os.path.normpath, "path_join": path_join, "commonpath": commonpath,
    "fileglob": fileglob, "hash": get_hash,
    "md5": lambda data: get_hash(data, "md5"), "sha1": lambda data: get_hash(data, "sha1"),
    "checksum": lambda data: get_hash(data, "sha1"),
    "b64encode": b64encode, "b64decode": b64decode, "to_uuid": to_uuid,
    "strftime": strftime, "to_datetime": to_datetime, "random": random,
    "shuffle": shuffle, "urlsplit": url_split, "urldecode": unquote_plus,
    "type_debug": type_debug,
}
