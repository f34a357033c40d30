"""A bound on lines one kind of outside input can write to the log.

What a peer sends is logged so that nothing goes unseen, but a peer that sends the same mistake a thousand
times a second (an SMSC whose every receipt is malformed, a client guessing secrets) must not fill the disk:
at most `burst` lines per `period_seconds`, then one line per period saying how many more there were.
Pure: the caller passes the time and the logging function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class LogBudget:
    __slots__ = ("_burst", "_logged", "_more_event", "_period", "_suppressed", "_window_start", "count")

    def __init__(self, more_event: str, *, burst: int = 20, period_seconds: float = 60.0) -> None:
        self._more_event = more_event
        self._burst = burst
        self._period = period_seconds
        self._window_start = -float("inf")
        self._logged = 0
        self._suppressed = 0
        self.count = 0  # every call, logged or not

    def log(self, emit: Callable[..., Any], now: float, event: str, **context: Any) -> None:
        """`emit(event, **context)` (a structlog method) unless this period's burst is spent."""
        self.count += 1
        if now - self._window_start >= self._period:
            if self._suppressed:
                emit(self._more_event, times=self._suppressed, seconds=self._period)
            self._window_start, self._logged, self._suppressed = now, 0, 0
        if self._logged < self._burst:
            self._logged += 1
            emit(event, **context)
        else:
            self._suppressed += 1
