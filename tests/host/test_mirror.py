"""The mirror client: apt sources parsing, index resolution, verified atomic downloads
(against a local HTTP server serving a real Packages.xz and .deb), and the real mirror."""

from __future__ import annotations

import hashlib
import lzma
from collections.abc import Iterator
from pathlib import Path

import pytest

from provision9p.errors import MirrorError
from provision9p.host import mirror as mirror_mod
from provision9p.host.mirror import (
    fetch_package,
    host_mirror,
    package_index,
    parse_packages,
    resolve,
)

from .archive import HttpMirror, SigningKey, write_archive

DEB822 = """\
# a comment
Types: deb-src
URIs: http://src.invalid/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://sec.invalid/debian-security
Suites: bookworm-security
Components: main

Types: deb
URIs: http://off.invalid/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb
URIs: http://main.invalid/debian/
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 -----END PGP PUBLIC KEY BLOCK-----
"""


def test_deb822_sources(tmp_path: Path) -> None:
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text(DEB822)
    assert host_mirror(tmp_path / "absent.list", d) == "http://main.invalid/debian"


def test_classic_sources_list_comes_first(tmp_path: Path) -> None:
    lst = tmp_path / "sources.list"
    lst.write_text("# deb http://commented.invalid/debian bookworm main\n"
                   "deb http://sec.invalid/ bookworm-security main\n"
                   "deb [arch=amd64 signed-by=/k.gpg] https://classic.invalid/debian "
                   "bookworm main non-free\n")
    d = tmp_path / "d"
    d.mkdir()
    (d / "debian.sources").write_text(DEB822)
    assert host_mirror(lst, d) == "https://classic.invalid/debian"


def test_no_mirror_says_to_set_rootfs_mirror(tmp_path: Path) -> None:
    lst = tmp_path / "sources.list"
    lst.write_text("deb http://sec.invalid/debian-security bookworm-security main\n")
    with pytest.raises(MirrorError, match="no Debian mirror") as exc:
        host_mirror(lst, tmp_path / "none")
    assert exc.value.hint is not None and "rootfs.mirror" in exc.value.hint


@pytest.mark.network
def test_this_hosts_mirror() -> None:
    url = host_mirror()
    assert url.startswith(("http://", "https://")) and not url.endswith("/")


INDEX = """\
Package: linux-image-amd64
Version: 6.1.176-1
Depends: linux-image-6.1.0-50-amd64 (= 6.1.176-1)
Filename: pool/main/l/linux-signed-amd64/linux-image-amd64_6.1.176-1_amd64.deb
Size: 1500
SHA256: {meta}

Package: linux-image-6.1.0-50-amd64
Version: 6.1.176-1
Depends: kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool
Filename: pool/main/l/linux-signed-amd64/linux-image-6.1.0-50-amd64_6.1.176-1_amd64.deb
Size: {size}
SHA256: {sha}

Package: broken-hash
Version: 1
Filename: pool/main/b/broken-hash_1_amd64.deb
Size: {size}
SHA256: {bad}
"""


def test_resolve_metapackage() -> None:
    index = parse_packages(INDEX.format(meta="0", size=1, sha="0", bad="0"))
    pkg = resolve("linux-image-amd64", index)
    assert pkg is not None and pkg.name == "linux-image-6.1.0-50-amd64"
    assert pkg.filename.endswith("linux-image-6.1.0-50-amd64_6.1.176-1_amd64.deb")
    assert resolve("nope", index) is None
    assert resolve("broken-hash", index) is not None


@pytest.fixture
def local_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                 trusted_key: SigningKey) -> Iterator[HttpMirror]:
    monkeypatch.setenv("PROVISION9P_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "www"
    deb = b"!<arch>\n" + b"a kernel package, 6 MiB of it" * 220_000
    pool = root / "debian/pool/main/l/linux-signed-amd64"
    pool.mkdir(parents=True)
    (pool / "linux-image-6.1.0-50-amd64_6.1.176-1_amd64.deb").write_bytes(deb)
    (root / "debian/pool/main/b").mkdir(parents=True)
    (root / "debian/pool/main/b/broken-hash_1_amd64.deb").write_bytes(deb)
    text = INDEX.format(meta="0", size=len(deb), sha=hashlib.sha256(deb).hexdigest(),
                        bad="0" * 64)
    write_archive(root / "debian", "bookworm", text, trusted_key)
    m = HttpMirror(root)
    yield m
    m.stop()


def test_fetch_verifies_caches_and_reuses(local_mirror: HttpMirror, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    deb = fetch_package("linux-image-amd64", arch="amd64", suite="bookworm",
                        mirror=local_mirror.url)
    assert deb == tmp_path / "cache/debs/linux-image-6.1.0-50-amd64_6.1.176-1_amd64.deb"
    assert deb.read_bytes().startswith(b"!<arch>\n")
    assert "downloading linux-image-6.1.0-50-amd64 6.1.176-1" in capsys.readouterr().err
    again = fetch_package("linux-image-amd64", arch="amd64", suite="bookworm",
                          mirror=local_mirror.url)
    assert again == deb
    # InRelease is fresh (TTL), the index and the .deb cached: one request each, ever
    assert local_mirror.hits == {
        "/debian/dists/bookworm/InRelease": 1,
        "/debian/dists/bookworm/main/binary-amd64/Packages.xz": 1,
        "/debian/pool/main/l/linux-signed-amd64/linux-image-6.1.0-50-amd64_6.1.176-1_amd64.deb": 1,
    }
    assert sorted(p.suffix for p in (tmp_path / "cache/apt").iterdir()) == [
        ".InRelease", ".json", ".unpacked", ".xz"]


def test_a_later_process_reads_the_kept_unpacked_index(
        local_mirror: HttpMirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = package_index(arch="amd64", suite="bookworm", mirror=local_mirror.url)
    mirror_mod._index_memo.clear()  # as a new process starts

    def no_unpacking(data: bytes) -> bytes:
        raise AssertionError("the index was unpacked again")

    with monkeypatch.context() as m:
        m.setattr(lzma, "decompress", no_unpacking)
        kept = package_index(arch="amd64", suite="bookworm", mirror=local_mirror.url)
        assert dict(kept.positions) == dict(first.positions)
        pkg = resolve("linux-image-amd64", kept)
        assert pkg is not None and pkg.name == "linux-image-6.1.0-50-amd64"
    # positions made from another .xz (or a text cut short) are not used: unpacked anew
    stanzas = next((tmp_path / "cache/apt").glob("*.stanzas.json"))
    stanzas.write_text(stanzas.read_text().replace('"sha256": "', '"sha256": "0'))
    mirror_mod._index_memo.clear()
    calls: list[int] = []
    real = lzma.decompress

    def counted(data: bytes) -> bytes:
        calls.append(1)
        return real(data)

    monkeypatch.setattr(lzma, "decompress", counted)
    again = package_index(arch="amd64", suite="bookworm", mirror=local_mirror.url)
    assert calls == [1] and "linux-image-amd64" in again
    mirror_mod._index_memo.clear()
    assert "linux-image-amd64" in package_index(arch="amd64", suite="bookworm",
                                                mirror=local_mirror.url)
    assert calls == [1]  # the positions written again are good


def test_bad_hash_leaves_no_file(local_mirror: HttpMirror, tmp_path: Path) -> None:
    with pytest.raises(MirrorError, match=r"broken-hash 1 from http://.*_amd64\.deb does "
                       "not match: SHA256 [0-9a-f]{64} where the Packages index of bookworm "
                       "says 0{64}; it was not kept"):
        fetch_package("broken-hash", arch="amd64", suite="bookworm", mirror=local_mirror.url)
    assert list((tmp_path / "cache/debs").iterdir()) == []


def test_unknown_package_and_missing_suite(local_mirror: HttpMirror) -> None:
    with pytest.raises(MirrorError, match="'linux-image-nope' is not in bookworm") as exc:
        fetch_package("linux-image-nope", arch="amd64", suite="bookworm",
                      mirror=local_mirror.url)
    assert exc.value.hint
    with pytest.raises(MirrorError, match="HTTP 404") as exc:
        package_index(arch="amd64", suite="trixie", mirror=local_mirror.url)
    assert exc.value.hint is not None and "suite" in exc.value.hint


def test_stale_index_is_used_when_the_mirror_is_gone(local_mirror: HttpMirror,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    package_index(arch="amd64", suite="bookworm", mirror=local_mirror.url)
    monkeypatch.setattr(mirror_mod, "INDEX_TTL", 0.0)
    local_mirror.server.shutdown()
    local_mirror.server.server_close()
    index = package_index(arch="amd64", suite="bookworm", mirror=local_mirror.url)
    assert "linux-image-amd64" in index


def test_unreachable_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISION9P_CACHE", str(tmp_path))
    with pytest.raises(MirrorError, match=r"cannot fetch http://127\.0\.0\.1:9/") as exc:
        fetch_package("linux-image-amd64", arch="amd64", suite="bookworm",
                      mirror="http://127.0.0.1:9/debian")
    assert exc.value.hint is not None and "rootfs.mirror" in exc.value.hint
    assert list(tmp_path.rglob("*.part")) == []


@pytest.mark.network
def test_real_mirror_unknown_package() -> None:
    with pytest.raises(MirrorError, match="is not in bookworm"):
        fetch_package("linux-image-provision9p-none", arch="amd64", suite="bookworm",
                      mirror=host_mirror())
