"""[pure] What a carrier bind decides, without sockets, tasks or a clock.

The trio `Bind` (bind.py) owns the socket, TLS and its reader/sender tasks; it tells a `BindCore` what
happened (connected, bound, a response, a throttle refusal, the link lost), passes the time (`now`, trio's
clock in production, any float in tests), and carries out what the core answers: how many submits may go
now, which ones first, when to wake up, how long to wait before reconnecting, what comes back as written or
unwritten when a link drops. Nothing here does I/O or logs; the shell logs what the core returns.

The bind's life is one table, `TRANSITIONS`, below (h11's `_state.py` style): every (state, input) pair that
may happen is listed, and a pair that is not is a bug in the shell, raised as `BindStateError`.

    IDLE --CONNECT--> CONNECTING --CONNECTED--> BINDING --BIND_OK--> BOUND <--RESUME-- THROTTLED
                          |                        |                   |  --THROTTLE-->  |
                          |                        |--BIND_REFUSED--> REFUSED             |
                          +--LINK_LOST--> BACKING_OFF <--LINK_LOST----+-------------------+
    BACKING_OFF, REFUSED --CONNECT--> CONNECTING;   BOUND, THROTTLED --STOP--> UNBINDING --LINK_LOST--> STOPPED

Rules, each with its reason:

- Window: at most `window` submits unanswered (SMPP 3.4 2.5); after a throttle pause at most `cwnd`, which
  starts small and grows per accepted response (TCP's slow start, then congestion avoidance above half the
  window that was in flight when the SMSC throttled), so a bind that was throttled does not refill its
  whole window at once and get throttled again.
- TPS: a token bucket at the carrier's contracted rate (`bucket.TokenBucket`).
- Throttling (ESME_RTHROTTLED, ESME_RMSGQFUL): the whole bind pauses (the pause doubles while refusals go on,
  and resets on an acceptance); the refused submits, and any submit taken but not yet written, wait in
  `retry` ordered by when they were first taken and go FIRST when the pause ends, so throttling never lets
  a newer message overtake an older one by more than the window.
- Reconnect: after a network failure, exponential back-off with jitter from the injected random source,
  reset as soon as a TCP connection succeeds (an SMSC that comes back is rebound within seconds). A bind
  refused for its credentials (ESME_RBINDFAIL, ESME_RINVPASWD, ESME_RINVSYSID) retries on its own slower,
  fixed schedule (`bind_refused_retry_seconds`): credentials rarely fix themselves.
- Link lost: a submit written to the socket may have been acted on (UNKNOWN); one never written, or refused
  and waiting for its retry, is safe to send again (NOT_SENT), handed back in its original order.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable
from enum import Enum, StrEnum
from typing import Any

from gateway.carriers.bucket import AccountBudget, TokenBucket
from gateway.carriers.config import BindConfig
from gateway.errors import GatewayError
from gateway.ops.histogram import LATENCY_BOUNDS, Histogram
from gateway.smpp.constants import CommandStatus
from gateway.smpp.session import Outstanding

# SMPP 3.4 5.1.3: bind_resp statuses that say the account itself is wrong, not the network or the SMSC.
CREDENTIAL_STATUSES = frozenset(
    {CommandStatus.ESME_RBINDFAIL, CommandStatus.ESME_RINVPASWD, CommandStatus.ESME_RINVSYSID}
)
# Submits sent right after a throttle pause (slow start), before accepted responses open the window again.
RESTART_WINDOW = 1
# The fixed retry of a refused bind varies by this share either way, so a fleet does not retry in step.
REFUSED_JITTER = 0.1


class BindState(StrEnum):
    """Where a bind is; plain strings in status snapshots."""

    IDLE = "idle"
    CONNECTING = "connecting"
    BINDING = "binding"
    BOUND = "bound"
    THROTTLED = "throttled"
    UNBINDING = "unbinding"
    BACKING_OFF = "backing_off"
    REFUSED = "refused"
    STOPPED = "stopped"


class Input(Enum):
    CONNECT = "connect"  # the back-off is over (or first start): open a connection
    CONNECTED = "connected"  # TCP (and TLS) up, bind request sent
    BIND_OK = "bind_ok"
    BIND_REFUSED = "bind_refused"  # bind_resp with a credential status
    THROTTLE = "throttle"  # a submit refused with a throttle status
    RESUME = "resume"  # the throttle pause is over
    STOP = "stop"
    LINK_LOST = "link_lost"  # connect failed, link dropped, unbound by the SMSC, closed after stop


_S, _I = BindState, Input

TRANSITIONS: dict[tuple[BindState, Input], BindState] = {
    (_S.IDLE, _I.CONNECT): _S.CONNECTING,
    (_S.IDLE, _I.STOP): _S.STOPPED,
    (_S.CONNECTING, _I.CONNECTED): _S.BINDING,
    (_S.CONNECTING, _I.LINK_LOST): _S.BACKING_OFF,
    (_S.BINDING, _I.BIND_OK): _S.BOUND,
    (_S.BINDING, _I.BIND_REFUSED): _S.REFUSED,
    (_S.BINDING, _I.LINK_LOST): _S.BACKING_OFF,
    (_S.BOUND, _I.THROTTLE): _S.THROTTLED,
    (_S.BOUND, _I.STOP): _S.UNBINDING,
    (_S.BOUND, _I.LINK_LOST): _S.BACKING_OFF,
    (_S.THROTTLED, _I.THROTTLE): _S.THROTTLED,  # another refusal: the pause may start again
    (_S.THROTTLED, _I.RESUME): _S.BOUND,
    (_S.THROTTLED, _I.STOP): _S.UNBINDING,
    (_S.THROTTLED, _I.LINK_LOST): _S.BACKING_OFF,
    (_S.UNBINDING, _I.THROTTLE): _S.UNBINDING,  # answers to what was in flight still arrive
    (_S.UNBINDING, _I.LINK_LOST): _S.STOPPED,
    (_S.UNBINDING, _I.STOP): _S.UNBINDING,
    (_S.BACKING_OFF, _I.CONNECT): _S.CONNECTING,
    (_S.BACKING_OFF, _I.STOP): _S.STOPPED,
    # The SMSC closes the link after refusing the bind: still refused, on the refused schedule.
    (_S.REFUSED, _I.LINK_LOST): _S.REFUSED,
    (_S.REFUSED, _I.CONNECT): _S.CONNECTING,
    (_S.REFUSED, _I.STOP): _S.STOPPED,
    (_S.STOPPED, _I.STOP): _S.STOPPED,
}

_BOUND = frozenset({BindState.BOUND, BindState.THROTTLED})


class BindStateError(GatewayError):
    """The shell reported something that cannot happen in the bind's state (a bug, not a carrier fault)."""

    def __init__(self, state: BindState, event: Input) -> None:
        super().__init__(f"bind cannot take {event.value!r} in state {state.value!r}")
        self.state = state
        self.event = event


class Pending:
    """A submit the bind took: the job, its place in the order taken, and the write batch it went out in."""

    __slots__ = ("batch", "job", "order")

    def __init__(self, job: Any, order: int, batch: int) -> None:
        self.job = job
        self.order = order
        self.batch = batch


class BindCore:
    """The decisions of one bind (one SMPP connection at a time, with reconnects)."""

    def __init__(
        self, config: BindConfig, now: float, *, rng: random.Random | None = None, budget: AccountBudget | None = None
    ) -> None:
        self.config = config
        self._rng = rng if rng is not None else random.Random()
        self.state = BindState.IDLE
        self.since = now
        # When the bind last stopped being bound (None: bound now, or never bound).
        self.unbound_since: float | None = None
        self.ever_bound = False
        self.last_error: str | None = None
        self.reconnects = 0
        # Network failures in a row since the last successful TCP connection.
        self._failures = 0
        self.refused_status: int | None = None
        self.retry_at = now
        # Throttling.
        self.paused_until = now
        self._pause = 0.0
        self.throttles = 0
        self._window = config.window
        self.cwnd = config.window
        self._ssthresh = config.window
        self._grown = 0
        # Submits refused for throttling or taken and not written, by order: (order, pending).
        self._retry: list[tuple[int, Pending]] = []
        self._order = 0
        self.bucket = TokenBucket(config.tps, now)
        # The carrier account's TPS, shared with its other binds (and other nodes' binds); None: no such limit.
        self.budget = budget
        # Counters.
        self.submitted = 0
        self.accepted = 0
        # Seconds from a submit_sm's write batch to its answer (any status): the metrics scrape reads it.
        self.latency = Histogram(LATENCY_BOUNDS)
        self._tps_second = 0
        self._tps_count = 0
        self._tps_last = 0

    # --- the state table ------------------------------------------------------------------------------

    def _go(self, event: Input, now: float) -> BindState:
        new = TRANSITIONS.get((self.state, event))
        if new is None:
            raise BindStateError(self.state, event)
        old = self.state
        if new is not old:
            self.state = new
            self.since = now
            if old in _BOUND and new not in _BOUND:
                self.unbound_since = now
            elif new in _BOUND:
                self.unbound_since = None
        return new

    @property
    def is_bound(self) -> bool:
        return self.state in _BOUND

    # --- connection lifecycle ---------------------------------------------------------------------------

    def connect(self, now: float) -> None:
        """Open a connection now (the first one, or the back-off is over)."""
        if self.state is not BindState.IDLE:
            self.reconnects += 1
        self._go(Input.CONNECT, now)

    def connected(self, now: float) -> None:
        """TCP (and TLS) is up: the network back-off starts again from the bottom."""
        self._go(Input.CONNECTED, now)
        self._failures = 0

    def bound(self, now: float) -> None:
        """bind_resp ESME_ROK: full window (the SMSC has no memory of our last pause), fresh TPS bucket."""
        self._go(Input.BIND_OK, now)
        self.ever_bound = True
        self.refused_status = None
        self.cwnd = self._ssthresh = self.config.window
        self._grown = 0
        self._pause = 0.0
        self.paused_until = now
        self.bucket = TokenBucket(self.config.tps, now)

    def bind_refused(self, status: int, reason: str, now: float) -> bool:
        """bind_resp with an error. Returns True when it is news (a new status since the last refusal or
        bind): the shell logs it at error level then, and quietly otherwise."""
        self.last_error = reason
        if status not in CREDENTIAL_STATUSES:
            return True  # ESME_RSYSERR and the like: the SMSC's trouble; the link's end backs off as usual
        self._go(Input.BIND_REFUSED, now)
        news = status != self.refused_status
        self.refused_status = status
        spread = 1.0 + REFUSED_JITTER * (2.0 * self._rng.random() - 1.0)
        self.retry_at = now + self.config.bind_refused_retry_seconds * spread
        return news

    def link_lost(self, reason: str | None, now: float) -> BindState:
        """The connection is over (connect failed, dropped, unbound, closed after stop). Returns the state
        left before, so the shell can say "lost" (was bound) or "failed" (never got there)."""
        before = self.state
        if reason is not None:
            self.last_error = reason
        if before is BindState.REFUSED or before is BindState.UNBINDING:
            self._go(Input.LINK_LOST, now)
        else:
            self._link_failed(now)
        return before

    def _link_failed(self, now: float) -> None:
        self._go(Input.LINK_LOST, now)
        self.retry_at = now + self._backoff()
        self._failures += 1

    def _backoff(self) -> float:
        # Exponential with jitter: binds that lost one SMSC together do not all return at the same moment.
        cfg = self.config
        lo = cfg.reconnect_min_seconds
        ceiling = min(cfg.reconnect_max_seconds, lo * 2.0 ** min(self._failures, 30))
        return lo / 2 + self._rng.random() * (ceiling - lo / 2)

    def stop(self, now: float) -> BindState:
        """Stop: unbind first when bound, else stopped at once."""
        return self._go(Input.STOP, now)

    # --- sending ----------------------------------------------------------------------------------------

    def ready_at(self, now: float, in_flight: int) -> float:
        """When a submit may go: `now`, a later time (pause end, next TPS token), or `math.inf` when only an
        answer (or a new bind) can change that: window full, or not bound (unbinding, link lost)."""
        if self.state is BindState.THROTTLED:
            if now < self.paused_until:
                return self.paused_until
            self._go(Input.RESUME, now)
        if self.state is not BindState.BOUND or in_flight >= self.cwnd:
            return float("inf")
        if self.budget is not None:
            return max(self.bucket.next_token_at(now), self.budget.next_token_at(now))
        return self.bucket.next_token_at(now)

    def room(self, now: float, in_flight: int) -> int:
        """How many submits may go now (window, slow start and TPS; none while paused)."""
        if self.state is not BindState.BOUND:
            return 0
        room = min(self.cwnd - in_flight, self.bucket.available(now))
        return room if self.budget is None else min(room, self.budget.available(now))

    def paused(self, now: float) -> bool:
        return self.state is BindState.THROTTLED and now < self.paused_until

    @property
    def has_retry(self) -> bool:
        return bool(self._retry)

    def next_retry(self, batch: int) -> Pending | None:
        """The oldest submit waiting for its retry, once the bind is not paused."""
        if not self._retry or self.state is not BindState.BOUND:
            return None
        _, item = heapq.heappop(self._retry)
        item.batch = batch
        return item

    def take(self, job: Any, batch: int) -> Pending:
        """A job just taken from the jobs channel, going out in write batch `batch`."""
        self._order += 1
        return Pending(job, self._order, batch)

    def hold(self, item: Pending) -> None:
        """A submit taken and not written (a pause began, or the link is ending): it waits in order."""
        heapq.heappush(self._retry, (item.order, item))

    def sent(self, n: int, now: float) -> None:
        """`n` submits queued for the socket now: TPS tokens and counters."""
        self.bucket.take(n, now)
        if self.budget is not None:
            self.budget.take(n, now)
        self.submitted += n
        second = int(now)
        if second != self._tps_second:
            self._tps_last = self._tps_count if second == self._tps_second + 1 else 0
            self._tps_second = second
            self._tps_count = 0
        self._tps_count += n

    # --- answers ----------------------------------------------------------------------------------------

    def on_accepted(self) -> None:
        """submit_sm_resp ESME_ROK: the pause escalation resets and a slow start grows."""
        self.accepted += 1
        self._pause = 0.0
        cwnd = self.cwnd
        if cwnd < self._window:
            if cwnd < self._ssthresh:
                self.cwnd = cwnd + 1  # slow start: doubles per round trip
            else:
                self._grown += 1  # congestion avoidance: one more per window's worth of acceptances
                if self._grown >= cwnd:
                    self._grown = 0
                    self.cwnd = cwnd + 1

    def on_throttled(self, item: Pending, now: float, in_flight: int) -> float | None:
        """A submit refused for throttling (it was not acted on): it waits for its retry, first and in
        order. Returns the pause in seconds when a new pause starts (one per burst of refusals), else None.
        `in_flight`: submits still unanswered, this one excluded."""
        heapq.heappush(self._retry, (item.order, item))
        if self.state is BindState.THROTTLED and now < self.paused_until:
            return None
        if self.state is BindState.UNBINDING:
            self._go(Input.THROTTLE, now)  # leaving anyway: no pause; it comes back NOT_SENT
            return None
        cfg = self.config
        lo, hi = cfg.throttle_backoff_min_seconds, cfg.throttle_backoff_max_seconds
        self._pause = lo if self._pause == 0 else min(hi, self._pause * 2)
        self.paused_until = now + self._pause
        self.throttles += 1
        # Slow start from a small window; grow fast up to half of what was in flight when it hit the limit.
        self._ssthresh = max(RESTART_WINDOW, (in_flight + 1) // 2)
        self.cwnd = min(RESTART_WINDOW, self.config.window)
        self._grown = 0
        self._go(Input.THROTTLE, now)
        return self._pause

    # --- link loss --------------------------------------------------------------------------------------

    def unsent(self, lost: Iterable[Outstanding], batches_written: int) -> tuple[list[Outstanding], list[Pending]]:
        """Split what a dropped link held: (written, so UNKNOWN; never written or waiting for a retry, so
        NOT_SENT, in the order first taken). Requests of ours other than submits are left out."""
        written: list[Outstanding] = []
        unwritten: list[Pending] = []
        for req in lost:
            item = req.context
            if not isinstance(item, Pending):
                continue
            if item.batch <= batches_written:
                written.append(req)
            else:
                unwritten.append(item)
        unwritten += [item for _, item in self._retry]
        self._retry = []
        unwritten.sort(key=_order_of)
        return written, unwritten

    # --- status -----------------------------------------------------------------------------------------

    def current_tps(self, now: float) -> int:
        """Submits in the last whole second."""
        second = int(now)
        if second == self._tps_second:
            return self._tps_last
        return self._tps_count if second == self._tps_second + 1 else 0


def _order_of(item: Pending) -> int:
    return item.order
