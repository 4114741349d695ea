"""Base trees, cached by what went into them (the builder is rootfs/builder.py).

The same (builder, suite, arch, variant, components, packages, mirror) gives the same
base tree, so it is built once per host and copied for every guest that wants it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from provision9p import paths, ui
from provision9p.errors import BuildError
from provision9p.host.mirror import cache_entry_lock, check_space
from provision9p.lab.model import RootfsSpec
from provision9p.rootfs import rootless
from provision9p.rootfs.builder import (
    Pin,
    TreeRequest,
    build_tree,
    choose_builder,
    merge_packages,
)
from provision9p.rootfs.safe_fs import clean_stale_staging, staged

# What every guest needs whatever the lab says: an init, device events and module
# loading, SSH, and `ip` for the checks.
# Bump when what a builder leaves in a base tree changes (2: mmdebstrap keeps apt's lists).
BASE_FORMAT = 2
BASE_PACKAGES = ("systemd-sysv", "udev", "kmod", "openssh-server", "iproute2")


@dataclass(frozen=True)
class BaseTree:
    path: Path
    key: str
    cached: bool


def tree_request(spec: RootfsSpec, debian_arch: str, mirror: str,
                 pins: tuple[Pin, ...] = ()) -> TreeRequest:
    return TreeRequest(spec.suite, debian_arch, spec.variant, tuple(sorted(spec.components)),
                       merge_packages(BASE_PACKAGES, spec.packages), mirror, pins)


def base_key(spec: RootfsSpec, debian_arch: str, mirror: str,
             pins: tuple[Pin, ...] = ()) -> tuple[str, dict[str, object]]:
    req = tree_request(spec, debian_arch, mirror)
    inputs: dict[str, object] = {
        "format": BASE_FORMAT, "builder": choose_builder(req.variant, require=False),
        "suite": req.suite, "arch": req.arch, "variant": req.variant,
        "components": list(req.components), "packages": list(req.packages), "mirror": mirror,
    }
    if pins:  # a lock's versions (image/pins.py); an unlocked key stays as it was
        inputs["pins"] = hashlib.sha256(json.dumps(sorted(
            (p.name, p.architecture, p.version) for p in pins)).encode()).hexdigest()
    if rootless.active():  # a tarball, not a tree (rootfs/rootless.py)
        inputs["form"] = rootless.BASE_TAR
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    return f"{spec.suite}-{debian_arch}-{spec.variant}-{digest}", inputs


def host_debian_arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()


def refuse_foreign(debian_arch: str) -> None:
    """Refuse, before anything is downloaded for it (the kernel comes first in a build), a
    foreign tree this host cannot build: qemu-user is not registered with binfmt_misc to
    run its maintainer scripts, and later depmod and the roles' tree phase in its chroot
    (so a cached base tree does not help)."""
    from provision9p.host.binfmt import emulation

    emu = emulation(debian_arch)
    if not emu.ok:
        raise BuildError(f"{debian_arch} root trees cannot be built on this "
                         f"{host_debian_arch()} host: {emu.detail}",
                         hint=f"{emu.fix}; then build again")
    if emu.detail != "native" and shutil.which("arch-test") is None \
            and choose_builder(require=False) == "mmdebstrap":
        # mmdebstrap's own check, which it makes only after its downloads
        raise BuildError(f"{debian_arch} root trees cannot be built on this "
                         f"{host_debian_arch()} host: mmdebstrap needs arch-test for a "
                         "foreign architecture",
                         hint="apt-get install arch-test (or `provision9p doctor --install`)"
                              "; then build again")


def base_tree(spec: RootfsSpec, debian_arch: str, mirror: str,
              pins: tuple[Pin, ...] = ()) -> BaseTree:
    """The cached base tree for `spec` (with a lock's `pins`), building it when missing."""
    key, inputs = base_key(spec, debian_arch, mirror, pins)
    target = paths.cache_home() / "trees" / key
    # one build per entry, however many labs ask at once: the others wait, then reuse
    with cache_entry_lock(target, f"the base tree {key}"):
        return _base_tree(spec, debian_arch, mirror, target, key, inputs, pins)


def _base_tree(spec: RootfsSpec, debian_arch: str, mirror: str, target: Path, key: str,
               inputs: dict[str, object], pins: tuple[Pin, ...]) -> BaseTree:
    trees = target.parent
    _reap_orphans(target)
    clean_stale_staging(target)
    if (target / ".provision9p-base.json").is_file():
        return BaseTree(target, key, cached=True)
    refuse_foreign(debian_arch)
    _check_free_space(trees, 2 << 30)
    with staged(target) as staging:
        build_tree(tree_request(spec, debian_arch, mirror, pins), staging,
                   builder=str(inputs["builder"]))
        (staging / ".provision9p-base.json").write_text(json.dumps(inputs, indent=2) + "\n")
    return BaseTree(target, key, cached=False)


def _check_free_space(where: Path, need: int) -> None:
    check_space(where, need, "a base root tree")


def _reap_orphans(target: Path) -> None:
    """Kill what a killed run's debootstrap left running in its staging dir.

    PDEATHSIG reaches the builder itself only; an apt, dpkg or wget it started runs on as an
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
