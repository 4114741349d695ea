"""cron: jobs in a user's crontab or in /etc/cron.d, marked the way Ansible marks them.

Each job is two lines, `#Ansible: NAME` and the job (prefixed `#` when disabled), so a
crontab written by Ansible and one written here are the same file and either tool can
take over from the other. A user's crontab is its spool file, written directly (owner
the user, group crontab, 0600, as `crontab` writes it), so it works on the tree too.
"""

from __future__ import annotations

import posixpath
from typing import Any

from provision9p.connect.base import Connection
from provision9p.errors import TaskError
from provision9p.tasks.modules.base import Module, ModuleContext, read_db, write_content
from provision9p.tasks.modules.spec import P, Spec

MARKER = "#Ansible: "
SPOOL = "/var/spool/cron/crontabs"


def job_line(args: dict[str, Any], user: str | None) -> str:
    """The job's line as Ansible writes it (user field only in a cron_file)."""
    job = str(args["job"]).strip("\r\n")
    prefix = "#" if args.get("disabled") else ""
    who = f" {user}" if user else ""
    if args.get("special_time"):
        return f"{prefix}@{args['special_time']}{who} {job}"
    times = " ".join(str(args[k]) for k in ("minute", "hour", "day", "month", "weekday"))
    return f"{prefix}{times}{who} {job}"


def _target(conn: Connection, args: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(path, user, write attributes) of the crontab this task edits."""
    user = str(args.get("user") or "root")
    if args.get("cron_file"):
        name = str(args["cron_file"])
        path = name if name.startswith("/") else posixpath.join("/etc/cron.d", name)
        return path, user, {"mode": "0644", "owner": "root", "group": "root"}
    if conn.stat(SPOOL) is None:
        raise TaskError(f"cron: {SPOOL} does not exist: is cron installed in the guest?",
                        hint="install the cron package first")
    if user not in read_db(conn, "/etc/passwd"):
        raise TaskError(f"cron: no user {user!r} in the guest")
    group = "crontab" if "crontab" in read_db(conn, "/etc/group") else "root"
    return posixpath.join(SPOOL, user), user, {"mode": "0600", "owner": user, "group": group}


def _cron(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    path, user, attrs = _target(conn, args)
    st = conn.stat(path)
    lines = conn.read_file(path).decode(errors="replace").splitlines() if st else []
    name = str(args.get("name") or "")
    state = args["state"]
    new = list(lines)
    if args.get("env"):
        new = _env(new, name, args, state)
    else:
        if state == "present" and args.get("job") is None:
            raise TaskError("cron: state=present needs job")
        marker = MARKER + name
        at = next((i for i, ln in enumerate(new) if ln == marker), None)
        if state == "absent":
            if at is not None:
                del new[at:at + 2]
        else:
            line = job_line(args, user if args.get("cron_file") else None)
            if at is None:
                new += [marker, line]
            elif at + 1 >= len(new):
                new.append(line)
            else:
                new[at + 1] = line
    result: dict[str, Any] = {"changed": False, "jobs": _names(new), "envs": _envs(new)}
    if new == lines and st is not None:
        return result
    if st is None and not new:
        return result
    res = write_content(conn, path, ("\n".join(new) + "\n").encode() if new else b"",
                        attrs, ctx)
    result["changed"] = res["changed"]
    if ctx.diff and "diff" in res:
        result["diff"] = res["diff"]
    return result


def _env(lines: list[str], name: str, args: dict[str, Any], state: str) -> list[str]:
    out = [ln for ln in lines if not ln.startswith(f"{name}=")]
    if state == "present":
        at = next((i for i, ln in enumerate(lines) if ln.startswith(f"{name}=")), 0)
        out.insert(at, f"{name}={args.get('job') or ''}")
    return out


def _names(lines: list[str]) -> list[str]:
    return [ln[len(MARKER):] for ln in lines if ln.startswith(MARKER)]


def _envs(lines: list[str]) -> list[str]:
    return [ln.split("=", 1)[0] for ln in lines
            if "=" in ln and not ln.startswith("#") and " " not in ln.split("=", 1)[0]]


_TIME = {k: P("str", default="*") for k in ("minute", "hour", "day", "month", "weekday")}

MODULES: dict[str, Module] = {
    "cron": Module(_cron, Spec(
        help="A cron job (or environment line) in a crontab or /etc/cron.d file.",
        params={
            "name": P("str", required=True, help="the job's marker (#Ansible: NAME)"),
            "job": P("str", aliases=("value",), help="the command (env: the value)"),
            "user": P("str", help="whose crontab (cron_file: the user field); default root"),
            "state": P("str", default="present", choices=("present", "absent")),
            "cron_file": P("str", help="a file in /etc/cron.d instead of a crontab"),
            "special_time": P("str", choices=("annually", "daily", "hourly", "monthly",
                                              "reboot", "weekly", "yearly")),
            "disabled": P("bool", default=False, help="keep the job commented out"),
            "env": P("bool", default=False, help="name=job is an environment line"),
            **_TIME,
            "day": P("str", default="*", aliases=("dom",)),
            "month": P("str", default="*"),
            "weekday": P("str", default="*", aliases=("dow",)),
        },
        mutually_exclusive=(("special_time", "minute"), ("special_time", "hour"),
                            ("special_time", "day"), ("special_time", "month"),
                            ("special_time", "weekday")),
        unsupported={"backup": "not done", "insertafter": "env lines go first",
                     "insertbefore": "env lines go first"},
        returns="jobs (the marked names), envs",
        differences="a user's crontab is its spool file, written directly (no crontab "
                    "command); jobs without a marker are not adopted.")),
}
