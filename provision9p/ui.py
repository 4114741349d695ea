"""Output for people: progress lines on stderr, quiet when asked, plain when not a terminal."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def info(message: str) -> None:
    """A progress line for people (stderr, so stdout stays for results)."""
    if not _quiet:
        print(message, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


@contextmanager
def step(title: str) -> Iterator[None]:
    """`==> title` ... `    done in 3.2 s`: every stage that can take seconds says so."""
    info(f"==> {title}")
    start = time.monotonic()
    yield
    info(f"    done in {time.monotonic() - start:.1f} s")
