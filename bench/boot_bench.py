"""Boot-time choices, before and after, on a guest provision9p built: interleaved rounds.

Takes the QEMU argv of the guest's last boot (its boot record), changes one thing per
variant (bzImage or extracted vmlinux, pc or microvm, the old or the early ssh.service,
an extra kernel option), boots it as QEMU's user, and times from QEMU's start the
console milestones and the first SSH banner (polled every 20 ms). Variants run in turn
within a round, so load from other work on the host hits them alike.

Usage (the guest must be built and stopped; PROVISION9P_HOME as for `up`):
  .venv/bin/python bench/boot_bench.py [-f LAB] GUEST ROUNDS VARIANT... > bench/results/x.md
Variants: bz-pc, elf-pc, bz-microvm, elf-microvm, elf-microvm-oldssh, elf-pc-oldssh,
elf-microvm-notimer, elf-pc-notimer, elf-microvm-tsc (tsc_early_khz=the host's).
Further tokens, on the guest's systemd (kernel command line): `nonetd` masks
systemd-networkd, `noudev` masks udevd and its coldplug, `nogetty` the serial console's
getty; and `nomotd`: sshd's PAM stack without the dynamic motd (update-motd's scripts
at every login; in the tree, undone afterwards). On the emulated CPU: `nomit` adds
`mitigations=off` (no retpolines or speculation barriers in the guest kernel),
`noacpipci` adds `pci=noacpi` (PCI interrupts routed by the BIOS's table, not by the
ACPI interrupt links' methods, which the guest runs in its AML interpreter),
`nocryptotests` adds `cryptomgr.notests=1` (no self-tests of the kernel's crypto
algorithms as they register), `cpuMODEL` boots `-cpu MODEL` instead of `max` (e.g.
`cpuqemu64`: no AVX, so glibc takes its SSE2 string routines), `nosvm` adds `svm=off`
to the CPU (no kvm/kvm_amd/ccp modules loaded by udev), `noacpiirq` adds `acpi=noirq`
(ACPI's interrupt routing off, its PCI scanning and hotplug kept). On the machine:
`nolegacy` boots `pc,i8042=off,smbus=off,vmport=off` with `-vga none` (no PS/2
controller, SMBus or VGA for the guest to probe: nobody types at or looks at them).
`sshfirst`: ssh.service with `StartupCPUWeight=1000` (ten times the default while the
boot lasts; without pam_systemd its sessions stay in its cgroup and share the weight).

With --cmd, after the banner: `cmd`, the first command over SSH has answered (log-in
and `true`, as `up`'s first step does); `settled`, `systemctl is-system-running --wait`
has returned (the guest's boot jobs are done: what the roles pass competes with).
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from provision9p.boot.console import ConsoleWatch
from provision9p.boot.probe import BannerProbe
from provision9p.boot.supervisor import free_port
from provision9p.connect.ssh import open_client
from provision9p.lab import load_lab
from provision9p.target import Target, resolve

# Debian's ssh.service as the first wave overrode it: after basic.target (default deps).
OLD_SSH_UNIT = """[Unit]
Description=OpenBSD Secure Shell server
ConditionPathExists=!/etc/ssh/sshd_not_to_be_run

[Service]
EnvironmentFile=-/etc/default/ssh
ExecStart=/usr/sbin/sshd -D $SSHD_OPTS
ExecReload=/bin/kill -HUP $MAINPID
KillMode=process
Restart=on-failure
RestartPreventExitStatus=255
Type=notify
RuntimeDirectory=sshd
RuntimeDirectoryMode=0755

[Install]
WantedBy=multi-user.target
Alias=sshd.service
"""

MARKS = ("kernel", "initramfs", "root mounted", "init", "userspace")
UNITS = {"nonetd": ("systemd-networkd.service", "systemd-networkd.socket"),
         "noudev": ("systemd-udevd.service", "systemd-udev-trigger.service",
                    "systemd-udevd-control.socket", "systemd-udevd-kernel.socket"),
         # the console is a file chardev: nobody can type at its login prompt
         "nogetty": ("serial-getty@ttyS0.service",)}


def variant_argv(argv: list[str], name: str, st_boot: Path, run: Path, port: int) -> list[str]:
    parts = set(name.split("-"))
    out: list[str] = []
    it = iter(argv)
    for a in it:
        if a in ("-qmp", "-pidfile"):
            next(it)
            continue
        if a == "-kernel":
            out += [a, str(st_boot / ("vmlinux" if "elf" in parts else "vmlinuz"))]
            next(it)
            continue
        if a == "-cpu":
            next(it)
            cpu = next((t[3:] for t in parts if t.startswith("cpu") and len(t) > 3), "max")
            out += [a, cpu + (",svm=off" if "nosvm" in parts else "")]
            continue
        if a == "-machine":
            machine = "pc,i8042=off,smbus=off,vmport=off" if "nolegacy" in parts else "pc"
            out += [a, "microvm" if "microvm" in parts else machine]
            if "nolegacy" in parts:
                out += ["-vga", "none"]
            next(it)
            continue
        if a == "-append":
            cmdline = next(it)
            if "notimer" in parts:
                cmdline += " no_timer_check"
            if "nomit" in parts:
                cmdline += " mitigations=off"
            if "noacpipci" in parts:
                cmdline += " pci=noacpi"
            if "noacpiirq" in parts:
                cmdline += " acpi=noirq"
            if "nocryptotests" in parts:
                cmdline += " cryptomgr.notests=1"
            if "tsc" in parts:
                cmdline += f" tsc_early_khz={host_tsc_khz()}"
            for token, units in UNITS.items():
                if token in parts:
                    cmdline += "".join(f" systemd.mask={u}" for u in units)
            out += [a, cmdline]
            continue
        if a == "-netdev":
            next(it)
            out += [a, f"user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:22"]
            continue
        if a == "-chardev":
            next(it)
            out += [a, f"file,id=con0,path={run / 'console.log'}"]
            continue
        if a == "-device":
            dev = next(it)
            if "microvm" in parts:
                dev = dev.replace("virtio-9p-pci", "virtio-9p-device")
                dev = dev.replace("virtio-net-pci", "virtio-net-device").replace(",romfile=", "")
            else:
                dev = dev.replace("virtio-9p-device", "virtio-9p-pci")
                if dev.startswith("virtio-net-device"):
                    dev = dev.replace("virtio-net-device", "virtio-net-pci") + ",romfile="
            out += [a, dev]
            continue
        out.append(a)
    return out


def host_tsc_khz() -> int:
    from provision9p.boot.timing import host_tsc_khz as khz
    value = khz()
    if value is None:
        sys.exit("cannot tell the host's TSC frequency")
    return value


def set_ssh_unit(root: Path, old: bool, new_text: str) -> None:
    """Rewrite the unit in place (same inode: its mapped-xattr metadata stays)."""
    unit = root / "etc/systemd/system/ssh.service"
    with open(unit, "r+") as f:
        f.truncate(0)
        f.write(OLD_SSH_UNIT if old else new_text)


def with_weight(unit: str) -> str:
    """The unit with ten times the default CPU weight while the boot lasts."""
    return unit.replace("[Service]\n", "[Service]\nStartupCPUWeight=1000\n", 1)


MOTD_LINE = "session    optional     pam_motd.so  motd=/run/motd.dynamic"


def set_motd(root: Path, dynamic: bool) -> None:
    """sshd's PAM stack with or without the dynamic motd, rewritten in place (same inode:
    its mapped-xattr metadata stays)."""
    pam = root / "etc/pam.d/sshd"
    off = "# provision9p bench: " + MOTD_LINE
    text = pam.read_text().replace(off, MOTD_LINE)
    if MOTD_LINE not in text:
        sys.exit(f"{pam} has no line {MOTD_LINE!r}")
    with open(pam, "r+") as f:
        f.truncate(0)
        f.write(text if dynamic else text.replace(MOTD_LINE, off))


def boot_once(argv: list[str], user: str, run: Path, port: int, timeout: float,
              target: Target | None = None) -> dict[str, float]:
    pw = pwd.getpwnam(user)
    console = run / "console.log"
    console.unlink(missing_ok=True)
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=run, user=pw.pw_uid,
                            group=pw.pw_gid)
    marks: dict[str, float] = {}
    watch = ConsoleWatch(console)
    try:
        with BannerProbe(port) as probe:
            while time.monotonic() - start < timeout and proc.poll() is None:
                now = time.monotonic() - start
                watch.poll()
                for m in watch.reached():
                    marks.setdefault(m, round(now, 2))
                if probe.poll():
                    marks["ssh"] = round(time.monotonic() - start, 2)
                    break
                time.sleep(0.02)
        if target is not None and "ssh" in marks:
            client = open_client(target, port, timeout=timeout)
            try:
                for name, command in (("cmd", "true"),
                                      ("settled", "systemctl is-system-running --wait")):
                    _, out, _ = client.exec_command(command, timeout=timeout)
                    out.channel.recv_exit_status()
                    marks[name] = round(time.monotonic() - start, 2)
            finally:
                client.close()
    finally:
        proc.kill()  # the QEMU this run started, by its handle
        proc.wait()
    if "ssh" not in marks and console.exists():
        # the next boot overwrites console.log: keep what a boot that never answered said
        kept = run / f"console-failed-{time.strftime('%H%M%S')}.log"
        shutil.copyfile(console, kept)
        print(f"no SSH banner; its console: {kept}", file=sys.stderr, flush=True)
    return marks


def main() -> None:
    # a plain kill ends the run through the cleanup below (QEMU stopped, unit restored)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser()
    ap.add_argument("-f", "--lab")
    ap.add_argument("guest")
    ap.add_argument("rounds", type=int)
    ap.add_argument("variants", nargs="+")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--cmd", action="store_true",
                    help="also time the first command and the settled boot over SSH")
    args = ap.parse_args()
    lab = load_lab(Path(args.lab) if args.lab else None)
    target = resolve(lab, lab.guest(args.guest))
    st = target.state
    if st.running_pid() is not None:
        sys.exit(f"{args.guest} is running: `provision9p down {args.guest}` first")
    boot = st.read_boot()
    if boot is None:
        sys.exit(f"{args.guest} has no boot record: `provision9p up {args.guest}` once first")
    root = target.guest.root.path
    unit = root / "etc/systemd/system/ssh.service"
    new_unit = unit.read_text()
    run = st.run_dir
    os.chown(run, target.run_as.uid, target.run_as.gid)
    results: dict[str, list[dict[str, float]]] = {v: [] for v in args.variants}
    try:
        for r in range(args.rounds):
            for v in args.variants:
                parts = v.split("-")
                set_ssh_unit(root, "oldssh" in parts,
                             with_weight(new_unit) if "sshfirst" in parts else new_unit)
                set_motd(root, "nomotd" not in parts)
                port = free_port()
                argv = variant_argv(boot.argv, v, st.boot_dir, run, port)
                m = boot_once(argv, target.run_as.name, run, port, args.timeout,
                              target if args.cmd else None)
                results[v].append(m)
                print(f"round {r + 1} {v}: {m}", file=sys.stderr, flush=True)
    finally:
        set_ssh_unit(root, False, new_unit)
        set_motd(root, True)
    load = os.getloadavg()
    print(f"{args.rounds} interleaved rounds, load average at the end {load[0]:.1f}; "
          "seconds from QEMU start, median (min-max)\n")
    cols = [*MARKS, "ssh", *(("cmd", "settled") if args.cmd else ())]
    print("| variant | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for v, runs in results.items():
        cells = []
        for c in cols:
            vals = [m[c] for m in runs if c in m]
            cells.append(f"{statistics.median(vals):.2f} ({min(vals):.1f}-{max(vals):.1f})"
                         if vals else "-")
        print(f"| {v} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
