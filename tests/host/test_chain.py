"""The signed chain, end to end through the real gpgv: an archive of our own, signed with
a throwaway key, served from a local directory as a file:// mirror; then tampered with
(InRelease, the Packages index, a .deb) and every tampering refused with nothing cached."""

from __future__ import annotations

import hashlib
import lzma
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from provision9p.errors import MirrorError
from provision9p.host import mirror as mirror_mod
from provision9p.host.doctor import TOOLS, check_keyring
from provision9p.host.mirror import fetch_package, host_mirror, package_index, signed_release
from provision9p.host.release import (
    DEBIAN_KEYRING,
    KEYRING_ENV,
    parse_release,
    verify_signature,
)

from .archive import SigningKey, forget, make_key, release_text, write_archive

DEB = b"!<arch>\n" + b"the kernel, not really " * 1000
DEB_PATH = "pool/main/l/linux-signed-amd64/linux-image-6.1.0-50-amd64_6.1.176-1_amd64.deb"


def packages(deb: bytes = DEB) -> str:
    return (
        "Package: linux-image-amd64\nVersion: 6.1.176-1\n"
        "Depends: linux-image-6.1.0-50-amd64 (= 6.1.176-1)\n"
        "Filename: pool/main/l/linux-signed-amd64/linux-image-amd64_6.1.176-1_amd64.deb\n"
        f"Size: 100\nSHA256: {'1' * 64}\n\n"
        "Package: linux-image-6.1.0-50-amd64\nVersion: 6.1.176-1\n"
        f"Filename: {DEB_PATH}\nSize: {len(deb)}\nSHA256: {hashlib.sha256(deb).hexdigest()}\n"
        "Description: Linux 6.1 for 64-bit PCs\n two lines of it\n .\n Package: not a field\n"
    )


class Archive:
    """A file:// mirror in a temporary directory, and the cache it fills."""

    def __init__(self, tmp: Path, key: SigningKey) -> None:
        self.root = tmp / "mirror" / "debian"
        self.url = self.root.as_uri()
        self.cache = tmp / "cache"
        self.key = key
        (self.root / DEB_PATH).parent.mkdir(parents=True)
        (self.root / DEB_PATH).write_bytes(DEB)
        write_archive(self.root, "bookworm", packages(), key)

    @property
    def dists(self) -> Path:
        return self.root / "dists/bookworm"

    def cached(self) -> list[str]:
        """What the cache holds (its locks/ are not cache entries)."""
        return sorted(p.name for p in self.cache.rglob("*")
                      if p.is_file() and p.parent.name != "locks")

    def fetch(self) -> Path:
        return fetch_package("linux-image-amd64", arch="amd64", suite="bookworm",
                             mirror=self.url)


@pytest.fixture
def archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            trusted_key: SigningKey) -> Iterator[Archive]:
    monkeypatch.setenv("PROVISION9P_CACHE", str(tmp_path / "cache"))
    yield Archive(tmp_path, trusted_key)


def test_the_whole_chain_verifies(archive: Archive) -> None:
    deb = archive.fetch()
    assert deb.read_bytes() == DEB
    release = signed_release(suite="bookworm", mirror=archive.url)
    assert release.signer == archive.key.fingerprint
    assert (release.suite, release.codename, release.by_hash) == ("bookworm", "bookworm", False)
    assert "main/binary-amd64/Packages.xz" in release.files
    # a stanza is found by its own Package line, not one quoted in a Description
    index = package_index(arch="amd64", suite="bookworm", mirror=archive.url)
    assert sorted(index) == ["linux-image-6.1.0-50-amd64", "linux-image-amd64"]
    assert index["linux-image-6.1.0-50-amd64"][0].size == len(DEB)


def test_tampered_packages_index_is_refused_and_not_cached(archive: Archive) -> None:
    evil = DEB.replace(b"kernel", b"rootkit")
    (archive.root / DEB_PATH).write_bytes(evil)
    # the attacker rewrites the index to match the new .deb, but cannot re-sign Release
    (archive.dists / "main/binary-amd64/Packages.xz").write_bytes(
        lzma.compress(packages(evil).encode()))
    with pytest.raises(MirrorError) as exc:
        archive.fetch()
    message = str(exc.value)
    assert ("the bookworm/main Packages index for amd64 from file://"
            f"{archive.dists}/main/binary-amd64/Packages.xz does not match: "
            in message)
    assert "where the signed Release of bookworm says" in message
    assert "it was not kept" in message
    # the verified InRelease stays; no index, no .deb, no temporary file
    assert archive.cached() == [n for n in archive.cached() if n.endswith(".InRelease")]
    assert len(archive.cached()) == 1


def test_tampered_deb_is_refused_and_not_cached(archive: Archive) -> None:
    (archive.root / DEB_PATH).write_bytes(DEB.replace(b"kernel", b"rootkt"))  # same size
    with pytest.raises(MirrorError, match=r"linux-image-6\.1\.0-50-amd64 6\.1\.176-1 from "
                       r"file://.*_amd64\.deb does not match: SHA256 [0-9a-f]{64} where the "
                       r"Packages index of bookworm says " + hashlib.sha256(DEB).hexdigest()):
        archive.fetch()
    assert not (archive.cache / "debs").exists() or not any((archive.cache / "debs").iterdir())
    # the real file again: fetched and kept
    (archive.root / DEB_PATH).write_bytes(DEB)
    assert archive.fetch().read_bytes() == DEB


def test_a_cached_deb_is_checked_by_hash_before_reuse(archive: Archive) -> None:
    deb = archive.fetch()
    deb.write_bytes(DEB.replace(b"kernel", b"rootkt"))  # same size, other content
    assert archive.fetch().read_bytes() == DEB


def test_tampered_inrelease_is_refused(archive: Archive) -> None:
    signed = (archive.dists / "InRelease").read_text()
    changed = signed.replace("Codename: bookworm", "Codename: bookwurm")
    (archive.dists / "InRelease").write_text(changed)
    with pytest.raises(MirrorError, match=r"signature of file://.*/InRelease does not verify "
                       r".*a signature is bad") as exc:
        archive.fetch()
    assert exc.value.hint is not None and "rootfs.mirror" in exc.value.hint
    assert archive.cached() == []


def test_text_outside_the_signature_is_never_read(archive: Archive) -> None:
    """A clearsigned file with an unsigned Release prepended: gpgv accepts the signature,
    and only the signed text counts."""
    signed = (archive.dists / "InRelease").read_text()
    forged = release_text("bookworm", {"main/binary-amd64/Packages.xz": b"forged"})
    (archive.dists / "InRelease").write_text(forged + "\n" + signed)
    assert archive.fetch().read_bytes() == DEB


def test_unknown_key_and_unsigned_release(archive: Archive, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    other = make_key("someone-else")
    try:
        write_archive(archive.root, "bookworm", packages(), other)
        with pytest.raises(MirrorError, match="signed by a key not in the keyring"):
            archive.fetch()
    finally:
        forget(other)
    (archive.dists / "InRelease").write_text((archive.dists / "Release").read_text())
    with pytest.raises(MirrorError, match="carries no OpenPGP signature"):
        archive.fetch()
    assert archive.cached() == []


def test_debians_own_keyring_refuses_our_archive(archive: Archive,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    if not DEBIAN_KEYRING.is_file():
        pytest.fail(f"{DEBIAN_KEYRING} is missing: apt-get install debian-archive-keyring")
    monkeypatch.delenv(KEYRING_ENV)
    with pytest.raises(MirrorError, match=f"does not verify against {DEBIAN_KEYRING}: .*"
                       "not in the keyring"):
        archive.fetch()


def test_missing_keyring_says_what_to_install(archive: Archive, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEYRING_ENV, str(tmp_path / "nowhere.gpg"))
    with pytest.raises(MirrorError, match=r"no keyring at .*nowhere\.gpg") as exc:
        archive.fetch()
    assert exc.value.hint is not None and "debian-archive-keyring" in exc.value.hint


def test_release_of_another_suite_is_refused(archive: Archive) -> None:
    """A mirror answering bookworm with trixie's (genuinely signed) Release."""
    write_archive(archive.root, "bookworm", packages(), archive.key, codename="trixie")
    text = (archive.dists / "Release").read_text().replace("Suite: bookworm", "Suite: testing")
    (archive.dists / "InRelease").write_bytes(archive.key.clearsign(text))
    with pytest.raises(MirrorError, match="is for Suite testing, Codename trixie "
                       r"\(not bookworm\)"):
        archive.fetch()


def test_expired_release_is_refused(archive: Archive) -> None:
    write_archive(archive.root, "bookworm", packages(), archive.key,
                  valid_until="Sat, 17 May 2025 08:52:05 UTC")
    with pytest.raises(MirrorError, match=r"expired at Sat, 17 May 2025 .*\(Valid-Until\)"):
        archive.fetch()
    assert archive.cached() == []


def test_valid_until_in_the_future_and_suite_alias() -> None:
    text = release_text("stable", {"main/binary-amd64/Packages.xz": b"x"},
                        codename="bookworm", valid_until="Sat, 17 May 2025 08:52:05 UTC")
    when = datetime(2025, 5, 11, tzinfo=UTC)
    release = parse_release(text, suite="bookworm", origin="here", now=when)
    assert release.valid_until == datetime(2025, 5, 17, 8, 52, 5, tzinfo=UTC)
    assert release.files["main/binary-amd64/Packages.xz"].size == 1
    assert parse_release(text, suite="stable", origin="here", now=when).codename == "bookworm"


def test_weak_digest_is_refused(archive: Archive, tmp_path: Path) -> None:
    signed = tmp_path / "InRelease"
    signed.write_bytes(archive.key.clearsign("Suite: x\n", digest="SHA1"))
    with pytest.raises(MirrorError, match=r"weak digest \(SHA1\)"):
        verify_signature(signed, what="a SHA1-signed file")


def test_by_hash_index_is_fetched_by_its_hash(archive: Archive) -> None:
    """With Acquire-By-Hash the index is fetched by its SHA256: a mirror mid-sync, whose
    plain Packages.xz is already newer than its InRelease, still serves the right one."""
    write_archive(archive.root, "bookworm", packages(), archive.key, by_hash=True)
    index = archive.dists / "main/binary-amd64"
    data = (index / "Packages.xz").read_bytes()
    (index / "by-hash/SHA256").mkdir(parents=True)
    (index / "by-hash/SHA256" / hashlib.sha256(data).hexdigest()).write_bytes(data)
    (index / "Packages.xz").write_bytes(b"a newer index, not yet in InRelease")
    assert archive.fetch().read_bytes() == DEB


def test_by_hash_falls_back_to_the_plain_name(archive: Archive) -> None:
    write_archive(archive.root, "bookworm", packages(), archive.key, by_hash=True)
    assert archive.fetch().read_bytes() == DEB


def test_a_new_release_replaces_the_cached_index(archive: Archive,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    archive.fetch()
    newer = DEB + b"a security update"
    (archive.root / DEB_PATH).write_bytes(newer)
    write_archive(archive.root, "bookworm", packages(newer), archive.key)
    assert archive.fetch().read_bytes() == DEB  # the cached InRelease is fresh (TTL)
    monkeypatch.setattr(mirror_mod, "INDEX_TTL", 0.0)
    assert archive.fetch().read_bytes() == newer
    assert len([n for n in archive.cached() if n.endswith(".Packages.xz")]) == 1


def test_a_bad_fresh_inrelease_does_not_fall_back_on_the_cache(
        archive: Archive, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unreachable mirror falls back on the verified cached InRelease; a mirror that
    serves a bad one is an error, and the good cached copy stays."""
    archive.fetch()
    monkeypatch.setattr(mirror_mod, "INDEX_TTL", 0.0)
    mirror_mod._release_memo.clear()
    inrelease = archive.dists / "InRelease"
    good = inrelease.read_bytes()
    inrelease.write_bytes(good.replace(b"Codename: bookworm", b"Codename: bookwurm"))
    with pytest.raises(MirrorError, match="a signature is bad"):
        archive.fetch()
    assert [n for n in archive.cached() if n.endswith(".InRelease")]
    inrelease.unlink()
    assert archive.fetch().read_bytes() == DEB


@pytest.mark.network
def test_the_real_mirror_verifies_against_debians_keyring(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEYRING_ENV, raising=False)
    monkeypatch.setenv("PROVISION9P_CACHE", str(tmp_path))
    mirror_mod._release_memo.clear()
    release = signed_release(suite="bookworm", mirror=host_mirror())
    assert release.codename == "bookworm" and release.by_hash
    assert "main/binary-amd64/Packages.xz" in release.files
    mirror_mod._release_memo.clear()


def test_doctor_checks_gpgv_and_the_keyring(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    assert any(t[0] == "gpgv" and t[1] == "gpgv" for t in TOOLS)
    monkeypatch.delenv(KEYRING_ENV, raising=False)
    if not DEBIAN_KEYRING.is_file():
        pytest.fail(f"{DEBIAN_KEYRING} is missing: apt-get install debian-archive-keyring")
    found = check_keyring()
    assert (found.ok, found.detail) == (True, str(DEBIAN_KEYRING))
    monkeypatch.setenv(KEYRING_ENV, str(tmp_path / "gone.gpg"))
    gone = check_keyring()
    assert (gone.ok, gone.status, gone.package) == (False, "MISSING", None)
    assert KEYRING_ENV in gone.fix and "gone.gpg" in gone.detail
