"""`provision9p doctor`: does this host have what the lab needs, and if not, what to do.

Every check is a plain function returning a Finding, so the CLI only prints and the
tests call the checks one by one on the real host.
"""

from __future__ import annotations

import errno
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import xattr

from provision9p import paths, ui
from provision9p.errors import CommandError, HostError
from provision9p.host.facts import load_facts
from provision9p.host.release import KEYRING_ENV, keyrings
from provision9p.lab.model import LabSpec
from provision9p.rootfs.security import model_of

# Guest arch -> (QEMU program, Debian package that ships it).
QEMU_PACKAGES = {
    "x86_64": ("qemu-system-x86_64", "qemu-system-x86"),
    "aarch64": ("qemu-system-aarch64", "qemu-system-arm"),
    "s390x": ("qemu-system-s390x", "qemu-system-misc"),
}
# (program, Debian package, why)
TOOLS = (
    ("mmdebstrap", "mmdebstrap", "builds the guest's root tree"),
    ("zstd", "zstd", "unpacks zstd-compressed packages and modules"),
    ("cpio", "cpio", "packs the initramfs"),
    ("gpgv", "gpgv", "checks the signature of the mirror's InRelease"),
)
LOW_DISK = 2 * 2**30
XATTR_TEST = "user.provision9p.test"


@dataclass(frozen=True)
class Finding:
    """One thing checked: ok or not, and for a problem the fix."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True  # a failed required check makes doctor exit 1
    package: str | None = None  # the Debian package that fixes it (--install)

    @property
    def status(self) -> str:
        return "ok" if self.ok else ("MISSING" if self.required else "warn")


def check_program(program: str, package: str, why: str) -> Finding:
    path = shutil.which(program)
    if path:
        return Finding(program, True, path)
    return Finding(program, False, f"not found ({why})", f"apt-get install {package}",
                   package=package)


def check_qemu(arch: str) -> Finding:
    program, package = QEMU_PACKAGES[arch]
    found = check_program(program, package, f"runs {arch} guests")
    if not found.ok:
        return found
    try:
        out = subprocess.run([program, "--version"], capture_output=True, text=True,
                             timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Finding(program, False, f"{found.detail} does not run: {exc}",
                       f"apt-get install --reinstall {package}", package=package)
    version = out.splitlines()[0] if out else "version unknown"
    return Finding(program, True, f"{found.detail} ({version})")


def is_static_elf(path: Path) -> bool:
    """An ELF executable without a PT_INTERP program header needs no dynamic loader."""
    with path.open("rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF":
            return False
        end = "<" if head[5] == 1 else ">"
        if head[4] == 2:
            phoff, = struct.unpack_from(end + "Q", head, 0x20)
            phentsize, phnum = struct.unpack_from(end + "HH", head, 0x36)
        else:
            phoff, = struct.unpack_from(end + "I", head, 0x1C)
            phentsize, phnum = struct.unpack_from(end + "HH", head, 0x2A)
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            p_type, = struct.unpack(end + "I", f.read(4))
            if p_type == 3:  # PT_INTERP
                return False
    return True


def check_busybox() -> Finding:
    """The initramfs runs busybox before any library exists: it must be static."""
    for candidate in (Path("/bin/busybox"), Path("/usr/bin/busybox")):
        if candidate.is_file():
            if is_static_elf(candidate):
                return Finding("busybox-static", True, str(candidate))
            return Finding("busybox-static", False, f"{candidate} is dynamically linked",
                           "apt-get install busybox-static", package="busybox-static")
    return Finding("busybox-static", False, "no busybox (the initramfs's shell and tools)",
                   "apt-get install busybox-static", package="busybox-static")


def check_foreign_build(arch: str) -> list[Finding]:
    """A guest of another architecture: its tree is built through qemu-user (binfmt_misc),
    so the emulator, update-binfmts and an enabled entry with the F flag must be there."""
    from provision9p.host import binfmt
    from provision9p.lab.model import ARCHES

    debian_arch = ARCHES[arch][0]
    if debian_arch == binfmt.host_arch():
        return [Finding(f"{arch} root tree", True, "built natively", required=False)]
    found = [check_program(f"qemu-{arch}-static", "qemu-user-static",
                           f"runs {debian_arch} programs while the tree is built"),
             check_program("update-binfmts", "binfmt-support", "registers qemu-user"),
             check_program("arch-test", "arch-test",
                           "mmdebstrap refuses a foreign architecture without it")]
    emu = binfmt.emulation(debian_arch)
    found.append(Finding(f"{arch} root tree", emu.ok, emu.detail, "" if emu.ok else emu.fix,
                         required=True))
    return found


def enable_emulation(findings: Iterable[Finding]) -> None:
    """`doctor --install`: register qemu-user for each foreign tree doctor found lacking."""
    from provision9p.host import binfmt
    from provision9p.lab.model import ARCHES

    for f in findings:
        arch = f.name.removesuffix(" root tree")
        if not f.ok and arch != f.name and arch in ARCHES:
            ui.info(f"==> registering qemu-user for {arch} with binfmt_misc")
            binfmt.enable(ARCHES[arch][0])


def check_kvm(arch: str) -> Finding:
    """What is known about KVM here. Only a guest that boots proves it works (DESIGN.md),
    so this reports the boot stage's remembered finding rather than opening /dev/kvm."""
    import platform

    if arch != platform.machine():
        return Finding("kvm", True, f"not used: {arch} guests on a {platform.machine()} "
                       "host run under TCG", required=False)
    if not os.path.exists("/dev/kvm"):
        return Finding("kvm", False, "no /dev/kvm: guests run under TCG (slower)",
                       "enable virtualisation (nested KVM on a VM) if you want speed",
                       required=False)
    fact = load_facts().get("kvm")
    if not isinstance(fact, dict) or "works" not in fact:
        return Finding("kvm", True, "/dev/kvm present; not tried yet (the first boot tries "
                       "it and falls back to TCG)", required=False)
    when = fact.get("checked", "?")
    if fact["works"]:
        return Finding("kvm", True, f"/dev/kvm present; a guest booted with KVM ({when})",
                       required=False)
    return Finding("kvm", False, f"/dev/kvm present but KVM did not boot a guest: "
                   f"{fact.get('reason', '?')} ({when}); guests run under TCG",
                   f"to try again, delete the kvm entry in {paths.cache_home()}"
                   "/host-facts.json", required=False)


def nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_user_xattrs(share: Path) -> Finding:
    """mapped-xattr keeps the guest's owners and modes in user.* xattrs on the host."""
    where = nearest_existing(share)
    directory = where if where.is_dir() else where.parent
    name = "user xattrs"
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".provision9p-xattr-")
    except OSError as exc:
        return Finding(name, False, f"cannot create a test file in {directory}: "
                       f"{exc.strerror}", "make the share's parent writable, or run as root")
    try:
        xattr.set(fd, XATTR_TEST, b"1")
        ok = xattr.get(fd, XATTR_TEST) == b"1"
    except OSError as exc:
        reason = ("the file system does not support user xattrs"
                  if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP) else exc.strerror)
        return Finding(name, False, f"{directory} (for {share}): {reason}",
                       "put the share on ext4, xfs or btrfs, or use "
                       "security_model: mapped-file")
    finally:
        os.close(fd)
        os.unlink(tmp)
    return Finding(name, ok, f"settable on the file system of {directory} (for {share})")


def check_disk(where: Path, minimum: int = LOW_DISK) -> Finding:
    place = nearest_existing(where)
    free = shutil.disk_usage(place).free
    detail = f"{free / 2**30:.1f} GiB free at {place}"
    if free >= minimum:
        return Finding("disk space", True, detail, required=False)
    return Finding("disk space", False, detail + f" (a root tree takes about 0.3 GiB, "
                   f"the caches more; below {minimum / 2**30:.0f} GiB builds may fail)",
                   "free some space or set PROVISION9P_HOME / PROVISION9P_CACHE elsewhere",
                   required=False)


def check_keyring() -> Finding:
    """The keys the mirror's InRelease must be signed by (host/release.py)."""
    rings = keyrings()
    missing = [str(k) for k in rings if not k.is_file()]
    if not missing:
        return Finding("archive keyring", True, ", ".join(map(str, rings)))
    if os.environ.get(KEYRING_ENV):
        return Finding("archive keyring", False, f"{KEYRING_ENV} names a missing file: "
                       f"{', '.join(missing)}", f"correct or unset {KEYRING_ENV}")
    return Finding("archive keyring", False, f"{', '.join(missing)} is missing (the keys "
                   "that sign the Debian mirror's index)",
                   "apt-get install debian-archive-keyring", package="debian-archive-keyring")


def check_root() -> Finding:
    if os.geteuid() == 0:
        return Finding("privileges", True, "running as root")
    return Finding("privileges", True, "a normal user: trees are built in a user namespace "
                   "with the user's subordinate ids, QEMU runs as the user", required=False)


def check_subids() -> Finding:
    """A normal user's build maps guest ids 1..65535 onto its /etc/subuid and /etc/subgid
    ranges (rootfs/rootless.py); only an administrator can add them."""
    import pwd

    from provision9p.rootfs import rootless

    pw = pwd.getpwuid(os.geteuid())
    found = {p: rootless.sub_ids(p, pw.pw_name, pw.pw_uid)
             for p in (rootless.SUBUID, rootless.SUBGID)}
    missing = [str(p) for p, r in found.items() if r is None]
    if not missing:
        ranges = ", ".join(f"{p.name} {r.start}+{r.count}" for p, r in found.items() if r)
        return Finding("subordinate ids", True, f"{pw.pw_name}: {ranges}")
    line = rootless.admin_lines(pw.pw_name)[0]
    return Finding("subordinate ids", False, f"no range of {rootless.NEEDED + 1} ids for "
                   f"{pw.pw_name} in {' and '.join(missing)} (the guest's users while "
                   "the tree is built)",
                   f"an administrator adds `{line}` to /etc/subuid and /etc/subgid once")


def check_userns() -> Finding:
    """Unprivileged user namespaces must be allowed (DESIGN.md: they are here)."""
    # (sysctl, its value when disabled, a value that enables it)
    for name, off, on in (("kernel.unprivileged_userns_clone", "0", "1"),
                          ("user.max_user_namespaces", "0", "15000")):
        try:
            value = Path("/proc/sys", *name.split(".")).read_text().strip()
        except OSError:
            continue  # not this kernel's knob
        if value == off:
            return Finding("user namespaces", False, f"disabled ({name} = {off})",
                           f"an administrator runs `sysctl -w {name}={on}` (and keeps it "
                           "in /etc/sysctl.d)")
    return Finding("user namespaces", True, "unprivileged user namespaces allowed")


def check_kvm_access() -> Finding:
    """QEMU runs as the user: KVM only when the user may open /dev/kvm."""
    if not os.path.exists("/dev/kvm"):
        return Finding("kvm access", True, "no /dev/kvm: guests run under TCG",
                       required=False)
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        return Finding("kvm access", True, "/dev/kvm is usable by this user", required=False)
    import grp
    import pwd

    st = os.stat("/dev/kvm")
    name = pwd.getpwuid(os.geteuid()).pw_name
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    if group == "root" or not st.st_mode & 0o060:
        fix = ("an administrator makes /dev/kvm group kvm, mode 0660 (Debian's udev rule), "
               f"and runs `usermod -aG kvm {name}`")
    else:
        fix = f"an administrator runs `usermod -aG {group} {name}` (then log in again)"
    return Finding("kvm access", False, "/dev/kvm is not usable by this user: guests run "
                   "under TCG (slower)", fix, required=False)


def user_checks() -> list[Finding]:
    """What a normal user's build and boot need that only an administrator can give."""
    if os.geteuid() == 0:
        return []
    return [check_subids(), check_userns(),
            check_program("newuidmap", "uidmap", "maps the subordinate ids"),
            check_kvm_access()]


def _unique_by_device(places: Iterable[Path]) -> list[Path]:
    seen: set[int] = set()
    out: list[Path] = []
    for p in places:
        dev = nearest_existing(p).stat().st_dev
        if dev not in seen:
            seen.add(dev)
            out.append(p)
    return out


def run_checks(lab: LabSpec) -> list[Finding]:
    """Every check for the lab, in the order doctor prints them."""
    findings: list[Finding] = []
    arches = sorted({g.arch for g in lab.guests})
    findings += [check_qemu(a) for a in arches]
    findings += [check_program(*tool) for tool in TOOLS]
    findings.append(check_busybox())
    findings.append(check_keyring())
    findings.append(check_root())
    findings += user_checks()
    findings += [check_kvm(a) for a in arches]
    findings += [f for a in arches for f in check_foreign_build(a)]
    xattr_shares = [s.path for g in lab.guests for s in g.all_shares
                    if model_of(s).needs_user_xattrs]
    findings += [check_user_xattrs(p) for p in _unique_by_device(xattr_shares)]
    places = [paths.data_home(), paths.cache_home(), lab.state_dir,
              *(s.path for g in lab.guests for s in g.all_shares)]
    findings += [check_disk(p) for p in _unique_by_device(places)]
    return findings


def install_packages(packages: list[str]) -> None:
    """apt-get install the missing packages (updating the lists once if that fails)."""
    if os.geteuid() != 0:
        raise HostError("installing packages needs root",
                        hint="sudo apt-get install " + " ".join(packages))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    argv = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    ui.info("==> " + " ".join(argv))
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        ui.info("    apt-get install failed; updating the package lists and trying again")
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True)
        proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stdout + proc.stderr,
                           hint="check the host's apt sources, then install by hand")
