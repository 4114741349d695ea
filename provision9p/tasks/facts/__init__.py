"""Ansible's facts about a guest: one round trip over SSH, or read from the tree offline.

Over SSH one POSIX sh script (probe.py) prints every file and command output the facts
need; on the tree the same parts are read from the tree's files and the lab's spec
(offline.py). The collectors (collect.py) turn parts into facts, so both phases give
the same answer wherever both can know it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from provision9p.connect.base import Connection
from provision9p.errors import TaskError
from provision9p.lab.model import GuestSpec
from provision9p.tasks.facts import collect, offline, probe

#: Subset names gather_subset accepts (Ansible's, plus its per-collector names below).
#: facter and ohai are accepted and gather nothing, as on a host without those tools.
_GROUPS: dict[str, tuple[str, ...]] = {
    "all": ("min", "hardware", "network", "virtual"),
    "min": ("min",), "hardware": ("hardware",), "network": ("network",),
    "virtual": ("virtual",), "facter": (), "ohai": (),
}


def resolve_subset(subset: Sequence[str]) -> set[str]:
    """Ansible's gather_subset rules: `min` always unless `!min`; `!all` leaves `min`;
    only exclusions means all but those."""
    include: set[str] = set()
    exclude: set[str] = set()
    named = False
    for raw in subset or ("all",):
        name = str(raw).strip()
        neg = name.startswith("!")
        name = name[1:] if neg else name
        if name not in _GROUPS:
            raise TaskError(f"bad subset {name!r} given to gather_subset",
                            hint=f"gather_subset takes: {', '.join(sorted(_GROUPS))}, "
                                 "each optionally with a leading !")
        if neg:
            exclude.update(_GROUPS[name] if name != "all"
                           else set(_GROUPS["all"]) - {"min"})
        else:
            named = True
            include.update(_GROUPS[name])
    if not named:
        include.update(_GROUPS["all"])
    include -= exclude - {g for raw in subset for g in _GROUPS.get(str(raw).strip(), ())}
    if "min" not in exclude:
        include.add("min")
    return include


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


def facts_of(parts: collect.Parts, groups: set[str]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for group in ("min", "hardware", "network", "virtual"):
        if group in groups:
            for collector in collect.SUBSETS[group]:
                facts.update(collector(parts))
    # What the tree cannot know (offline.UNKNOWN) is left out rather than guessed.
    for name in parts.get("unknown", "").split():
        facts.pop(name, None)
    return facts


__all__ = ["gather_facts", "resolve_subset"]
