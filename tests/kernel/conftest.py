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
    """The amd64 kernel package extracted, as a root tree would hold it."""
    from provision9p.kernel import extract_deb

    root = tmp_path_factory.mktemp("linux-image-amd64")
    extract_deb(amd64_deb, root)
    return root
