"""The same guest as a libvirt domain, for people who manage guests with libvirt.

libvirt names QEMU's security models by access mode (each model knows its own); it has
none for mapped-file. User-mode networking with a host port forward is
expressed with the passt backend's <portForward>; the SSH port is noted in a comment.

libvirt has no interface type for a vde switch (its types: user, ethernet, vhostuser,
server, client, mcast, udp, network, bridge, direct, hostdev, vdpa, null...), so the lab
NIC goes in as QEMU arguments through libvirt's QEMU namespace (<qemu:commandline>): the
same -netdev vde/-device pair `qemu-cmd` shows. libvirt marks such a domain tainted and
its QEMU runs as libvirt's user under its AppArmor/SELinux profile, which must be
allowed to reach the switch's socket.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from provision9p.boot.qemu_argv import (
    TCG_CPUS,
    BootFiles,
    is_i440fx,
    kernel_cmdline,
    lab_nic_args,
)
from provision9p.errors import UsageError
from provision9p.lab.model import MMIO_MACHINES, GuestSpec
from provision9p.rootfs.security import MODELS, model_of

ARCH = {"x86_64": "x86_64", "aarch64": "aarch64", "s390x": "s390x"}
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
ET.register_namespace("qemu", QEMU_NS)  # declared on <domain> as xmlns:qemu


def libvirt_domain_xml(guest: GuestSpec, run: BootFiles) -> str:
    """The guest as libvirt domain XML; port forwarding needs libvirt's passt backend."""
    dom = ET.Element("domain", type="kvm" if run.accel == "kvm" else "qemu")
    ET.SubElement(dom, "name").text = guest.name
    ET.SubElement(dom, "memory", unit="MiB").text = str(guest.memory_mib)
    ET.SubElement(dom, "vcpu").text = str(guest.cpus)
    os_el = ET.SubElement(dom, "os")
    ET.SubElement(os_el, "type", arch=ARCH[guest.arch], machine=guest.machine).text = "hvm"
    ET.SubElement(os_el, "kernel").text = str(run.kernel)
    if run.initrd is not None:
        ET.SubElement(os_el, "initrd").text = str(run.initrd)
    ET.SubElement(os_el, "cmdline").text = kernel_cmdline(guest, run.extra_cmdline)
    if guest.machine not in MMIO_MACHINES:
        features = ET.SubElement(dom, "features")
        ET.SubElement(features, "acpi")
        if is_i440fx(guest):
            # of qemu_argv's PC_UNUSED, the one Debian 12's libvirt schema has a switch for
            ET.SubElement(features, "vmport", state="off")
    if run.accel != "kvm" and guest.arch in TCG_CPUS:  # the model qemu_argv picks
        cpu = ET.SubElement(dom, "cpu", mode="custom", match="exact")
        ET.SubElement(cpu, "model", fallback="forbid").text = TCG_CPUS[guest.arch]
    else:
        ET.SubElement(dom, "cpu", mode="host-passthrough" if run.accel == "kvm" else "maximum")
    ET.SubElement(dom, "on_reboot").text = "destroy"
    devices = ET.SubElement(dom, "devices")
    for share in guest.all_shares:
        accessmode = model_of(share).libvirt_accessmode
        if accessmode is None:
            *some, last = [m.name for m in MODELS.values() if m.libvirt_accessmode]
            raise UsageError(f"libvirt has no access mode for {share.security_model} "
                             f"(share {share.mount_tag})",
                             hint=f"use {', '.join(some)} or {last} for libvirt")
        fs = ET.SubElement(devices, "filesystem", type="mount", accessmode=accessmode)
        driver = ET.SubElement(fs, "driver", type="path")
        if share.writeout:
            driver.set("wrpolicy", share.writeout)
        ET.SubElement(fs, "source", dir=str(share.path))
        ET.SubElement(fs, "target", dir=share.mount_tag)
        if share.readonly:
            ET.SubElement(fs, "readonly")
        if share.fmode is not None:
            fs.set("fmode", f"0{share.fmode:o}")
        if share.dmode is not None:
            fs.set("dmode", f"0{share.dmode:o}")
        multidevs = share.multidevs or ("remap" if share.mount_tag in run.spanning else None)
        if multidevs:
            fs.set("multidevs", multidevs)
    iface = ET.SubElement(devices, "interface", type="user")
    ET.SubElement(iface, "backend", type="passt")
    ET.SubElement(iface, "model", type="virtio")
    pf = ET.SubElement(iface, "portForward", proto="tcp", address="127.0.0.1")
    ET.SubElement(pf, "range", start=str(run.ssh_port), to="22")
    serial = ET.SubElement(devices, "serial", type="file")
    ET.SubElement(serial, "source", path=str(run.console_log))
    note = ET.Comment(f" provision9p: SSH to 127.0.0.1:{run.ssh_port} with the lab's key ")
    dom.insert(0, note)
    lab_nic = lab_nic_args(guest, run)
    if lab_nic:
        dom.append(ET.Comment(
            " provision9p: the lab network's NIC (libvirt has no vde interface); it needs "
            "the lab's switch running (provision9p up) and libvirt's QEMU allowed to use "
            "its socket "))
        cmdline = ET.SubElement(dom, f"{{{QEMU_NS}}}commandline")
        for arg in lab_nic:
            ET.SubElement(cmdline, f"{{{QEMU_NS}}}arg", value=arg)
    ET.indent(dom)
    return ET.tostring(dom, encoding="unicode")
