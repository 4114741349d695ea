"""Ansible's facts about a guest: one round trip over SSH, or read from the tree offline.

Over SSH one POSIX sh script (probe.py) prints every file and command output the facts
need; on the tree the same parts are read from the tree's files and the lab's spec
(offline.py). The collectors (collect.py) turn parts into facts, so both phases give
the same answer wherever both can know it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from provision9p.connect.base import Connection
from provision9p.errors import TaskError
from provision9p.lab.model import GuestSpec
from provision9p.tasks.facts import collect, hardware, network, offline, probe
from provision9p.tasks.facts.collect import Facts, Parts

Collector = Callable[[Parts], Facts]

#: Ansible's fact collectors by name (what gather_subset names), each as ours.
COLLECTORS: dict[str, tuple[Collector, ...]] = {
    "apparmor": (collect.apparmor,), "caps": (collect.caps,), "cmdline": (collect.cmdline,),
    "date_time": (collect.date_time,), "distribution": (collect.distribution,),
    "dns": (collect.dns,), "env": (collect.env,), "fips": (collect.fips,),
    "local": (collect.local,), "lsb": (collect.lsb,), "pkg_mgr": (collect.pkg_mgr,),
    "platform": (collect.platform,), "python": (collect.python,),
    "selinux": (collect.selinux,), "service_mgr": (collect.service_mgr,),
    "ssh_pub_keys": (collect.ssh_keys,), "user": (collect.user,),
    "chroot": (collect.chroot,), "systemd": (collect.systemd,),
    "loadavg": (hardware.loadavg,),
    "hardware": (hardware.memory, hardware.processor, hardware.dmi, hardware.mounts,
                 hardware.uptime, hardware.devices),
    "virtual": (hardware.virtual,), "fibre_channel_wwn": (hardware.fibre_channel_wwn,),
    "network": (network.network,), "iscsi": (network.iscsi,), "nvme": (network.nvme,),
    "facter": (), "ohai": (),  # those tools are not in a lab guest: nothing to add
}
#: Ansible's minimal subset (the setup module's), gathered unless `!min`.
MIN = frozenset({"apparmor", "caps", "cmdline", "date_time", "distribution", "dns", "env",
                 "fips", "local", "lsb", "pkg_mgr", "platform", "python", "selinux",
                 "service_mgr", "ssh_pub_keys", "user"})


def resolve_subset(subset: Sequence[str]) -> set[str]:
    """Ansible's gather_subset rules (module_utils/facts/collector.py): start from `min`,
    add what is named (`all`: every collector), take away what is negated (`!all`: all
    but min), but keep what was named explicitly. Excluding an unknown name is ignored,
    adding one is an error, as in Ansible."""
    everything = set(COLLECTORS)
    include = set(MIN)
    exclude: set[str] = set()
    named: set[str] = set()
    for raw in ["min", *(str(s).strip() for s in subset or ("all",))]:
        neg = raw.startswith("!")
        name = raw[1:] if neg else raw
        if name == "min":
            (exclude if neg else include).update(MIN)
        elif name == "all":
            if neg:
                exclude.update(everything - MIN)
            else:
                include.update(everything)
        elif neg:
            exclude.add(name)
        elif name in everything:
            named.add(name)
            include.add(name)
        else:
            raise TaskError(f"bad subset {name!r} given to gather_subset",
                            hint="gather_subset takes: all, min, "
                                 f"{', '.join(sorted(everything))}, each optionally with "
                                 "a leading !")
    return include - (exclude - named)


def gather_facts(conn: Connection, guest: GuestSpec,
                 subset: Sequence[str] = ("all",)) -> dict[str, Any]:
    """The guest's facts under Ansible's names without the `ansible_` prefix
    (`os_family`, `distribution`, ...); the engine exposes each as `ansible_<name>` too."""
    groups = resolve_subset(subset)
    if conn.phase == "tree":
        parts = offline.parts(conn, guest)
    else:
        res = conn.run(["/bin/sh", "-c", probe.SCRIPT])
        try:
            parts = probe.parse(res.stdout)
        except ValueError as exc:
            raise TaskError(f"gathering facts from {conn.guest} failed: {exc}",
                            hint=f"stderr: {res.stderr.strip()[-500:]}") from exc
    facts = facts_of(parts, groups)
    facts.update(gather_subset=list(subset), module_setup=True)
    return facts


def facts_of(parts: Parts, groups: set[str]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for name, collectors in COLLECTORS.items():
        if name in groups:
            for collector in collectors:
                facts.update(collector(parts))
    # What the tree cannot know (offline.UNKNOWN) is left out rather than guessed.
    for name in parts.get("unknown", "").split():
        facts.pop(name, None)
    return facts


__all__ = ["COLLECTORS", "MIN", "gather_facts", "resolve_subset"]
