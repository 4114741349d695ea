"""Output for people: progress on stderr (stdout stays for results).

Two faces, chosen by whether stderr is a terminal:
- a terminal gets rich: colour (never with NO_COLOR), while a board is up (`up`, `down`)
  a live line per guest with its current step and time, and download bars with bytes
  and rate;
- anything else (CI logs, pipes, files) gets plain lines, prefixed with the guest they
  are about (`[web] boot: done in 13.2 s`), stable enough to grep.

Several guests work at once in threads: each worker names its guest (`guest(name)`), and
every line it prints (through here, or through sys.stderr while a board is up) carries
that name, so interleaved lines still say whose they are.
"""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

_quiet = False
_debug = False
_lock = threading.RLock()
_local = threading.local()
_board: _Board | None = None
_consoles: dict[int, Console] = {}
# Colours a guest's prefix cycles through on a terminal (one guest, one colour).
_PALETTE = ("cyan", "magenta", "green", "blue", "yellow", "bright_cyan", "bright_magenta")


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def quiet() -> bool:
    return _quiet


def set_debug(debug: bool) -> None:
    """--debug: tracebacks of a guest's unexpected error are shown too."""
    global _debug
    _debug = debug


def debug() -> bool:
    return _debug


def interactive(stream: TextIO | None = None) -> bool:
    """Live lines and bars only on a real terminal (TERM=dumb is none)."""
    stream = stream if stream is not None else sys.stderr
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        return False
    return tty and os.environ.get("TERM", "") != "dumb"


def colour_allowed(stream: TextIO | None = None) -> bool:
    """Colour on a terminal only, and never with NO_COLOR set (to anything: no-color.org)."""
    return interactive(stream) and "NO_COLOR" not in os.environ


def _console_for(stream: TextIO) -> Console:
    console = _consoles.get(id(stream))
    if console is None or console.file is not stream:
        term = interactive(stream)
        console = Console(file=stream, force_terminal=term, no_color=not colour_allowed(stream),
                          color_system="auto" if colour_allowed(stream) else None,
                          highlight=False, markup=False, emoji=False, soft_wrap=True)
        _consoles[id(stream)] = console
    return console


def _after_fork_in_child() -> None:
    """A forked child (a normal user's build, rootfs/rootless.py) prints plain lines: the
    live board, its refresh thread and any lock another thread held at the fork stay
    with the parent. (subprocess does not fork through os.fork, so this is not run.)"""
    global _lock, _board
    _lock = threading.RLock()
    if _board is not None:
        sys.stderr = _board.real_err
    _board = None
    _consoles.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


# --- which guest a thread works for ------------------------------------------------------


def current_guest() -> str | None:
    return getattr(_local, "guest", None)


@contextmanager
def guest(name: str) -> Iterator[None]:
    """Lines this thread prints from here on are about `name`."""
    before = current_guest()
    _local.guest = name
    try:
        yield
    finally:
        _local.guest = before


def format_line(message: str, guest_name: str | None) -> str:
    """The plain form of a progress line: `[guest] message`, the guest's name not repeated.

    Stages write `==> web: boot` or `    web: kernel after 2.4 s`; under a guest prefix the
    arrow and the name go, an indented detail stays indented by two."""
    if guest_name is None:
        return message
    body = message.lstrip(" ")
    indented = len(body) < len(message)
    if body.startswith("==> "):
        body, indented = body[4:], False
    if body.startswith(f"{guest_name}: "):
        body = body[len(guest_name) + 2:]
    return f"[{guest_name}] {'  ' if indented else ''}{body}"


def _emit(message: str, *, style: str = "", err_word: str = "") -> None:
    """Print one line (or several) on the progress stream, each with its guest prefix."""
    name = current_guest()
    with _lock:
        board = _board
        stream = board.real_err if board is not None else sys.stderr
        console = board.console if board is not None else _console_for(stream)
        for raw in message.splitlines() or [""]:
            line = format_line(raw, name)
            text = Text()
            if name is not None and line.startswith(f"[{name}] "):
                text.append(f"[{name}]", style=_guest_style(name))
                text.append(" ")
                line = line[len(name) + 3:]
            if err_word:
                text.append(err_word, style="bold yellow")
            text.append(line, style=style)
            console.print(text)
        stream.flush()


def _guest_style(name: str) -> str:
    board = _board
    order = board.names if board is not None else []
    index = order.index(name) if name in order else sum(map(ord, name))
    return f"bold {_PALETTE[index % len(_PALETTE)]}"


def info(message: str) -> None:
    """A progress line for people (stderr, so stdout stays for results)."""
    if not _quiet:
        _emit(message)


def warn(message: str) -> None:
    _emit(message, err_word="warning: ")


@contextmanager
def step(title: str) -> Iterator[None]:
    """Every stage that can take seconds says so, and how long it took.

    Plain: `==> title` ... `    done in 3.2 s` (with a guest: `[web] title` ...
    `[web] title: done in 3.2 s`); on a board, the guest's live line shows the step."""
    name = current_guest()
    info(f"==> {title}")
    start = time.monotonic()
    board_now = _board
    short = format_line(title, name).split("] ", 1)[1] if name is not None else title
    if board_now is not None and name is not None:
        board_now.push_step(name, short)
    try:
        yield
    finally:
        if board_now is not None and name is not None:
            board_now.pop_step(name, short)
    took = time.monotonic() - start
    if name is None:
        info(f"    done in {took:.1f} s")
    else:
        info(f"{short}: done in {took:.1f} s")


def status(text: str) -> None:
    """What the current guest is doing, on its live line only (no log line)."""
    board_now = _board
    name = current_guest()
    if board_now is not None and name is not None:
        board_now.push_step(name, text)


# --- downloads ----------------------------------------------------------------------------


@contextmanager
def download(what: str, total: int) -> Iterator[Callable[[int], None]]:
    """Report a download's progress: yields `advance(nbytes)`.

    A bar with bytes and rate on a terminal; plain lines at each quarter elsewhere; one
    closing line with size and time either way."""
    start = time.monotonic()
    done = 0
    board = _board
    if not _quiet and interactive(board.real_err if board is not None else sys.stderr):
        progress = board.progress if board is not None else _download_progress(
            _console_for(sys.stderr))
        task = progress.add_task(what, total=total or None)
        standalone = board is None
        if standalone:
            progress.start()
        try:
            def advance(n: int) -> None:
                nonlocal done
                done += n
                progress.update(task, advance=n)
            yield advance
        finally:
            progress.remove_task(task)
            if standalone:
                progress.stop()
    else:
        info(f"    downloading {what} ({total / 2**20:.1f} MiB)")
        next_report = 0.25

        def advance(n: int) -> None:
            nonlocal done, next_report
            done += n
            if total and done / total >= next_report and done < total:
                info(f"      {done / 2**20:6.1f} / {total / 2**20:.1f} MiB")
                next_report = done / total + 0.25
        yield advance
    secs = time.monotonic() - start
    info(f"    {what}: {done / 2**20:.1f} MiB in {secs:.1f} s"
         f" ({done / 2**20 / max(secs, 1e-3):.1f} MiB/s)")


def _download_progress(console: Console) -> Progress:
    return Progress(TextColumn("    {task.description}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), console=console,
                    transient=True)


# --- the board: a live line per guest while several work at once ---------------------------


@dataclass
class _Row:
    name: str
    # the steps it is in, outermost first, each with when it began
    steps: list[tuple[str, float]] = field(default_factory=list)
    started: float | None = None
    ended: float | None = None
    outcome: str = ""  # "" while it works; then the final word (up, failed, stopped...)
    ok: bool = True


@dataclass
class _Board:
    names: list[str]
    real_err: TextIO
    console: Console
    progress: Progress
    rows: dict[str, _Row] = field(default_factory=dict)
    live: Live | None = None

    def push_step(self, name: str, text: str) -> None:
        row = self.rows.get(name)
        if row is not None:
            row.steps.append((text, time.monotonic()))

    def pop_step(self, name: str, text: str) -> None:
        # by its text: two threads of one guest (jobs.beside) end their steps in any order
        row = self.rows.get(name)
        if row is None:
            return
        for i in range(len(row.steps) - 1, -1, -1):
            if row.steps[i][0] == text:
                del row.steps[i]
                return

    def render(self) -> Group:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True, justify="right")
        grid.add_column(overflow="ellipsis", no_wrap=True)
        now = time.monotonic()
        for row in self.rows.values():
            mark: Spinner | Text
            if row.outcome:
                mark = Text("✔" if row.ok else "✘", style="green" if row.ok else "red")
            elif row.started is None:
                mark = Text("·", style="dim")
            else:
                mark = Spinner("dots", style="cyan")
            took = ((row.ended or now) - row.started) if row.started is not None else 0.0
            if row.outcome:
                step = row.outcome
            elif row.steps:
                text, since = row.steps[-1]
                step = f"{text} ({now - since:.0f} s)"
            else:
                step = "waiting" if row.started is None else "working"
            grid.add_row(mark, Text(row.name, style=_guest_style(row.name)),
                         Text(f"{took:5.1f} s", style="dim"),
                         Text(step, style="" if row.ok else "red"))
        return Group(grid, self.progress.get_renderable())


class _GuestStream(io.TextIOBase):
    """sys.stderr while a board is up: whole lines go through `_emit`, so what other code
    prints (a roles recap, a warning) gets its guest's prefix and does not tear the live
    lines. Partial lines wait per thread for their newline."""

    def __init__(self, real: TextIO) -> None:
        self.real = real
        self._partial = threading.local()

    def write(self, s: str) -> int:
        buffered: str = getattr(self._partial, "text", "") + s
        *lines, rest = buffered.split("\n")
        self._partial.text = rest
        for line in lines:
            _emit(line)
        return len(s)

    def flush(self) -> None:
        self.real.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.real.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.real, "encoding", "utf-8") or "utf-8"


@contextmanager
def board(names: Sequence[str]) -> Iterator[None]:
    """Live lines for these guests while the body runs (plain prefixed lines when stderr
    is not a terminal, or with --quiet)."""
    global _board
    real_err = sys.stderr
    live_wanted = interactive(real_err) and not _quiet
    console = _console_for(real_err)
    the_board = _Board(list(names), real_err, console, _download_progress(console))
    the_board.rows = {n: _Row(n) for n in names}
    with _lock:
        _board = the_board
        sys.stderr = _GuestStream(real_err)
    live = None
    try:
        if live_wanted:
            # results printed on stdout (the verify report) go above the live lines when
            # stdout is the same terminal; into a pipe or file they go untouched
            live = Live(get_renderable=the_board.render, console=console,
                        refresh_per_second=4, transient=True,
                        redirect_stdout=interactive(sys.stdout), redirect_stderr=False)
            the_board.live = live
            live.start()
        yield
    finally:
        if live is not None:
            live.stop()
        with _lock:
            sys.stderr = real_err
            _board = None


def guest_started(name: str) -> None:
    board_now = _board
    if board_now is not None and name in board_now.rows:
        board_now.rows[name].started = time.monotonic()


def guest_finished(name: str, outcome: str, ok: bool) -> None:
    board_now = _board
    if board_now is not None and name in board_now.rows:
        row = board_now.rows[name]
        row.ended, row.outcome, row.ok = time.monotonic(), outcome, ok
