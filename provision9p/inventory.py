"""The lab as other tools see it: an Ansible inventory and an OpenSSH config.

Every guest is reached on 127.0.0.1 through its own forwarded SSH port, so the host
keys are pinned by `[127.0.0.1]:PORT` in one known_hosts file of the lab, written from
the keys pinned at build (guests/<name>/host_key.pub) each time these are printed: a
guest that boots again gets another port, and the file follows.

The same groups feed the roles engine's `groups`, `group_names` and `hostvars`
(tasks/scope.py), so a role sees the lab as `ansible -i <(provision9p inventory)` does.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from provision9p.lab.model import IMPLICIT_GROUPS, GuestSpec, LabSpec
from provision9p.state import GuestState

USER = "root"


def lab_group(lab: LabSpec) -> str:
    """The lab's own group: its name made a valid Ansible group name (`web-lab` -> web_lab)."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", lab.name)
    if not name or name[0].isdigit():
        name = f"lab_{name}"
    return name


def group_map(lab: LabSpec) -> dict[str, list[str]]:
    """Every group with its guests, in the lab's order, as Ansible computes them from the
    inventory below: `all`, `ungrouped` (empty: every guest is in the lab's group), the
    lab's group, then the guests' own groups."""
    names = [g.name for g in lab.guests]
    groups: dict[str, list[str]] = {"all": names, "ungrouped": [], lab_group(lab): list(names)}
    for g in lab.guests:
        for group in g.groups:
            members = groups.setdefault(group, [])
            if g.name not in members:
                members.append(g.name)
    return groups


def group_names(lab: LabSpec, guest: GuestSpec) -> list[str]:
    """Ansible's `group_names`: the guest's groups without the implicit ones, sorted."""
    return sorted({lab_group(lab), *guest.groups} - set(IMPLICIT_GROUPS))


def client_key(lab: LabSpec) -> Path:
    return lab.state_dir / "ssh" / "id_ed25519"


def known_hosts_file(lab: LabSpec) -> Path:
    return lab.state_dir / "known_hosts"


@dataclass(frozen=True)
class Reachable:
    """A running guest: where SSH answers for it and which host key it must show."""

    name: str
    port: int
    host_key: tuple[str, str]  # (type, base64)


def reachable(lab: LabSpec, guest: GuestSpec) -> Reachable | None:
    """The guest's SSH endpoint while its QEMU runs; None when stopped or never built."""
    state = GuestState.of(lab, guest)
    if state.running_pid() is None:
        return None
    boot, key = state.read_boot(), state.read_host_key()
    if boot is None or not boot.ssh_port or key is None:
        return None
    return Reachable(guest.name, boot.ssh_port, key)


def connection_vars(lab: LabSpec, port: int) -> dict[str, Any]:
    """The host vars Ansible connects with; the known_hosts file pins the key."""
    common = (f"-o UserKnownHostsFile={_quote_arg(known_hosts_file(lab))} "
              "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes")
    return {"ansible_host": "127.0.0.1", "ansible_port": port, "ansible_user": USER,
            "ansible_ssh_private_key_file": str(client_key(lab)),
            "ansible_ssh_common_args": common}


def extra_host_vars(guest: GuestSpec) -> dict[str, Any]:
    """Host vars beyond the connection's, for the inventory and `hostvars` alike: the
    guest's address on the lab network (lab/network.py), without its prefix."""
    return {"lab_address": str(guest.address.ip)} if guest.address is not None else {}


def write_known_hosts(lab: LabSpec, hosts: Iterable[Reachable]) -> Path:
    """The lab's known_hosts, atomically: one `[127.0.0.1]:PORT TYPE KEY` line per guest."""
    path = known_hosts_file(lab)
    lines = "".join(f"[127.0.0.1]:{h.port} {h.host_key[0]} {h.host_key[1]}\n" for h in hosts)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(lines)
    os.replace(tmp, path)
    return path


def inventory(lab: LabSpec, guests: Sequence[GuestSpec],
              hosts: Sequence[Reachable]) -> dict[str, Any]:
    """Ansible's YAML inventory for the running `hosts` among `guests`.

    Host vars sit under the lab's group; a guest's own groups name it only.
    """
    up = {h.name: h for h in hosts}
    chosen = [g for g in guests if g.name in up]
    lab_hosts = {g.name: {**connection_vars(lab, up[g.name].port), **extra_host_vars(g)}
                 for g in chosen}
    children: dict[str, Any] = {lab_group(lab): {"hosts": lab_hosts}}
    for g in chosen:
        for group in g.groups:
            children.setdefault(group, {"hosts": {}})["hosts"][g.name] = None
    return {"all": {"children": children}}


def render_inventory(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def ssh_config(lab: LabSpec, hosts: Sequence[Reachable]) -> str:
    """OpenSSH client config blocks, one `Host NAME` per running guest."""
    blocks = []
    for h in hosts:
        blocks.append("\n".join([
            f"Host {h.name}",
            "  HostName 127.0.0.1",
            f"  Port {h.port}",
            f"  User {USER}",
            f"  IdentityFile {_quote_conf(client_key(lab))}",
            "  IdentitiesOnly yes",
            f"  UserKnownHostsFile {_quote_conf(known_hosts_file(lab))}",
            "  StrictHostKeyChecking yes",
        ]))
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def _quote_conf(path: Path) -> str:
    """ssh_config(5) takes a value with spaces in double quotes."""
    text = str(path)
    return f'"{text}"' if any(c.isspace() for c in text) else text


def _quote_arg(path: Path) -> str:
    """Ansible splits ansible_ssh_common_args like a shell: quote a path with spaces."""
    return shlex.quote(str(path))
