"""The lab network as data: addresses, MACs, the /etc/hosts block, the second NIC."""

from __future__ import annotations

import ipaddress
import textwrap
from pathlib import Path

from provision9p.boot.qemu_argv import BootFiles, qemu_argv
from provision9p.lab import validate_text
from provision9p.lab.model import LabSpec
from provision9p.lab.network import (
    assign,
    capacity,
    hosts_block,
    mac_address,
    network_file,
    with_hosts_block,
)
from provision9p.rootfs.guest_setup import etc_hosts

RUN = BootFiles(kernel=Path("/srv/run/vmlinuz"), initrd=None, ssh_port=10022,
                console_log=Path("/srv/run/console.log"), qmp_socket=Path("/srv/run/qmp.sock"),
                pidfile=Path("/srv/run/qemu.pid"), accel="tcg",
                lab_switch=Path("/srv/lab/.provision9p/net/switch.ctl"))


def lab(text: str) -> LabSpec:
    return validate_text(textwrap.dedent(text), "lab.yml", Path("/srv/lab"))


def test_mac_is_stable_local_unicast_and_per_guest() -> None:
    mac = mac_address("web-lab", "web")
    assert mac == mac_address("web-lab", "web")
    first = int(mac.split(":")[0], 16)
    assert first & 0b10 and not first & 0b01  # locally administered, unicast
    assert len({mac_address("web-lab", g) for g in ("web", "db", "cache")}) == 3
    assert mac_address("other-lab", "web") != mac


def test_assign_keeps_pinned_and_fills_in_order() -> None:
    net = ipaddress.IPv4Network("10.89.0.0/24")
    a = ipaddress.IPv4Address
    assert assign(net, [None, a("10.89.0.1"), None]) == [
        a("10.89.0.2"), a("10.89.0.1"), a("10.89.0.3")]
    assert capacity(ipaddress.IPv4Network("10.89.0.0/30")) == 2
    assert capacity(ipaddress.IPv4Network("10.89.0.0/31")) == 2


def test_validated_lab_carries_addresses_on_guests() -> None:
    spec = lab("""
        name: shop
        network: {subnet: 192.168.77.0/28}
        guests:
          web: {}
          db: {network: {address: 192.168.77.9}}
          cache: {}
        """)
    assert spec.network.enabled
    got = {g.name: str(g.address) for g in spec.guests}
    assert got == {"web": "192.168.77.1/28", "db": "192.168.77.9/28",
                   "cache": "192.168.77.2/28"}
    # adding a guest at the end moves nobody
    more = lab("""
        name: shop
        network: {subnet: 192.168.77.0/28}
        guests:
          web: {}
          db: {network: {address: 192.168.77.9}}
          cache: {}
          queue: {}
        """)
    assert {g.name: str(g.address) for g in more.guests if g.name != "queue"} == got


def test_one_guest_lab_has_no_network_unless_asked() -> None:
    assert not lab("guests:\n  a: {}\n").network.enabled
    assert lab("guests:\n  a: {}\n").guests[0].address is None
    assert lab("network: {}\nguests:\n  a: {}\n").guests[0].address is not None
    off = lab("network: {enabled: false}\nguests:\n  a: {}\n  b: {}\n")
    assert not off.network.enabled and off.guests[1].mac is None


def test_hosts_block_names_everyone_and_replaces_itself() -> None:
    block = hosts_block("shop", [("web", "10.89.0.1"), ("db", "10.89.0.2")])
    assert "10.89.0.1\tweb.shop web\n" in block and "10.89.0.2\tdb.shop db\n" in block
    base = "127.0.0.1\tlocalhost\n"
    once = with_hosts_block(base, "shop", block)
    assert once == base + block
    newer = hosts_block("shop", [("web", "10.89.0.1")])
    edited = with_hosts_block(once + "10.1.1.1\tmine\n", "shop", newer)
    assert edited == base + newer + "10.1.1.1\tmine\n"  # the user's own lines stay
    assert with_hosts_block(edited, "shop", newer) == edited
    # another lab's block is left alone
    assert "web.shop" in with_hosts_block(once, "other", hosts_block("other", []))


def test_tree_hosts_and_network_file() -> None:
    spec = lab("name: shop\nguests:\n  web: {}\n  db: {}\n")
    web = spec.guest("web")
    text = etc_hosts(web, spec)
    assert text.startswith("127.0.0.1\tlocalhost\n127.0.1.1\tweb\n")
    assert "10.89.0.2\tdb.shop db" in text
    assert web.address is not None and web.mac is not None
    nf = network_file(web.mac, web.address)
    assert f"MACAddress={web.mac}" in nf and "Address=10.89.0.1/24" in nf
    assert "Gateway" not in nf


def test_second_nic_follows_the_user_mode_one() -> None:
    spec = lab("name: shop\nguests:\n  web: {}\n  db: {}\n")
    web = spec.guest("web")
    argv = qemu_argv(web, RUN)
    nets = [argv[i + 1] for i, a in enumerate(argv) if a == "-netdev"]
    assert nets == ["user,id=net0,hostfwd=tcp:127.0.0.1:10022-:22",
                    "vde,id=net1,sock=/srv/lab/.provision9p/net/switch.ctl"]
    devices = [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]
    assert devices[-1] == f"virtio-net-pci,netdev=net1,romfile=,id=labnic,mac={web.mac}"
    # without a switch (a one-guest lab) the argv is what it always was
    one = lab("guests:\n  web: {}\n").guest("web")
    assert "vde" not in " ".join(qemu_argv(one, RUN))
