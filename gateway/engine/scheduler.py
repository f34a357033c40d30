"""The scheduler [trio]: streams the store's due-time index (new, deferred, retried messages) into per-carrier
ready queues, choosing for each message the first carrier of its route that has a bound transmitter, and
ends what passed its deadline (validity while waiting, receipt timeout while submitted).

One task streams the index, one sweeps deadlines; never one per message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import structlog
import trio

from gateway.engine.context import Context
from gateway.errors import GatewayError
from gateway.lifecycle import DUE_STATES, FINAL_STATES, Ev, Event, State
from gateway.routing.numbers import Number
from gateway.store import Advance, AdvanceResult, Message, Op, Overdue, Reroute, Result, SweepResult

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SchedulerStatistics:
    handed: int  # messages handed to a dispatcher since the start
    pending: int  # handed and not yet dispatched
    ready: dict[str, int]  # messages waiting in each carrier's ready queue
    transmitting: tuple[str, ...]  # carriers with a bound transmitter now
    overdue_ended: int  # messages ended by a deadline (validity, receipt timeout) since the start
    next_due_ms: int | None  # the earliest due time in the index (None: nothing waits)
    # Messages the engine's commits ended since the start, by (state, reason): see Ended.
    ended: dict[tuple[str, str], int]


class Ended:
    """The messages the engine's commits ended, by (state, reason), as plain counts for the metrics scrape.

    The store answers an Advance with its message's state, so the parts that commit an end (the scheduler,
    dispatch, the correlator's submit outcomes) count here what their commits ended: each message once, though
    a refused part fails its later parts in the same commit. The reason is the event's; an early receipt a
    submit_sm_resp applied has only its state, so its state's default reason. Receipts answer with their
    part's state, not their message's: the correlator counts those itself (CorrelateStatistics.receipt_ends).
    """

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def count(self, ops: Sequence[Op], results: Sequence[Result | GatewayError]) -> int:
        """Count what this commit ended; returns how many early receipts its submit_sm_resps claimed."""
        counts = self.counts
        seen: set[int] = set()
        claimed = 0
        for op, r in zip(ops, results, strict=True):
            if type(r) is not AdvanceResult or type(op) is not Advance:
                continue
            claimed += r.early_receipt_applied
            if r.state in FINAL_STATES and not r.ignored and r.message_id not in seen:
                seen.add(r.message_id)
                reason = (not r.early_receipt_applied and op.event.reason) or DEFAULT_REASONS.get(r.state, "")
                key = (STATE_NAMES[r.state], reason)
                counts[key] = counts.get(key, 0) + 1
        return claimed


# Metric labels: lifecycle states by their lower-case names, and the reason a final event implies when it
# names none (lifecycle._DEFAULT_REASON by state).
STATE_NAMES = {state: state.name.lower() for state in State}
DEFAULT_REASONS = {
    State.DELIVERED: "delivered", State.EXPIRED: "expired", State.CANCELLED: "cancelled",
    State.UNDELIVERABLE: "undeliverable:unknown",
}  # fmt: skip


class Scheduler:
    def __init__(self, ctx: Context, ready: dict[str, trio.MemorySendChannel[Message]]) -> None:
        self._ctx = ctx
        self._ready = ready
        # Messages handed to a dispatcher and not yet dispatched: the scheduler must not hand them twice.
        self._pending: set[int] = set()
        self._cursor = b""  # the scheduler's place in the due index
        self._wake = trio.Event()
        self._handed = 0
        self._overdue_ended = 0
        self.ended = Ended()  # the dispatch and the correlator count into it too

    def wake(self) -> None:
        """Something became due (a submit, a resend, a retry): rescan the due index now."""
        self._wake.set()

    def rescan(self) -> None:
        """Something became due behind the scheduler's cursor (a resend keeps its first due time)."""
        self._cursor = b""
        self.wake()

    def add_carrier(self, name: str, ready: trio.MemorySendChannel[Message]) -> None:
        self._ready[name] = ready

    def remove_carrier(self, name: str) -> None:
        self._ready.pop(name, None)

    def dispatched(self, ids: list[int]) -> None:
        """A dispatcher is done with these messages (prepared, or failed): they may be handed out again."""
        self._pending.difference_update(ids)

    def statistics(self) -> SchedulerStatistics:
        return SchedulerStatistics(
            handed=self._handed,
            pending=len(self._pending),
            ready={c: tx.statistics().current_buffer_used for c, tx in self._ready.items()},
            transmitting=tuple(sorted(self._ctx.transmitting())),
            overdue_ended=self._overdue_ended,
            next_due_ms=self._ctx.store.next_due_ms(),
            ended=dict(self.ended.counts),
        )

    async def run(self) -> None:
        poll = self._ctx.settings.scheduler_poll_seconds
        started_over = trio.current_time()
        while True:
            await self._schedule_round()
            now_ms = self._ctx.wall_ms()
            next_due = self._ctx.store.next_due_ms()
            wait = poll
            if next_due is not None and next_due > now_ms:
                wait = min(wait, (next_due - now_ms) / 1000)
            with trio.move_on_after(wait):
                await self._wake.wait()
            self._wake = trio.Event()
            if trio.current_time() - started_over >= poll:
                # At least once a poll period the pass starts over, wake-ups or not: it finds what became
                # due behind the cursor. A submit's due time is the time its write was sent to the store,
                # and a scheduled message that fell due while that write was committing moved the cursor
                # past it: under steady traffic (every submit wakes the scheduler) such a message waited
                # until traffic paused, 5 to 13 minutes in a soak. Also a message whose carrier had no
                # bound transmitter, a resend keeping its original due time.
                self._cursor = b""
                started_over = trio.current_time()

    async def _schedule_round(self) -> None:
        """Hand what is due to the dispatchers, in due order, streaming the index by cursor.

        The cursor survives between rounds, so a wake-up costs only what was added since (new messages and
        retries sort after it: their due time is now or later). It stops at the first message whose carrier
        has no room, where the next round starts; the periodic pass and resends start over from the top.
        """
        ctx = self._ctx
        ops: list[Op] = []
        transmitting = ctx.transmitting()
        skip = self._pending
        while True:
            now_ms = ctx.wall_ms()
            entries = ctx.store.due(now_ms, after=self._cursor, limit=ctx.settings.dispatch_batch)
            if not entries:
                break
            size = ctx.settings.ready_queue_size
            room = sum(size - self._ready[c].statistics().current_buffer_used for c in transmitting)
            # Every message this pass can take, read in one transaction.
            wanted = [e.message_id for e in entries if e.message_id not in skip][: max(room, 0)]
            found = self._read(wanted)
            for entry in entries:
                mid = entry.message_id
                if mid not in skip and mid not in ctx.sequencer and mid not in ctx.poisoned:
                    if room <= 0:
                        break  # every carrier is saturated: resume here when a dispatcher frees room
                    room -= 1
                    msg = found.get(mid)
                    if msg is not None:
                        try:
                            handed = self._schedule_one(msg, transmitting, now_ms, ops)
                        except Exception as err:  # the fault boundary around one message
                            ctx.internal_error(mid, err)
                            handed = True
                        if not handed:
                            break
                self._cursor = entry.key
            else:
                await trio.lowlevel.checkpoint()
                continue
            break
        if ops:
            self.ended.count(ops, await ctx.commit(ops))
            if any(isinstance(op, Reroute) for op in ops):
                self.wake()

    def _read(self, ids: list[int]) -> dict[int, Message | None]:
        """The messages `ids` in one read; a record that cannot be read fails its message alone."""
        store = self._ctx.store
        try:
            return dict(zip(ids, store.get_many(ids), strict=True))
        except Exception:
            found: dict[int, Message | None] = {}
            for mid in ids:
                try:
                    found[mid] = store.get(mid)
                except Exception as err:
                    self._ctx.internal_error(mid, err)
            return found

    def _schedule_one(self, msg: Message, transmitting: set[str], now_ms: int, ops: list[Op]) -> bool:
        """What to do with a due message: end it (validity passed, no carrier can send its text), take it off
        a carrier that has been down too long, or hand it to a dispatcher. False: its carrier has no room."""
        ctx = self._ctx
        if msg.expires_ms and msg.expires_ms <= now_ms:
            ops.extend(Advance(msg.id, i, _EXPIRE) for i, s in enumerate(msg.segments) if s.state in DUE_STATES)
            return True
        if msg.carrier and msg.carrier not in transmitting and ctx.handing_back(msg.carrier):
            # Ignored if a part is already there.
            ops.append(Reroute(msg.id, msg.carrier, ctx.handback_reason(msg.carrier)))
            return True
        if not msg.carrier and msg.segments[0].due_ms > msg.created_ms and self._still_held(msg, now_ms, ops):
            return True
        if not msg.carrier:
            route = [c for c in ctx.route_of(msg) if c in ctx.encodings]
            if not route or all(ctx.fit(msg.text, c) for c in route):
                # Accepted under a configuration that has changed since: no carrier of its route is left
                # that can send it.
                reason = ctx.fit(msg.text, route[0]) if route else "no_route"
                ops.append(Advance(msg.id, None, Event(Ev.FAIL, reason or "no_route")))
                return True
        return self._hand_over(msg, transmitting)

    def _still_held(self, msg: Message, now_ms: int, ops: list[Op]) -> bool:
        """A message that waited (a send window, a schedule time, a retry) is checked again before it goes,
        against the rules of now: the number may have opted out or been blacklisted meanwhile, and a reload
        may have narrowed its send window. True when it does not go now (ended, or held again)."""
        ctx = self._ctx
        policy = ctx.policy
        refused = ctx.store.refusal(msg.recipient, msg.account, optout=policy.check_optout(msg.message_class))
        if refused:
            ops.append(Advance(msg.id, None, Event(Ev.FAIL, refused)))
            return True
        if policy.window is not None:
            number = ctx.routing.numbers.check_e164(msg.recipient)
            zones = ctx.routing.numbers.time_zones(msg.recipient, geographic=number.geographic) if isinstance(
                number, Number
            ) else ()  # fmt: skip
            until = policy.defer_until(msg.account, msg.message_class, zones, now_ms)
            if until:
                ops.append(Advance(msg.id, None, Event(Ev.DEFER, until_ms=until)))
                return True
        return False

    def _hand_over(self, msg: Message, transmitting: set[str]) -> bool:
        """Queue `msg` for its carrier's dispatcher; False when that carrier has no room right now."""
        carrier = self._carrier_for(msg, transmitting)
        if carrier is None:
            if not msg.carrier and not self._ctx.route_of(msg):
                log.warning("no_route", message_id=msg.id)
            return True  # nowhere to send it now: it stays due, and the next wrap-around sees it again
        try:
            self._ready[carrier].send_nowait(msg)
        except trio.WouldBlock:
            return False
        self._pending.add(msg.id)
        self._handed += 1
        return True

    def _carrier_for(self, msg: Message, transmitting: set[str]) -> str | None:
        """The carrier to send on now: the one already fixed for the message (its parts share a
        concatenation reference), else the first carrier of its route with a bound transmitter that can send
        its text, one it has not left before if there is such a one."""
        if msg.carrier:
            return msg.carrier if msg.carrier in transmitting else None
        ctx = self._ctx
        left = {c for c, _ in msg.trail}
        now = trio.current_time()
        fallback = None
        for carrier in ctx.route_of(msg):
            if carrier in transmitting and carrier in ctx.encodings and not ctx.fit(msg.text, carrier):
                if carrier not in left and not ctx.health.cooling(carrier, now):
                    return carrier
                fallback = fallback or carrier  # one it left, or one cooling down: when there is no other
        return fallback

    async def run_deadlines(self) -> None:
        """Ends what passed its deadline: validity while waiting, receipt timeout while submitted."""
        ctx = self._ctx
        while True:
            await trio.sleep(ctx.settings.scheduler_poll_seconds)
            next_ms = ctx.store.next_deadline_ms()
            if next_ms is None or next_ms > ctx.wall_ms():
                continue
            more = True
            while more:
                (result,) = await ctx.apply([Overdue(ctx.settings.dispatch_batch)])
                if not isinstance(result, SweepResult):
                    log.error("overdue_not_applied", error=str(result))
                    break
                self._overdue_ended += result.messages
                more = result.more


_EXPIRE = Event(Ev.EXPIRE)
