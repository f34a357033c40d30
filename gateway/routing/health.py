"""Carrier health: a carrier whose submits fail too often is skipped for a while [pure].

Each carrier has an error budget: over a sliding window (`window_seconds`), once it has answered at least
`min_submits` submits, a share of failures above `max_error_rate` puts it in a cool-down for
`cooldown_seconds`. Meanwhile the dispatcher takes the next carrier of each message's route; a carrier in
cool-down is still used when the route has no other carrier that can take the message (a slow carrier is
better than none). When the cool-down ends the window starts empty, so one bad minute is not held against
it twice.

What counts (ErrorBudget.record's `failed`): the errors that say the carrier is unwell rather than the
message or the moment: a "next carrier" command_status (ESME_RSYSERR, ESME_RSUBMITFAIL, ...) and a
submit left without an answer. An accepted submit counts as a success. A "retry here" status (throttling,
queue full) and a permanent refusal of one message (a bad destination address) count as neither.

Time is handed in (`now`, seconds on any monotonic clock); nothing here waits.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Budget:
    max_error_rate: float = 0.5
    window_seconds: float = 60.0
    min_submits: int = 20
    cooldown_seconds: float = 120.0


@dataclass(frozen=True, slots=True)
class Tripped:
    """A carrier went into cool-down: for the log."""

    carrier: str
    error_rate: float
    submits: int
    until: float


class ErrorBudget:
    def __init__(self, budgets: dict[str, Budget]) -> None:
        self._budgets = budgets
        # Per carrier: (time, failed) of the answers in the window, and the failures among them.
        self._window: dict[str, deque[tuple[float, bool]]] = {name: deque() for name in budgets}
        self._failures = dict.fromkeys(budgets, 0)
        self._cooling: dict[str, float] = {}

    def set_budget(self, carrier: str, budget: Budget) -> None:
        """A carrier a reload added or changed: its budget from now on (its window starts over)."""
        self._budgets[carrier] = budget
        self._window[carrier] = deque()
        self._failures[carrier] = 0

    def record(self, carrier: str, failed: bool, now: float) -> Tripped | None:
        """One answer from `carrier`; the cool-down it starts, if this one tipped the budget."""
        budget = self._budgets.get(carrier)
        if budget is None or self.cooling(carrier, now):
            return None  # an answer to a submit sent before the cool-down: the window starts over after it
        window = self._window[carrier]
        window.append((now, failed))
        self._failures[carrier] += failed
        self._expire(carrier, now - budget.window_seconds)
        submits = len(window)
        rate = self._failures[carrier] / submits
        if submits >= budget.min_submits and rate > budget.max_error_rate:
            until = now + budget.cooldown_seconds
            self._cooling[carrier] = until
            window.clear()
            self._failures[carrier] = 0
            return Tripped(carrier, rate, submits, until)
        return None

    def cooling(self, carrier: str, now: float) -> bool:
        until = self._cooling.get(carrier)
        if until is None:
            return False
        if now >= until:
            del self._cooling[carrier]
            return False
        return True

    def cooling_carriers(self, now: float) -> set[str]:
        return {c for c in list(self._cooling) if self.cooling(c, now)}

    def error_rate(self, carrier: str, now: float) -> float:
        """The share of failures in the carrier's window now (0.0 with no answers)."""
        budget = self._budgets.get(carrier)
        if budget is None:
            return 0.0
        self._expire(carrier, now - budget.window_seconds)
        window = self._window[carrier]
        return self._failures[carrier] / len(window) if window else 0.0

    def _expire(self, carrier: str, before: float) -> None:
        window = self._window[carrier]
        while window and window[0][0] < before:
            _, failed = window.popleft()
            self._failures[carrier] -= failed
