"""Dispatch [trio]: one or more dispatchers per carrier take messages from its ready queue, prepare a batch in
one group commit (carrier, parts, concatenation reference, segments -> submitting), split them and hand the
submit_sm to the carrier's binds; "submitting" is durable before a PDU can reach the wire.

A long message's first due part goes at once; its later parts wait in the sequencer until the carrier
accepted the part before (the correlator releases them here). Jobs no bind took while the carrier had no
bound transmitter for too long go back to the scheduler.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TypeVar

import structlog
import trio

from gateway.carriers.jobs import SubmitJob
from gateway.carriers.pool import CarrierPool
from gateway.engine import plan
from gateway.engine.context import DRAINED, PAUSED, Context
from gateway.engine.scheduler import Scheduler
from gateway.errors import GatewayError
from gateway.lifecycle import DUE_STATES, Ev, Event, State
from gateway.segmenting import Plan, SplitMethod, rereference, segment
from gateway.smpp.errors import SegmentingError
from gateway.store import Advance, Message, Op, Prepare, PrepareResult, Reroute

log = structlog.get_logger(__name__)

T = TypeVar("T")


async def drain(channel: trio.MemoryReceiveChannel[T], limit: int) -> list[T]:
    """Wait for one item, then take whatever else is already there, up to `limit`: one batch per commit.

    A channel closed behind the buffered items ends the *next* call: what this one took is returned and
    committed, never dropped with the EndOfChannel.
    """
    items = [await channel.receive()]
    while len(items) < limit:
        try:
            items.append(channel.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            break
    return items


@dataclass(frozen=True, slots=True)
class CarrierDispatch:
    preparing: int  # messages its dispatchers are preparing now
    queued_jobs: int  # submit_sm prepared and waiting for a bind to take them
    ahead_limit: int  # how many may wait so (see Dispatch._ahead_limit)
    released_backlog: int  # later parts released while the job queue was full


@dataclass(frozen=True, slots=True)
class DispatchStatistics:
    dispatched: int  # messages prepared and handed to binds since the start
    parts_waiting: int  # long messages whose later parts wait for the carrier to accept the part before
    handed_back: int  # messages taken back from a carrier down too long, since the start
    carriers: dict[str, CarrierDispatch]
    parts: dict[str, int]  # submit_sm built for each carrier since the start (every part of a long message)


class Dispatch:
    def __init__(self, ctx: Context, ready: dict[str, trio.MemoryReceiveChannel[Message]], scheduler: Scheduler) -> (
        None
    ):
        self._ctx = ctx
        self._ready = ready
        self._scheduler = scheduler
        # Parts released by an accepted part that did not fit the carrier's job queue at once, per carrier.
        self._released: dict[str, list[SubmitJob]] = {name: [] for name in ctx.pools}
        self._release_wake = {name: trio.Event() for name in ctx.pools}
        # Messages each carrier's dispatchers are preparing now (see _ahead_limit).
        self._preparing = dict.fromkeys(ctx.pools, 0)
        self._answered = {name: trio.Event() for name in ctx.pools}
        self._dispatched = 0
        self._handed_back = 0
        self._parts = dict.fromkeys(ctx.pools, 0)
        # Each carrier's tasks run under a scope of their own: a carrier removed by a reload ends its tasks.
        self._scopes: dict[str, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None

    def statistics(self) -> DispatchStatistics:
        carriers = {
            name: CarrierDispatch(
                self._preparing[name], pool.jobs.statistics().current_buffer_used, self._ahead_limit(name),
                len(self._released[name]),
            )
            for name, pool in self._ctx.pools.items()
        }  # fmt: skip
        return DispatchStatistics(
            self._dispatched, len(self._ctx.sequencer), self._handed_back, carriers, dict(self._parts)
        )

    def start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        for name in self._ctx.pools:
            self._start_carrier(name)
        nursery.start_soon(self._hand_back_loop)

    def _start_carrier(self, name: str) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(self._run_carrier, name)

    async def _run_carrier(self, name: str) -> None:
        """One carrier's dispatchers and releaser, under a scope `remove_carrier` cancels."""
        async with trio.open_nursery() as tasks:
            self._scopes[name] = tasks.cancel_scope
            for _ in range(self._ctx.settings.dispatch_concurrency):
                tasks.start_soon(self._dispatcher, name)
            tasks.start_soon(self._releaser, name)

    def add_carrier(self, name: str, ready: trio.MemoryReceiveChannel[Message]) -> None:
        """A carrier a reload added (its pool already in the context): its dispatchers and releaser."""
        self._ready[name] = ready
        self._released.setdefault(name, [])
        self._release_wake.setdefault(name, trio.Event())
        self._preparing.setdefault(name, 0)
        self._answered.setdefault(name, trio.Event())
        self._parts.setdefault(name, 0)
        self._start_carrier(name)

    def remove_carrier(self, name: str) -> None:
        """A carrier a reload removed (its pool stopped, what it had not sent handed back): its tasks end, and
        the messages waiting in its ready queue go back to the scheduler."""
        scope = self._scopes.pop(name, None)
        if scope is not None:
            scope.cancel()
        ready = self._ready.pop(name, None)
        left: list[int] = []
        while ready is not None:
            try:
                left.append(ready.receive_nowait().id)
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        self._scheduler.dispatched(left)
        self._scheduler.rescan()

    # --- preparing ------------------------------------------------------------------------------------

    def _ahead_limit(self, carrier: str) -> int:
        """How many submits may be "submitting" on `carrier` before a bind took them: four times its binds'
        windows and a dispatch batch (fewer starve the binds while a dispatch commits). A crash makes each of
        them ambiguous (an at-most-once message then ends unknown though it never left), so no more are
        prepared ahead than keep the windows full."""
        pool = self._ctx.pools[carrier]
        windows = sum(b.window for b in pool.config.binds if b.mode.transmits)
        return 4 * windows + self._ctx.settings.dispatch_batch

    async def _room_ahead(self, carrier: str) -> int:
        """Wait until fewer than `_ahead_limit` submits wait for a bind of `carrier`; how many more may."""
        limit = self._ahead_limit(carrier)
        jobs = self._ctx.pools[carrier].jobs
        for _ in itertools.count():
            room = limit - jobs.statistics().current_buffer_used - self._preparing[carrier]
            if room > 0:
                return room
            # A bind takes jobs as its window frees, which its answers tell: the correlator wakes us. The
            # timeout covers jobs taken without an answer (a hand-back, a bind that lost its link).
            with trio.move_on_after(_AHEAD_RECHECK_SECONDS):
                await self._answered[carrier].wait()
        raise AssertionError("unreachable")

    def answered(self, carrier: str) -> None:
        """`carrier`'s binds answered submits: their windows have room again (see _room_ahead)."""
        answered = self._answered.get(carrier)
        if answered is not None:
            answered.set()
            self._answered[carrier] = trio.Event()

    async def _dispatcher(self, carrier: str) -> None:
        ready = self._ready[carrier]
        settings = self._ctx.settings
        while True:
            room = await self._room_ahead(carrier)
            batch = await drain(ready, min(room, settings.dispatch_batch))
            self._preparing[carrier] += len(batch)
            try:
                jobs = await self._dispatch(carrier, batch)
            finally:
                self._preparing[carrier] -= len(batch)
                self._scheduler.dispatched([m.id for m in batch])
            self._dispatched += len(jobs)
            jobs_tx = self._ctx.pools[carrier].jobs
            for job in jobs:
                # send() yields on every call; only wait when the pool's queue is really full.
                try:
                    jobs_tx.send_nowait(job)
                except trio.WouldBlock:
                    await jobs_tx.send(job)
            self._scheduler.wake()

    async def _dispatch(self, carrier: str, batch: list[Message]) -> list[SubmitJob]:
        """Prepare and mark a batch "submitting" in one commit, then build its submit_sm jobs: the first due
        part of each message; its later parts wait in the sequencer for the carrier to accept the one before."""
        ctx = self._ctx
        ops: list[Op] = []
        spans: list[tuple[Message, int, int, list[int]]] = []
        # A bulk send is one text to many numbers: segment it once per batch (ref 1 as a placeholder).
        texts: dict[str, Plan | None] = {}
        for msg in batch:
            start = len(ops)
            try:
                todo = self._plan_ops(carrier, msg, ops, texts)
            except Exception as err:  # the fault boundary around one message
                del ops[start:]
                ctx.internal_error(msg.id, err)
                todo = []
            spans.append((msg, start, len(ops), todo))
        results = await ctx.commit(ops)
        self._scheduler.ended.count(ops, results)  # a part refused for good fails the rest here
        jobs: list[SubmitJob] = []
        for msg, start, end, todo in spans:
            mine = results[start:end]
            if not todo or any(isinstance(r, GatewayError) for r in mine):
                continue  # cancelled or expired meanwhile, or refused for this carrier (FAIL written)
            try:
                jobs.append(ctx.sequencer.start(msg.id, self._jobs(carrier, msg, mine[0], todo, texts)))
                self._parts[carrier] += len(todo)
            except Exception as err:  # the fault boundary around one message
                ctx.sequencer.stop(msg.id)
                ctx.internal_error(msg.id, err)
        return jobs

    def _jobs(self, carrier: str, msg: Message, prepared: object, todo: list[int], texts: dict[str, Plan | None]) -> (
        list[SubmitJob]
    ):
        """The submit_sm of each part of `msg` in `todo`, in order."""
        ctx = self._ctx
        encoding = ctx.encodings[carrier]
        ref = prepared.concat_ref if isinstance(prepared, PrepareResult) else msg.concat_ref
        parts = texts.get(msg.text) or segment(msg.text, encoding, ref=1)
        if ref:  # each long message gets its own reference
            parts = rereference(parts, _ref_for(ref, encoding.ref_bits))
        elif len(parts) > 1 and encoding.split is not SplitMethod.PAYLOAD:
            raise ValueError(f"message {msg.id} has {len(parts)} parts and no concatenation reference")
        if len(parts) != len(msg.segments) and msg.carrier:
            raise ValueError(f"message {msg.id} has {len(msg.segments)} segments, its text {len(parts)} parts")
        want = ctx.carriers[carrier].receipts
        movable = ctx.movable(msg, carrier, todo[0])
        jobs = []
        for i in todo:
            attempts = (msg.segments[i] if msg.carrier else msg.segments[0]).attempts + 1
            segment_ref = plan.SegmentRef(msg.id, i, msg.message_class, attempts, movable and i == todo[0])
            wire = plan.submit_sm_body(msg, parts[i], want_receipt=want)
            if wire is None:  # what the codec would refuse: the bind refuses the PDU as it always did
                jobs.append(SubmitJob(plan.submit_sm(msg, parts[i], want_receipt=want), segment_ref))
            else:
                jobs.append(SubmitJob(None, segment_ref, wire))
        return jobs

    def _plan_ops(self, carrier: str, msg: Message, ops: list[Op], texts: dict[str, Plan | None]) -> list[int]:
        """Append the ops that move `msg`'s first due part to "submitting" on `carrier` (its later parts to
        "queued"); returns the segments to send, in order."""
        if msg.carrier:
            # Prepared before (a resend or a retry): only its due segments go again, same reference.
            todo = [i for i, s in enumerate(msg.segments) if s.state in DUE_STATES]
            refused = [s.reason for s in msg.segments if s.state is State.REJECTED]
            if refused:  # a part was refused for good: the rest never goes (no half messages)
                ops.extend(Advance(msg.id, i, Event(Ev.FAIL, refused[0])) for i in todo)
                return []
            if any(msg.segments[i].possible_duplicate for i in todo):
                log.warning("message_resent", message_id=msg.id, carrier=carrier, possible_duplicate=True)
            for n, i in enumerate(todo):
                if msg.segments[i].state is not State.QUEUED:
                    ops.append(Advance(msg.id, i, Event(Ev.SCHEDULE)))
                if n == 0:
                    ops.append(Advance(msg.id, i, Event(Ev.DISPATCH, bind=carrier)))
            return todo
        if msg.text not in texts:
            try:
                texts[msg.text] = segment(msg.text, self._ctx.encodings[carrier], ref=1)
            except SegmentingError:
                texts[msg.text] = None
        parts = texts[msg.text]
        if parts is None:  # the scheduler checks the fit: only a changed configuration gets here
            reason = self._ctx.fit(msg.text, carrier) or "message_too_long"
            ops.append(Advance(msg.id, None, Event(Ev.FAIL, reason)))
            return []
        # One segment per PDU: a message_payload split sends the whole text in one.
        n = len(parts)
        ops.append(Prepare(msg.id, carrier, n, concat=n > 1, dispatch_bind=carrier, dispatch_parts=1))
        return list(range(n))

    # --- later parts ----------------------------------------------------------------------------------

    def release(self, carrier: str, job: SubmitJob) -> None:
        """Hand a released later part to its carrier's binds; never waits (the correlator must not block on a
        full job queue while the binds wait for it to take their results)."""
        try:
            self._ctx.pools[carrier].jobs.send_nowait(job)
        except trio.WouldBlock:
            self._released[carrier].append(job)
            self._release_wake[carrier].set()

    async def _releaser(self, carrier: str) -> None:
        while True:
            await self._release_wake[carrier].wait()
            self._release_wake[carrier] = trio.Event()
            backlog, self._released[carrier] = self._released[carrier], []
            for job in backlog:
                await self._ctx.pools[carrier].jobs.send(job)

    # --- a carrier down too long ----------------------------------------------------------------------

    async def _hand_back_loop(self) -> None:
        """Hands the queued work of a carrier with no bound transmitter for too long back to the scheduler."""
        ctx = self._ctx
        while True:
            await trio.sleep(ctx.settings.scheduler_poll_seconds)
            for carrier in ctx.pools:
                if ctx.handing_back(carrier):
                    await self._hand_back(carrier)
                elif ctx.held.get(carrier) == PAUSED:  # what a dispatcher was preparing when it was paused
                    await self._hand_back(carrier, reroute=False)

    async def _hand_back(self, carrier: str, *, reroute: bool = True, pool: CarrierPool | None = None) -> int:
        """Jobs no bind of `carrier` took (it has been down too long, or the operator paused or drained it)
        go back to the scheduler, which moves their messages to the next carrier of their route when no part
        of them reached this one (`reroute`; a pause keeps them for this carrier). Returns how many
        messages. `pool`: a pool of the carrier a reload replaced (default: its pool now)."""
        ctx = self._ctx
        jobs = (pool or ctx.pools[carrier]).take_unsent() + self._released.get(carrier, [])
        self._released[carrier] = []
        if not jobs:
            return 0
        ops: list[Op] = []
        moved: set[int] = set()
        for job in jobs:
            ref: plan.SegmentRef = job.context
            ops.append(Advance(ref.message_id, ref.segment, _REQUEUE))
            ctx.sequencer.stop(ref.message_id)
            moved.add(ref.message_id)
        if reroute:
            reason = ctx.handback_reason(carrier)
            ops.extend(Reroute(mid, carrier, reason) for mid in moved)
        await ctx.commit(ops)
        self._handed_back += len(moved)
        log.warning("carrier_handed_back", carrier=carrier, messages=len(moved), parts=len(jobs),
                    rerouted=reroute)  # fmt: skip
        self._scheduler.rescan()
        return len(moved)

    async def retire(self, carrier: str, *, reroute: bool, grace: float) -> CarrierPool:
        """Take `carrier`'s pool out of service for a reload: held (drained when `reroute`, else paused) so
        nothing new reaches it, what its binds had not taken handed back, the pool stopped (its windows
        answered, within `grace` seconds), and what is left handed back. Returns the stopped pool."""
        ctx = self._ctx
        pool = ctx.pools[carrier]
        await self.hold(carrier, DRAINED if reroute else PAUSED)
        pool.stop()
        with trio.move_on_after(grace):
            await pool.wait_stopped()
        await self._hand_back(carrier, reroute=reroute, pool=pool)
        return pool

    async def hand_back_from(self, carrier: str, pool: CarrierPool, *, reroute: bool = False) -> int:
        """What is left in a retired pool's queue (a dispatcher's send that raced the swap)."""
        return await self._hand_back(carrier, reroute=reroute, pool=pool)

    async def hold(self, carrier: str, how: str | None) -> int:
        """The operator's pause (`PAUSED`: its messages wait for it), drain (`DRAINED`: they move to the next
        carrier of their route, as when it is down too long) or resume (None) of a carrier. Its binds stay
        up either way, so receipts and MO keep coming. What its binds had not yet taken goes back at once;
        what is in their windows finishes. Returns how many messages were taken back."""
        ctx = self._ctx
        if how is None:
            ctx.held.pop(carrier, None)
            log.info("carrier_resumed", carrier=carrier)
            self._scheduler.rescan()
            return 0
        ctx.held[carrier] = how
        log.warning("carrier_held", carrier=carrier, how=how)
        return await self._hand_back(carrier, reroute=how == DRAINED)


_REQUEUE = Event(Ev.REQUEUE)
_AHEAD_RECHECK_SECONDS = 0.05


def _ref_for(ref: int, bits: int) -> int:
    """The store's per-destination counter runs 1..65535; an 8-bit UDH takes 1..255 of it in turn."""
    return ref if bits == 16 else (ref - 1) % 255 + 1
