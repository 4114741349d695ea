"""Test rings as markers: unit (no real host state), tree (real files, xattrs, chroots,
a wheel), vm (real guests under QEMU). A test marked neither tree nor vm is a unit test,
so `pytest -m unit` and `pytest -m "not vm"` need no list kept by hand."""

from __future__ import annotations

import pytest

RINGS = ("tree", "vm")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.get_closest_marker(ring) for ring in RINGS):
            continue
        # Fetching from the mirror and unpacking real packages is real host work.
        if item.get_closest_marker("network"):
            item.add_marker(pytest.mark.tree)
        else:
            item.add_marker(pytest.mark.unit)
