"""[pure] Observations counted into fixed buckets, for hot paths that must not pay for a metrics library.

A submit_sm answered, a group committed: each `observe()` is one bisect over a dozen bounds and two adds on
plain Python numbers. Nothing is exported as it happens; the metrics scrape (gateway/ops/metrics.py) reads a
`snapshot()` and turns it into a Prometheus histogram, so a gateway nobody scrapes pays the adds only.

Bounds are upper bounds, inclusive, as Prometheus' `le` ("less than or equal"); the last bucket (+Inf) takes
what lies above them all. Counts are kept per bucket, not cumulative; `cumulative()` sums them for export.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

# Seconds: a loopback answer takes well under a millisecond, a carrier's tens to hundreds; the response
# timeout (default 10 s) ends the scale, as nothing is answered later than that.
LATENCY_BOUNDS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
# Operations in a group commit (1 idle, hundreds under load, StoreConfig.group_max at most).
SIZE_BOUNDS: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    bounds: tuple[float, ...]
    counts: tuple[int, ...]  # per bucket (not cumulative), len(bounds) + 1: the last one is +Inf
    sum: float

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it), +Inf last: Prometheus' buckets."""
        out = []
        running = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


class Histogram:
    __slots__ = ("_bounds", "_counts", "_sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ValueError("bounds must ascend, each once")
        self._bounds = bounds
        self._counts = [0] * (len(bounds) + 1)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: the first bound >= value, so a value equal to a bound counts in that bound's bucket.
        self._counts[bisect_left(self._bounds, value)] += 1
        self._sum += value

    def snapshot(self) -> HistogramSnapshot:
        return HistogramSnapshot(self._bounds, tuple(self._counts), self._sum)
