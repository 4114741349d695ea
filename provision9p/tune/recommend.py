"""Which msize to recommend from a sweep: the smallest one within 5% of the best.

Three workloads are measured, and a size is not "within 5%" because one of them is:
each size scores the geometric mean of its ratios to the best value of every workload
(1.0 = best at everything), and the recommendation is the smallest size whose score is
within the tolerance of the best score. Smaller is preferred because every 9P request
of a mount reserves msize bytes of guest memory per in-flight request.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

TOLERANCE = 0.05


@dataclass(frozen=True)
class Sample:
    """One measurement at one effective msize (higher is better in every field)."""

    msize: int
    write_mbs: float  # sequential write, MB/s (10^6 bytes), fsync included
    read_mbs: float   # sequential read, MB/s, caches dropped first
    meta_ops: float   # create + stat + unlink of small files, operations per second


METRICS = ("write_mbs", "read_mbs", "meta_ops")


@dataclass(frozen=True)
class Row:
    """One effective msize: the median of its runs in every workload."""

    msize: int
    runs: tuple[Sample, ...]

    def value(self, metric: str) -> float:
        return float(statistics.median(getattr(s, metric) for s in self.runs))

    def spread(self, metric: str) -> float:
        """(max - min) / median across runs, 0 for a single run."""
        values = [float(getattr(s, metric)) for s in self.runs]
        mid = statistics.median(values)
        return (max(values) - min(values)) / mid if mid > 0 else 0.0


def rows_of(samples: Sequence[Sample]) -> list[Row]:
    """Samples grouped by effective msize (two asked sizes may clamp to one), ascending."""
    by: dict[int, list[Sample]] = {}
    for s in samples:
        by.setdefault(s.msize, []).append(s)
    return [Row(m, tuple(by[m])) for m in sorted(by)]


def scores(rows: Sequence[Row]) -> dict[int, float]:
    """Each size's geometric mean of (its value / the best value) over the workloads."""
    best = {m: max(r.value(m) for r in rows) for m in METRICS}
    out: dict[int, float] = {}
    for r in rows:
        ratios = [r.value(m) / best[m] if best[m] > 0 else 1.0 for m in METRICS]
        out[r.msize] = math.prod(ratios) ** (1 / len(ratios))
    return out


def recommend(rows: Sequence[Row], tolerance: float = TOLERANCE) -> int:
    """The smallest msize whose score is within `tolerance` of the best score."""
    if not rows:
        raise ValueError("no measurements")
    s = scores(rows)
    top = max(s.values())
    return min(m for m, v in s.items() if v >= top * (1 - tolerance))
