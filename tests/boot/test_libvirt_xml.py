"""libvirt-xml for a guest on a lab network: the vde NIC as QEMU arguments in libvirt's
QEMU namespace, checked against libvirt's own domain schema where it is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from provision9p.boot.libvirt_xml import QEMU_NS, libvirt_domain_xml
from provision9p.boot.qemu_argv import BootFiles, qemu_argv
from provision9p.lab import validate_text
from provision9p.lab.model import GuestSpec
from provision9p.lab.network import mac_address

GOLDEN = Path(__file__).parent / "golden"
BASE = Path("/srv/lab")
RUN = BootFiles(kernel=Path("/srv/run/vmlinuz"), initrd=Path("/srv/run/initrd.gz"),
                ssh_port=10022, console_log=Path("/srv/run/console.log"),
                qmp_socket=Path("/srv/run/qmp.sock"), pidfile=Path("/srv/run/qemu.pid"),
                accel="tcg", lab_switch=Path("/srv/lab/.provision9p/net/switch, ctl"))
LAB = """
    name: web-lab
    guests:
      web: {}
      db:
        network: {address: 10.89.0.20}
    """
VALIDATE = shutil.which("virt-xml-validate")


def lab_guest(name: str) -> GuestSpec:
    return validate_text(textwrap.dedent(LAB), "lab.yml", BASE).guest(name)


def test_lab_nic_golden() -> None:
    text = libvirt_domain_xml(lab_guest("db"), RUN)
    path = GOLDEN / "libvirt-lab.xml"
    if os.environ.get("PROVISION9P_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def test_lab_nic_is_the_pair_qemu_cmd_shows() -> None:
    guest = lab_guest("db")
    text = libvirt_domain_xml(guest, RUN)
    assert text.startswith(f'<domain xmlns:qemu="{QEMU_NS}" type="qemu">'), text[:120]
    root = ET.fromstring(text)
    (cmdline,) = root.findall(f"{{{QEMU_NS}}}commandline")
    args = [a.get("value") for a in cmdline]
    argv = qemu_argv(guest, RUN)
    start = argv.index("vde,id=net1,sock=/srv/lab/.provision9p/net/switch,, ctl") - 1
    assert args == argv[start:start + 4]
    assert args[3] == ("virtio-net-pci,netdev=net1,romfile=,id=labnic,"
                       f"mac={mac_address('web-lab', 'db')}")
    # the user-mode NIC stays libvirt's own interface
    assert [i.get("type") for i in root.findall("devices/interface")] == ["user"]


def test_no_lab_network_no_qemu_namespace() -> None:
    text = libvirt_domain_xml(lab_guest("db"), replace(RUN, lab_switch=None))
    assert QEMU_NS not in text and "vde" not in text


@pytest.mark.skipif(VALIDATE is None, reason="virt-xml-validate: apt-get install "
                                             "libvirt-clients libxml2-utils (setup.sh does)")
@pytest.mark.parametrize("name", ["libvirt-lab.xml", "libvirt.xml"])
def test_libvirt_schema_accepts_it(name: str) -> None:
    proc = subprocess.run([str(VALIDATE), str(GOLDEN / name), "domain"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(VALIDATE is None, reason="virt-xml-validate: apt-get install "
                                             "libvirt-clients libxml2-utils (setup.sh does)")
def test_libvirt_schema_refuses_a_vde_interface(tmp_path: Path) -> None:
    """Why the namespace: the schema check is not a rubber stamp, and libvirt has no vde."""
    text = (GOLDEN / "libvirt.xml").read_text()
    bad = tmp_path / "vde.xml"
    bad.write_text(text.replace("<serial", '<interface type="vde"><source path="/x"/>'
                                "</interface>\n    <serial", 1))
    proc = subprocess.run([str(VALIDATE), str(bad), "domain"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0, proc.stdout
