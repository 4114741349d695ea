"""The roles' provision9p_mirror is the one the Target resolved: an image guest's `up`
does not read the host's apt sources a second time (a CI host may have none)."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision9p import target as target_mod
from provision9p.errors import MirrorError
from provision9p.host import mirror as mirror_mod
from provision9p.lab import validate_text
from provision9p.tasks import engine

LAB = """\
name: img
guests:
  a:
    rootfs: {image: %s}
    roles: [base]
"""


def test_roles_take_the_targets_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = tmp_path / ("0" * 64 + ".tar.zst")
    image.write_bytes(b"")
    lab = validate_text(LAB % image.name, str(tmp_path / "lab.yml"), tmp_path)
    calls: list[str] = []

    def once() -> str:
        calls.append("host")
        return "file:///srv/debian"

    monkeypatch.setattr(target_mod, "host_mirror", once)
    t = target_mod.resolve(lab, lab.guest("a"))
    assert calls == ["host"]

    def never() -> str:
        raise AssertionError("the host's apt sources were read again")

    monkeypatch.setattr(mirror_mod, "host_mirror", never)
    monkeypatch.setattr(target_mod, "host_mirror", never)
    assert not hasattr(engine, "host_mirror")
    assert engine.guest_vars(t.guest, lab)["provision9p_mirror"] == "file:///srv/debian"

    # a host with no apt sources: the image guest still gets its variables, no error
    def none() -> str:
        raise MirrorError("no mirror")

    monkeypatch.setattr(target_mod, "host_mirror", none)
    bare = target_mod.resolve(lab, lab.guest("a"))
    assert engine.guest_vars(bare.guest, lab)["provision9p_mirror"] == ""
