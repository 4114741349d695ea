"""Modules that read the guest: find, getent, slurp; and tempfile."""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import posixpath
import re
import secrets
import time
from typing import Any

from provision9p.connect.base import Connection
from provision9p.errors import TaskError
from provision9p.rootfs.metadata.base import GuestStat
from provision9p.tasks.modules.base import Module, ModuleContext, read_db
from provision9p.tasks.modules.spec import P, Spec

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZES = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def _amount(text: str, units: dict[str, int], what: str) -> int:
    m = re.fullmatch(r"(-?\d+)([a-z]?)", text.strip().lower())
    if not m or (m[2] and m[2] not in units):
        raise TaskError(f"find: {what} {text!r} is not a number with one of the units "
                        f"{', '.join(units)}")
    return int(m[1]) * units[m[2] or next(iter(units))]


def _name_match(name: str, patterns: list[str], regex: bool) -> bool:
    if regex:
        return any(re.match(p, name) for p in patterns)
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def _file_info(path: str, st: GuestStat) -> dict[str, Any]:
    return {"path": path, "mode": f"{st.perm:04o}", "uid": st.uid, "gid": st.gid,
            "size": st.size, "mtime": st.mtime, "nlink": st.nlink,
            "isdir": st.is_dir, "isreg": st.is_reg, "islnk": st.is_link}


def _find(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    regex = bool(args.get("use_regex"))
    patterns = args.get("patterns") or ([".*"] if regex else ["*"])
    excludes = args.get("excludes") or []
    kind = args["file_type"]
    age = _amount(str(args["age"]), _UNITS, "age") if args.get("age") else None
    size = _amount(str(args["size"]), _SIZES, "size") if args.get("size") else None
    contains = re.compile(str(args["contains"]), re.MULTILINE) if args.get(
        "contains") else None
    depth = args.get("depth")
    now = time.time()
    files: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    examined = 0

    def wanted(path: str, name: str, st: GuestStat) -> bool:
        if not _name_match(name, patterns, regex) or (excludes and _name_match(
                name, excludes, regex)):
            return False
        is_kind = {"any": True, "file": st.is_reg, "directory": st.is_dir,
                   "link": st.is_link}[kind]
        if not is_kind:
            return False
        if age is not None:
            elapsed = now - st.mtime
            if (age >= 0 and elapsed < age) or (age < 0 and elapsed > -age):
                return False
        if size is not None and st.is_reg and (
                (size >= 0 and st.size < size) or (size < 0 and st.size > -size)):
            return False
        if contains is not None:
            if not st.is_reg:
                return False
            text = conn.read_file(path).decode(errors="replace")
            if args.get("read_whole_file"):
                return contains.search(text) is not None
            return any(contains.match(line) for line in text.splitlines())
        return True

    def walk(top: str, level: int) -> None:
        nonlocal examined
        try:
            names = sorted(conn.listdir(top))
        except OSError as exc:
            skipped[top] = str(exc)
            return
        for name in names:
            if name.startswith(".") and not args.get("hidden"):
                continue
            path = posixpath.join(top, name)
            st = conn.stat(path)
            if st is None:
                continue
            examined += 1
            if st.is_link and args.get("follow"):
                target = conn.stat(posixpath.join(top, conn.readlink(path)))
                st = target or st
            if wanted(path, name, st):
                info = _file_info(path, st)
                if args.get("get_checksum") and st.is_reg:
                    info["checksum"] = hashlib.sha1(conn.read_file(path)).hexdigest()
                files.append(info)
            if st.is_dir and args.get("recurse") and (depth is None or level < depth):
                walk(path, level + 1)

    for top in args["paths"]:
        top = str(top)
        st = conn.stat(top)
        if st is None or not st.is_dir:
            skipped[top] = f"{top} was skipped as it does not seem to be a valid directory"
            continue
        walk(top.rstrip("/") or "/", 1)
    return {"changed": False, "files": files, "matched": len(files), "examined": examined,
            "skipped_paths": skipped,
            "msg": "All paths examined" if not skipped else "Not all paths examined, "
                   "check warnings for details"}


_COLON_DBS = ("passwd", "shadow", "group", "gshadow")


def _getent(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    db = str(args["database"])
    key = None if args.get("key") is None else str(args["key"])
    split = args.get("split") or (":" if db in _COLON_DBS else None)
    lines: list[str]
    try:
        res = conn.run(["getent", db, *([key] if key is not None else [])])
        rc, lines = res.returncode, res.stdout.splitlines()
    except TaskError:
        if db not in _COLON_DBS:
            raise
        rc = -1
    if rc not in (0, 1, 2, 3) and db in _COLON_DBS:
        # No getent to run (a converted tree, a tree without libc-bin): the colon
        # databases are plain files.
        entries = read_db(conn, f"/etc/{db}")
        found = [":".join(f) for n, f in entries.items() if key is None or n == key or (
            len(f) > 2 and f[2] == key)]
        rc, lines = (0 if found else 2), found
    if rc not in (0, 1, 2, 3):
        raise TaskError(f"getent could not run in the guest (exit {rc})")
    if rc == 1:
        raise TaskError(f"getent: missing arguments, or database {db!r} unknown")
    if rc == 3:
        raise TaskError(f"getent: enumeration not supported on database {db!r}")
    facts: dict[str, Any] = {}
    if rc == 2:
        if args.get("fail_key", True):
            return {"changed": False, "failed": True,
                    "msg": "One or more supplied key could not be found in the database."}
        facts = {key: None} if key is not None else {}
    for line in lines:
        fields = line.split(split) if split else line.split()
        if fields:
            facts[fields[0]] = fields[1:]
    return {"changed": False, "ansible_facts": {f"getent_{db}": facts}}


def _slurp(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    src = str(args["src"])
    st = conn.stat(src)
    if st is None:
        return {"changed": False, "failed": True, "msg": f"file not found: {src}"}
    if st.is_dir:
        return {"changed": False, "failed": True, "msg": f"source is a directory and must "
                                                         f"be a file: {src}"}
    return {"changed": False, "content": base64.b64encode(conn.read_file(src)).decode(),
            "encoding": "base64", "source": src}


def _tempfile(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    if ctx.check:
        return {"changed": False, "skipped": True,
                "msg": "tempfile makes a new name each run: skipped in check mode"}
    top = str(args.get("path") or "/tmp")
    if conn.stat(top) is None:
        raise TaskError(f"tempfile: no directory {top} in the guest")
    for _ in range(10):
        path = posixpath.join(top, f"{args['prefix']}{secrets.token_hex(4)}{args['suffix']}")
        if conn.stat(path) is None:
            break
    else:
        raise TaskError(f"tempfile: no free name in {top}")
    if args["state"] == "directory":
        conn.mkdir(path, mode=0o700)
    else:
        conn.write_file(path, b"", mode=0o600)
    st = conn.stat(path)
    assert st is not None
    return {"changed": True, "path": path, "state": args["state"], "uid": st.uid,
            "gid": st.gid, "mode": f"{st.perm:04o}", "size": st.size}


MODULES: dict[str, Module] = {
    "find": Module(_find, Spec(
        help="Files in the guest by name, type, age, size or content.",
        params={
            "paths": P("list", elements="path", required=True, aliases=("name", "path")),
            "patterns": P("list", elements="str", aliases=("pattern",),
                          help="globs on the base name (regexps with use_regex)"),
            "excludes": P("list", elements="str", aliases=("exclude",)),
            "use_regex": P("bool", default=False, help="patterns are Python regexps "
                                                       "matched at the name's start"),
            "file_type": P("str", default="file", choices=("any", "directory", "file",
                                                           "link")),
            "recurse": P("bool", default=False),
            "depth": P("int"),
            "hidden": P("bool", default=False),
            "follow": P("bool", default=False),
            "age": P("str", help="'2d', '-1h': at least (or, negative, at most) this old "
                                 "(mtime)"),
            "age_stamp": P("str", default="mtime", choices=("mtime",)),
            "size": P("str", help="'10k', '-1m': at least (at most) this size"),
            "contains": P("str", help="regexp matched at a line's start"),
            "read_whole_file": P("bool", default=False),
            "get_checksum": P("bool", default=False),
        },
        unsupported={"checksum_algorithm": "sha1 only", "encoding": "files are read as "
                     "UTF-8", "mode": "not done", "exact_mode": "not done",
                     "limit": "not done"},
        returns="files (path, mode, uid, gid, size, mtime, isdir, isreg, islnk), matched, "
                "examined, skipped_paths, msg",
        differences="age_stamp: mtime only; file entries carry fewer stat fields.")),
    "getent": Module(_getent, Spec(
        help="A name service database (passwd, group, hosts, ...) as facts.",
        params={"database": P("str", required=True), "key": P("str"),
                "split": P("str"), "fail_key": P("bool", default=True)},
        unsupported={"service": "not done"},
        returns="ansible_facts.getent_<database>: {key: [fields]}",
        differences="on a converted tree (no commands) only passwd, group, shadow and "
                    "gshadow, read from /etc.")),
    "slurp": Module(_slurp, Spec(
        help="A guest file's content, base64.",
        params={"src": P("path", required=True, aliases=("path",))},
        returns="content (base64), encoding, source")),
    "tempfile": Module(_tempfile, Spec(
        help="A new temporary file or directory in the guest.",
        params={"state": P("str", default="file", choices=("directory", "file")),
                "path": P("path", help="where (default /tmp)"),
                "prefix": P("str", default="ansible."),
                "suffix": P("str", default="")},
        returns="path, state, uid, gid, mode, size")),
}
