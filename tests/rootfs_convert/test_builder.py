"""The tree builder (mmdebstrap) on the real mirror: the suite's shared base tree has what
the pipeline needs, no .debs left in it (they went to the cache), apt in it knows the
suite's packages, it converts to mapped-xattr, and a pinned version reaches apt (a wrong
one is a clear error)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from provision9p import paths
from provision9p.errors import BuildError, HostError
from provision9p.host.mirror import host_mirror
from provision9p.lab.model import RootfsSpec
from provision9p.rootfs.builder import TreeRequest, build_tree, choose_builder, merge_packages
from provision9p.rootfs.debootstrap import BASE_PACKAGES, base_key, base_tree
from provision9p.rootfs.metadata.stores import XattrStore
from provision9p.rootfs.security import security_model

# the suite's shared package set (tests/tasks/test_debian_tree.py), so no extra build
SUITE_PACKAGES = ("acl", "python3", "python3-apt")


def installed(tree: Path) -> dict[str, str]:
    out = subprocess.run(["dpkg-query", f"--admindir={tree}/var/lib/dpkg", "-W",
                          "-f", "${db:Status-Status} ${Package} ${Version}\n"],
                         capture_output=True, text=True, check=True).stdout
    return {p: v for s, p, v in (line.split() for line in out.splitlines()) if s == "installed"}


def test_merge_packages_pins_win() -> None:
    assert merge_packages(("udev", "kmod"), ("kmod=30+20221128-1", "acl", "udev")) == (
        "acl", "kmod=30+20221128-1", "udev")


def test_unknown_builder_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISION9P_BUILDER", "cdebootstrap")
    with pytest.raises(HostError, match="is not a tree builder"):
        choose_builder()


@pytest.mark.network
def test_base_tree_from_mmdebstrap(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root (mmdebstrap --mode=root), as CI has")
    mirror = host_mirror()
    spec = RootfsSpec(packages=SUITE_PACKAGES)
    assert base_key(spec, "amd64", mirror)[1]["builder"] == "mmdebstrap"
    base = base_tree(spec, "amd64", mirror).path
    pkgs = installed(base)
    for name in (*BASE_PACKAGES, *SUITE_PACKAGES, "usr-is-merged"):
        assert name in pkgs, name
    # debootstrap's merged /usr, not the usrmerge package (which pulls perl)
    assert "usrmerge" not in pkgs and "perl" not in pkgs
    assert os.readlink(base / "bin") == "usr/bin"
    # no .debs or caches left; the package lists stay for offline `apt: name=...`
    assert not list((base / "var/cache/apt").rglob("*.deb"))
    assert not list((base / "var/cache/apt").glob("*.bin"))
    assert list((base / "var/lib/apt/lists").glob("*_Packages*"))
    assert not (base / "usr/bin/eatmydata").exists()
    assert "dpkg" in os.listdir(base / "usr/bin")
    # (no pkgcache.bin written: the base is shared)
    hello = subprocess.run(["chroot", str(base), "apt-cache", "-o", "Dir::Cache::pkgcache=",
                            "-o", "Dir::Cache::srcpkgcache=", "policy", "hello"],
                           capture_output=True, text=True, check=True).stdout
    assert "Candidate: " in hello and "Candidate: (none)" not in hello, hello
    cached = {p.name.split("_")[0] for p in (paths.cache_home() / "mmdebstrap-debs").glob("*.deb")}
    assert {"openssh-server", "python3-apt"} <= cached
    # the rest of the pipeline accepts it: the mapped-xattr conversion of a copy
    tree = tmp_path / "tree"
    subprocess.run(["cp", "-a", str(base), str(tree)], check=True)
    report = security_model("mapped-xattr").convert(tree, host_uid=os.getuid(),
                                                    host_gid=os.getgid())
    assert report is not None and sum(report.counts.values()) > 5000
    st = XattrStore(tree).lstat("usr/bin/passwd")
    assert st.uid == 0 and st.mode & 0o4000
    assert XattrStore(tree).readlink("bin") == "usr/bin"


@pytest.mark.network
def test_pinned_version_reaches_apt(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root (mmdebstrap --mode=root), as CI has")
    req = TreeRequest("bookworm", "amd64", "minbase", ("main",),
                      merge_packages(BASE_PACKAGES, ["acl=0.0-nosuch"]), host_mirror())
    target = tmp_path / "tree"
    target.mkdir()
    with pytest.raises(BuildError, match="could not find a package") as exc:
        build_tree(req, target)
    assert "acl" in str(exc.value)
    shutil.rmtree(target)


@pytest.mark.tree
def test_a_build_that_cannot_be_contained_says_what_it_needs(tmp_path: Path) -> None:
    """contain.py's own failure (here a directory to write that is not there) is a host
    problem with its fix, not mmdebstrap's exit status."""
    from provision9p.rootfs import builder, contain

    if os.geteuid() != 0:
        pytest.fail("this test needs root, as CI has")
    argv = contain.build_argv([tmp_path / "gone"], [], "h", ["true"])
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == contain.SETUP_FAILED, done.stderr
    with pytest.raises(HostError, match=r"could not be contained: provision9p: cannot "
                                        r"contain .*gone: No such file") as exc:
        builder._raise_for("mmdebstrap", done.returncode, done.stderr.splitlines(), tmp_path)
    assert "id-mapped" in str(exc.value)
