"""command and shell."""

from __future__ import annotations

import shlex
import time
from datetime import datetime
from typing import Any

from provision9p.connect.base import Connection
from provision9p.errors import TaskError
from provision9p.tasks.modules.base import Module, ModuleContext
from provision9p.tasks.modules.spec import P, Spec


def _stamp() -> str:
    return datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")


def _command(conn: Connection, args: dict[str, Any], ctx: ModuleContext,
             shell: bool) -> dict[str, Any]:
    creates, removes = args.get("creates"), args.get("removes")
    raw = args.get("cmd") or args.get("_raw_params")
    shown: Any = args.get("argv") or raw
    base: dict[str, Any] = {"cmd": shown, "rc": 0, "stdout": "", "stderr": "",
                            "stdout_lines": [], "stderr_lines": []}
    if creates and conn.stat(str(creates)) is not None:
        return {**base, "changed": False, "msg": f"Did not run command since '{creates}' "
                                                 "exists"}
    if removes and conn.stat(str(removes)) is None:
        return {**base, "changed": False, "msg": f"Did not run command since '{removes}' "
                                                 "does not exist"}
    if ctx.check:
        # As Ansible: with creates/removes the command would change something; without,
        # nothing can be said, so the task is skipped.
        if creates is None and removes is None:
            return {**base, "changed": False, "skipped": True,
                    "msg": "Command would have run if not in check mode"}
        return {**base, "changed": True, "msg": "Command would have run if not in check mode"}
    cmd: str | list[str]
    if args.get("argv"):
        cmd = ["sh", "-c", 'exec "$@"', "sh", *[str(a) for a in args["argv"]]]
    elif not raw:
        raise TaskError("command needs cmd, argv or a free-form command")
    elif shell:
        cmd = [str(args.get("executable") or "/bin/sh"), "-c", str(raw)]
    else:
        cmd = ["sh", "-c", 'exec "$@"', "sh", *shlex.split(str(raw))]
    stdin = None
    if args.get("stdin") is not None:
        stdin = str(args["stdin"]).encode()
        if args.get("stdin_add_newline", True):
            stdin += b"\n"
    start, t0 = _stamp(), time.monotonic()
    res = conn.run(cmd, cwd=args.get("chdir"), stdin=stdin)
    delta = time.monotonic() - t0
    strip = args.get("strip_empty_ends", True)
    out = res.stdout.rstrip("\n") if strip else res.stdout
    err = res.stderr.rstrip("\n") if strip else res.stderr
    return {"cmd": shown, "changed": True, "rc": res.returncode, "stdout": out,
            "stderr": err, "stdout_lines": out.splitlines(), "stderr_lines": err.splitlines(),
            "start": start, "end": _stamp(), "delta": f"0:00:{delta:09.6f}",
            "failed": res.returncode != 0,
            "msg": "" if res.ok else "non-zero return code" + _contained_hint(conn, err)}


#: What a command says when the tree phase's containment (rootfs/contain.py) refused it.
_REFUSED = ("Operation not permitted", "permission denied (are you root?)")


def _contained_hint(conn: Connection, stderr: str) -> str:
    """Why a tree-phase command that needs the running kernel failed, and the way out."""
    if getattr(conn, "phase", "") != "tree" or not any(r in stderr for r in _REFUSED):
        return ""
    if "swapon" in stderr:  # no later phase helps: say so rather than send the user there
        return ("; before boot, commands run contained and cannot turn swap on, and a swap "
                "file cannot live on a 9P root even after boot (swapon: Invalid argument): "
                "give the guest swap with zram (README, \"Swap\")")
    return ("; before boot, commands run contained and cannot act on a kernel (swap, "
            "sysctls, modules, the clock, network configuration): mark the task "
            "`phase: ssh` to run it in the booted guest")


def _run_command(c: Connection, a: dict[str, Any], x: ModuleContext) -> dict[str, Any]:
    return _command(c, a, x, shell=False)


def _run_shell(c: Connection, a: dict[str, Any], x: ModuleContext) -> dict[str, Any]:
    return _command(c, a, x, shell=True)


_COMMON = {
    "_raw_params": P("str", help="the free-form command"),
    "cmd": P("str", help="the command, as a parameter"),
    "creates": P("path", help="skip when this path exists"),
    "removes": P("path", help="skip unless this path exists"),
    "chdir": P("path", help="run in this directory"),
    "stdin": P("str", help="text fed to the command"),
    "stdin_add_newline": P("bool", default=True),
    "strip_empty_ends": P("bool", default=True),
}
_RETURNS = "cmd, rc, stdout, stderr, stdout_lines, stderr_lines, start, end, delta, msg"

MODULES: dict[str, Module] = {
    "command": Module(_run_command, Spec(
        help="Run a program (no shell: no pipes, redirections or variables).",
        params={**_COMMON,
                "argv": P("list", elements="str", help="the command as a list of words"),
                "expand_argument_vars": P("bool", default=True, choices=(True,))},
        mutually_exclusive=(("_raw_params", "cmd", "argv"),),
        required_one_of=(("_raw_params", "cmd", "argv"),),
        unsupported={"warn": "removed from Ansible in 2.14",
                     "executable": "command runs no shell; use shell"},
        returns=_RETURNS,
        differences="in check mode a command with creates/removes reports changed, "
                    "without them it is skipped (as Ansible).")),
    "shell": Module(_run_shell, Spec(
        help="Run a command through a shell (/bin/sh unless executable).",
        params={**_COMMON, "executable": P("path", help="the shell, e.g. /bin/bash")},
        mutually_exclusive=(("_raw_params", "cmd"),),
        required_one_of=(("_raw_params", "cmd"),),
        unsupported={"warn": "removed from Ansible in 2.14"},
        returns=_RETURNS)),
}
