"""Base trees from debootstrap, cached by what went into them.

The same (suite, arch, variant, components, packages, mirror) gives the same
base tree, so it is built once per host and copied for every guest that wants it.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from provision9p import paths, ui
from provision9p.errors import BuildError, HostError, MirrorError
from provision9p.host.mirror import cache_entry_lock, check_space
from provision9p.lab.model import RootfsSpec
from provision9p.rootfs.safe_fs import clean_stale_staging, staged

# What every guest needs whatever the lab says: an init, device events and module
# loading, SSH, and `ip` for the checks.
BASE_PACKAGES = ("systemd-sysv", "udev", "kmod", "openssh-server", "iproute2")


@dataclass(frozen=True)
class BaseTree:
    path: Path
    key: str
    cached: bool


def base_key(spec: RootfsSpec, debian_arch: str, mirror: str) -> tuple[str, dict[str, object]]:
    inputs: dict[str, object] = {
        "suite": spec.suite, "arch": debian_arch, "variant": spec.variant,
        "components": sorted(spec.components),
        "packages": sorted({*BASE_PACKAGES, *spec.packages}), "mirror": mirror,
    }
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    return f"{spec.suite}-{debian_arch}-{spec.variant}-{digest}", inputs


def host_debian_arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()


def refuse_foreign(spec: RootfsSpec, debian_arch: str, mirror: str) -> None:
    """Refuse a tree debootstrap cannot make here before anything is downloaded for it
    (the kernel comes first in a build): a foreign architecture whose base tree is not
    already in the cache."""
    host = host_debian_arch()
    if debian_arch == host:
        return
    key, _ = base_key(spec, debian_arch, mirror)
    if (paths.cache_home() / "trees" / key / ".provision9p-base.json").is_file():
        return
    raise BuildError(f"{debian_arch} root trees cannot be built on this {host} host yet "
                     "(debootstrap's second stage would need qemu-user-static and "
                     "binfmt_misc)",
                     hint=f"build the guest on a Debian host of its architecture "
                          f"({debian_arch}), or give it this host's ({host}); "
                          "`provision9p qemu-cmd` still prints its QEMU command")


def base_tree(spec: RootfsSpec, debian_arch: str, mirror: str) -> BaseTree:
    """The cached base tree for `spec`, debootstrapping it when missing."""
    key, inputs = base_key(spec, debian_arch, mirror)
    target = paths.cache_home() / "trees" / key
    # one debootstrap per entry, however many labs ask at once: the others wait, then reuse
    with cache_entry_lock(target, f"the base tree {key}"):
        return _base_tree(spec, debian_arch, mirror, target, key, inputs)


def _base_tree(spec: RootfsSpec, debian_arch: str, mirror: str, target: Path, key: str,
               inputs: dict[str, object]) -> BaseTree:
    trees = target.parent
    _reap_orphans(target)
    clean_stale_staging(target)
    if (target / ".provision9p-base.json").is_file():
        return BaseTree(target, key, cached=True)
    if os.geteuid() != 0:
        raise HostError("debootstrap needs root to build a root tree",
                        hint="run the build as root (QEMU itself will not need root)")
    if shutil.which("debootstrap") is None:
        raise HostError("debootstrap is not installed", hint="apt-get install debootstrap "
                        "(or `provision9p doctor --install`)")
    refuse_foreign(spec, debian_arch, mirror)
    _check_free_space(trees, 2 << 30)
    with staged(target) as staging:
        _run_debootstrap(spec, debian_arch, mirror, staging, inputs)
        (staging / ".provision9p-base.json").write_text(json.dumps(inputs, indent=2) + "\n")
    return BaseTree(target, key, cached=False)


def _check_free_space(where: Path, need: int) -> None:
    check_space(where, need, "a debootstrapped root tree")


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when provision9p dies, even by kill -9."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


_PR_SET_PDEATHSIG = 1


def _reap_orphans(target: Path) -> None:
    """Kill what a killed run's debootstrap left running in its staging dir.

    PDEATHSIG reaches debootstrap itself only; a dpkg or wget it started runs on as an
    orphan, writing into (and with /proc mounted in) the staging dir we are about to
    remove. They are found by their root, working directory or command line.
    """
    prefix = f".{target.name}.staging-"
    stale = [e for e in target.parent.glob(prefix + "*")
             if (owner := e.name[len(prefix):]).isdigit()
             and not Path(f"/proc/{owner}").exists()]
    if not stale:
        return
    marks = [os.fsencode(str(e)) for e in stale]
    victims = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            seen = [os.fsencode(os.readlink(proc / "root")), os.fsencode(os.readlink(proc / "cwd")),
                    (proc / "cmdline").read_bytes()]
        except OSError:
            continue
        if any(mark in text for mark in marks for text in seen):
            victims.append(int(proc.name))
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while victims and time.monotonic() < deadline:
        victims = [pid for pid in victims if Path(f"/proc/{pid}").exists()]
        time.sleep(0.05)
    if stale:
        ui.info(f"    removed what a killed run left of {target.name}")


_PHASE = re.compile(r"^I: (Retrieving|Validating|Extracting|Unpacking|Configuring|Installing)"
                    r"\s+(\S+)")


def _run_debootstrap(spec: RootfsSpec, arch: str, mirror: str, target: Path,
                     inputs: dict[str, object]) -> None:
    packages = ",".join(inputs["packages"])  # type: ignore[arg-type]
    debs = paths.cache_home() / "debootstrap-debs"
    debs.mkdir(parents=True, exist_ok=True)
    argv = [
        "debootstrap", f"--arch={arch}", f"--components={','.join(spec.components)}",
        f"--include={packages}", f"--cache-dir={debs}",
    ]
    if spec.variant != "-":
        argv.append(f"--variant={spec.variant}")
    argv += [spec.suite, str(target), mirror]
    ui.info(f"    debootstrap {spec.suite}/{arch} ({spec.variant}) from {mirror}")
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", preexec_fn=_die_with_parent)
    assert proc.stdout is not None
    tail: list[str] = []
    phase, count, last_print = "", 0, 0.0
    try:
        for line in proc.stdout:
            tail = [*tail[-40:], line.rstrip()]
            m = _PHASE.match(line)
            if not m:
                continue
            if m.group(1) != phase:
                if phase:
                    ui.info(f"    {phase.lower()}: {count} done")
                phase, count = m.group(1), 0
            count += 1
            now = time.monotonic()
            if now - last_print > 10:
                ui.info(f"    {phase.lower()} {m.group(2)} ({count}, "
                        f"{now - start:.0f} s so far)")
                last_print = now
        rc = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if rc != 0:
        _raise_for(argv, rc, tail, target)
    ui.info(f"    debootstrap finished in {time.monotonic() - start:.0f} s")


def _raise_for(argv: list[str], rc: int, tail: list[str], target: Path) -> None:
    text = "\n".join(tail)
    log = target / "debootstrap" / "debootstrap.log"
    if log.is_file():
        text += "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-20:])
    last = "\n".join(tail[-12:])
    if "No space left on device" in text:
        raise HostError(f"debootstrap ran out of disk space in {target.parent}:\n{last}",
                        hint="free some disk there (a root tree needs about 2 GiB while "
                             "it is built), or set PROVISION9P_CACHE to a bigger file system")
    if re.search(r"Failed getting release file|Couldn't download|Temporary failure|"
                 r"Could not resolve|Connection refused|Failed getting", text):
        raise MirrorError(f"debootstrap could not download from the mirror:\n{last}",
                          hint="check the mirror URL (rootfs.mirror or the host's apt "
                               "sources) and the network")
    if "Couldn't find these debs" in text or ("Package" in text and "not available" in text):
        raise BuildError(f"debootstrap could not find a package:\n{last}",
                         hint="check rootfs.packages for typos and the suite's components")
    raise BuildError(f"debootstrap failed (exit {rc}):\n{last}",
                     hint="see the lines above; nothing was left on disk")
