"""`inventory` and `ssh-config`: the running guests for Ansible and for OpenSSH."""

from __future__ import annotations

import argparse

from provision9p import inventory, ui
from provision9p.commands.common import SubParsers, add_guests, add_lab_option, targets
from provision9p.lab.model import GuestSpec, LabSpec


def register(sub: SubParsers) -> None:
    p = sub.add_parser(
        "inventory", help="print an Ansible inventory (YAML) of the running guests",
        description="An Ansible inventory of the running guests: their forwarded SSH port, "
                    "the lab's key, host keys pinned in the lab's known_hosts, a group per "
                    "lab and the guests' own `groups:`. "
                    "Use: ansible -i <(provision9p inventory) all -m ping")
    add_lab_option(p)
    add_guests(p)
    p.set_defaults(func=inventory_command)

    p = sub.add_parser(
        "ssh-config", help="print OpenSSH config blocks for the running guests",
        description="OpenSSH client config, one `Host NAME` per running guest, host keys "
                    "pinned. Use: provision9p ssh-config > lab.ssh; ssh -F lab.ssh GUEST")
    add_lab_option(p)
    add_guests(p)
    p.set_defaults(func=ssh_config_command)


def _running(args: argparse.Namespace) -> tuple[LabSpec, list[GuestSpec],
                                                list[inventory.Reachable]]:
    """The chosen guests and those of them that run; the lab's known_hosts rewritten."""
    lab, chosen = targets(args)
    guests = [t.guest for t in chosen]
    hosts = []
    for g in guests:
        h = inventory.reachable(lab, g)
        if h is None:
            ui.warn(f"{g.name} is not running; left out (start it: `provision9p up {g.name}`)")
        else:
            hosts.append(h)
    # Every running guest of the lab, not only the chosen: one file serves every printout.
    every = [h for g in lab.guests if (h := inventory.reachable(lab, g)) is not None]
    inventory.write_known_hosts(lab, every)
    return lab, guests, hosts


def inventory_command(args: argparse.Namespace) -> int:
    lab, guests, hosts = _running(args)
    print(inventory.render_inventory(inventory.inventory(lab, guests, hosts)), end="")
    return 0


def ssh_config_command(args: argparse.Namespace) -> int:
    lab, _guests, hosts = _running(args)
    print(inventory.ssh_config(lab, hosts), end="")
    return 0
