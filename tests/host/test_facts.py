"""Remembered host facts: a JSON file in the cache, written atomically."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from provision9p.host.facts import facts_path, load_facts, remember


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROVISION9P_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_remember_and_load(cache: Path) -> None:
    assert load_facts() == {}
    kvm = {"works": False, "reason": "no output after Probing EDD",
           "checked": "2026-11-25T02:30:00"}
    remember("kvm", kvm)
    remember("qemu", "7.2")
    assert load_facts() == {"kvm": kvm, "qemu": "7.2"}
    assert facts_path() == cache / "host-facts.json"
    assert json.loads(facts_path().read_text())["kvm"]["works"] is False
    assert sorted(p.name for p in cache.iterdir()) == [".host-facts.lock", "host-facts.json"]


def test_corrupt_file_counts_as_nothing(cache: Path) -> None:
    cache.mkdir()
    facts_path().write_text("{not json")
    assert load_facts() == {}
    remember("kvm", {"works": True})
    assert load_facts() == {"kvm": {"works": True}}


def _remember_many(prefix: str) -> None:
    for i in range(20):
        remember(f"{prefix}{i}", i)


def test_concurrent_writers_lose_nothing(cache: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_remember_many, args=(p,)) for p in "abc"]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert len(load_facts()) == 60
