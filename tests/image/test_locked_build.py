"""Builds with LAB.lock: the locked versions reach the tree, a version neither the mirror
nor the .deb store has is refused before any download, and the store serves a locked
version the mirror's index does not list.

That last case is simulated honestly but not with an old Debian upload (the mirror
serves a suite's current versions only, and no second mirror is at hand): the test
repacks the mirror's iproute2 .deb under a version the index never listed
(`<version>+p9store1`, same files), keeps it in the store, and locks that version with
its sha256. The build's index does not list it, so only the store can serve it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from provision9p.host.mirror import fetch_package, host_mirror, package_index
from provision9p.image import debstore, lock, pins
from provision9p.image.errors import LockError
from provision9p.lab import load_lab
from provision9p.lab.model import RootfsSpec
from provision9p.rootfs.builder import Pin, TreeRequest
from provision9p.rootfs.debootstrap import base_key, base_tree, tree_request
from provision9p.rootfs.metadata.stores import PlainStore
from provision9p.target import resolve

pytestmark = [pytest.mark.network]
# the suite's shared package set (tests/tasks/test_debian_tree.py), so no extra base
SUITE_PACKAGES = ("acl", "python3", "python3-apt")
SPEC = RootfsSpec(packages=SUITE_PACKAGES)
LAB = "name: locked\ndefaults:\n  rootfs:\n    packages: [acl, python3, python3-apt]\n" \
      "guests:\n  web: {}\n"


@pytest.fixture(scope="module")
def mirror() -> str:
    if os.geteuid() != 0:
        pytest.fail("these tests need root (mmdebstrap --mode=root), as CI has")
    return host_mirror()


@pytest.fixture(scope="module")
def base(mirror: str) -> Path:
    return base_tree(SPEC, "amd64", mirror).path


@pytest.fixture()
def locked_lab(base: Path, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A lab and its lock, written from the shared base tree as `provision9p lock` does."""
    lab_file = tmp_path / "lab.yml"
    lab_file.write_text(LAB)
    lab = load_lab(lab_file)
    entry = lock.guest_entry(resolve(lab, lab.guest("web")), PlainStore(base))
    lock.write(lock.lock_path(lab), lab, {"web": entry})
    return lab_file, entry


def test_lock_pins_the_guest_and_its_key(locked_lab: tuple[Path, dict[str, Any]],
                                         base: Path, mirror: str) -> None:
    lab_file, entry = locked_lab
    lab = load_lab(lab_file)
    target = resolve(lab, lab.guest("web"))
    assert {(p.name, p.version) for p in target.pins} == {
        (p["name"], p["version"]) for p in entry["packages"]}
    assert pins.unpinned_reason(lab, lab.guest("web")) == ""
    # the lock's versions are in the base's key (so in the guest's fingerprint)...
    unpinned, _ = base_key(SPEC, "amd64", mirror)
    pinned, _ = base_key(SPEC, "amd64", mirror, target.pins)
    assert pinned != unpinned
    moved = tuple(Pin(p.name, "0" if p.name == "acl" else p.version, p.architecture,
                      p.sha256) for p in target.pins)
    assert base_key(SPEC, "amd64", mirror, moved)[0] != pinned
    # ...and a cached base that already holds exactly those versions is used as it is,
    # under its own key: writing the lock from a built lab does not rebuild its guests
    found = pins.matching_base(SPEC, "amd64", mirror, target.pins)
    assert found is not None and found.path == base
    assert pins.base_pins(target, mirror) == ()
    assert pins.matching_base(SPEC, "amd64", mirror, moved) is None
    entry_moved = {**entry, "packages": [{**p, "version": "0"} if p["name"] == "acl" else p
                                         for p in entry["packages"]]}
    lock.write(lock.lock_path(lab), lab, {"web": entry_moved})
    relocked = resolve(lab, lab.guest("web"))
    assert pins.base_pins(relocked, mirror) == relocked.pins == moved
    # every locked .deb is in the store by its sha256 (lock filled it from the cache)
    assert all(debstore.fetch(p.sha256) for p in target.pins)
    # without a lock, a build says it is not reproducible
    lock.lock_path(lab).unlink()
    assert "not reproducible" in pins.unpinned_reason(lab, lab.guest("web"))
    assert resolve(lab, lab.guest("web")).pins == ()


def test_version_nowhere_is_refused_before_download(
        locked_lab: tuple[Path, dict[str, Any]], mirror: str) -> None:
    _, entry = locked_lab
    fake = [Pin(p["name"], "9:9.9-nosuch" if p["name"] == "acl" else p["version"],
                p["architecture"], "0" * 64 if p["name"] == "acl" else p["sha256"])
            for p in entry["packages"]]
    with pytest.raises(LockError) as err:
        base_tree(SPEC, "amd64", mirror, tuple(fake))
    assert err.value.exit_code == 2
    assert "1 locked package version neither on the mirror" in err.value.message
    assert "acl 9:9.9-nosuch" in err.value.message
    assert "provision9p lock --update" in (err.value.hint or "")
    key, _ = base_key(SPEC, "amd64", mirror, tuple(fake))
    trees = base_tree.__globals__["paths"].cache_home() / "trees"
    assert not (trees / key).exists()
    assert not list(trees.glob(f".{key}.staging-*"))


def _repack(deb: Path, version: str, out: Path) -> Path:
    """The same package under another version (its control file edited, nothing else)."""
    root = out / "root"
    subprocess.run(["dpkg-deb", "-R", str(deb), str(root)], check=True)
    control = root / "DEBIAN" / "control"
    control.write_text(re.sub(r"(?m)^Version: .*$", f"Version: {version}", control.read_text()))
    built = out / "repacked.deb"
    subprocess.run(["dpkg-deb", "-Zxz", "-b", str(root), str(built)], check=True,
                   capture_output=True)
    return built


def test_store_serves_a_version_the_index_does_not_list(
        locked_lab: tuple[Path, dict[str, Any]], mirror: str, tmp_path: Path) -> None:
    _, entry = locked_lab
    real = next(p for p in entry["packages"] if p["name"] == "iproute2")
    version = f"{real['version']}+p9store1"
    index = package_index(arch="amd64", suite="bookworm", mirror=mirror)
    assert version not in {s.version for s in index["iproute2"]}
    deb = fetch_package("iproute2", arch="amd64", suite="bookworm", mirror=mirror)
    sha = debstore.add(_repack(deb, version, tmp_path))
    locked = tuple(Pin(p["name"], version if p is real else p["version"],
                       p["architecture"], sha if p is real else p["sha256"])
                   for p in entry["packages"])
    tree = None
    try:
        tree = base_tree(SPEC, "amd64", mirror, locked).path
        have = pins.installed_versions(tree)
        assert have["iproute2"] == version
        # every package of the tree is the locked one (none came in unpinned)
        assert have == {p.name: p.version for p in locked}
        # the store's repository left nothing behind in the tree
        assert "provision9p-lock-repo" not in (tree / "etc/apt/sources.list").read_text()
        assert not [f for f in os.listdir(tree / "var/lib/apt/lists") if "lock-repo" in f]
        assert not list((tree / "tmp").iterdir())
        assert not (tree / "etc/apt/preferences.d/provision9p-lock").exists()
    finally:
        if tree is not None:  # 300 MB of the shared cache no other test wants
            shutil.rmtree(tree)
        debstore.path_of(sha).unlink(missing_ok=True)


def test_tree_phase_apt_is_pinned_and_checked(base: Path, mirror: str, tmp_path: Path) -> None:
    """The roles' `apt:` in the tree phase sees the lock's preferences; a version apt could
    not honour (the mirror lacks it) fails the build, naming it."""
    from provision9p.connect.tree import TreeConnection
    from provision9p.errors import BuildError
    from provision9p.rootfs.builder import PREFERENCES
    from provision9p.tasks.modules import MODULES, ModuleContext, coerce_args

    tree = tmp_path / "tree"
    subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(tree)], check=True)
    ctx = ModuleContext(check=False, role_path=Path("/nonexistent"), render=lambda t: t)
    real = package_index(arch="amd64", suite="bookworm", mirror=mirror)["hello"][-1].version

    def apt(conn: TreeConnection, **args: Any) -> dict[str, Any]:
        return MODULES["apt"].run(conn, coerce_args("apt", args), ctx)

    def req(*locked: Pin) -> TreeRequest:
        return tree_request(SPEC, "amd64", mirror, locked)

    with TreeConnection(tree, PlainStore(tree), "g") as conn:
        with pins.for_roles(tree, req(Pin("hello", real, "amd64", ""))):
            assert (tree / PREFERENCES).read_text().startswith("Package: hello\n")
            assert apt(conn, name="hello")["changed"]
        assert pins.installed_versions(tree)["hello"] == real
        assert not (tree / PREFERENCES).exists()
        apt(conn, name="hello", state="absent")
        with pytest.raises(BuildError) as err, \
                pins.for_roles(tree, req(Pin("hello", "0.0-gone", "amd64", ""))):
            apt(conn, name="hello")
        assert f"hello {real} (locked 0.0-gone)" in err.value.message
        assert "lock --update" in (err.value.hint or "")
        assert not (tree / PREFERENCES).exists()
        # a version the mirror lost, kept in the .deb store: the roles' apt gets it there
        gone = f"{real}+p9store1"
        deb = fetch_package("hello", arch="amd64", suite="bookworm", mirror=mirror)
        sha = debstore.add(_repack(deb, gone, tmp_path))
        lists = set(os.listdir(tree / "var/lib/apt/lists"))
        apt(conn, name="hello", state="absent")  # the failed try above installed the mirror's
        try:
            with pins.for_roles(tree, req(Pin("hello", gone, "amd64", sha))):
                assert apt(conn, name="hello")["changed"]
            assert pins.installed_versions(tree)["hello"] == gone
            # no trace of the store's repository: sources, lists, files
            assert set(os.listdir(tree / "var/lib/apt/lists")) == lists
            assert not (tree / "var/lib/provision9p-lock-repo").exists()
            assert not [f for f in os.listdir(tree / "etc/apt/sources.list.d")
                        if "provision9p" in f]
        finally:
            debstore.path_of(sha).unlink(missing_ok=True)


def test_the_locked_kernel_is_fetched_or_refused(locked_lab: tuple[Path, dict[str, Any]],
                                                 mirror: str) -> None:
    from provision9p.host.mirror import resolve as resolve_package

    lab_file, entry = locked_lab
    lab = load_lab(lab_file)
    index = package_index(arch="amd64", suite="bookworm", mirror=mirror)
    image = resolve_package("linux-image-amd64", index)
    assert image is not None and image.name != "linux-image-amd64"
    for version in (image.version, "0.0-gone"):
        source = f"{image.name}_{version}_amd64.deb"
        kernel = {"release": "", "source": source, "package": image.name, "version": version,
                  "sha256": "0" * 64}
        lock.write(lock.lock_path(lab), lab, {"web": {**entry, "kernel": kernel}})
        target = resolve(lab, lab.guest("web"))
        if version == image.version:  # the versioned package, not the moving metapackage
            guest, deb = pins.kernel_guest(target, mirror)
            assert guest.kernel.package == image.name and deb is None  # from the mirror
            assert target.guest.kernel.package == "linux-image-amd64"  # the lab as it is
            assert pins.locked_kernel(target) == source  # a guest built from another: stale
            continue
        with pytest.raises(LockError) as err:
            pins.kernel_guest(target, mirror)
        assert err.value.exit_code == 2
        assert f"locked kernel {image.name} 0.0-gone is neither on the mirror" in \
            err.value.message
        assert f"it has {image.version}" in err.value.message


def test_the_store_serves_a_locked_kernel_the_mirror_lost(
        locked_lab: tuple[Path, dict[str, Any]], mirror: str) -> None:
    """The mirror's kernel .deb, locked under a version the index never listed (as after
    the mirror moved on): the build takes the stored file, and it boots-checks as the
    mirror's would."""
    from provision9p import paths
    from provision9p.rootfs.guest_kernel import prepare_kernel

    lab_file, entry = locked_lab
    lab = load_lab(lab_file)
    real = fetch_package("linux-image-amd64", arch="amd64", suite="bookworm", mirror=mirror)
    name = real.name.split("_")[0]
    source = f"{name}_0.0-p9store1_amd64.deb"
    sha = debstore.add(real)
    kernel = {"release": "", "source": source, "package": name, "version": "0.0-p9store1",
              "sha256": sha}
    lock.write(lock.lock_path(lab), lab, {"web": {**entry, "kernel": kernel}})
    target = resolve(lab, lab.guest("web"))
    placed = paths.cache_home() / "debs" / source
    extracted = paths.cache_home() / "kernels" / placed.stem
    try:
        guest, deb = pins.kernel_guest(target, mirror)
        assert guest.kernel.package == name and deb == placed
        assert debstore.file_sha256(placed) == sha
        assert pins.locked_kernel(target) == source  # what the build record will name
        kernel_of = prepare_kernel(guest, mirror, deb=deb)
        assert kernel_of.source == source and kernel_of.report.verdict == "initramfs"
    finally:
        placed.unlink(missing_ok=True)
        shutil.rmtree(extracted, ignore_errors=True)
