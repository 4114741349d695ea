"""Downloads under parallel `up`: several threads want the same cache entries at once,
and every download of size reports its progress."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from provision9p.host import mirror as mirror_mod
from provision9p.host.mirror import PROGRESS_MIN, fetch_package
from provision9p.host.release import Expected

from .archive import SigningKey
from .test_chain import DEB, Archive

pytestmark = pytest.mark.tree


def test_guests_fetching_at_once_share_one_verified_copy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trusted_key: SigningKey) -> None:
    monkeypatch.setenv("PROVISION9P_CACHE", str(tmp_path / "cache"))
    archive = Archive(tmp_path, trusted_key)
    got: list[Path] = []
    errors: list[BaseException] = []
    go = threading.Barrier(4)

    def guest() -> None:
        go.wait()
        try:
            got.append(fetch_package("linux-image-amd64", arch="amd64", suite="bookworm",
                                     mirror=archive.url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guest) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(got)) == 1 and got[0].read_bytes() == DEB
    names = archive.cached()
    # one InRelease, one index (with its unpacked form and stanza positions), one .deb:
    # no second copy, no .part or .unverified left
    assert len(names) == 5, names
    assert not [n for n in names if n.startswith(".")]


@contextmanager
def recorder(calls: list[tuple[str, int, int]], what: str,
             total: int) -> Iterator[Callable[[int], None]]:
    seen = 0

    def advance(n: int) -> None:
        nonlocal seen
        seen += n
    yield advance
    calls.append((what, total, seen))


def _file(path: Path, size: int) -> Expected:
    data = os.urandom(size)
    path.write_bytes(data)
    return Expected(hashlib.sha256(data).hexdigest(), size, "the test")


def test_a_big_download_reports_every_byte(tmp_path: Path) -> None:
    size = PROGRESS_MIN + 3 * 2**20 + 17
    expected = _file(tmp_path / "big.deb", size)
    calls: list[tuple[str, int, int]] = []
    dest = tmp_path / "cache" / "big.deb"
    mirror_mod._download((tmp_path / "big.deb").as_uri(), dest, what="big 1.0",
                         expected=expected,
                         progress=lambda what, total: recorder(calls, what, total))
    assert calls == [("big 1.0", size, size)]
    assert dest.stat().st_size == size


def test_a_small_download_reports_nothing(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    expected = _file(tmp_path / "InRelease", 4096)
    calls: list[tuple[str, int, int]] = []
    mirror_mod._download((tmp_path / "InRelease").as_uri(), tmp_path / "out", what="small",
                         expected=expected,
                         progress=lambda what, total: recorder(calls, what, total))
    mirror_mod._download((tmp_path / "InRelease").as_uri(), tmp_path / "out2", what="small")
    assert calls == []
    assert capsys.readouterr().err == ""


def test_plain_download_lines_when_not_a_terminal(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    size = 8 * 2**20
    expected = _file(tmp_path / "k.deb", size)
    mirror_mod._download((tmp_path / "k.deb").as_uri(), tmp_path / "c" / "k.deb",
                         what="linux-image-x 1", expected=expected)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "    downloading linux-image-x 1 (8.0 MiB)"
    # a line at each quarter (reads are 1 MiB), then size, time and rate
    assert lines[1:4] == ["         2.0 / 8.0 MiB", "         4.0 / 8.0 MiB",
                          "         6.0 / 8.0 MiB"]
    assert lines[4].startswith("    linux-image-x 1: 8.0 MiB in ") and lines[4].endswith("MiB/s)")
    assert "\x1b[" not in "".join(lines)
