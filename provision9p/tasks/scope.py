"""A guest's variables during a run, in Ansible's precedence, low to high:

magic variables < role defaults (its dependencies' first) < lab vars (lab defaults,
then the guest's) < gathered facts < the role reference's vars < role vars (every
role of the play, this role's last) < block and task vars < set_fact / include_vars
results < registered results < extra vars.

Each role's merged and resolved scope is cached; registering a result or setting a
fact bumps a version that invalidates the caches, so a task does not re-render the
whole variable set.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision9p import inventory
from provision9p.errors import TaskError
from provision9p.lab.model import GuestSpec, LabSpec
from provision9p.tasks.model import Role, RoleDep
from provision9p.tasks.templating import render, templated

#: The Ansible behaviour level we follow, for roles that test `ansible_version`.
ANSIBLE_VERSION = {"full": "2.15.0", "major": 2, "minor": 15, "revision": 0,
                   "string": "2.15.0"}


@dataclass(eq=False)
class PlayRole:
    """A role as it runs in a play: the vars of its reference, a dependency's `when`."""

    role: Role
    ref_vars: dict[str, Any] = field(default_factory=dict)
    when: list[Any] = field(default_factory=list)
    tags: frozenset[str] = frozenset()
    deps: list[PlayRole] = field(default_factory=list)


def resolve(merged: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """Render the values of `keys` that are templates against the rest (Ansible's lazy
    variables); a value that cannot be rendered stays as written and fails where used."""
    pending = [k for k in keys if templated(merged[k])]
    for _ in range(8):
        still = []
        for key in pending:
            try:
                merged[key] = render(merged[key], merged)
            except TaskError:
                still.append(key)
                continue
            if templated(merged[key]):
                still.append(key)
        if not still or still == pending:
            break
        pending = still
    return merged


#: Facts gathered in this process (this run), by (lab state dir, guest): `hostvars` of a
#: guest whose play ran earlier in the run shows them, as Ansible's does after its setup.
_GATHERED: dict[tuple[str, str], dict[str, Any]] = {}


class HostVars(Mapping[str, Any]):
    """`hostvars`: this guest's current variables; each other guest of the lab by its lab
    vars, groups, SSH endpoint while it runs, and its facts once gathered in this run."""

    def __init__(self, state: HostState) -> None:
        self.state = state

    def __getitem__(self, name: str) -> Any:
        if name == self.state.guest.name:
            return self.state.last
        lab = self.state.lab
        for guest in lab.guests:
            if guest.name == name:
                return other_host_vars(lab, guest)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(g.name for g in self.state.lab.guests)

    def __len__(self) -> int:
        return len(self.state.lab.guests)


def other_host_vars(lab: LabSpec, guest: GuestSpec) -> dict[str, Any]:
    """Another guest's variables as a play of this guest sees them (no role scope)."""
    out: dict[str, Any] = {"inventory_hostname": guest.name,
                           "inventory_hostname_short": guest.name.split(".")[0],
                           "group_names": inventory.group_names(lab, guest),
                           **_endpoint(lab, guest), **inventory.extra_host_vars(guest)}
    facts = _GATHERED.get((str(lab.state_dir), guest.name))
    if facts:
        out.update({"ansible_facts": facts, **{f"ansible_{k}": v for k, v in facts.items()}})
    out.update(guest.vars)
    return out


def _endpoint(lab: LabSpec, guest: GuestSpec) -> dict[str, Any]:
    """ansible_host/ansible_port while the guest runs (what the inventory prints)."""
    up = inventory.reachable(lab, guest)
    return {"ansible_host": "127.0.0.1", "ansible_port": up.port} if up else {}


class HostState:
    def __init__(self, guest: GuestSpec, lab: LabSpec, magic: dict[str, Any],
                 facts: dict[str, Any], extra: dict[str, Any], play: list[PlayRole]) -> None:
        self.guest, self.lab = guest, lab
        self.magic = {**magic, "hostvars": HostVars(self)}
        self.facts = dict(facts)
        # the same dict: facts a later task adds (setup, clear_facts) show in hostvars too
        _GATHERED[(str(lab.state_dir), guest.name)] = self.facts
        self.set_facts: dict[str, Any] = {}
        self.registered: dict[str, Any] = {}
        self.extra = extra
        self.public_vars: dict[str, Any] = {}
        self.public_defaults: dict[str, Any] = {}
        for pr in play:
            self.public_vars.update(pr.role.vars)
        self.version = 0
        self._cache: dict[int, tuple[int, dict[str, Any]]] = {}
        self.last: dict[str, Any] = {}

    def changed(self) -> None:
        self.version += 1

    def register(self, name: str, value: Any) -> None:
        self.registered[name] = value
        self.changed()

    def add_facts(self, facts: Mapping[str, Any], module: str) -> None:
        """A module's `ansible_facts`. set_fact and include_vars give variables; the
        others (setup, service_facts, package_facts) give facts, as `ansible_facts.x`
        without their `ansible_` prefix and as variables under the name returned."""
        for key, value in facts.items():
            if module not in ("set_fact", "include_vars") and key != "ansible_facts":
                self.facts[key.removeprefix("ansible_")] = value
            self.set_facts[key] = value
        self.changed()

    def publish(self, role: Role) -> None:
        """import_role, include_role public: its defaults and vars for later tasks."""
        self.public_defaults.update(role.defaults)
        self.public_vars.update(role.vars)
        self.changed()

    def clear_facts(self) -> None:
        self.facts.clear()
        self.set_facts.clear()
        self.changed()

    def _fact_vars(self) -> dict[str, Any]:
        return {"ansible_facts": self.facts,
                **{f"ansible_{k}": v for k, v in self.facts.items()}}

    def base(self, pr: PlayRole) -> dict[str, Any]:
        """The role's resolved scope without task-level vars (cached)."""
        hit = self._cache.get(id(pr))
        if hit is not None and hit[0] == self.version:
            return hit[1]
        role = pr.role
        defaults: dict[str, Any] = dict(self.public_defaults)
        for dep in _all_deps(pr):
            defaults.update(dep.role.defaults)
        merged = {**self.magic, "role_name": role.name, "role_path": str(role.path),
                  **defaults, **self.guest.vars, **self._fact_vars(), **pr.ref_vars,
                  **self.public_vars, **role.vars, **self.set_facts, **self.registered,
                  **self.extra}
        merged = resolve(merged, list(merged))
        self._cache[id(pr)] = (self.version, merged)
        return merged

    def variables(self, pr: PlayRole, layers: Mapping[str, Any] | None = None
                  ) -> dict[str, Any]:
        """The scope of a task: the role's, then block/task/loop vars (`layers`),
        still below set_fact, registered results and extra vars."""
        base = self.base(pr)
        if not layers:
            self.last = base
            return base
        top = {**self.set_facts, **self.registered, **self.extra}
        merged = {**base, **layers, **{k: v for k, v in top.items() if k in layers}}
        pending = [k for k in layers if k not in top]
        # base values still written as templates may depend on the task's vars
        pending += [k for k, v in base.items() if k not in layers and isinstance(v, str)
                    and templated(v)]
        out = resolve(merged, pending)
        self.last = out
        return out


def _all_deps(pr: PlayRole) -> list[PlayRole]:
    out: list[PlayRole] = []
    for dep in pr.deps:
        out += _all_deps(dep)
    return [*out, pr]


def magic_vars(guest: GuestSpec, lab: LabSpec, *, check: bool, diff: bool,
               tags: set[str] | None, skip_tags: set[str] | None) -> dict[str, Any]:
    return {
        "inventory_hostname": guest.name,
        "inventory_hostname_short": guest.name.split(".")[0],
        # The groups of `provision9p inventory`: all, ungrouped, the lab's, the guests'.
        "groups": inventory.group_map(lab),
        "group_names": inventory.group_names(lab, guest),
        **_endpoint(lab, guest),
        **inventory.extra_host_vars(guest),
        # One guest per run: the play's hosts are this guest (run_once holds trivially).
        "play_hosts": [guest.name], "ansible_play_hosts": [guest.name],
        "ansible_play_hosts_all": [guest.name], "ansible_play_batch": [guest.name],
        "ansible_check_mode": check, "ansible_diff_mode": diff,
        "ansible_run_tags": sorted(tags) if tags else ["all"],
        "ansible_skip_tags": sorted(skip_tags or ()),
        "ansible_version": dict(ANSIBLE_VERSION),
        "playbook_dir": str(lab.base_dir),
        "ansible_managed": "Managed by provision9p",
        "ansible_connection": "ssh",
    }


def dep_roles(role: Role) -> list[RoleDep]:
    return role.dependencies


def role_key(role: Role, params: Mapping[str, Any]) -> tuple[Path, str]:
    return (role.path, repr(sorted(params.items(), key=lambda kv: kv[0])))
