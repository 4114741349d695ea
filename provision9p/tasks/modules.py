"""Idempotent modules with Ansible's parameter names and return values.

A module sees only the Connection protocol, so the same task runs on the root tree
before boot and over SSH after. Each returns Ansible's result keys (changed, msg,
diff, rc/stdout/stderr for commands) and changes nothing in check mode.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import stat as stat_mod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision9p.connect.base import Connection
from provision9p.errors import TaskError


@dataclass
class ModuleContext:
    check: bool
    role_path: Path
    render: Callable[[str], str]  # renders a template file's text with the play's vars


@dataclass(frozen=True)
class Module:
    params: frozenset[str]
    run: Callable[[Connection, dict[str, Any], ModuleContext], dict[str, Any]]


OWNERSHIP = {"mode", "owner", "group"}


def parse_mode(value: Any) -> int | None:
    """0o644, 420 (YAML's 0644), '0644' or '644' -> 0o644 (Ansible's forms, minus symbolic)."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not re.fullmatch(r"0?[0-7]{3,4}", text):
        raise TaskError(f"mode {value!r} is not an octal mode like '0644'")
    return int(text, 8)


def _ids(conn: Connection, path: str) -> dict[str, int]:
    out = {}
    for line in conn.read_file(path).decode(errors="replace").splitlines():
        parts = line.split(":")
        if len(parts) > 2 and parts[2].isdigit():
            out[parts[0]] = int(parts[2])
    return out


def resolve_owner(conn: Connection, owner: Any, group: Any) -> tuple[int | None, int | None]:
    uid = gid = None
    if owner is not None:
        uid = int(owner) if str(owner).isdigit() else _ids(conn, "/etc/passwd").get(str(owner))
        if uid is None:
            raise TaskError(f"no user {owner!r} in the guest's /etc/passwd")
    if group is not None:
        gid = int(group) if str(group).isdigit() else _ids(conn, "/etc/group").get(str(group))
        if gid is None:
            raise TaskError(f"no group {group!r} in the guest's /etc/group")
    return uid, gid


def _apply_attrs(conn: Connection, path: str, args: dict[str, Any], ctx: ModuleContext,
                 result: dict[str, Any]) -> None:
    """mode/owner/group on an existing path; sets result['changed'] when they differ."""
    st = conn.stat(path)
    if st is None:
        return
    mode = parse_mode(args.get("mode"))
    uid, gid = resolve_owner(conn, args.get("owner"), args.get("group"))
    want_uid = st.uid if uid is None else uid
    want_gid = st.gid if gid is None else gid
    if (want_uid, want_gid) != (st.uid, st.gid):
        result["changed"] = True
        if not ctx.check:
            conn.chown(path, want_uid, want_gid)
    if mode is not None and not stat_mod.S_ISLNK(st.mode) and stat_mod.S_IMODE(st.mode) != mode:
        result["changed"] = True
        if not ctx.check:
            conn.chmod(path, mode)


def _write_content(conn: Connection, dest: str, data: bytes, args: dict[str, Any],
                   ctx: ModuleContext) -> dict[str, Any]:
    st = conn.stat(dest)
    if st is not None and stat_mod.S_ISDIR(st.mode):
        raise TaskError(f"{dest} is a directory")
    before = conn.read_file(dest) if st is not None else None
    result: dict[str, Any] = {"changed": False, "dest": dest,
                              "checksum": hashlib.sha1(data).hexdigest()}
    if before != data:
        result["changed"] = True
        result["diff"] = {"before": (before or b"").decode(errors="replace"),
                          "after": data.decode(errors="replace"),
                          "before_header": dest, "after_header": dest}
        if not ctx.check:
            mode = parse_mode(args.get("mode"))
            uid, gid = resolve_owner(conn, args.get("owner"), args.get("group"))
            keep = st if st is not None else None
            conn.write_file(
                dest, data,
                mode=mode if mode is not None else (stat_mod.S_IMODE(keep.mode) if keep
                                                    else 0o644),
                uid=uid if uid is not None else (keep.uid if keep else 0),
                gid=gid if gid is not None else (keep.gid if keep else 0))
            return result
    _apply_attrs(conn, dest, args, ctx, result)
    return result


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
    return _write_content(conn, dest, data, args, ctx)


def _template(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    src = ctx.role_path / "templates" / str(args["src"])
    if not src.is_file():
        raise TaskError(f"template: no file {src}")
    return _write_content(conn, str(args["dest"]), ctx.render(src.read_text()).encode(),
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
                parts = path.strip("/").split("/")
                for i in range(1, len(parts) + 1):
                    sub = "/" + "/".join(parts[:i])
                    if conn.stat(sub) is None:
                        conn.mkdir(sub, mode=parse_mode(args.get("mode")) or 0o755)
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
        _apply_attrs(conn, path, args, ctx, result)
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
        _apply_attrs(conn, path, args, ctx, result)
        return result
    res = _write_content(conn, path, data, args, ctx)
    res["msg"] = msg
    return res


def _command(conn: Connection, args: dict[str, Any], ctx: ModuleContext,
             shell: bool) -> dict[str, Any]:
    creates, removes = args.get("creates"), args.get("removes")
    if creates and conn.stat(str(creates)) is not None:
        return {"changed": False, "rc": 0, "stdout": "", "stderr": "",
                "msg": f"skipped, since {creates} exists"}
    if removes and conn.stat(str(removes)) is None:
        return {"changed": False, "rc": 0, "stdout": "", "stderr": "",
                "msg": f"skipped, since {removes} does not exist"}
    if ctx.check:
        return {"changed": True, "msg": "command would have run (check mode)",
                "skipped": True}
    cmd: str | list[str]
    if args.get("argv"):
        cmd = [str(a) for a in args["argv"]]
    else:
        raw = str(args.get("cmd") or args.get("_raw_params") or "")
        if not raw:
            raise TaskError("command needs cmd, argv or a free-form command")
        cmd = raw if shell else ["sh", "-c", 'exec "$@"', "sh", *shlex.split(raw)]
    res = conn.run(cmd, cwd=args.get("chdir"))
    return {"changed": True, "rc": res.returncode, "stdout": res.stdout.rstrip("\n"),
            "stderr": res.stderr.rstrip("\n"), "stdout_lines": res.stdout.splitlines(),
            "failed": res.returncode != 0,
            "msg": "" if res.ok else f"non-zero return code {res.returncode}"}


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


def _debug(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    return {"changed": False, "msg": args.get("msg", "Hello world!")}


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
        _apply_attrs(conn, path, args, ctx, result)
        return result
    res = _write_content(conn, path, ("\n".join(new) + "\n").encode() if new else b"",
                         args, ctx)
    res["msg"] = "Block removed" if state == "absent" else "Block inserted"
    return res


def _hostname(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    name = str(args["name"])
    res = _write_content(conn, "/etc/hostname", f"{name}\n".encode(), {}, ctx)
    if res["changed"] and conn.phase == "ssh" and not ctx.check:
        conn.run(["hostname", name])
    return {"changed": res["changed"], "name": name,
            "ansible_facts": {"ansible_hostname": name}}


def _authorized_key(conn: Connection, args: dict[str, Any], ctx: ModuleContext
                    ) -> dict[str, Any]:
    user = str(args["user"])
    key = str(args["key"]).strip()
    state = args.get("state", "present")
    home = None
    for line in conn.read_file("/etc/passwd").decode(errors="replace").splitlines():
        parts = line.split(":")
        if parts[0] == user and len(parts) > 5:
            uid, gid, home = int(parts[2]), int(parts[3]), parts[5]
    if home is None:
        raise TaskError(f"authorized_key: no user {user!r} in the guest's /etc/passwd")
    ssh_dir = f"{home.rstrip('/')}/.ssh"
    path = f"{ssh_dir}/authorized_keys"
    st = conn.stat(path)
    lines = conn.read_file(path).decode(errors="replace").splitlines() if st else []
    keys = {" ".join(ln.split()[:2]) for ln in lines}
    wanted = " ".join(key.split()[:2])
    if state == "present" and wanted in keys:
        return {"changed": False, "user": user, "key": key}
    if state == "absent" and wanted not in keys:
        return {"changed": False, "user": user, "key": key}
    new = ([*lines, key] if state == "present"
           else [ln for ln in lines if " ".join(ln.split()[:2]) != wanted])
    if not ctx.check and conn.stat(ssh_dir) is None:
        conn.mkdir(ssh_dir, mode=0o700, uid=uid, gid=gid)
    res = _write_content(conn, path, ("\n".join(new) + "\n").encode() if new else b"",
                         {"mode": "0600", "owner": uid, "group": gid}, ctx)
    return {"changed": res["changed"], "user": user, "key": key, "diff": res.get("diff")}


MODULES: dict[str, Module] = {
    "copy": Module(frozenset({"dest", "src", "content", *OWNERSHIP}), _copy),
    "template": Module(frozenset({"src", "dest", *OWNERSHIP}), _template),
    "file": Module(frozenset({"path", "dest", "name", "state", "src", *OWNERSHIP}), _file),
    "lineinfile": Module(frozenset({"path", "dest", "line", "regexp", "state", "create",
                                    "insertafter", "insertbefore", *OWNERSHIP}), _lineinfile),
    "command": Module(frozenset({"_raw_params", "cmd", "argv", "creates", "removes", "chdir"}),
                      lambda c, a, x: _command(c, a, x, shell=False)),
    "shell": Module(frozenset({"_raw_params", "cmd", "creates", "removes", "chdir"}),
                    lambda c, a, x: _command(c, a, x, shell=True)),
    "stat": Module(frozenset({"path", "get_checksum"}), _stat),
    "debug": Module(frozenset({"msg"}), _debug),
    "blockinfile": Module(frozenset({"path", "dest", "block", "marker", "marker_begin",
                                     "marker_end", "state", "create", *OWNERSHIP}),
                          _blockinfile),
    "hostname": Module(frozenset({"name", "use"}), _hostname),
    "authorized_key": Module(frozenset({"user", "key", "state"}), _authorized_key),
}
