"""One JSON document on stdout for programs (`--json`): stable keys, documented in README.

Keys are only ever added; a key's meaning never changes. Per guest: name, state, pid,
ssh_port, accel, uptime_seconds, groups, timings (of the last build and boot), and the
lab address once the lab network gives one.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from provision9p import inventory
from provision9p.lab.model import GuestSpec, LabSpec, Share
from provision9p.target import Target

#: Bumped only if a key ever has to change meaning (never so far).
SCHEMA = 1


def dump(document: dict[str, Any]) -> None:
    """Print `document` as one JSON object; `schema` first so a reader can check it."""
    json.dump({"schema": SCHEMA, **document}, sys.stdout, indent=2)
    sys.stdout.write("\n")


def guest_state(target: Target) -> dict[str, Any]:
    """What `status` knows of one guest, as plain values."""
    from provision9p.boot import supervisor

    st = supervisor.status(target)
    return {
        "name": target.name,
        "state": st.state,
        "pid": st.pid,
        "ssh_port": st.ssh_port,
        "accel": st.accel,
        "uptime_seconds": round(st.since, 1) if st.since is not None else None,
        "groups": inventory.group_names(target.lab, target.guest),
        "lab_address": inventory.extra_host_vars(target.guest).get("lab_address"),
        "timings": _timings(target),
        "console_tail": st.console_tail or None,
    }


def _timings(target: Target) -> dict[str, Any] | None:
    """Seconds per stage of the last build and boot (guests/<name>/timings.json)."""
    try:
        data = json.loads((target.state.dir / "timings.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def lab_json(lab: LabSpec) -> dict[str, Any]:
    """`validate --json`: the lab as validation resolved it (defaults filled in)."""
    return {"name": lab.name, "source": lab.source, "state_dir": str(lab.state_dir),
            "valid": True, "warnings": list(lab.warnings),
            "groups": inventory.group_map(lab),
            "guests": [_guest_spec(g) for g in lab.guests]}


def _guest_spec(g: GuestSpec) -> dict[str, Any]:
    return {"name": g.name, "arch": g.arch, "machine": g.machine, "memory_mib": g.memory_mib,
            "cpus": g.cpus, "accel": g.accel, "suite": g.rootfs.suite,
            "packages": list(g.rootfs.packages), "ssh_port": g.ssh_port,
            "groups": list(g.groups), "roles": [r.name for r in g.roles],
            "root": _share(g.root), "shares": [_share(s) for s in g.shares],
            "verify": [str(p) for p in g.verify]}


def _share(s: Share) -> dict[str, Any]:
    return {"mount_tag": s.mount_tag, "path": str(s.path), "mount": s.mount,
            "security_model": s.security_model, "readonly": s.readonly,
            "msize": s.options.msize, "cache": s.options.cache, "version": s.options.version}
