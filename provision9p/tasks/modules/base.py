"""What every module shares: its context, parameter set, owner/mode handling, writes."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shlex
import stat as stat_mod
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision9p.connect.base import Connection, RunResult
from provision9p.errors import TaskError
from provision9p.lab.model import GuestSpec
from provision9p.tasks.modules.spec import P, Spec


@dataclass
class ModuleContext:
    check: bool
    role_path: Path
    render: Callable[[str], str]  # renders a template file's text with the play's vars
    #: The task's variables (facts, role vars, registered results, loop item), for the
    #: modules that read or judge them: assert, set_fact, include_vars, template lookups.
    variables: Mapping[str, Any] = field(default_factory=dict)
    diff: bool = False
    guest: GuestSpec | None = None  # the lab's spec of the guest (setup reads it offline)


@dataclass(frozen=True)
class Module:
    run: Callable[[Connection, dict[str, Any], ModuleContext], dict[str, Any]]
    spec: Spec

    @property
    def params(self) -> frozenset[str]:
        """The names the module accepts, aliases included."""
        return self.spec.names()


#: owner/group/mode, as every file-writing module takes them.
OWNERSHIP: dict[str, P] = {
    "mode": P("raw", help="octal ('0644') or symbolic ('u+rwx,g-w', 'a+X') as chmod"),
    "owner": P("str", help="user name or uid"),
    "group": P("str", help="group name or gid"),
}
#: Ansible's SELinux and attribute options: nothing here keeps SELinux labels or chattr
#: flags, so asking for them must fail rather than be ignored.
UNSUPPORTED_FILE_ATTRS = {
    name: "SELinux contexts and file attributes are not kept by provision9p"
    for name in ("seuser", "serole", "setype", "selevel", "attributes", "attr",
                 "unsafe_writes")
}

_SYMBOLIC = re.compile(r"([ugoa]*)((?:[-+=](?:[ugo]|[rwxXst]*))+)")
_SHIFT = {"u": 6, "g": 3, "o": 0}


def check_mode(value: Any) -> None:
    """Raise TaskError for a mode that is neither octal nor symbolic."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return
    text = str(value).strip()
    if re.fullmatch(r"0?[0-7]{3,4}", text):
        return
    if text and all(_SYMBOLIC.fullmatch(c) for c in text.split(",")):
        return
    raise TaskError(f"mode {value!r} is not an octal mode like '0644' nor a symbolic "
                    "one like 'u+rwx,g-w'")


def parse_mode(value: Any, current: int | None = None, is_dir: bool = False) -> int | None:
    """0o644, 420 (YAML's 0644), '0644', '644', or a symbolic mode computed from
    `current` the way chmod does (no umask: Ansible's 'a' is u, g and o)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if re.fullmatch(r"0?[0-7]{3,4}", text):
        return int(text, 8)
    check_mode(text)
    mode = (current if current is not None else (0o755 if is_dir else 0o644)) & 0o7777
    for clause in text.split(","):
        m = _SYMBOLIC.fullmatch(clause)
        assert m is not None
        who = m[1] or "a"
        if "a" in who:
            who = "ugo"
        for op, perms in re.findall(r"([-+=])([ugo]|[rwxXst]*)", m[2]):
            bits = 0
            if perms and perms in "ugo" and len(perms) == 1:
                val = (mode >> _SHIFT[perms]) & 7
                for w in who:
                    bits |= val << _SHIFT[w]
            else:
                for w in who:
                    s = _SHIFT[w]
                    for ch in perms:
                        if ch == "r":
                            bits |= 4 << s
                        elif ch == "w":
                            bits |= 2 << s
                        elif ch == "x" or (ch == "X" and (is_dir or mode & 0o111)):
                            bits |= 1 << s
                        elif ch == "s" and w in "ug":
                            bits |= 0o4000 if w == "u" else 0o2000
                        elif ch == "t" and w == "o":
                            bits |= 0o1000
            if op == "+":
                mode |= bits
            elif op == "-":
                mode &= ~bits
            else:
                clear = 0
                for w in who:
                    clear |= 7 << _SHIFT[w]
                    clear |= {"u": 0o4000, "g": 0o2000, "o": 0o1000}[w]
                mode = (mode & ~clear) | bits
    return mode


def read_db(conn: Connection, path: str) -> dict[str, list[str]]:
    """/etc/passwd, /etc/group or /etc/shadow as {name: its colon-separated fields}."""
    out = {}
    for line in conn.read_file(path).decode(errors="replace").splitlines():
        parts = line.split(":")
        if len(parts) >= 3 and parts[0]:
            out[parts[0]] = parts
    return out


def _ids(conn: Connection, path: str) -> dict[str, int]:
    return {name: int(f[2]) for name, f in read_db(conn, path).items() if f[2].isdigit()}


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


def apply_attrs(conn: Connection, path: str, args: dict[str, Any], ctx: ModuleContext,
                 result: dict[str, Any]) -> None:
    """mode/owner/group on an existing path; sets result['changed'] when they differ."""
    st = conn.stat(path)
    if st is None:
        return
    mode = parse_mode(args.get("mode"), st.mode, st.is_dir)
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


def backup_file(conn: Connection, path: str) -> str:
    """A copy beside the file, named as Ansible names it (path.PID.DATE@TIME~)."""
    st = conn.stat(path)
    assert st is not None
    stamp = time.strftime("%Y-%m-%d@%H:%M:%S")
    dest = f"{path}.{os.getpid()}.{stamp}~"
    conn.write_file(dest, conn.read_file(path), mode=st.perm, uid=st.uid, gid=st.gid)
    return dest


def validate_content(conn: Connection, command: str, data: bytes) -> None:
    """Run `validate` (its %s is a temporary copy of the new content) in the guest;
    the new file is put in place only when it exits 0, as Ansible does."""
    if "%s" not in command:
        raise TaskError(f"validate must contain %s: {command!r}")
    tmpdir = "/tmp" if conn.stat("/tmp") is not None else "/"
    tmp = f"{tmpdir.rstrip('/')}/.provision9p-validate-{secrets.token_hex(6)}"
    conn.write_file(tmp, data, mode=0o600)
    try:
        argv = shlex.split(command.replace("%s", shlex.quote(tmp)))
        res = conn.run(argv)
    finally:
        conn.remove(tmp)
    if not res.ok:
        detail = (res.stderr.strip() or res.stdout.strip())[-1500:]
        raise TaskError(f"failed to validate: {command!r} exited {res.returncode}: {detail}",
                        hint="the file was left as it was")


def write_content(conn: Connection, dest: str, data: bytes, args: dict[str, Any],
                   ctx: ModuleContext) -> dict[str, Any]:
    """Put `data` at dest (owner/mode from args), honouring force, validate and backup;
    an unchanged file only gets its attributes checked."""
    st = conn.stat(dest)
    if st is not None and stat_mod.S_ISDIR(st.mode):
        raise TaskError(f"{dest} is a directory")
    result: dict[str, Any] = {"changed": False, "dest": dest,
                              "checksum": hashlib.sha1(data).hexdigest()}
    if st is not None and args.get("force") is False:
        apply_attrs(conn, dest, args, ctx, result)
        result["msg"] = "file already exists (force: false)"
        return result
    link = st is not None and st.is_link
    if link:
        st = None  # without follow, Ansible puts the file in the link's place
    before = conn.read_file(dest) if st is not None else None
    if before != data:
        result["changed"] = True
        result["diff"] = {"before": (before or b"").decode(errors="replace"),
                          "after": data.decode(errors="replace"),
                          "before_header": dest, "after_header": dest}
        if not ctx.check:
            if args.get("validate"):
                validate_content(conn, str(args["validate"]), data)
            if args.get("backup") and st is not None:
                result["backup_file"] = backup_file(conn, dest)
            if link:
                conn.remove(dest)
            mode = parse_mode(args.get("mode"), st.mode if st else None)
            uid, gid = resolve_owner(conn, args.get("owner"), args.get("group"))
            conn.write_file(
                dest, data,
                mode=mode if mode is not None else (st.perm if st else 0o644),
                uid=uid if uid is not None else (st.uid if st else 0),
                gid=gid if gid is not None else (st.gid if st else 0))
            return result
    apply_attrs(conn, dest, args, ctx, result)
    return result


def make_dirs(conn: Connection, path: str, mode: int = 0o755) -> None:
    """mkdir -p, one level at a time, so each new directory gets this mode and root."""
    parts = path.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        sub = "/" + "/".join(parts[:i])
        if conn.stat(sub) is None:
            conn.mkdir(sub, mode=mode)


def run_checked(conn: Connection, argv: list[str], env: dict[str, str] | None = None
                ) -> RunResult:
    """Run a command the module needs; its failure is the task's, with the command's words."""
    res = conn.run(argv, env=env)
    if not res.ok:
        detail = (res.stderr.strip() or res.stdout.strip())[-1500:]
        raise TaskError(f"`{' '.join(argv)}` failed (exit {res.returncode}): {detail}")
    return res


def fstab_escape(text: str) -> str:
    """fstab and /proc/self/mounts write blanks in names as octal escapes."""
    return text.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011")




def coerce_args(module: str, args: dict[str, Any]) -> dict[str, Any]:
    """Run-time coercion of a rendered task's parameters: Ansible's boolean words, ints,
    lists from "a,b", aliases folded to the canonical name, defaults filled; a value of
    the wrong kind is a TaskError naming the parameter."""
    from provision9p.tasks.modules import MODULES
    from provision9p.tasks.modules.spec import coerce

    out = coerce(module, MODULES[module].spec, args)
    if out.get("mode") is not None:
        check_mode(out["mode"])
    return out
