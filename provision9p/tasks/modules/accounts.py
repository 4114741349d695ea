"""hostname, authorized_key, user and group."""

from __future__ import annotations

import posixpath
import re
import time
from typing import Any

from provision9p.connect.base import Connection
from provision9p.errors import TaskError
from provision9p.tasks.modules.base import (
    Module,
    ModuleContext,
    read_db,
    run_checked,
    write_content,
)
from provision9p.tasks.modules.spec import P, Spec

_KEY = re.compile(r"^(?:(?P<options>.*?)\s+)?(?P<type>(?:ssh|ecdsa|sk)-[\w@.-]+)\s+"
                  r"(?P<blob>[A-Za-z0-9+/=]+)(?:\s+(?P<comment>.*))?$")


def parse_key(line: str) -> tuple[str, str, str, str] | None:
    """(blob, type, options, comment) of an authorized_keys line; None for comments,
    blank lines and anything that is not a key."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    m = _KEY.match(text)
    if not m:
        return None
    return m["blob"], m["type"], (m["options"] or "").strip(), (m["comment"] or "").strip()


def _key_line(key: tuple[str, str, str, str]) -> str:
    blob, kind, options, comment = key
    return " ".join(p for p in (options, kind, blob, comment) if p)


def _authorized_key(conn: Connection, args: dict[str, Any], ctx: ModuleContext
                    ) -> dict[str, Any]:
    """Ansible's rules: keys match by their base64 blob; a present key whose type,
    options or comment differ is replaced; exclusive drops every other key."""
    user = str(args["user"])
    state = args["state"]
    entry = read_db(conn, "/etc/passwd").get(user)
    if entry is None or len(entry) < 6:
        raise TaskError(f"authorized_key: no user {user!r} in the guest's /etc/passwd")
    uid, gid, home = int(entry[2]), int(entry[3]), entry[5]
    path = str(args.get("path") or f"{home.rstrip('/')}/.ssh/authorized_keys")
    wanted = []
    for raw in str(args["key"]).splitlines():
        parsed = parse_key(raw)
        if parsed is None:
            if raw.strip() and not raw.strip().startswith("#"):
                raise TaskError(f"authorized_key: invalid key: {raw.strip()[:60]!r}")
            continue
        blob, kind, options, comment = parsed
        if args.get("key_options") is not None:
            options = str(args["key_options"])
        if args.get("comment") is not None:
            comment = str(args["comment"])
        wanted.append((blob, kind, options, comment))
    st = conn.stat(path)
    lines = conn.read_file(path).decode(errors="replace").splitlines() if st else []
    blobs = {k[0] for k in wanted}
    new: list[str] = []
    for line in lines:
        parsed = parse_key(line)
        if parsed is None:
            new.append(line)
        elif parsed[0] in blobs:
            if state == "present" and parsed in wanted:
                new.append(line)
        elif not (args.get("exclusive") and state == "present"):
            new.append(line)
    if state == "present":
        have = {parse_key(ln) for ln in new}
        new += [_key_line(k) for k in wanted if k not in have]
    result: dict[str, Any] = {"changed": False, "user": user, "key": args["key"],
                              "keyfile": path, "state": state,
                              "exclusive": bool(args.get("exclusive")),
                              "key_options": args.get("key_options")}
    if new == lines:
        return result
    ssh_dir = posixpath.dirname(path)
    if not ctx.check and args.get("manage_dir", True) and conn.stat(ssh_dir) is None:
        conn.mkdir(ssh_dir, mode=0o700, uid=uid, gid=gid)
    res = write_content(conn, path, ("\n".join(new) + "\n").encode() if new else b"",
                         {"mode": "0600", "owner": uid, "group": gid}, ctx)
    result["changed"] = res["changed"]
    if "diff" in res:
        result["diff"] = res["diff"]
    return result


def _user(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    """Accounts through useradd/usermod/userdel, as Ansible's user module does on Linux."""
    name = str(args["name"])
    state = args.get("state", "present")
    users = read_db(conn, "/etc/passwd")
    groups = read_db(conn, "/etc/group")
    entry = users.get(name)
    result: dict[str, Any] = {"changed": False, "name": name, "state": state}
    if state == "absent":
        if entry is not None:
            result["changed"] = True
            if not ctx.check:
                run_checked(conn, ["userdel", *(["-r"] if args.get("remove") else []), name])
        return result
    if state != "present":
        raise TaskError(f"user: unknown state {state!r}")
    opts: list[str] = []
    group = args.get("group")
    if group is not None:
        gid = str(group) if str(group).isdigit() else (groups.get(str(group)) or [""] * 3)[2]
        if not gid:
            raise TaskError(f"user: no group {group!r} in the guest's /etc/group")
        if entry is None or entry[3] != gid:
            opts += ["-g", str(group)]
    if args.get("uid") is not None and (entry is None or entry[2] != str(args["uid"])):
        opts += ["-u", str(args["uid"])]
    for key, flag, field_no in (("comment", "-c", 4), ("home", "-d", 5), ("shell", "-s", 6)):
        if args.get(key) is not None and (entry is None or entry[field_no] != str(args[key])):
            opts += [flag, str(args[key])]
            if key == "home" and entry is not None and args.get("move_home"):
                opts.append("-m")
    if args.get("password") is not None and (entry is None or
                                             args.get("update_password") != "on_create"):
        shadow = read_db(conn, "/etc/shadow") if entry is not None else {}
        if entry is None or (shadow.get(name) or ["", ""])[1] != str(args["password"]):
            opts += ["-p", str(args["password"])]
    opts += _shadow_opts(conn, name, entry is not None, args)
    wanted = _as_names(args.get("groups"))
    if args.get("groups") is not None:
        missing = [g for g in wanted if g not in groups]
        if missing:
            raise TaskError(f"user: no group {', '.join(missing)} in the guest's /etc/group")
        have = {g for g, f in groups.items() if len(f) > 3 and name in f[3].split(",")}
        if args.get("append"):
            if not set(wanted) <= have:
                opts += ["-a", "-G", ",".join(wanted)]
        elif set(wanted) != have:
            opts += ["-G", ",".join(wanted)]
    if entry is None:
        result["changed"] = True
        create_home = args.get("create_home", True)
        argv = ["useradd", *(["-r"] if args.get("system") else []),
                "-m" if create_home else "-M",
                *(["-k", str(args["skeleton"])] if args.get("skeleton") else []),
                *[o for o in opts if o != "-a"], name]
    elif opts:
        result["changed"] = True
        argv = ["usermod", *opts, name]
    else:
        argv = []
    if argv and not ctx.check:
        run_checked(conn, argv)
        entry = read_db(conn, "/etc/passwd")[name]
    if entry is not None:
        result.update(uid=int(entry[2]), group=int(entry[3]), home=entry[5],
                      shell=entry[6] if len(entry) > 6 else "")
    return result


def _shadow_opts(conn: Connection, name: str, exists: bool, args: dict[str, Any]
                 ) -> list[str]:
    """expires and password_lock, judged from /etc/shadow as usermod writes it."""
    if args.get("expires") is None and args.get("password_lock") is None:
        return []
    shadow = (read_db(conn, "/etc/shadow").get(name) if exists else None) or [""] * 9
    shadow += [""] * (9 - len(shadow))
    opts: list[str] = []
    if args.get("expires") is not None:
        expires = float(args["expires"])
        want = "" if expires < 0 else str(int(expires // 86400))
        if shadow[7] != want or not exists:
            day = "" if expires < 0 else time.strftime("%Y-%m-%d", time.gmtime(expires))
            if expires >= 0 or exists:
                opts += ["-e", day]
    lock = args.get("password_lock")
    if lock is not None and exists and shadow[1].startswith("!") != lock:
        opts.append("-L" if lock else "-U")
    return opts


def _group(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    name = str(args["name"])
    state = args.get("state", "present")
    entry = read_db(conn, "/etc/group").get(name)
    result: dict[str, Any] = {"changed": False, "name": name, "state": state}
    argv: list[str] = []
    if state == "absent":
        argv = ["groupdel", name] if entry is not None else []
    elif state == "present":
        gid = args.get("gid")
        if entry is None:
            argv = ["groupadd", *(["-r"] if args.get("system") else []),
                    *(["-g", str(gid)] if gid is not None else []), name]
        elif gid is not None and entry[2] != str(gid):
            argv = ["groupmod", "-g", str(gid), name]
    else:
        raise TaskError(f"group: unknown state {state!r}")
    if argv:
        result["changed"] = True
        if not ctx.check:
            run_checked(conn, argv)
            entry = read_db(conn, "/etc/group").get(name)  # its gid, when groupadd chose
    if entry is not None:
        result["gid"] = int(entry[2])
    return result


def _as_names(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [g.strip() for g in value.split(",") if g.strip()]
    return [str(g) for g in value]


_KEYS = ("generate_ssh_key", "ssh_key_bits", "ssh_key_comment", "ssh_key_file",
         "ssh_key_passphrase", "ssh_key_type")

MODULES: dict[str, Module] = {
    "authorized_key": Module(_authorized_key, Spec(
        help="One SSH public key in a user's ~/.ssh/authorized_keys.",
        params={"user": P("str", required=True),
                "key": P("str", required=True, help="one or more key lines"),
                "state": P("str", default="present", choices=("present", "absent")),
                "path": P("path", help="default: ~user/.ssh/authorized_keys"),
                "manage_dir": P("bool", default=True, help="create the key file's "
                                                           "directory (0700, the user's)"),
                "exclusive": P("bool", default=False, help="remove every other key"),
                "key_options": P("str", help="options put before each key"),
                "comment": P("str", help="replaces each key's comment"),
                "validate_certs": P("bool", default=True, choices=(True,))},
        unsupported={"follow": "not done"},
        returns="user, key, keyfile, state, exclusive, key_options, diff",
        differences="key from a URL (https://github.com/USER.keys) is not fetched.")),
    "user": Module(_user, Spec(
        help="An account, through useradd/usermod/userdel.",
        params={"name": P("str", required=True, aliases=("user",)),
                "uid": P("int"), "group": P("str"),
                "groups": P("list", elements="str"),
                "append": P("bool", default=False),
                "home": P("path"), "move_home": P("bool", default=False),
                "shell": P("str"), "comment": P("str"),
                "create_home": P("bool", default=True, aliases=("createhome",)),
                "skeleton": P("path"),
                "system": P("bool", default=False),
                "state": P("str", default="present", choices=("present", "absent")),
                "password": P("str", no_log=True, help="a crypt hash, as in /etc/shadow"),
                "update_password": P("str", default="always",
                                     choices=("always", "on_create")),
                "remove": P("bool", default=False),
                "expires": P("float", help="epoch seconds; negative: never"),
                "password_lock": P("bool", help="lock (usermod -L) or unlock the "
                                                "password")},
        unsupported={**{k: "make keys with a command task" for k in _KEYS},
                     **{k: "not done" for k in ("force",
                                                "non_unique", "local", "login_class",
                                                "password_expire_max",
                                                "password_expire_min", "umask",
                                                "seuser", "hidden", "profile",
                                                "authorization", "role")}},
        returns="name, state, uid, group, home, shell")),
    "group": Module(_group, Spec(
        help="A group, through groupadd/groupmod/groupdel.",
        params={"name": P("str", required=True), "gid": P("int"),
                "state": P("str", default="present", choices=("present", "absent")),
                "system": P("bool", default=False)},
        unsupported={k: "not done" for k in ("local", "non_unique", "force", "gid_min",
                                             "gid_max")},
        returns="name, state, gid")),
}
