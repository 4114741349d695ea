"""service and systemd: units enabled/masked, and started/stopped/restarted when booted.

Enabling is a matter of symlinks, so it works on the tree (systemctl in the chroot);
starting needs a running system, so in the tree phase `started` means "starts at
boot" and a restart or reload has nothing to act on.
"""

from __future__ import annotations

import shlex
from typing import Any

from provision9p.connect.base import Connection
from provision9p.errors import TaskError
from provision9p.tasks.modules.base import STATES, Module, ModuleContext, run_checked

_STATES = STATES["service"]
_ENABLED = {"enabled", "enabled-runtime", "alias", "static", "indirect", "generated"}


def _systemd(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    name = str(args.get("name") or "")
    state = args.get("state")
    if state is not None and state not in _STATES:
        raise TaskError(f"service: state must be one of {', '.join(_STATES)}")
    if not name:
        if args.get("daemon_reload") and conn.phase == "ssh" and not ctx.check:
            run_checked(conn, ["systemctl", "daemon-reload"])
        return {"changed": False}
    booted = conn.phase == "ssh"
    if args.get("daemon_reload") and booted and not ctx.check:
        run_checked(conn, ["systemctl", "daemon-reload"])
    q = shlex.quote(name)
    probe = conn.run(f"systemctl is-enabled {q} 2>/dev/null; echo \"|\"; "
                     + (f"systemctl is-active {q} 2>/dev/null" if booted else "true"))
    enabled_word, _, active_word = probe.stdout.partition("|")
    enabled_now, active_now = enabled_word.strip(), active_word.strip()
    if not enabled_now and conn.run(["systemctl", "cat", name]).returncode != 0:
        raise TaskError(f"service: no unit {name!r} in the guest")
    result: dict[str, Any] = {"changed": False, "name": name,
                              "status": {"UnitFileState": enabled_now,
                                         "ActiveState": active_now or "inactive"}}
    actions: list[list[str]] = []
    masked = args.get("masked")
    if masked is not None and (enabled_now == "masked") != bool(masked):
        actions.append(["systemctl", "mask" if masked else "unmask", name])
    enabled = args.get("enabled")
    if enabled is not None:
        is_on = enabled_now in _ENABLED
        if bool(enabled) != is_on and enabled_now != "static":
            actions.append(["systemctl", "enable" if enabled else "disable", name])
        result["enabled"] = bool(enabled)
    if booted and state is not None:
        running = active_now in ("active", "activating", "reloading")
        verb = {"started": None if running else "start",
                "stopped": "stop" if running else None,
                "restarted": "restart",
                "reloaded": "reload" if running else "start"}[state]
        if verb:
            actions.append(["systemctl", verb, name])
        result["state"] = state
    elif state is not None:
        result["msg"] = "not booted: nothing runs yet; an enabled unit starts at boot"
    if actions:
        result["changed"] = True
        if not ctx.check:
            for argv in actions:
                run_checked(conn, argv)
    return result


MODULES: dict[str, Module] = {
    "service": Module(frozenset({"name", "state", "enabled"}), _systemd),
    "systemd": Module(frozenset({"name", "state", "enabled", "masked", "daemon_reload"}),
                      _systemd),
    "systemd_service": Module(frozenset({"name", "state", "enabled", "masked",
                                         "daemon_reload"}), _systemd),
}
