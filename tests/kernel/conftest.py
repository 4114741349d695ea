"""Real Debian kernel packages, fetched through the host's mirror into the real cache
(so reruns reuse them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision9p.host.mirror import fetch_package, host_mirror

SUITE = "bookworm"


@pytest.fixture(scope="session")
def mirror() -> str:
    return host_mirror()


@pytest.fixture(scope="session")
def amd64_deb(mirror: str) -> Path:
    return fetch_package("linux-image-amd64", arch="amd64", suite=SUITE, mirror=mirror)


@pytest.fixture(scope="session")
def cloud_deb(mirror: str) -> Path:
    return fetch_package("linux-image-cloud-amd64", arch="amd64", suite=SUITE, mirror=mirror)


@pytest.fixture(scope="session")
def amd64_tree(amd64_deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The amd64 kernel package extracted, as a root tree would hold it.

    Kept in the cache beside the .deb it came from (the tests only read it): extracting
    ~400 MB of modules is most of the quick test ring's time otherwise.
    """
    from provision9p.kernel import extract_deb

    root = amd64_deb.with_name(f"{amd64_deb.name}.test-tree")
    if root.is_dir():
        return root
    staging = tmp_path_factory.mktemp("linux-image-amd64")
    extract_deb(amd64_deb, staging)
    try:
        staging.rename(root)  # whole or absent; another file system or a racing run: keep ours
    except OSError:
        return staging
    return root
