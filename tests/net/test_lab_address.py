"""`up` waits for a guest's lab address before it returns (lab_pass.wait_for_address)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from provision9p.errors import BootError
from provision9p.lab_pass import FIB, address_timeout, wait_for_address


@dataclass
class Guest:
    name: str
    address: Any


class Reads:
    """A connection whose reads of the routing tables come from a list, the last repeated."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.reads = 0

    def read_file(self, path: str) -> bytes:
        assert path == FIB
        self.reads += 1
        return self.texts[min(self.reads, len(self.texts)) - 1].encode()


def host_tables() -> str:
    return Path(FIB).read_text()


def test_an_address_already_there_returns_at_once() -> None:
    conn = Reads([host_tables()])  # this host's own tables: 127.0.0.1 is a local address
    wait_for_address(conn, Guest("a", ipaddress.ip_interface("127.0.0.1/8")))  # type: ignore[arg-type]
    assert conn.reads == 1


def test_waits_until_networkd_set_it() -> None:
    before = host_tables()
    after = before + "     |-- 10.89.0.7\n        /32 host LOCAL\n"
    conn = Reads([before, before, after])
    wait_for_address(conn, Guest("a", ipaddress.ip_interface("10.89.0.7/24")))  # type: ignore[arg-type]
    assert conn.reads == 3


def test_a_route_to_it_is_not_the_address() -> None:
    # the peer's address seen as a route (another guest's) never counts as this one's own
    route = host_tables() + "     |-- 10.89.0.8\n        /32 link UNICAST\n"
    with pytest.raises(BootError) as err:
        wait_for_address(Reads([route]), Guest("b", ipaddress.ip_interface("10.89.0.8/24")),  # type: ignore[arg-type]
                         timeout=0.3)
    assert "no lab address 10.89.0.8" in str(err.value)
    assert err.value.hint and "systemd-networkd" in err.value.hint


def test_no_lab_address_nothing_to_wait_for() -> None:
    conn = Reads([""])
    wait_for_address(conn, Guest("c", None))  # type: ignore[arg-type]
    assert conn.reads == 0


def test_a_slow_boot_waits_longer_for_the_address() -> None:
    # a quick boot keeps the 60 s floor; a slow host's boot stretches the wait with it
    assert address_timeout(9.0) == 60.0
    assert address_timeout(150.0) == 300.0
