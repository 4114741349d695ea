"""Edits inside a file: lineinfile, blockinfile, replace.

Each reads the file, edits its text in Python as Ansible's module does (lines kept with
their endings, so `$` in a regexp matches before the newline), and writes it back
through write_content (validate, backup, owner and mode included).
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from provision9p.connect.base import Connection
from provision9p.errors import TaskError
from provision9p.tasks.modules.base import (
    OWNERSHIP,
    UNSUPPORTED_FILE_ATTRS,
    Module,
    ModuleContext,
    apply_attrs,
    make_dirs,
    write_content,
)
from provision9p.tasks.modules.spec import P, Spec


def _read(conn: Connection, path: str, create: bool, module: str
          ) -> tuple[str | None, str]:
    """(original text or None when missing, text to edit)."""
    st = conn.stat(path)
    if st is None:
        if not create:
            raise TaskError(f"{module}: {path} does not exist", hint="set create: true")
        return None, ""
    if st.is_dir:
        raise TaskError(f"{module}: {path} is a directory")
    text = conn.read_file(path).decode(errors="surrogateescape")
    return text, text


def _write(conn: Connection, path: str, original: str | None, text: str, msg: str,
           args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    if original is not None and text == original:
        result: dict[str, Any] = {"changed": False, "msg": ""}
        apply_attrs(conn, path, args, ctx, result)
        return result
    parent = posixpath.dirname(path) or "/"
    if original is None and conn.stat(parent) is None:
        if ctx.check:
            return {"changed": True, "msg": msg}
        make_dirs(conn, parent)
    res = write_content(conn, path, text.encode(errors="surrogateescape"), args, ctx)
    res["msg"] = msg
    if "backup_file" in res:
        res["backup"] = res["backup_file"]
    return res


def _lineinfile(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    path = str(args["path"])
    state = args["state"]
    st = conn.stat(path)
    if st is None and state == "absent":
        return {"changed": False, "found": 0, "msg": "file not present"}
    original, text = _read(conn, path, bool(args.get("create")), "lineinfile")
    lines = text.splitlines(keepends=True)
    regexp = re.compile(str(args["regexp"])) if args.get("regexp") is not None else None
    search = args.get("search_string")
    line = None if args.get("line") is None else str(args["line"])
    if state == "absent":
        def hit(cur: str) -> bool:
            if regexp is not None:
                return regexp.search(cur) is not None
            if search is not None:
                return str(search) in cur
            return cur.rstrip("\r\n") == line
        kept = [cur for cur in lines if not hit(cur)]
        found = len(lines) - len(kept)
        res = _write(conn, path, original, "".join(kept),
                     f"{found} line(s) removed" if found else "", args, ctx)
        res["found"] = found
        return res
    assert line is not None  # required_if
    new, msg = _present(lines, line, regexp, search, args)
    return _write(conn, path, original, "".join(new), msg, args, ctx)


def _present(lines: list[str], line: str, regexp: re.Pattern[str] | None,
             search: Any, args: dict[str, Any]) -> tuple[list[str], str]:
    """Ansible's placement rules: a regexp/search_string match is replaced (last one, or
    first with firstmatch); else an identical line is kept; else the line goes after
    (or before) the last (first) line matching insertafter (insertbefore), BOF or EOF."""
    after, before = args.get("insertafter"), args.get("insertbefore")
    first = bool(args.get("firstmatch"))
    ins_re = (re.compile(str(after)) if after not in (None, "BOF", "EOF") else
              re.compile(str(before)) if before not in (None, "BOF") else None)
    lines = list(lines)
    index = [-1, -1]
    match: re.Match[str] | None = None
    matched = False
    if regexp is not None:
        for no, cur in enumerate(lines):
            m = regexp.search(cur)
            if m:
                index[0], match, matched = no, m, True
                if first:
                    break
    if search is not None:
        for no, cur in enumerate(lines):
            if str(search) in cur:
                index[0], matched = no, True
                if first:
                    break
    if not matched:
        for no, cur in enumerate(lines):
            if cur.rstrip("\r\n") == line:
                index[0] = no
            elif ins_re is not None and ins_re.search(cur):
                index[1] = no + 1 if after else no
                if first:
                    break
    new_line = (match.expand(line) if args.get("backrefs") and match else line) + "\n"
    if index[0] != -1:
        if lines[index[0]] != new_line:
            lines[index[0]] = new_line
            return lines, "line replaced"
        return lines, ""
    if args.get("backrefs"):
        return lines, ""  # no match: nothing to expand the backreferences from
    if before == "BOF" or after == "BOF":
        return [new_line, *lines], "line added"
    if after == "EOF" or index[1] == -1:
        if lines and not lines[-1].endswith(("\n", "\r")):
            lines[-1] += "\n"
        return [*lines, new_line], "line added"
    at = index[1]
    if after:
        if at < len(lines) and lines[at].rstrip("\r\n") == line:
            return lines, ""
        if at == len(lines) and lines and lines[-1].rstrip("\r\n") == line:
            return lines, ""
        if at > 0 and not lines[at - 1].endswith(("\n", "\r")):
            lines[at - 1] += "\n"
    elif at > 0 and lines[at - 1].rstrip("\r\n") == line:
        return lines, ""
    lines.insert(at, new_line)
    return lines, "line added"


def _blockinfile(conn: Connection, args: dict[str, Any], ctx: ModuleContext
                 ) -> dict[str, Any]:
    path = str(args["path"])
    state = args["state"]
    marker = str(args["marker"])
    begin = marker.replace("{mark}", str(args["marker_begin"]))
    end = marker.replace("{mark}", str(args["marker_end"]))
    if conn.stat(path) is None and state == "absent":
        return {"changed": False, "msg": "File does not exist"}
    original, text = _read(conn, path, bool(args.get("create")), "blockinfile")
    lines = text.splitlines(keepends=True)
    block = str(args.get("block") or "")
    blocklines = ([] if state == "absent" or not block else
                  [begin + "\n", *(ln + "\n" for ln in block.splitlines()), end + "\n"])
    n0 = n1 = None
    for no, cur in enumerate(lines):
        if cur.rstrip("\r\n") == begin:
            n0 = no
        if cur.rstrip("\r\n") == end:
            n1 = no
    after, before = args.get("insertafter"), args.get("insertbefore")
    if n0 is None or n1 is None:
        ins = (str(after) if after not in (None, "EOF") else
               str(before) if before not in (None, "BOF") else None)
        if ins is not None:
            found = [no for no, cur in enumerate(lines) if re.search(ins, cur)]
            n0 = len(lines) if not found else found[-1] + (1 if after else 0)
        else:
            n0 = 0 if before == "BOF" else len(lines)
    elif n0 < n1:
        del lines[n0:n1 + 1]
    else:
        del lines[n1:n0 + 1]
        n0 = n1
    if n0 > 0 and blocklines and not lines[n0 - 1].endswith("\n"):
        lines[n0 - 1] += "\n"
    lines[n0:n0] = blocklines
    result = "".join(lines)
    msg = ("" if result == original else "File created" if original is None else
           "Block removed" if not blocklines else "Block inserted")
    if original is None and not blocklines:
        return {"changed": False, "msg": ""}
    return _write(conn, path, original, result, msg, args, ctx)


def _replace(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    path = str(args["path"])
    st = conn.stat(path)
    if st is None:
        raise TaskError(f"replace: path {path} does not exist")
    original = conn.read_file(path).decode(str(args["encoding"]), errors="surrogateescape")
    after, before = args.get("after"), args.get("before")
    pattern = (f"{after}(?P<subsection>.*?){before}" if after and before else
               f"{after}(?P<subsection>.*)" if after else
               f"(?P<subsection>.*){before}" if before else "")
    span = (0, len(original))
    if pattern:
        m = re.search(pattern, original, re.DOTALL)
        if not m:
            return {"changed": False,
                    "msg": f"Pattern for before/after params did not match the given file: "
                           f"{pattern}"}
        span = m.span("subsection")
    section = original[span[0]:span[1]]
    try:
        new_section, count = re.subn(re.compile(str(args["regexp"]), re.MULTILINE),
                                     str(args.get("replace") or ""), section)
    except re.error as exc:
        raise TaskError(f"replace: bad regexp or replacement: {exc}") from None
    if count == 0 or new_section == section:
        result: dict[str, Any] = {"changed": False, "msg": ""}
        apply_attrs(conn, path, args, ctx, result)
        return result
    text = original[:span[0]] + new_section + original[span[1]:]
    res = write_content(conn, path, text.encode(str(args["encoding"]),
                                                errors="surrogateescape"), args, ctx)
    res["msg"] = f"{count} replacements made"
    return res


_EDIT_COMMON = {
    "path": P("path", required=True, aliases=("dest", "destfile", "name")),
    "backup": P("bool", default=False, help="keep a timestamped copy first"),
    "validate": P("str", help="command run on a temporary copy (%s) first"),
    **OWNERSHIP,
}

MODULES: dict[str, Module] = {
    "lineinfile": Module(_lineinfile, Spec(
        help="Make sure one line is in a file (or is not), placed as Ansible places it.",
        params={
            **_EDIT_COMMON,
            "line": P("str", aliases=("value",)),
            "regexp": P("str", aliases=("regex",), help="Python regexp; the last "
                                                       "matching line is replaced"),
            "search_string": P("str", help="literal text instead of a regexp"),
            "state": P("str", default="present", choices=("present", "absent")),
            "insertafter": P("str", help="regexp, or EOF (default)"),
            "insertbefore": P("str", help="regexp, or BOF"),
            "firstmatch": P("bool", default=False, help="use the first match, not the last"),
            "backrefs": P("bool", default=False, help="expand \\1 in line from regexp; "
                                                      "no match: no change"),
            "create": P("bool", default=False),
        },
        mutually_exclusive=(("insertbefore", "insertafter"), ("regexp", "search_string"),
                            ("backrefs", "search_string")),
        required_if=(("state", "present", ("line",)), ("backrefs", True, ("regexp",))),
        unsupported={"others": "not a module parameter here", **UNSUPPORTED_FILE_ATTRS},
        returns="changed, msg, backup (and backup_file), found (state=absent), diff")),
    "blockinfile": Module(_blockinfile, Spec(
        help="A block of lines between marker lines.",
        params={
            **_EDIT_COMMON,
            "block": P("str", default="", aliases=("content",)),
            "marker": P("str", default="# {mark} ANSIBLE MANAGED BLOCK"),
            "marker_begin": P("str", default="BEGIN"),
            "marker_end": P("str", default="END"),
            "state": P("str", default="present", choices=("present", "absent")),
            "insertafter": P("str", help="regexp, or EOF (default)"),
            "insertbefore": P("str", help="regexp, or BOF"),
            "create": P("bool", default=False),
        },
        mutually_exclusive=(("insertbefore", "insertafter"),),
        unsupported={"append_newline": "not done", "prepend_newline": "not done",
                     **UNSUPPORTED_FILE_ATTRS},
        returns="changed, msg, backup_file, diff")),
    "replace": Module(_replace, Spec(
        help="Replace every match of a regexp (Python re, MULTILINE), optionally only "
             "between after and before.",
        params={
            **_EDIT_COMMON,
            "regexp": P("str", required=True),
            "replace": P("str", default="", help="may use \\1 and \\g<name>"),
            "after": P("str", help="only after the first match of this regexp"),
            "before": P("str", help="only before the match of this regexp"),
            "encoding": P("str", default="utf-8"),
        },
        unsupported=UNSUPPORTED_FILE_ATTRS,
        returns="changed, msg ('N replacements made'), backup_file, diff")),
}
