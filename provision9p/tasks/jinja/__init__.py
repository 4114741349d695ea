"""Jinja2 as Ansible has it: Ansible's filters and tests, written for provision9p from
Ansible's documented behaviour (tests/tasks/test_filters.py compares with the real one)."""

from __future__ import annotations

from typing import Any

from provision9p.tasks.jinja.crypt import password_hash
from provision9p.tasks.jinja.filters_data import DATA_FILTERS, UNSUPPORTED
from provision9p.tasks.jinja.filters_text import TEXT_FILTERS
from provision9p.tasks.jinja.tests import TESTS as _TESTS

#: `default(omit)`: a parameter rendered to this is left out, as if never written.
OMIT = "__provision9p_omit__"


def _qualified(table: dict[str, Any]) -> dict[str, Any]:
    """Each name also under `ansible.builtin.`, as roles may spell it."""
    return {**table, **{f"ansible.builtin.{k}": v for k, v in table.items()}}


FILTERS: dict[str, Any] = _qualified({**TEXT_FILTERS, **DATA_FILTERS,
                                      "password_hash": password_hash})
TESTS: dict[str, Any] = _qualified(dict(_TESTS))

__all__ = ["FILTERS", "OMIT", "TESTS", "UNSUPPORTED"]
