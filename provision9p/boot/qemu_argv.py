"""The QEMU command as data: an argv list built from a GuestSpec, never a shell string.

Every path goes through `qemu_opts_escape`: in QEMU's `-opt key=value,...` syntax a
comma inside a value is written twice (util/qemu-option.c, get_opt_value).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from provision9p.lab.model import MMIO_MACHINES, GuestSpec, Share
from provision9p.lab.network import SLIRP_ADDRESS, SLIRP_GATEWAY
from provision9p.rootfs.safe_fs import mounts_below
from provision9p.rootfs.security import model_of

QEMU_BINARIES = {"x86_64": "qemu-system-x86_64", "aarch64": "qemu-system-aarch64",
                 "s390x": "qemu-system-s390x"}
CONSOLES = {"x86_64": "ttyS0", "aarch64": "ttyAMA0", "s390x": "ttysclp0"}
# The emulated CPU under TCG, where "max" is not the fastest: aarch64's max implements
# pointer authentication with the QARMA cipher, which Debian's arm64 kernel runs on every
# function entry and return; a plain Armv8.0 core (A57 and A72 alike within the noise)
# booted to SSH about 3x sooner
# (bench/results/aarch64.md).
TCG_CPUS = {"aarch64": "cortex-a57"}
# The i440fx PC's devices that a guest with no screen or keyboard never uses: its PS/2
# controller, SMBus and VMware port. At boot the guest's udev loads a driver for each and
# probes the hardware (psmouse, i2c_piix4), beside the first login under TCG.
PC_UNUSED = ("i8042=off", "smbus=off", "vmport=off")


def is_i440fx(guest: GuestSpec) -> bool:
    return guest.arch == "x86_64" and (guest.machine == "pc"
                                       or guest.machine.startswith("pc-i440fx-"))


def machine_arg(guest: GuestSpec) -> str:
    """`-machine`'s value: the lab's machine type, an i440fx PC without its unused parts."""
    return ",".join([guest.machine, *PC_UNUSED]) if is_i440fx(guest) else guest.machine


@dataclass(frozen=True)
class BootFiles:
    """What one boot of a guest uses besides the lab: files, port, accelerator."""

    kernel: Path
    initrd: Path | None
    ssh_port: int
    console_log: Path
    qmp_socket: Path
    pidfile: Path
    accel: str  # "kvm" | "tcg"
    extra_cmdline: str = ""
    #: the lab's vde_switch control directory (boot/switch.py); None: no lab network
    lab_switch: Path | None = None
    #: mount tags of shares whose host path has other file systems mounted inside it
    #: (spanning_shares): multidevs=remap where the lab does not say
    spanning: frozenset[str] = frozenset()


def spanning_shares(guest: GuestSpec) -> frozenset[str]:
    """The mount tags of the guest's shares whose host path has another file system
    mounted inside it (read from the host's mount table now, at boot)."""
    return frozenset(s.mount_tag for s in guest.all_shares if s.path.is_dir()
                     and any(m != Path(os.path.realpath(s.path)) for m in mounts_below(s.path)))


def qemu_opts_escape(value: str) -> str:
    """A value for QEMU's key=value,... options: commas doubled, nothing else changes."""
    return value.replace(",", ",,")


def _mode(value: int) -> str:
    # QEMU parses fmode/dmode with base 0: a leading 0 means octal ("0644"), "0o" is refused.
    return f"0{value:o}"


def fsdev_args(share: Share, ident: str, spans: bool = False) -> list[str]:
    """`-fsdev local,...` and its `-device` for one share; `spans`: its host path has
    other file systems mounted inside it."""
    opts = [f"local,id={ident}", f"path={qemu_opts_escape(str(share.path))}",
            *model_of(share).fsdev_options()]
    if share.readonly:
        opts.append("readonly=on")
    if share.fmode is not None:
        opts.append(f"fmode={_mode(share.fmode)}")
    if share.dmode is not None:
        opts.append(f"dmode={_mode(share.dmode)}")
    # QEMU's default (warn) passes inode numbers through: two file systems' files can
    # share one in the guest. The 9P guide: "on doubt use multidevs=remap".
    multidevs = share.multidevs or ("remap" if spans else None)
    if multidevs:
        opts.append(f"multidevs={multidevs}")
    if share.writeout:
        opts.append(f"writeout={share.writeout}")
    device = f"{share.transport},fsdev={ident},mount_tag={qemu_opts_escape(share.mount_tag)}"
    return ["-fsdev", ",".join(opts), "-device", device]


def kernel_cmdline(guest: GuestSpec, extra: str = "") -> str:
    """root=<tag> rootfstype=9p rootflags=...: works with 9P built in or from our initramfs."""
    root = guest.root
    parts = [
        f"root={root.mount_tag}", "rootfstype=9p",
        f"rootflags={root.options.as_string(readonly=root.readonly)}",
        "rw" if not root.readonly else "ro",
        f"console={CONSOLES.get(guest.arch, 'ttyS0')}",
        # No predictable interface names: the guest's networkd config matches eth0.
        "net.ifnames=0", f"provision9p.net={SLIRP_ADDRESS}:{SLIRP_GATEWAY}", "panic=-1",
    ]
    if guest.arch == "x86_64":
        # The IO-APIC timer check counts timer interrupts in a short window that a loaded
        # host misses under TCG (a panic, "IO-APIC + timer doesn't work!", was seen here);
        # skipping it costs nothing under KVM either (cloud images pass it). Always, so
        # the command line does not depend on the accelerator chosen at boot (the tree's
        # offline facts read it).
        parts.append("no_timer_check")
    if is_i440fx(guest):
        # Interrupts routed by the BIOS's table rather than ACPI's link devices, whose
        # methods the guest runs in its AML interpreter while the initramfs loads
        # virtio_pci: the root mounted ~0.5 s sooner under TCG, and the devices use MSI-X
        # anyway. ACPI itself stays (PCI hotplug of a lab NIC, the power button);
        # `pci=noacpi` would have taken hotplug too (bench/results/boot-speed.md).
        parts.append("acpi=noirq")
    if guest.kernel.cmdline:
        parts.append(guest.kernel.cmdline)
    if extra:
        parts.append(extra)
    return " ".join(parts)


def qemu_argv(guest: GuestSpec, run: BootFiles) -> list[str]:
    """The full QEMU argv for one boot; no -daemonize (the supervisor decides)."""
    argv = [QEMU_BINARIES[guest.arch], "-name", guest.name,
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"]
    argv += ["-machine", machine_arg(guest)]
    if run.accel == "kvm":
        argv += ["-accel", "kvm", "-cpu", "host"]
    else:
        argv += ["-accel", "tcg,thread=multi", "-cpu", TCG_CPUS.get(guest.arch, "max")]
    argv += ["-m", str(guest.memory_mib), "-smp", str(guest.cpus)]
    argv += ["-kernel", str(run.kernel)]
    if run.initrd is not None:
        argv += ["-initrd", str(run.initrd)]
    argv += ["-append", kernel_cmdline(guest, run.extra_cmdline)]
    for i, share in enumerate(guest.all_shares):
        argv += fsdev_args(share, f"fs{i}", share.mount_tag in run.spanning)
    netdev = f"user,id=net0,hostfwd=tcp:127.0.0.1:{run.ssh_port}-:22"
    argv += ["-netdev", netdev, "-device", _net_device(guest, "net0")]
    # Second, so the guest's eth0 stays the user-mode NIC (SSH, the mirror).
    argv += lab_nic_args(guest, run)
    argv += ["-chardev", f"file,id=con0,path={qemu_opts_escape(str(run.console_log))}",
             "-serial", "chardev:con0"]
    argv += ["-qmp", f"unix:{qemu_opts_escape(str(run.qmp_socket))},server=on,wait=off"]
    argv += ["-pidfile", str(run.pidfile)]
    return argv


def lab_nic_args(guest: GuestSpec, run: BootFiles) -> list[str]:
    """The lab network's NIC on the vde switch; nothing without a lab network."""
    if run.lab_switch is None or guest.mac is None:
        return []
    return ["-netdev", f"vde,id=net1,sock={qemu_opts_escape(str(run.lab_switch))}",
            "-device", _net_device(guest, "net1") + f",id=labnic,mac={guest.mac}"]


def _net_device(guest: GuestSpec, netdev: str) -> str:
    """The NIC on the bus the machine has: s390x's channel subsystem (ccw) has no PCI
    slot for it; microvm has only virtio-mmio; `romfile=` is a PCI option (no iPXE ROM)."""
    if guest.arch == "s390x":
        return f"virtio-net-ccw,netdev={netdev}"
    if guest.machine in MMIO_MACHINES:
        return f"virtio-net-device,netdev={netdev}"
    return f"virtio-net-pci,netdev={netdev},romfile="


def disk_root_cmdline(arch: str, extra: str = "") -> str:
    """The command line for a root on the first virtio-blk disk (`image boot`), with the
    same console, network and timer settings as a 9P root's."""
    parts = ["root=/dev/vda", "rootfstype=ext4", "rootflags=rw", "rw",
             f"console={CONSOLES.get(arch, 'ttyS0')}", "net.ifnames=0",
             f"provision9p.net={SLIRP_ADDRESS}:{SLIRP_GATEWAY}", "panic=-1"]
    if arch == "x86_64":
        parts.append("no_timer_check")
    return " ".join([*parts, extra] if extra else parts)


def disk_root_args(path: Path, fmt: str) -> list[str]:
    """The root disk as virtio-blk (the guest's /dev/vda); `fmt`: raw or qcow2."""
    return ["-blockdev", f"driver=file,filename={qemu_opts_escape(str(path))},node-name=f0",
            "-blockdev", f"driver={fmt},file=f0,node-name=root0",
            "-device", "virtio-blk-pci,drive=root0"]
