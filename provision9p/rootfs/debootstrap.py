"""Base trees, cached by what went into them (the builder is rootfs/builder.py).

The same (builder, suite, arch, variant, components, packages, mirror) gives the same
base tree, so it is built once per host and copied for every guest that wants it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
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
from provision9p.rootfs.builder import TreeRequest, build_tree, choose_builder, merge_packages
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


def tree_request(spec: RootfsSpec, debian_arch: str, mirror: str) -> TreeRequest:
    return TreeRequest(spec.suite, debian_arch, spec.variant, tuple(sorted(spec.components)),
                       merge_packages(BASE_PACKAGES, spec.packages), mirror)


def base_key(spec: RootfsSpec, debian_arch: str, mirror: str) -> tuple[str, dict[str, object]]:
    req = tree_request(spec, debian_arch, mirror)
    inputs: dict[str, object] = {
        "format": BASE_FORMAT, "builder": choose_builder(req.variant, require=False),
        "suite": req.suite, "arch": req.arch, "variant": req.variant,
        "components": list(req.components), "packages": list(req.packages), "mirror": mirror,
    }
    if rootless.active():  # a tarball, not a tree (rootfs/rootless.py)
        inputs["form"] = rootless.BASE_TAR
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
                     "(the builder's second stage would need qemu-user-static and "
                     "binfmt_misc)",
                     hint=f"build the guest on a Debian host of its architecture "
                          f"({debian_arch}), or give it this host's ({host}); "
                          "`provision9p qemu-cmd` still prints its QEMU command")


def base_tree(spec: RootfsSpec, debian_arch: str, mirror: str) -> BaseTree:
    """The cached base tree for `spec`, building it when missing."""
    key, inputs = base_key(spec, debian_arch, mirror)
    target = paths.cache_home() / "trees" / key
    # one build per entry, however many labs ask at once: the others wait, then reuse
    with cache_entry_lock(target, f"the base tree {key}"):
        return _base_tree(spec, debian_arch, mirror, target, key, inputs)


def _base_tree(spec: RootfsSpec, debian_arch: str, mirror: str, target: Path, key: str,
               inputs: dict[str, object]) -> BaseTree:
    trees = target.parent
    _reap_orphans(target)
    clean_stale_staging(target)
    if (target / ".provision9p-base.json").is_file():
        return BaseTree(target, key, cached=True)
    refuse_foreign(spec, debian_arch, mirror)
    _check_free_space(trees, 2 << 30)
    with staged(target) as staging:
        build_tree(tree_request(spec, debian_arch, mirror), staging,
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
