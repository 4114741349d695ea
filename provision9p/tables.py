"""Tables for people: rich on a terminal, plain aligned lines everywhere else.

A CI log or a pipe gets no box drawing, no colour and no wrapping at 80 columns, so a
line can be grepped and compared from one run to the next. Rich honours NO_COLOR on a
terminal itself.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

#: Colours for the words a status column shows (only on a terminal).
STYLES = {"ok": "green", "running": "green", "builtin": "green", "failed": "bold red",
          "FAILED": "bold red", "missing": "red", "crashed": "bold red",
          "unbootable": "bold red", "booting": "yellow", "warning": "yellow",
          "skipped": "dim", "stopped": "dim", "initramfs": "yellow"}


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *,
                status_column: int | None = None, show_header: bool = True,
                plain: str | None = None, file: TextIO | None = None) -> None:
    """Print the rows; `status_column` is coloured by its word on a terminal. Elsewhere
    `plain` (the command's long-standing lines, which scripts read) or aligned columns."""
    out = file if file is not None else sys.stdout
    if is_terminal(out):
        _rich_table(headers, rows, status_column, show_header, out)
    elif plain is not None:
        out.write(plain if plain.endswith("\n") or not plain else plain + "\n")
    else:
        out.write(plain_table(headers if show_header else None, rows))


def plain_table(headers: Sequence[str] | None, rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart, no trailing blanks."""
    table = [list(headers)] if headers else []
    table += [list(r) for r in rows]
    if not table:
        return ""
    widths = [max(len(r[i]) for r in table if i < len(r)) for i in range(len(table[0]))]
    lines = []
    for r in table:
        cells = [c.ljust(widths[i]) if i < len(r) - 1 else c for i, c in enumerate(r)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def is_terminal(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


def _rich_table(headers: Sequence[str], rows: Sequence[Sequence[str]],
                status_column: int | None, show_header: bool, out: TextIO) -> None:
    from rich import box
    from rich.console import Console  # imported late: a plain run never pays for rich
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD if show_header else None, show_header=show_header,
                  pad_edge=False, header_style="bold")
    for h in headers:
        table.add_column(h, overflow="fold")
    for r in rows:
        cells = [Text(c) for c in r]
        if status_column is not None and status_column < len(r):
            word = r[status_column].split()[0].rstrip(",:") if r[status_column] else ""
            cells[status_column].stylize(STYLES.get(word, ""))
        table.add_row(*cells)
    Console(file=out, highlight=False).print(table)
