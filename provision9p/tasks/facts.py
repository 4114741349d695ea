"""Ansible's facts about a guest, gathered once per run (placeholder: nothing yet)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from provision9p.connect.base import Connection
from provision9p.lab.model import GuestSpec


def gather_facts(conn: Connection, guest: GuestSpec,
                 subset: Sequence[str] = ("all",)) -> dict[str, Any]:
    """The guest's facts under Ansible's names without the `ansible_` prefix
    (`os_family`, `distribution`, ...); the engine exposes each as `ansible_<name>` too."""
    return {}
