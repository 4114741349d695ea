"""command, shell and debug."""

from __future__ import annotations

import shlex
from typing import Any

from provision9p.connect.base import Connection
from provision9p.errors import TaskError
from provision9p.tasks.modules.base import Module, ModuleContext


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


def _debug(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    if "var" in args:
        name = str(args["var"])
        return {"changed": False, name: ctx.render("{{ " + name + " }}")}
    return {"changed": False, "msg": args.get("msg", "Hello world!")}


MODULES: dict[str, Module] = {
    "command": Module(frozenset({"_raw_params", "cmd", "argv", "creates", "removes", "chdir"}),
                      lambda c, a, x: _command(c, a, x, shell=False)),
    "shell": Module(frozenset({"_raw_params", "cmd", "creates", "removes", "chdir"}),
                    lambda c, a, x: _command(c, a, x, shell=True)),
    "debug": Module(frozenset({"msg", "var"}), _debug),
}
