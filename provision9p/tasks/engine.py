"""Running a guest's roles: the play (roles, dependencies first), facts gathered once,
the task tree, handlers at flush points and at the end, the recap.

Variable precedence: see scope.py.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from provision9p import paths
from provision9p.connect.base import Connection
from provision9p.connect.ssh import SSHConnection
from provision9p.errors import Provision9pError
from provision9p.lab.model import GuestSpec, LabSpec
from provision9p.rootfs.guest_setup import lab_hosts_block
from provision9p.tasks import facts as facts_mod
from provision9p.tasks.facts.needed import facts_use
from provision9p.tasks.filters import OMIT
from provision9p.tasks.report import BriefReporter, Recap, Reporter
from provision9p.tasks.roles import Role, load_role
from provision9p.tasks.runner import EndPlay, EndRole, Inherit, Options, Runner
from provision9p.tasks.scope import HostState, PlayRole, magic_vars

__all__ = ["BriefReporter", "Play", "Recap", "Reporter", "load_play", "run_play"]


def role_search(lab: LabSpec) -> list[Path]:
    return [*lab.roles_path, paths.shipped_roles_dir()]


#: Mounts the lab's extra shares; every guest with shares gets it, first.
SHARES_ROLE = "ninep_shares"

#: A guest's roles in running order (dependencies before the roles needing them).
Play = list[PlayRole]


def load_play(guest: GuestSpec, lab: LabSpec) -> Play:
    """The guest's roles, dependencies first, each once unless its parameters differ or
    it allows duplicates (as Ansible does), all checked before running."""
    search = role_search(lab)
    seen: dict[tuple[str, str], PlayRole] = {}
    loaded: dict[str, Role] = {}
    play: Play = []

    def add(name: str, ref_vars: dict[str, Any], tags: frozenset[str],
            when: list[Any]) -> PlayRole:
        key = (name, json.dumps(ref_vars, sort_keys=True, default=str))
        if key in seen and not seen[key].role.allow_duplicates:
            return seen[key]
        if name not in loaded:
            loaded[name] = load_role(name, search, parent_tags=tags)
        role = loaded[name]
        if key in seen or role.tags != tags:  # a second instance: its own tags
            role = load_role(name, search, parent_tags=tags)
        pr = PlayRole(role, ref_vars, when, tags)
        seen[key] = pr
        for dep in role.dependencies:
            pr.deps.append(add(dep.name, dep.vars, tags | dep.tags, [*when, *dep.when]))
        play.append(pr)
        return pr

    if guest.shares and SHARES_ROLE not in {r.name for r in guest.roles}:
        add(SHARES_ROLE, {}, frozenset(), [])
    for ref in guest.roles:
        add(ref.name, dict(ref.vars), frozenset(ref.tags), [])
    return play


def guest_vars(guest: GuestSpec, lab: LabSpec) -> dict[str, Any]:
    """What the lab knows of the guest, as provision9p_* variables."""
    return {
        "provision9p_lab": lab.name,
        "provision9p_suite": guest.rootfs.suite,
        "provision9p_arch": guest.debian_arch,
        "provision9p_components": list(guest.rootfs.components),
        # the mirror the command's Target resolved once (an image guest on a host with no
        # apt sources has none: "", and the base role keeps the image's sources)
        "provision9p_mirror": guest.rootfs.mirror or "",
        # the lab's marked /etc/hosts block ("" without a lab network), so a role that
        # writes /etc/hosts keeps it (the base role does) instead of dropping it each run
        "provision9p_hosts_block": lab_hosts_block(lab) or "",
        "provision9p_shares": [
            {"mount_tag": s.mount_tag, "mount": s.mount, "readonly": s.readonly,
             "security_model": s.security_model,
             "opts": s.options.as_string(readonly=s.readonly) + ",nofail"}
            for s in guest.shares],
    }


def run_play(conn: Connection, guest: GuestSpec, lab: LabSpec, *, check: bool = False,
             diff: bool = False, tags: set[str] | None = None,
             skip_tags: set[str] | None = None, reporter: Reporter | None = None,
             extra_vars: dict[str, Any] | None = None, play: Play | None = None) -> Recap:
    """Run the guest's play (loaded here unless the caller already has it)."""
    play = load_play(guest, lab) if play is None else play
    reporter = reporter or Reporter(diff=diff)
    recap = Recap()
    magic = {**magic_vars(guest, lab, check=check, diff=diff, tags=tags,
                          skip_tags=skip_tags),
             **guest_vars(guest, lab), "omit": OMIT}
    gather = guest.gather_facts and _facts_read(guest, lab, play, extra_vars)
    if gather and isinstance(conn, SSHConnection):
        conn.open_sftp_soon()  # the tasks' file channel starts while the facts run
    gathered = facts_mod.gather_facts(conn, guest, guest.gather_subset) if gather else {}
    state = HostState(guest, lab, magic, gathered, dict(extra_vars or {}), play)
    runner = Runner(conn, state, reporter, recap,
                    Options(check=check, diff=diff, tags=tags, skip_tags=skip_tags))
    runner.add_handlers([pr.role for pr in play], PlayRole(play[0].role) if play else
                        PlayRole(Role("-", Path("."), {}, {})))
    _bind_handlers(runner, play)
    try:
        for pr in play:
            runner.ran_roles.add((str(pr.role.path), repr(sorted(pr.ref_vars.items()))))
            if pr.role.phase not in ("any", conn.phase):
                continue
            inh = Inherit(pr, tuple(pr.when), pr.tags)
            with contextlib.suppress(EndRole):
                runner.check_arguments(pr, inh)
                runner.run_list(pr.role.tasks, inh)
        runner.flush_handlers()
    except EndPlay:
        pass
    finally:
        reporter.recap(guest.name, recap)
    return recap


def _facts_read(guest: GuestSpec, lab: LabSpec, play: Play,
                extra_vars: dict[str, Any] | None) -> bool:
    """Can a play read this guest's gathered facts? (facts/needed.py: when none can,
    the guest is spared the facts command, the costliest of a no-change run.)"""
    def others() -> Iterator[tuple[GuestSpec, Play | None]]:
        # loaded only as facts_use asks: not at all when this play reads facts itself,
        # and no further than the first other play that reads them through hostvars
        for other in lab.guests:
            if other.name != guest.name:
                try:
                    yield other, load_play(other, lab)
                except Provision9pError:
                    yield other, None

    return facts_use(guest, play, others(), extra_vars) is not None


def _bind_handlers(runner: Runner, play: Play) -> None:
    """Each play role's handlers see that role's scope (its reference's vars too)."""
    by_role = {id(pr.role): pr for pr in play}
    for handler in runner.handlers:
        pr = by_role.get(id(handler.ctx.role))
        if pr is not None:
            handler.ctx = pr
