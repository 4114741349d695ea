"""One host directory in several guests' shares: what validation says about it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from provision9p.errors import LabError
from provision9p.lab import validate_text
from provision9p.lab.model import LabSpec
from provision9p.verify.cross_guest import shared_pairs

TWO = """
    name: duo
    guests:
      a:
        shares: [{{path: /srv/x, mount_tag: x, mount: /mnt/x{a}}}]
      b:
        shares: [{{path: {bpath}, mount_tag: x, mount: /mnt/y{b}}}]
    """


def lab(a: str = "", b: str = "", bpath: str = "/srv/x") -> LabSpec:
    return validate_text(textwrap.dedent(TWO.format(a=a, b=b, bpath=bpath)), "lab.yml",
                         Path("/srv"))


@pytest.mark.parametrize("cache", ["loose", "fscache"])
def test_stale_cache_on_a_shared_directory_warns(cache: str) -> None:
    spec = lab(a=f", cache: {cache}")
    assert len(spec.warnings) == 1
    warning = spec.warnings[0]
    assert warning.startswith("lab.yml:5:")
    assert f"guests.a.shares[0].cache: cache={cache} never revalidates" in warning
    assert "use cache=none (or mmap)" in warning


@pytest.mark.parametrize("cache", ["none", "mmap"])
def test_coherent_caches_do_not_warn(cache: str) -> None:
    assert lab(a=f", cache: {cache}", b=f", cache: {cache}").warnings == ()


def test_loose_on_an_unshared_directory_is_fine() -> None:
    assert lab(a=", cache: loose", bpath="/srv/other").warnings == ()


def test_a_directory_inside_another_guests_share_counts() -> None:
    spec = lab(b=", cache: loose", bpath="/srv/x/sub")
    assert any("guests.b.shares[0].cache" in w for w in spec.warnings)


def test_one_security_model_per_shared_directory() -> None:
    with pytest.raises(LabError) as exc:
        lab(b=", security_model: mapped-file")
    assert "guests.b.shares[0].security_model: /srv/x is shared with guest a as " \
           "mapped-xattr" in str(exc.value)


def test_cross_guest_pairs() -> None:
    """Who writes, who reads: every writable share towards every other guest's view."""
    from provision9p.state import GuestState
    from provision9p.target import Target

    spec = lab(b=", readonly: true")
    targets = [Target(lab=spec, guest=g, state=GuestState.of(spec, g),
                      client_key=Path("/k")) for g in spec.guests]
    pairs = [(w.name, ws.mount, r.name, rs.mount) for w, ws, r, rs in shared_pairs(targets)]
    assert pairs == [("a", "/mnt/x", "b", "/mnt/y")]  # b mounts it read-only: never writes
