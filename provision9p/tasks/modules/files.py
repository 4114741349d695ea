"""File modules: copy, template, file, lineinfile, blockinfile, stat."""

from __future__ import annotations

import hashlib
import re
import stat as stat_mod
from typing import Any

from provision9p.connect.base import Connection
from provision9p.errors import TaskError
from provision9p.tasks.modules.base import (
    OWNERSHIP,
    Module,
    ModuleContext,
    apply_attrs,
    make_dirs,
    parse_mode,
    write_content,
)


def _copy(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    dest = str(args["dest"])
    if "content" in args:
        data = str(args["content"]).encode()
    elif "src" in args:
        src = ctx.role_path / "files" / str(args["src"])
        if not src.is_file():
            raise TaskError(f"copy: no file {src}")
        data = src.read_bytes()
    else:
        raise TaskError("copy needs src or content")
    return write_content(conn, dest, data, args, ctx)


def _template(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    src = ctx.role_path / "templates" / str(args["src"])
    if not src.is_file():
        raise TaskError(f"template: no file {src}")
    return write_content(conn, str(args["dest"]), ctx.render(src.read_text()).encode(),
                          args, ctx)


def _file(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    path = str(args.get("path") or args.get("dest") or args.get("name") or "")
    if not path:
        raise TaskError("file needs path")
    st = conn.stat(path)
    state = args.get("state") or ("file" if st is None or not st.is_dir else "directory")
    result: dict[str, Any] = {"changed": False, "path": path, "state": state}
    if state == "absent":
        if st is not None:
            result["changed"] = True
            if not ctx.check:
                if st.is_dir and conn.listdir(path):
                    conn.run(["rm", "-rf", "--", path])
                else:
                    conn.remove(path)
        return result
    if state == "directory":
        if st is None:
            result["changed"] = True
            if not ctx.check:
                make_dirs(conn, path, parse_mode(args.get("mode")) or 0o755)
        elif not st.is_dir:
            raise TaskError(f"{path} exists and is not a directory")
    elif state == "touch":
        if st is None:
            result["changed"] = True
            if not ctx.check:
                conn.write_file(path, b"", mode=parse_mode(args.get("mode")) or 0o644)
    elif state == "link":
        src = str(args.get("src", ""))
        if st is not None and st.is_link and conn.readlink(path) == src:
            pass
        else:
            result["changed"] = True
            if not ctx.check:
                if st is not None:
                    conn.remove(path)
                conn.symlink(src, path)
        return result
    elif state == "file":
        if st is None:
            raise TaskError(f"file {path} does not exist (state=file does not create)",
                            hint="use state: touch, or copy/template to create it")
    else:
        raise TaskError(f"file: unknown state {state!r}")
    if not (ctx.check and result["changed"]):
        apply_attrs(conn, path, args, ctx, result)
    return result


def _lineinfile(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    path = str(args.get("path") or args.get("dest") or "")
    state = args.get("state", "present")
    st = conn.stat(path)
    if st is None:
        if state == "absent" or not args.get("create", False):
            if state == "absent":
                return {"changed": False, "msg": "file not present"}
            raise TaskError(f"lineinfile: {path} does not exist", hint="set create: true")
        text = ""
    else:
        text = conn.read_file(path).decode(errors="replace")
    lines = text.splitlines()
    regexp = re.compile(str(args["regexp"])) if args.get("regexp") else None
    line = None if args.get("line") is None else str(args["line"])
    new = list(lines)
    msg = ""
    if state == "absent":
        new = [ln for ln in lines if not ((regexp and regexp.search(ln)) or ln == line)]
        msg = f"{len(lines) - len(new)} line(s) removed" if new != lines else ""
    else:
        if line is None:
            raise TaskError("lineinfile: state=present needs line")
        hits = [i for i, ln in enumerate(lines) if regexp and regexp.search(ln)]
        if hits:
            if new[hits[-1]] != line:
                new[hits[-1]] = line
                msg = "line replaced"
        elif line not in lines:
            after = args.get("insertafter", "EOF")
            pos = len(new)
            if after not in (None, "EOF"):
                found = [i for i, ln in enumerate(lines) if re.search(str(after), ln)]
                if found:
                    pos = found[-1] + 1
            if args.get("insertbefore") == "BOF":
                pos = 0
            new.insert(pos, line)
            msg = "line added"
    data = ("\n".join(new) + "\n").encode() if new else b""
    if new == lines and st is not None:
        result: dict[str, Any] = {"changed": False, "msg": ""}
        apply_attrs(conn, path, args, ctx, result)
        return result
    res = write_content(conn, path, data, args, ctx)
    res["msg"] = msg
    return res


def _stat(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    path = str(args["path"])
    st = conn.stat(path)
    if st is None:
        return {"changed": False, "stat": {"exists": False}}
    info: dict[str, Any] = {
        "exists": True, "path": path, "mode": f"{stat_mod.S_IMODE(st.mode):04o}",
        "uid": st.uid, "gid": st.gid, "size": st.size, "isdir": st.is_dir,
        "isreg": st.is_reg, "islnk": st.is_link,
    }
    if st.is_link:
        info["lnk_target"] = conn.readlink(path)
    if st.is_reg and args.get("get_checksum", True):
        info["checksum"] = hashlib.sha1(conn.read_file(path)).hexdigest()
    return {"changed": False, "stat": info}


def _blockinfile(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    path = str(args.get("path") or args.get("dest") or "")
    marker = str(args.get("marker", "# {mark} ANSIBLE MANAGED BLOCK"))
    begin = marker.replace("{mark}", str(args.get("marker_begin", "BEGIN")))
    end = marker.replace("{mark}", str(args.get("marker_end", "END")))
    state = args.get("state", "present")
    st = conn.stat(path)
    if st is None and not (state == "present" and args.get("create", False)):
        if state == "absent":
            return {"changed": False, "msg": ""}
        raise TaskError(f"blockinfile: {path} does not exist", hint="set create: true")
    lines = conn.read_file(path).decode(errors="replace").splitlines() if st else []
    block = str(args.get("block", "")).rstrip("\n")
    if begin in lines and end in lines[lines.index(begin):]:
        i = lines.index(begin)
        j = lines.index(end, i)
        rest = lines[:i] + lines[j + 1:]
        pos = i
    else:
        rest, pos = list(lines), len(lines)
    new = rest if state == "absent" or not block else (
        [*rest[:pos], begin, *block.splitlines(), end, *rest[pos:]])
    if new == lines and st is not None:
        result: dict[str, Any] = {"changed": False, "msg": ""}
        apply_attrs(conn, path, args, ctx, result)
        return result
    res = write_content(conn, path, ("\n".join(new) + "\n").encode() if new else b"",
                         args, ctx)
    res["msg"] = "Block removed" if state == "absent" else "Block inserted"
    return res


MODULES: dict[str, Module] = {
    "copy": Module(frozenset({"dest", "src", "content", *OWNERSHIP}), _copy),
    "template": Module(frozenset({"src", "dest", *OWNERSHIP}), _template),
    "file": Module(frozenset({"path", "dest", "name", "state", "src", *OWNERSHIP}), _file),
    "lineinfile": Module(frozenset({"path", "dest", "line", "regexp", "state", "create",
                                    "insertafter", "insertbefore", *OWNERSHIP}), _lineinfile),
    "blockinfile": Module(frozenset({"path", "dest", "block", "marker", "marker_begin",
                                     "marker_end", "state", "create", *OWNERSHIP}),
                          _blockinfile),
    "stat": Module(frozenset({"path", "get_checksum"}), _stat),
}
