"""Test rings as markers: unit (no real host state), tree (real files, xattrs, chroots,
a wheel), vm (real guests under QEMU). A test marked neither tree nor vm is a unit test,
so `pytest -m unit` and `pytest -m "not vm"` need no list kept by hand.

Two rings of cost on top: the CI ring (everything not `slow`) and the slow ring
(`--run-slow`, what `./setup.sh test --all` adds). A slow test names the cheaper CI-ring
test that proves the same feature: `@pytest.mark.slow(covered_by="tests/...::test_x")`.

`./setup.sh test` runs two pytest processes side by side: `-m vm` (guests boot one after
another, as the shared guests and the boot-time assertions need) and `-m "not vm"` (the
unit and tree rings). Not pytest-xdist: its loadgroup mode rewrites `item._nodeid`, which
pytest 9 no longer reads, so its groups are silently ignored (seen with xdist 3.8 and
pytest 9.2: the vm tests of one module ran on both workers). Every test has a ceiling
(pytest-timeout) by its ring, so a hang fails with its name; a test that needs longer
says so with `@pytest.mark.timeout(N)`.
"""

from __future__ import annotations

import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import shared_guest

RINGS = ("tree", "vm")

#: Ceilings in seconds, fixture setup included (a module's first test pays its boot).
#: Several times what a loaded CI host takes, far below the 25 minutes of the CI ring.
CEILINGS = {"unit": 120, "tree": 600, "vm": 900}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true",
                     help="run the slow ring too (what `./setup.sh test --all` runs)")


def _ring(item: pytest.Item) -> str:
    for ring in RINGS:
        if item.get_closest_marker(ring):
            return ring
    # Fetching from the mirror and unpacking real packages is real host work.
    if item.get_closest_marker("network"):
        item.add_marker(pytest.mark.tree)
        return "tree"
    item.add_marker(pytest.mark.unit)
    return "unit"


def _check_slow(config: pytest.Config, item: pytest.Item) -> None:
    """A slow test names a CI-ring test that exists and covers its feature."""
    mark = item.get_closest_marker("slow")
    covered = str(mark.kwargs.get("covered_by", "")) if mark else ""
    file, _, name = covered.partition("::")
    path = config.rootpath / file
    if not name or not path.is_file() or f"def {name.split('[')[0]}(" not in path.read_text():
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.slow(covered_by=...) must name "
                                f"a CI-ring test as FILE::TEST, not {covered!r}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ceilings = config.pluginmanager.hasplugin("timeout")
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        ring = _ring(item)
        if ceilings and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(CEILINGS[ring]))
        if item.get_closest_marker("slow") is None:
            keep.append(item)
            continue
        _check_slow(config, item)
        if not config.getoption("--run-slow"):
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


# --- where the time went: a table per module, printed at the end -------------------

_spent: dict[str, float] = defaultdict(float)
_counts: dict[str, int] = defaultdict(int)
_started = time.monotonic()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    module = report.nodeid.split("::")[0]
    _spent[module] += report.duration
    if report.when == "call":
        _counts[module] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _spent:
        return
    write = terminalreporter.write_line
    terminalreporter.section("time per module (setup + call + teardown)")
    total = sum(_spent.values())
    for module, spent in sorted(_spent.items(), key=lambda kv: -kv[1]):
        write(f"{spent:8.1f} s  {_counts[module]:4d} tests  {module}")
    write(f"{total:8.1f} s in tests; {time.monotonic() - _started:.1f} s of wall time")



# --- the CLI and the session's shared guest, for every directory of guest tests --------

@pytest.fixture(scope="session")
def p9() -> Callable[..., subprocess.CompletedProcess[str]]:
    return shared_guest.run_cli


@pytest.fixture(scope="session")
def shared_lab() -> Iterator[Path]:
    """The one shared guest's lab file, its guest up (tests/shared_guest.py)."""
    yield from shared_guest.shared_lab()
