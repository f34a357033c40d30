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


class AccountBudget:
    """A carrier account's contracted TPS, shared by every bind of the account: this node's binds of the
    carrier, and in a cluster every node's (the shell leases this node's tokens a tick at a time from Valkey,
    gateway.cluster). Without a lease it is a token bucket at `rate` (or at the node's share of it while the
    cluster cannot be asked); with one, only the tokens granted for the current tick may go."""

    __slots__ = ("_bucket", "_expires", "_starved", "_tokens", "_used", "leased", "rate")

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self._bucket = TokenBucket(rate, now)
        self.leased = False
        self._tokens = 0
        self._expires = now
        self._used = 0
        self._starved = False

    def available(self, now: float) -> int:
        if not self.leased:
            return self._bucket.available(now)
        return self._tokens if now < self._expires else 0

    def take(self, n: int, now: float) -> None:
        self._used += n
        if self.leased:
            self._tokens -= n
        else:
            self._bucket.take(n, now)

    def next_token_at(self, now: float) -> float:
        """When a token may be there: the local bucket's next one, else (leased and spent) the next tick,
        looked at again shortly after it should have come."""
        if not self.leased:
            return self._bucket.next_token_at(now)
        if self._tokens > 0 and now < self._expires:
            return now
        self._starved = True
        return max(now + 0.005, self._expires + 0.005)

    def grant(self, tokens: int, until: float) -> None:
        """The cluster granted `tokens` for the tick ending at `until`; what the last tick left is void."""
        self.leased = True
        self._tokens = tokens
        self._expires = until

    def unleased(self, rate: float, now: float) -> None:
        """No lease (the cluster cannot be asked): a local bucket at `rate`, this node's share."""
        if self.leased or rate != self._bucket.rate:
            self._bucket = TokenBucket(rate, now)
        self.leased = False

    def demand(self) -> tuple[int, bool]:
        """What the binds took since the last call, and whether they waited for tokens; both reset."""
        used, starved = self._used, self._starved
        self._used, self._starved = 0, False
        return used, starved
