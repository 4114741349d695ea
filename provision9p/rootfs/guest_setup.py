"""Offline guest setup: what a freshly debootstrapped tree needs to boot from 9P and answer SSH.

Runs on the plain tree (before the security model is applied), as root.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from provision9p.errors import BuildError
from provision9p.lab.model import GuestSpec, LabSpec
from provision9p.lab.network import (
    SLIRP_ADDRESS,
    SLIRP_DNS,
    SLIRP_GATEWAY,
    hosts_block,
    network_file,
    with_hosts_block,
)
from provision9p.rootfs import chroot_path as cp
from provision9p.rootfs import contain
from provision9p.rootfs.keys import KeyPair

# Units a 9P-root lab guest has no use for: timers that start apt or disk jobs at random
# moments, gettys on VTs it has no screen for (the serial getty stays), binfmt, and the
# wait for a routable network that nothing here needs. Each costs boot time under TCG.
MASKED_UNITS = (
    "apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer",
    "e2scrub_all.timer", "e2scrub_reap.service", "fstrim.timer",
    "getty-static.service", "getty@tty1.service",  # QEMU runs with -nodefaults: no VGA
    "systemd-binfmt.service", "proc-sys-fs-binfmt_misc.automount",
    "systemd-networkd-wait-online.service",
    # The initramfs mounted the root with the lab's options and the base tree already has
    # its system users; remounting, sysusers and preloading loop/dm/drm only cost seconds.
    "systemd-remount-fs.service", "systemd-sysusers.service",
    "modprobe@loop.service", "modprobe@dm_mod.service", "modprobe@drm.service",
    "modprobe@efi_pstore.service", "systemd-network-generator.service",
    "systemd-update-utmp.service", "systemd-update-utmp-runlevel.service",
)

# Generators systemd runs before it loads a single unit, each a process that loads
# libsystemd-shared, for what a 9P-root guest has none of:
# encrypted, integrity or verity block devices, GPT partitions to discover on the root
# disk, a swap partition to resume from, an offline update. Masked the way
# systemd.generator(7) says: a link to /dev/null in /etc/systemd/system-generators.
# fstab, getty, sysv, rc-local, debug and run stay: they do something here, or on the
# kernel command line a user may give. (Under TCG the generators finished 0.6-0.9 s
# sooner in two bench runs and no sooner in a third; end to end no difference showed:
# bench/results/up-before-after.md.)
MASKED_GENERATORS = (
    "systemd-cryptsetup-generator", "systemd-integritysetup-generator",
    "systemd-veritysetup-generator", "systemd-gpt-auto-generator",
    "systemd-hibernate-resume-generator", "systemd-system-update-generator",
)

# Writing the journal through 9P at boot (journal-flush) costs seconds; a lab guest keeps
# it in memory. sshd's config is checked at build time instead of at every start.
DROP_INS = {
    "/etc/systemd/journald.conf.d/10-provision9p.conf":
        "# provision9p: keep the journal in RAM; flushing it through 9P slows every boot\n"
        "[Journal]\nStorage=volatile\n",
}


@dataclass(frozen=True)
class SetupInputs:
    guest: GuestSpec
    authorized_key: str  # the lab's client key, public line
    host_key: KeyPair  # the guest's ed25519 host key
    #: the guest's lab: its network's peers go into /etc/hosts (None: no lab network)
    lab: LabSpec | None = None
    #: the guest boots through provision9p's initramfs, which configures eth0
    initramfs: bool = True


def fstab(guest: GuestSpec) -> str:
    """The root's entry; the extra shares' entries are the ninep_shares role's."""
    root = guest.root
    return ("# provision9p: the root is the 9P share\n"
            f"{root.mount_tag} / 9p {root.options.as_string()} 0 0\n")


def lab_hosts_block(lab: LabSpec) -> str | None:
    """Every lab guest's name and address, or None when the lab has no network."""
    entries = [(g.name, str(g.address.ip)) for g in lab.guests if g.address is not None]
    return hosts_block(lab.name, entries) if lab.network.enabled and entries else None


def etc_hosts(guest: GuestSpec, lab: LabSpec | None) -> str:
    """The guest's /etc/hosts; the lab's block is not a build input (so adding a guest
    rebuilds nobody): `up` rewrites it over SSH in the running guests (lab_pass.py)."""
    text = (f"127.0.0.1\tlocalhost\n127.0.1.1\t{guest.name}\n"
            "::1\t\tlocalhost ip6-localhost ip6-loopback\n")
    block = lab_hosts_block(lab) if lab is not None else None
    return with_hosts_block(text, lab.name, block) if lab is not None and block else text


def setup_tree(tree: Path, inputs: SetupInputs) -> None:
    guest = inputs.guest
    name = guest.name
    cp.write_file(tree, "/etc/hostname", f"{name}\n")
    cp.write_file(tree, "/etc/hosts", etc_hosts(guest, inputs.lab))
    cp.write_file(tree, "/etc/machine-id", secrets.token_hex(16) + "\n", 0o444)
    cp.write_file(tree, "/etc/fstab", fstab(guest))
    cp.write_file(tree, "/etc/resolv.conf", f"nameserver {SLIRP_DNS}\n")
    # QEMU user networking's addresses are fixed; the same static config the initramfs
    # applied, so networkd changes nothing and nobody waits for DHCP.
    cp.write_file(tree, "/etc/systemd/network/20-eth0.network",
                  "[Match]\nName=eth0\n\n[Network]\n"
                  f"Address={SLIRP_ADDRESS}\nGateway={SLIRP_GATEWAY}\nDNS={SLIRP_DNS}\n"
                  "LinkLocalAddressing=no\nIPv6AcceptRA=no\nKeepConfiguration=static\n")
    if guest.address is not None and guest.mac is not None:
        cp.write_file(tree, "/etc/systemd/network/30-lab.network",
                      network_file(guest.mac, guest.address))
    _ssh(tree, inputs)
    _motd_without_update(tree)
    for unit in MASKED_UNITS:
        cp.symlink(tree, f"/etc/systemd/system/{unit}", "/dev/null")
    for generator in MASKED_GENERATORS:
        cp.symlink(tree, f"/etc/systemd/system-generators/{generator}", "/dev/null")
    for path, text in DROP_INS.items():
        cp.write_file(tree, path, text)
    _fast_ssh_unit(tree)
    _sysinit_mark_unit(tree)
    # networkd only where something is left for it to configure: the lab NIC, or eth0
    # when no initramfs of ours did. Otherwise it only re-applies eth0's address while the
    # first login waits (bench/results/boot-speed.md: the guest settles ~2 s sooner).
    if guest.address is not None or not inputs.initramfs:
        _chroot(tree, ["systemctl", "enable", "systemd-networkd.service"])
    else:
        _chroot(tree, ["systemctl", "disable", "systemd-networkd.service",
                       "systemd-networkd.socket"])


def _ssh(tree: Path, inputs: SetupInputs) -> None:
    ssh_dir = cp.resolve_in(tree, "/etc/ssh")
    for old in ssh_dir.glob("ssh_host_*"):
        old.unlink()
    cp.write_file(tree, "/etc/ssh/ssh_host_ed25519_key", inputs.host_key.private_openssh,
                  0o600)
    cp.write_file(tree, "/etc/ssh/ssh_host_ed25519_key.pub",
                  inputs.host_key.public_line + "\n")
    cp.write_file(tree, "/etc/ssh/sshd_config.d/10-provision9p.conf",
                  "# provision9p: key login only, and no reverse DNS wait\n"
                  "HostKey /etc/ssh/ssh_host_ed25519_key\n"
                  "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                  "PermitRootLogin prohibit-password\nUseDNS no\n")
    root_ssh = cp.resolve_in(tree, "/root/.ssh")
    root_ssh.mkdir(mode=0o700, exist_ok=True)
    root_ssh.chmod(0o700)
    cp.write_file(tree, "/root/.ssh/authorized_keys", inputs.authorized_key + "\n", 0o600)


def motd_without_update(pam_sshd: str) -> str:
    """/etc/pam.d/sshd with pam_motd's `noupdate` on every line that still runs the
    update-motd.d scripts (Debian's first pam_motd line; the second already has it).

    Those scripts ran at every SSH login, `up`'s own and each `provision9p ssh`: a shell,
    run-parts and uname under TCG, 0.8 s of the first command's 1.3 s on a booted guest
    (bench/results/up-before-after.md). The static /etc/motd is still shown; the uname line is
    what a lab guest's login no longer prints.
    """
    out = []
    for line in pam_sshd.splitlines(keepends=True):
        body, hash_, comment = line.partition("#")
        words = body.split()
        if "pam_motd.so" in words and "noupdate" not in words and words[0] == "session":
            out.append("# provision9p: no update-motd.d scripts at each login (slow under TCG)\n")
            line = f"{body.rstrip()} noupdate" + (f" {hash_}{comment}" if hash_ else "\n")
        out.append(line)
    return "".join(out)


def _motd_without_update(tree: Path) -> None:
    path = cp.resolve_in(tree, "/etc/pam.d/sshd")
    if path.is_file() and not path.is_symlink():
        text = path.read_text()
        new = motd_without_update(text)
        if new != text:
            cp.write_file(tree, "/etc/pam.d/sshd", new, path.stat().st_mode & 0o7777)


def _fast_ssh_unit(tree: Path) -> None:
    """Debian's ssh.service, started with the first units systemd starts.

    The critical chain of a booted guest held ssh.service behind basic.target, which sits
    behind sysinit.target's chain (journald, kmod-static-nodes, tmpfiles-setup-dev, udevd),
    each slow on a 9P root under TCG. sshd needs none of it: eth0 was configured by the
    initramfs, /dev is the kernel's devtmpfs, /run is mounted by systemd itself, the root
    is rw, the config was checked here at build time (no `sshd -t`), and the tree has no
    dbus/pam_systemd to wait for. So no default dependencies, only the shutdown ordering
    they would have added. (pam_nologin lets root in while /run/nologin exists; other
    accounts get in once systemd-user-sessions has run, as on any Debian.)
    A drop-in cannot remove an After=, so the unit is overridden.

    While the boot lasts, the unit has ten times the default CPU weight: without
    pam_systemd its logins stay in its cgroup, so the first login and `up`'s roles pass
    are served before the rest of the boot (udev's coldplug, mounts, tmpfiles) on the
    guest's vCPUs. Once the boot is done the weight is the default again: systemd 252
    does not re-apply it when its startup finishes (cpu.weight stayed 1000 until a
    daemon-reload), so a last unit of the boot sets it back through systemd's own API.
    (bench/results/boot-speed.md: the first command 2.2 s after the banner instead of 4.3.)
    """
    src = cp.resolve_in(tree, "/lib/systemd/system/ssh.service", follow_last=True)
    if not src.is_file():
        return
    lines = ["# provision9p: Debian's ssh.service, started early: no network, no sysinit wait"]
    for line in src.read_text().splitlines():
        if line.startswith("After=") or line.startswith("ExecStartPre=/usr/sbin/sshd -t"):
            continue
        lines.append(line)
        if line.strip() == "[Service]":
            lines.append("StartupCPUWeight=1000")
        if line.strip() == "[Unit]":
            lines += ["DefaultDependencies=no", "Conflicts=shutdown.target",
                      "Before=shutdown.target"]
    cp.write_file(tree, "/etc/systemd/system/ssh.service", "\n".join(lines) + "\n")
    cp.write_file(tree, f"/etc/systemd/system/{SSH_WEIGHT_RESET}", SSH_WEIGHT_RESET_UNIT)
    cp.symlink(tree, f"/etc/systemd/system/multi-user.target.wants/{SSH_WEIGHT_RESET}",
               f"/etc/systemd/system/{SSH_WEIGHT_RESET}")  # what `systemctl enable` makes


def _sysinit_mark_unit(tree: Path) -> None:
    """A file in /run once sysinit.target's jobs are done, for `up` to wait on before the
    roles (boot/sysinit.py). sshd answers before sysinit (_fast_ssh_unit), and
    systemd-tmpfiles-setup's `--remove --boot` empties /tmp there: a role's file written
    to /tmp in between was gone a moment later (CI: get_url's download, "No such file").
    Stock Debian's sshd waits for basic.target, so a role never saw that window."""
    cp.write_file(tree, f"/etc/systemd/system/{SYSINIT_MARK_UNIT}", SYSINIT_MARK_UNIT_TEXT)
    cp.symlink(tree, f"/etc/systemd/system/basic.target.wants/{SYSINIT_MARK_UNIT}",
               f"/etc/systemd/system/{SYSINIT_MARK_UNIT}")  # what `systemctl enable` makes


SYSINIT_MARK_UNIT = "provision9p-sysinit.service"
#: made once per boot (/run is a tmpfs), after sysinit.target whatever its jobs' results
SYSINIT_MARK = "/run/provision9p-sysinit"
SYSINIT_MARK_UNIT_TEXT = f"""\
# provision9p: marks the end of sysinit (mounts, tmpfiles, udev's coldplug) for `up`
[Unit]
Description=Mark that sysinit.target was reached
DefaultDependencies=no
After=sysinit.target

[Service]
Type=oneshot
ExecStart=/bin/touch {SYSINIT_MARK}

[Install]
WantedBy=basic.target
"""

SSH_WEIGHT_RESET = "provision9p-ssh-weight.service"
SSH_WEIGHT_RESET_UNIT = """\
# provision9p: sshd's boot-time CPU weight back to the default at the end of the boot
[Unit]
Description=Default CPU weight for sshd after the boot
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/bin/systemctl set-property --runtime ssh.service StartupCPUWeight=100

[Install]
WantedBy=multi-user.target
"""


def _chroot(tree: Path, argv: list[str]) -> None:
    proc = contain.run(tree, argv)
    if proc.returncode != 0:
        raise BuildError(f"`{' '.join(argv)}` in the root tree failed: "
                         f"{proc.stderr.decode(errors='replace').strip()}")
