"""What every module shares: its context, parameter set, owner/mode handling, writes."""

from __future__ import annotations

import hashlib
import re
import stat as stat_mod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision9p.connect.base import Connection, RunResult
from provision9p.errors import TaskError
from provision9p.lab.model import GuestSpec


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


def write_content(conn: Connection, dest: str, data: bytes, args: dict[str, Any],
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


# Parameter types, by name: Ansible uses each name with one meaning across modules.
_BOOLS = {"create", "append", "create_home", "system", "remove", "update_cache",
          "install_recommends", "purge", "reload", "sysctl_set", "ignoreerrors", "boot",
          "enabled", "masked", "daemon_reload", "get_checksum"}
_INTS = {"uid", "gid", "cache_valid_time", "dump", "passno"}
_TRUE = {"yes", "true", "on", "1", "y"}
_FALSE = {"no", "false", "off", "0", "n"}
#: The states each module knows (Ansible's choices).
STATES: dict[str, tuple[str, ...]] = {
    "file": ("file", "directory", "link", "touch", "absent"),
    "lineinfile": ("present", "absent"), "blockinfile": ("present", "absent"),
    "apt": ("present", "absent", "latest", "installed", "removed"),
    "service": ("started", "stopped", "restarted", "reloaded"),
    "systemd": ("started", "stopped", "restarted", "reloaded"),
    "systemd_service": ("started", "stopped", "restarted", "reloaded"),
    "user": ("present", "absent"), "group": ("present", "absent"),
    "authorized_key": ("present", "absent"), "sysctl": ("present", "absent"),
    "mount": ("mounted", "unmounted", "present", "absent", "remounted"),
}


def coerce_args(module: str, args: dict[str, Any]) -> dict[str, Any]:
    """Booleans as Ansible spells them ('yes', 'false', ...) to bool, ids to int; a value
    of the wrong kind or an unknown state is a TaskError naming the parameter."""
    out = dict(args)
    for key, value in args.items():
        if key in _BOOLS and not isinstance(value, bool):
            word = str(value).strip().lower()
            if word not in _TRUE | _FALSE:
                raise TaskError(f"{module}: {key} must be a boolean (true/false), "
                                f"not {value!r}")
            out[key] = word in _TRUE
        elif key in _INTS and not isinstance(value, int):
            if not str(value).strip().isdigit():
                raise TaskError(f"{module}: {key} must be a number, not {value!r}")
            out[key] = int(str(value).strip())
        elif key == "mode" and value is not None:
            parse_mode(value)
        elif key == "state" and module in STATES and value not in STATES[module]:
            raise TaskError(f"{module}: state must be one of {', '.join(STATES[module])}, "
                            f"not {value!r}")
    return out
