"""A lock's versions in a build: which apply to a guest, where each comes from, and a
check that the tree got them.

The lock pins versions, not a package list: apt preferences (rootfs/builder.py) make
each locked version the candidate for whatever the base installs. A version the mirror's
signed index still lists comes from the mirror; one it no longer lists comes from the
.deb store (image/debstore.py) as a local repository, checked by the lock's sha256; one
that is in neither is an error before anything is downloaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from debian import deb822

from provision9p import paths, ui
from provision9p.errors import BuildError
from provision9p.host.mirror import package_index
from provision9p.image import debstore, lock
from provision9p.image.errors import LockError
from provision9p.lab.model import GuestSpec, LabSpec, RootfsSpec
from provision9p.rootfs import contain
from provision9p.rootfs.builder import PREFERENCES, Pin, TreeRequest, preferences
from provision9p.rootfs.debootstrap import BaseTree, base_key, base_tree
from provision9p.target import Target


def for_guest(lab: LabSpec, guest: GuestSpec) -> tuple[Pin, ...]:
    """The lock's versions for the guest; () without a lock, or when it does not fit."""
    entry, _ = _entry(lab, guest)
    if entry is None:
        return ()
    return tuple(Pin(p["name"], str(p["version"]), p["architecture"], p.get("sha256", ""))
                 for p in entry.get("packages", [])
                 if p.get("architecture") in (guest.debian_arch, "all"))


def unpinned_reason(lab: LabSpec, guest: GuestSpec) -> str:
    """Why a guest's build is not pinned (one line for the build to print), or ""."""
    return _entry(lab, guest)[1]


def _entry(lab: LabSpec, guest: GuestSpec) -> tuple[dict[str, Any] | None, str]:
    if guest.rootfs.image is not None:  # the image is the lock
        return None, ""
    path = lock.lock_path(lab)
    if not path.is_file():
        return None, (f"no {path.name}: this build is not reproducible "
                      "(`provision9p lock` pins its packages)")
    data = lock.read(path)
    mine = (f"guest {guest.name}:", f"guest {guest.name} ")
    problems = [p for p in lock.mismatches(lab, data) if p.startswith(mine)]
    if problems:
        return None, (f"{path.name} does not fit {guest.name} ({problems[0]}): built "
                      "unpinned, not reproducible; `provision9p lock --update` afterwards")
    entry: dict[str, Any] = data["guests"][guest.name]
    return entry, ""


def locked_kernel(target: Target) -> str:
    """The file name of the kernel .deb the lock names ("" when none): a built guest whose
    kernel came from another .deb is not current."""
    entry, _ = _entry(target.lab, target.guest) if target.pins else (None, "")
    kernel = (entry or {}).get("kernel") or {}
    return str(kernel.get("source", "")) if kernel.get("package") else ""


def kernel_guest(target: Target, mirror: str) -> tuple[GuestSpec, Path | None]:
    """The guest with its kernel package pinned to the lock's: the versioned image package
    (linux-image-6.1.0-NN-amd64) instead of the metapackage, which follows the mirror; and
    the .deb itself when the mirror no longer lists that version but the .deb store holds
    it (by the lock's sha256), else None (fetch it from the mirror). A locked kernel in
    neither place is an error. Unchanged without a lock, or for a kernel of the lab's own."""
    guest = target.guest
    entry, _ = _entry(target.lab, guest) if target.pins else (None, "")
    kernel = (entry or {}).get("kernel") or {}
    name, version = kernel.get("package"), kernel.get("version")
    if guest.kernel.image is not None or not name or not version or name == guest.kernel.package:
        return guest, None
    pinned = dataclasses.replace(guest, kernel=dataclasses.replace(guest.kernel, package=name))
    found = [s.version for c in guest.rootfs.components
             for s in package_index(arch=guest.debian_arch, suite=guest.kernel_suite,
                                    mirror=mirror, component=c).get(name, [])]
    if found[-1:] == [version]:
        return pinned, None
    stored = debstore.fetch(str(kernel.get("sha256", "")))
    if stored is not None:
        ui.info(f"    from the .deb store (no longer on the mirror): {name} {version}")
        # under the mirror's file name, the one the lock and the build record carry
        source = Path(str(kernel.get("source", ""))).name
        if not source.endswith(".deb"):
            source = debstore.cached_name(name, version, guest.debian_arch)
        return pinned, debstore.place(stored, paths.cache_home() / "debs" / source)
    raise LockError(f"the locked kernel {name} {version} is neither on the mirror "
                    f"({guest.kernel_suite} at {mirror}"
                    f"{': it has ' + found[-1] if found else ''}) nor in the .deb store "
                    f"({debstore.store_dir()})",
                    hint="to move to the mirror's kernel, set the lock aside, rebuild "
                         "(`provision9p rootfs build --force`) and run "
                         "`provision9p lock --update`; or put that .deb into the store")


_AUTOMOUNT = "/usr/share/mmdebstrap/hooks/file-mirror-automount"


def _not_on_mirror(req: TreeRequest) -> list[Pin]:
    indexes = [package_index(arch=req.arch, suite=req.suite, mirror=req.mirror, component=c)
               for c in req.components]
    return [p for p in req.pins
            if not any(s.version == p.version for i in indexes for s in i.get(p.name, []))]


@contextlib.contextmanager
def sources(req: TreeRequest) -> Iterator[tuple[list[str], list[str]]]:
    """Extra apt sources and mmdebstrap hooks that serve the pins the mirror lost.

    Refuses (exit 2) before any download when a pinned version is neither on the
    mirror nor in the store."""
    missing = _not_on_mirror(req)
    if not missing:
        yield [], []
        return
    gone = [p for p in missing if debstore.fetch(p.sha256) is None]
    if gone:
        names = ", ".join(f"{p.name} {p.version}" for p in gone[:12])
        more = f" and {len(gone) - 12} more" if len(gone) > 12 else ""
        raise LockError(
            f"{len(gone)} locked package version{'s' if len(gone) != 1 else ''} "
            f"neither on the mirror ({req.suite} at {req.mirror}) nor in the .deb store "
            f"({debstore.store_dir()}): {names}{more}",
            hint="to move to the mirror's versions, set the lock aside, rebuild "
                 "(`provision9p rootfs build --force`) and run `provision9p lock --update`; "
                 "or put those .debs into the store")
    # in /tmp: the hook bind-mounts it at the same path in the tree, whose /tmp exists,
    # so only the mount point itself is left to remove
    repo = Path(tempfile.mkdtemp(prefix="provision9p-lock-repo-", dir="/tmp"))
    try:
        debstore.write_repository([debstore.StoredDeb(p.name, p.version, p.architecture,
                                                      p.sha256) for p in missing],
                                  repo, suite=req.suite)
        ui.info(f"    from the .deb store (no longer on the mirror): "
                f"{', '.join(f'{p.name} {p.version}' for p in missing)}")
        # the source and its lists go once the packages are in: the tree's apt sees the
        # mirror only, as an unpinned build's does
        # apt names the lists after the URI with '_' quoted as %5f, and mkdtemp's suffix
        # may hold '_': match on the fixed prefix, which no other source carries
        hook = (f'sed -i "\\|{repo}|d" "$1/etc/apt/sources.list" && '
                f'rm -f "$1"/var/lib/apt/lists/*provision9p-lock-repo-* && rmdir "$1{repo}"')
        # mmdebstrap's own hook bind-mounts a file:// source for apt inside the chroot
        yield [f"deb [trusted=yes] file://{repo} ./"], [
            f"--hook-dir={_AUTOMOUNT}", f"--customize-hook={hook}"]
    finally:
        shutil.rmtree(repo, ignore_errors=True)


def installed_versions(tree: Path) -> dict[str, str]:
    """name -> version of what dpkg has installed in a plain tree."""
    status = tree / "var/lib/dpkg/status"
    out = {}
    with status.open(encoding="utf-8", errors="replace") as f:
        for para in deb822.Packages.iter_paragraphs(f, use_apt_pkg=False):
            if para.get("Status", "").split()[-1:] == ["installed"]:
                out[para["Package"]] = para.get("Version", "")
    return out


def _off_lock(pins: Sequence[Pin], tree: Path) -> list[str]:
    have = installed_versions(tree)
    return [f"{p.name} {have[p.name]} (locked {p.version})" for p in pins
            if p.name in have and have[p.name] != p.version]


def check_tree(req: TreeRequest, tree: Path) -> None:
    """Every locked package the build installed has its locked version."""
    if wrong := _off_lock(req.pins, tree):
        raise BuildError("the build did not install the locked versions: " +
                         ", ".join(wrong[:12]),
                         hint="apt chose other versions; report it with the lines above")


@contextlib.contextmanager
def for_roles(tree: Path, req: TreeRequest) -> Iterator[None]:
    """The lock's versions for the tree-phase roles' `apt:` installs too (the same apt
    preferences, in the tree while the roles run), checked afterwards. A locked version
    the mirror no longer lists comes from the .deb store, through a flat repository
    inside the tree that is gone again afterwards (sources, lists and files)."""
    if not req.pins:
        yield
        return
    prefs = tree / PREFERENCES
    prefs.parent.mkdir(parents=True, exist_ok=True)
    prefs.write_text(preferences(req.pins))
    try:
        with _store_repository(tree, req):
            yield
    finally:
        prefs.unlink(missing_ok=True)
    if wrong := _off_lock(req.pins, tree):
        raise BuildError("the tree-phase roles installed other versions than the lock's: " +
                         ", ".join(wrong[:12]),
                         hint="neither the mirror nor the .deb store has them; set the lock "
                              "aside, rebuild (`provision9p rootfs build --force`) and run "
                              "`provision9p lock --update`")


_TREE_REPO = "var/lib/provision9p-lock-repo"
_TREE_SOURCE = "etc/apt/sources.list.d/provision9p-lock-repo.list"


@contextlib.contextmanager
def _store_repository(tree: Path, req: TreeRequest) -> Iterator[None]:
    """The stored .debs of the pins the mirror lost, as an apt source of the tree (with
    its lists fetched, so an install without update_cache sees it), while the roles run.
    A pin in neither place is left to apt: the check after the roles names it."""
    stored = [p for p in _not_on_mirror(req) if debstore.fetch(p.sha256) is not None]
    if not stored:
        yield
        return
    repo, source = tree / _TREE_REPO, tree / _TREE_SOURCE
    try:
        debstore.write_repository([debstore.StoredDeb(p.name, p.version, p.architecture,
                                                      p.sha256) for p in stored],
                                  repo, suite=req.suite)
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(f"deb [trusted=yes] file:/{_TREE_REPO} ./\n")
        ui.info("    from the .deb store (no longer on the mirror), for the roles: "
                f"{', '.join(f'{p.name} {p.version}' for p in stored)}")
        # only this source's lists: the mirror's stay as the base left them
        proc = contain.run(
            tree, ["/usr/bin/apt-get", "update", "-q",
                   f"-o=Dir::Etc::sourcelist=/{_TREE_SOURCE}", "-o=Dir::Etc::sourceparts=-",
                   "-o=APT::Get::List-Cleanup=0"])
        if proc.returncode != 0:
            raise BuildError("apt could not read the .deb store's repository in the tree: "
                             + (proc.stderr or proc.stdout).decode(errors="replace").strip(),
                             hint="report it with the lines above")
        yield
    finally:
        source.unlink(missing_ok=True)
        for lists in (tree / "var/lib/apt/lists").glob("*provision9p-lock-repo*"):
            lists.unlink(missing_ok=True)
        shutil.rmtree(repo, ignore_errors=True)


def matching_base(spec: RootfsSpec, debian_arch: str, mirror: str,
                  pins: Sequence[Pin]) -> BaseTree | None:
    """The cached unpinned base tree when it already holds exactly the locked versions
    (the usual case right after `lock`): no second build of the same tree."""
    key, _ = base_key(spec, debian_arch, mirror)
    path = paths.cache_home() / "trees" / key
    if not (path / ".provision9p-base.json").is_file():
        return None
    want = {p.name: p.version for p in pins}
    have = installed_versions(path)
    if all(want.get(name) == version for name, version in have.items()):
        return BaseTree(path, key, cached=True)
    return None


def base_pins(target: Target, mirror: str) -> tuple[Pin, ...]:
    """The pins the guest's base tree is keyed by (so its fingerprint): the lock's, or ()
    when the cached unpinned base already holds exactly them; so writing a lock from a
    built lab does not rebuild (nor restart) its guests, while a changed lock does."""
    pins = target.pins
    if pins and matching_base(target.guest.rootfs, target.guest.debian_arch, mirror, pins):
        return ()
    return pins


def base_for(target: Target, mirror: str) -> BaseTree:
    """The guest's base tree: pinned to its lock when it has one; without, said once."""
    guest = target.guest
    if not target.pins:
        if why := unpinned_reason(target.lab, guest):
            ui.warn(why)
    else:
        ui.info(f"    {len(target.pins)} package versions from "
                f"{lock.lock_path(target.lab).name}")
    return base_tree(guest.rootfs, guest.debian_arch, mirror, base_pins(target, mirror))
