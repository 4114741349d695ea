"""Where the engine and the role loader find Ansible's filters and tests (the code lives
in provision9p.tasks.jinja)."""

from __future__ import annotations

from provision9p.tasks.jinja import FILTERS, OMIT, TESTS, UNSUPPORTED

__all__ = ["FILTERS", "OMIT", "TESTS", "UNSUPPORTED"]
