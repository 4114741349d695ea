"""Fixtures for the mirror tests: an archive key of our own, trusted in place of Debian's."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from provision9p.host import mirror as mirror_mod
from provision9p.host.release import KEYRING_ENV

from .archive import SigningKey, forget, make_key


@pytest.fixture(scope="session")
def archive_key() -> Iterator[SigningKey]:
    key = make_key("archive")
    yield key
    forget(key)


@pytest.fixture
def trusted_key(archive_key: SigningKey, monkeypatch: pytest.MonkeyPatch
                ) -> Iterator[SigningKey]:
    """The archive key as the only trusted keyring; fresh in-process memos."""
    monkeypatch.setenv(KEYRING_ENV, str(archive_key.keyring))
    mirror_mod._release_memo.clear()
    mirror_mod._index_memo.clear()
    yield archive_key
    mirror_mod._release_memo.clear()
    mirror_mod._index_memo.clear()
