"""A token bucket for a bind's TPS limit; the caller passes `now` (trio's clock), so tests use a virtual one."""

from __future__ import annotations

# Refill arithmetic in floats can leave 0.9999999 of a token where exactly one is due; without the slack, a
# waiter would sleep until "now + 1e-17" (which is now) and spin.
_SLACK = 1e-9


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up. A rate of 0 means unlimited."""

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, now: float, burst: float | None = None) -> None:
        self.rate = rate
        # A tenth of a second's worth by default: smooth enough that a carrier counting per second never
        # sees a burst above its contract, coarse enough that a fast bind is not woken per PDU.
        self.burst = burst if burst is not None else max(1.0, rate / 10)
        self._tokens = self.burst
        self._stamp = now

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    def available(self, now: float) -> int:
        """Whole tokens available now."""
        if self.unlimited:
            return 1 << 30
        self._refill(now)
        return int(self._tokens + _SLACK)

    def take(self, n: int, now: float) -> None:
        if not self.unlimited:
            self._refill(now)
            self._tokens -= n

    def next_token_at(self, now: float) -> float:
        """When at least one whole token will be there."""
        if self.unlimited:
            return now
        self._refill(now)
        if self._tokens + _SLACK >= 1:
            return now
        return now + (1 - self._tokens) / self.rate

    def _refill(self, now: float) -> None:
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._stamp = now
