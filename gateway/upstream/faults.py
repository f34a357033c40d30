"""The log of the upstream server's fault boundary (ARCHITECTURE.md, "a fault boundary around each request").

What a request's handler raises that no error code covers is a gateway bug: the client gets `internal` and
the connection keeps serving. The log gets the traceback the first time per cause (exception type and the
line that raised it), then only a count at most once per `repeat_log_seconds`, so a client that repeats the
request that hits the bug cannot fill the log.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path

import structlog

from gateway.logbudget import LogBudget

log = structlog.get_logger(__name__)

# (exception type, file, line) of the innermost frame: one bug, however many requests hit it.
Cause = tuple[str, str, int]
# Causes remembered one by one; past this many, the rest share one entry (the log stays bounded).
MAX_CAUSES = 256
_OTHER: Cause = ("other", "", 0)


@dataclass(frozen=True, slots=True)
class FaultStatistics:
    """How many requests failed on a bug, and from how many distinct causes (a snapshot)."""

    failures: int
    causes: int


@dataclass(slots=True)
class _Seen:
    logged_at: float
    since_logged: int = 0


def cause_of(exc: BaseException) -> Cause:
    frames = list(traceback.walk_tb(exc.__traceback__))
    if not frames:
        return (type(exc).__name__, "", 0)
    frame, line = frames[-1]
    return (type(exc).__name__, Path(frame.f_code.co_filename).name, line)


class FaultLog:
    def __init__(self, repeat_log_seconds: float = 60.0) -> None:
        self._repeat_log_seconds = repeat_log_seconds
        self._seen: dict[Cause, _Seen] = {}
        self._failures = 0

    def report(self, exc: Exception, now: float, **context: object) -> None:
        """Log `exc` (raised while serving a request) as the bound allows; `context` names the request."""
        self._failures += 1
        cause = cause_of(exc)
        if cause not in self._seen and len(self._seen) >= MAX_CAUSES:
            cause = _OTHER
        where = f"{cause[1]}:{cause[2]}"
        seen = self._seen.get(cause)
        if seen is None:
            self._seen[cause] = _Seen(now)
            log.error("upstream_request_failed", error=type(exc).__name__, where=where, exc_info=exc, **context)
            return
        seen.since_logged += 1
        if now - seen.logged_at >= self._repeat_log_seconds:
            log.error("upstream_request_failed_again", error=type(exc).__name__, where=where,
                      times=seen.since_logged, **context)  # fmt: skip
            seen.logged_at, seen.since_logged = now, 0

    def statistics(self) -> FaultStatistics:
        return FaultStatistics(self._failures, len(self._seen))



class AuthLog:
    """Failed hellos, logged with the peer, at most `burst` lines per `period_seconds`: then one line per
    period says how many more there were (a client guessing secrets cannot fill the log)."""

    def __init__(self, burst: int = 20, period_seconds: float = 60.0) -> None:
        self._budget = LogBudget("upstream_auth_failed_more", burst=burst, period_seconds=period_seconds)

    @property
    def failures(self) -> int:
        return self._budget.count

    def failed(self, now: float, event: str, **context: object) -> None:
        self._budget.log(log.warning, now, event, **context)
