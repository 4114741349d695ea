"""apt: Debian packages present, absent or latest, through apt-get as Ansible does.

In the tree phase the commands run in a chroot of the plain tree (the build starts
no services there: see TreeConnection); over SSH they run in the guest, which needs
a route to its mirror for anything not yet installed.
"""

from __future__ import annotations

import time
from typing import Any

from provision9p.connect.base import Connection
from provision9p.errors import TaskError
from provision9p.tasks.modules.base import STATES, Module, ModuleContext, run_checked

_ENV = {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
_STATES = STATES["apt"]


def installed(conn: Connection, names: list[str]) -> set[str]:
    """Which of these packages dpkg has fully installed."""
    res = conn.run(["dpkg-query", "-W", "-f=${Package}\\t${db:Status-Abbrev}\\n", *names],
                   env=_ENV)
    have = set()
    for line in res.stdout.splitlines():
        pkg, _, status = line.partition("\t")
        if status.startswith("ii"):
            have.add(pkg.split(":")[0])
    return have


def _apt(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    raw = args.get("name", args.get("pkg"))
    names = [raw] if isinstance(raw, str) else list(raw or [])
    names = [str(n) for n in names]
    state = args.get("state", "present")
    if state not in _STATES:
        raise TaskError(f"apt: state must be one of {', '.join(_STATES)}")
    state = {"installed": "present", "removed": "absent"}.get(state, state)
    result: dict[str, Any] = {"changed": False, "cache_updated": False}
    if args.get("update_cache") and not ctx.check and _cache_stale(conn, args):
        run_checked(conn, ["apt-get", "update", "-q"], env=_ENV)
        result["cache_updated"] = True
    if not names:
        return result
    have = installed(conn, names)
    if state == "present":
        todo = [n for n in names if n not in have]
        argv = ["apt-get", "install", "-y", "-q",
                *([] if args.get("install_recommends", True) else ["--no-install-recommends"]),
                *todo]
    elif state == "latest":
        sim = run_checked(conn, ["apt-get", "install", "-s", "-q", *names], env=_ENV)
        todo = [ln.split()[1] for ln in sim.stdout.splitlines() if ln.startswith("Inst ")]
        argv = ["apt-get", "install", "-y", "-q", *names]
    else:
        todo = [n for n in names if n in have]
        argv = ["apt-get", "purge" if args.get("purge") else "remove", "-y", "-q", *todo]
    if not todo:
        return result
    result["changed"] = True
    result["msg"] = f"{'removed' if state == 'absent' else 'installed'}: {', '.join(todo)}"
    if ctx.check:
        return result
    res = conn.run(argv, env=_ENV)
    if not res.ok and "dpkg --configure -a" in res.stderr + res.stdout:
        # dpkg was interrupted (the guest lost power mid-install): apt refuses to go on
        # until the half-done packages are configured, and says so; do that, then retry.
        run_checked(conn, ["dpkg", "--configure", "-a"], env=_ENV)
        res = conn.run(argv, env=_ENV)
    if not res.ok:
        detail = (res.stderr.strip() or res.stdout.strip())[-1500:]
        raise TaskError(f"`{' '.join(argv)}` failed (exit {res.returncode}): {detail}")
    result["stdout"] = res.stdout
    return result


def _cache_stale(conn: Connection, args: dict[str, Any]) -> bool:
    valid = int(args.get("cache_valid_time") or 0)
    if not valid:
        return True
    st = conn.stat("/var/cache/apt/pkgcache.bin")
    return st is None or time.time() - st.mtime > valid


MODULES: dict[str, Module] = {
    "apt": Module(frozenset({"name", "pkg", "state", "update_cache", "cache_valid_time",
                             "install_recommends", "purge"}), _apt),
}
