"""The sweep as a table and terminal bar charts (plain text, so any terminal or log shows it)."""

from __future__ import annotations

from collections.abc import Sequence

from provision9p.tune.recommend import METRICS, Row, scores

LABELS = {"write_mbs": "write MB/s", "read_mbs": "read MB/s", "meta_ops": "metadata ops/s"}
BAR_WIDTH = 40
_EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(value: float, top: float, width: int = BAR_WIDTH) -> str:
    """A bar of `width` cells for value/top, in eighths of a cell."""
    if top <= 0:
        return ""
    eighths = round(max(0.0, min(1.0, value / top)) * width * 8)
    full, rest = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[rest] if rest else "")


def table(rows: Sequence[Row], chosen: int) -> str:
    """One line per effective msize: the medians, the spread when there were several runs,
    and the score the recommendation is made from."""
    runs = max(len(r.runs) for r in rows)
    s = scores(rows)
    head = f"{'msize':>8}  " + "  ".join(f"{LABELS[m]:>14}" for m in METRICS) + "   score"
    if runs > 1:
        head += f"  (median of {runs} runs, ±spread)"
    lines = [head]
    for r in rows:
        cells = []
        for m in METRICS:
            cell = f"{r.value(m):.1f}"
            if runs > 1:
                cell += f" ±{r.spread(m) * 100:.0f}%"
            cells.append(f"{cell:>14}")
        mark = "  <- recommended" if r.msize == chosen else ""
        lines.append(f"{r.msize:>8}  " + "  ".join(cells) + f"   {s[r.msize]:.3f}{mark}")
    return "\n".join(lines)


def charts(rows: Sequence[Row]) -> str:
    """One bar chart per workload, bars relative to that workload's best."""
    out = []
    for m in METRICS:
        top = max(r.value(m) for r in rows)
        out.append(f"{LABELS[m]}:")
        for r in rows:
            out.append(f"  {r.msize:>7} {bar(r.value(m), top):<{BAR_WIDTH}} "
                       f"{r.value(m):.1f}")
    return "\n".join(out)
