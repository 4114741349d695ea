"""Progress output: plain prefixed lines when not a terminal (CI logs), colour and live
lines only on a terminal, never colour with NO_COLOR."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from typing import TextIO

import pytest

from provision9p import ui


@pytest.fixture(autouse=True)
def _loud() -> Iterator[None]:
    ui.set_quiet(False)
    yield
    ui.set_quiet(False)


@pytest.mark.parametrize(("message", "guest", "line"), [
    ("==> web: boot", "web", "[web] boot"),
    ("    web: kernel after 2.4 s", "web", "[web]   kernel after 2.4 s"),
    ("    cached: /var/cache/x", "web", "[web]   cached: /var/cache/x"),
    ("==> verify web: 2 share(s)", "web", "[web] verify web: 2 share(s)"),
    ("webby: not the guest's name", "web", "[web] webby: not the guest's name"),
    ("==> web: boot", None, "==> web: boot"),
])
def test_format_line(message: str, guest: str | None, line: str) -> None:
    assert ui.format_line(message, guest) == line


def test_plain_lines_carry_the_guest(capsys: pytest.CaptureFixture[str]) -> None:
    with ui.guest("db"):
        with ui.step("db: boot"):
            ui.info("    db: kernel after 2.0 s")
        ui.warn("db: slow")
    ui.info("no guest here")
    lines = capsys.readouterr().err.splitlines()
    assert lines[:3] == ["[db] boot", "[db]   kernel after 2.0 s", lines[2]]
    assert lines[2].startswith("[db] boot: done in ") and lines[2].endswith(" s")
    assert lines[3:] == ["[db] warning: slow", "no guest here"]


def test_quiet_keeps_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    ui.set_quiet(True)
    with ui.step("x"):
        ui.info("y")
    ui.warn("z")
    assert capsys.readouterr().err == "warning: z\n"


def test_board_prefixes_what_threads_print_to_stderr(
        capsys: pytest.CaptureFixture[str]) -> None:
    def work(name: str) -> None:
        with ui.guest(name):
            for i in range(50):
                # what other code prints, in pieces, from several threads at once
                sys.stderr.write(f"    changed: task {i}")
                sys.stderr.write(f" of {name}\n")

    with ui.board(["a", "b"]):
        threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 100
    for name in ("a", "b"):
        mine = [line for line in lines if line.startswith(f"[{name}]")]
        assert mine == [f"[{name}]   changed: task {i} of {name}" for i in range(50)]
    assert sys.stderr is not None and not isinstance(sys.stderr, ui._GuestStream)


class Pty:
    """A pseudo-terminal as stderr, to see what a person at a terminal would."""

    def __init__(self) -> None:
        self.master, slave = os.openpty()
        self.stream: TextIO = open(slave, "w", encoding="utf-8")  # noqa: SIM115

    def read(self) -> str:
        self.stream.flush()
        os.set_blocking(self.master, False)
        chunks = []
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def close(self) -> None:
        self.stream.close()
        os.close(self.master)


@pytest.fixture
def tty(monkeypatch: pytest.MonkeyPatch) -> Iterator[Pty]:
    """The terminal as stderr; call `install()` in the test body (pytest's own capture
    sets sys.stderr again between a fixture's setup and the test)."""
    pty = Pty()
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    pty.install = lambda: monkeypatch.setattr(sys, "stderr", pty.stream)  # type: ignore[attr-defined]
    yield pty
    pty.close()


def test_colour_on_a_terminal(tty: Pty) -> None:
    tty.install()  # type: ignore[attr-defined]
    assert ui.interactive() and ui.colour_allowed()
    with ui.guest("web"):
        ui.warn("hot")
    out = tty.read()
    assert "\x1b[" in out and "hot" in out


def test_no_colour_with_no_color(tty: Pty, monkeypatch: pytest.MonkeyPatch) -> None:
    tty.install()  # type: ignore[attr-defined]
    monkeypatch.setenv("NO_COLOR", "1")
    assert ui.interactive() and not ui.colour_allowed()
    with ui.guest("web"):
        ui.warn("hot")
        ui.info("==> web: boot")
    out = tty.read()
    assert "\x1b[" not in out
    assert "[web] warning: hot" in out and "[web] boot" in out


def test_dumb_terminal_is_plain(tty: Pty, monkeypatch: pytest.MonkeyPatch) -> None:
    tty.install()  # type: ignore[attr-defined]
    monkeypatch.setenv("TERM", "dumb")
    assert not ui.interactive()
    ui.warn("hot")
    assert tty.read().replace("\r\n", "\n") == "warning: hot\n"


def test_live_board_and_download_bar_on_a_terminal(tty: Pty) -> None:
    tty.install()  # type: ignore[attr-defined]
    with ui.board(["web", "db"]):
        with ui.guest("web"):
            ui.guest_started("web")
            with ui.step("web: base tree"), ui.download("linux-image-amd64", 8 * 2**20) as adv:
                for _ in range(8):
                    adv(2**20)
                assert ui._board is not None
                board_text = _render(ui._board)
        ui.guest_finished("web", "up", True)
    out = tty.read()
    assert "web" in board_text and "base tree" in board_text and "db" in board_text
    assert "linux-image-amd64" in board_text and "MB" in board_text  # bytes, with a rate
    assert "linux-image-amd64: 8.0 MiB in" in out


def _render(board: object) -> str:
    from rich.console import Console

    console = Console(width=120, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(board.render())  # type: ignore[attr-defined]
    return console.export_text()


def test_steps_of_two_threads_end_in_any_order(tty: Pty) -> None:
    # the kernel's thread (jobs.beside) and the base tree's step are both on web's line;
    # whichever ends first takes only its own step off
    tty.install()  # type: ignore[attr-defined]
    with ui.board(["web"]):
        assert ui._board is not None
        row = ui._board.rows["web"]
        with ui.guest("web"):
            outer = ui.step("web: base tree")
            outer.__enter__()
            inner = ui.step("web: extracting linux-image.deb")
            inner.__enter__()
            outer.__exit__(None, None, None)  # the base tree is done first
            assert [text for text, _ in row.steps] == ["extracting linux-image.deb"]
            inner.__exit__(None, None, None)
            assert row.steps == []
