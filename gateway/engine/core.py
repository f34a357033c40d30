"""The engine: accept -> persist -> schedule -> route and split -> submit -> correlate -> event.

Tasks (one each, never one per message or PDU):

- scheduler     streams the store's due-time index (new, deferred, retried messages) into per-carrier
                ready queues, choosing the first carrier of the route that has a bound transmitter
- dispatcher    one per carrier: prepares a batch of messages in one group commit (carrier, parts,
                concatenation reference, segments -> submitting), splits them and hands the submit_sm to
                the carrier pool; "submitting" is durable before a PDU can reach the wire
- results       turns submit_sm outcomes of every carrier into lifecycle events, a batch per commit
- inbound       receipts and MO of every carrier, a batch per commit; deliver_sm_resp only after commit
- housekeeping  MO reassembly expiry and store retention

It also implements `UpstreamBackend`, so the upstream server calls it directly.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
import trio

from gateway.carriers.jobs import Inbound, OutcomeKind, SubmitJob, SubmitOutcome
from gateway.carriers.pool import CarrierPool
from gateway.engine import plan
from gateway.engine.portability import PortabilityImporter
from gateway.engine.sequencer import Sequencer
from gateway.engine.settings import CarrierSettings, EngineSettings, ErrorClasses
from gateway.errors import GatewayError
from gateway.lifecycle import DUE_STATES, Ev, Event, State, carrier_rejected
from gateway.logbudget import LogBudget
from gateway.memtrim import Trimmer
from gateway.routing.content import Scan
from gateway.routing.health import Budget, ErrorBudget
from gateway.routing.numbers import BadNumber, Number, normalise
from gateway.routing.router import Plan as RoutePlan
from gateway.routing.router import Refusal, Routing
from gateway.segmenting import (
    MoMessage,
    MoPart,
    Plan,
    Reassembler,
    SplitMethod,
    mo_part,
    preview,
    rereference,
    segment,
)
from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandStatus, status_name
from gateway.smpp.errors import MessageTooLong, SegmentingError, WireError
from gateway.smpp.receipt import ReceiptError, parse_receipt_status
from gateway.store import (
    Advance,
    AdvanceResult,
    CorruptRecord,
    KeepMoPart,
    Message,
    Mo,
    Op,
    OpFailed,
    Overdue,
    Prepare,
    PrepareResult,
    Recipient,
    Reroute,
    Result,
    SetCursor,
    SetOptOut,
    Store,
    Submit,
    SweepResult,
    Writer,
)
from gateway.store.records import (
    E_ACCOUNT,
    E_ADDRESS,
    E_AT_MS,
    E_BATCH,
    E_CARRIER,
    E_CLIENT_REF,
    E_KIND,
    E_MESSAGE_ID,
    E_NUMBER,
    E_REASON,
    E_SEQ,
    E_TEXT,
    EventFields,
    event_duplicate,
)
from gateway.store.records import EventKind as StoredKind
from gateway.upstream import (
    CancelResult,
    EncodedEvent,
    InvalidRequest,
    MessageQuery,
    MessageStatus,
    NotCancellable,
    NotFound,
    PreviewRequest,
    PreviewResult,
    SubmitRequest,
    SubmitResult,
    SubmittedMessage,
)
from gateway.upstream import EventKind as UpstreamKind
from gateway.upstream.frames import encode_frame

log = structlog.get_logger(__name__)

_KINDS = {
    StoredKind.SUBMITTED: UpstreamKind.SUBMITTED,
    StoredKind.DELIVERED: UpstreamKind.DELIVERED,
    StoredKind.FAILED: UpstreamKind.FAILED,
    StoredKind.MO: UpstreamKind.MO,
}


@dataclass(frozen=True, slots=True)
class AccountSettings:
    name: str
    secret_env: str | None = None
    secret_file: str | None = None
    # MO sent to these addresses (short codes, long numbers) belongs to this account.
    mo_addresses: tuple[str, ...] = ()
    # Its national numbers are read as this region's (ISO 3166); "" takes engine.default_region.
    region: str = ""


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


class Engine:
    def __init__(
        self,
        *,
        store: Store,
        writer: Writer,
        pools: dict[str, CarrierPool],
        carriers: dict[str, CarrierSettings],
        routing: Routing,
        settings: EngineSettings,
        accounts: Sequence[AccountSettings],
        results: trio.MemoryReceiveChannel[SubmitOutcome],
        inbound: trio.MemoryReceiveChannel[Inbound],
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.writer = writer
        self.pools = pools
        self.carriers = carriers
        # Routes, networks, word lists and number rules: replaced whole by a reload (set_routing).
        self.routing = routing
        self._rng = rng or random.Random()
        # The number-portability table, imported from its CSV while the gateway runs (portability.py).
        self.portability = PortabilityImporter(store, self._apply)
        # Carriers failing too often are skipped for a cool-down (routing/health.py).
        self._health = ErrorBudget({
            name: Budget(b.max_error_rate, b.window_seconds, b.min_submits, b.cooldown_seconds)
            for name, b in ((n, c.error_budget) for n, c in carriers.items())
        })  # fmt: skip
        self.settings = settings
        self.accounts = {a.name: a for a in accounts}
        self._mo_accounts = {addr: a.name for a in accounts for addr in a.mo_addresses}
        self._default_account = accounts[0].name if accounts else ""
        self._results = results
        self._inbound = inbound
        self._wall_ms = wall_ms
        self._encodings = {name: c.encoding.route_encoding() for name, c in carriers.items()}
        self._id_formats = {name: c.id_formats for name, c in carriers.items()}
        self._accept_encoding = next(iter(self._encodings.values()), None)
        self._ready: dict[str, trio.MemorySendChannel[Message]] = {}
        self._ready_rx: dict[str, trio.MemoryReceiveChannel[Message]] = {}
        for name in pools:
            self._ready[name], self._ready_rx[name] = trio.open_memory_channel[Message](
                settings.ready_queue_size
            )
        # Messages handed to a dispatcher and not yet dispatched: the scheduler must not hand them twice.
        self._pending: set[int] = set()
        self._cursor = b""  # the scheduler's place in the due index
        self._wake = trio.Event()
        self._new_events = trio.Event()
        # Where an event query (account, kinds, after seq) may resume scanning: see _account_rows.
        self._scanned: dict[tuple[str, frozenset[UpstreamKind] | None, int], int] = {}
        self._seen_seq = store.last_seq()
        self._reassembler = Reassembler(settings.mo_reassembly_timeout_seconds)
        self._results_done = trio.Event()
        self._inbound_done = trio.Event()
        self.counters = {
            "receipts_unparseable": 0, "receipts_early": 0, "receipts_ignored": 0, "mo": 0, "internal_errors": 0,
            "rerouted": 0, "handed_back": 0, "overdue_ended": 0, "inbound_refused": 0, "carrier_cool_downs": 0,
            "receipts_unmatched": store.unmatched_count(),
        }  # fmt: skip
        # What a carrier sends wrong is logged, within a bound (an SMSC can repeat a mistake at its full rate).
        self._unparseable_log = LogBudget("receipt_unparseable_more")
        self._refused_log = LogBudget("inbound_refused_more")
        # A long message's later parts, waiting for the carrier to accept the part before (sequencer.py).
        self._sequencer = Sequencer()
        # Parts released by an accepted part that did not fit the carrier's job queue at once, per carrier.
        self._released: dict[str, list[SubmitJob]] = {name: [] for name in pools}
        self._release_wake = {name: trio.Event() for name in pools}
        # Messages each carrier's dispatchers are preparing now (see _ahead_limit).
        self._preparing = dict.fromkeys(pools, 0)
        self._answered = {name: trio.Event() for name in pools}
        # Messages the gateway failed with internal_error, and those it could not even fail (a record it
        # cannot read): the scheduler never hands them out again, so no bug loops at start-up.
        self._failing: list[tuple[int, str]] = []
        self._poisoned: set[int] = set()
        self._failing_wake = trio.Event()

    # --- running ------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self._restore_mo_parts()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._scheduler)
            for name in self.pools:
                for _ in range(self.settings.dispatch_concurrency):
                    nursery.start_soon(self._dispatcher, name)
                nursery.start_soon(self._releaser, name)
            nursery.start_soon(self._results_loop)
            nursery.start_soon(self._inbound_loop)
            nursery.start_soon(self._housekeeping)
            nursery.start_soon(self._overdue_loop)
            nursery.start_soon(self._failer)
            nursery.start_soon(self.portability.run)
            task_status.started()

    async def _restore_mo_parts(self) -> None:
        """The parts of long MOs acknowledged before a stop or a crash wait for the rest again, as old as
        they are (a message whose time ran out meanwhile comes out incomplete at the next housekeeping)."""
        stored, unreadable = self.store.mo_parts()
        if unreadable:
            log.error("mo_parts_unreadable", rows=unreadable)
        if not stored:
            return
        now, wall = trio.current_time(), self._wall_ms()
        ops: list[Op] = []
        for p, received_ms in sorted(stored, key=lambda kept: kept[1]):
            part = MoPart(p.source, p.destination, p.text, p.data_coding, p.ref, p.total, p.seq)
            for mo in self._reassembler.add(part, now - max(0, wall - received_ms) / 1000):
                self._mo_ops(mo, p.carrier, ops)
        if ops:
            self._check_results(ops, await self._apply(ops))
        log.info("mo_parts_restored", parts=len(stored), waiting=self._reassembler.pending)

    def wake(self) -> None:
        """Something became due (a submit, a resend, a retry): rescan the due index now."""
        self._wake.set()

    async def _apply(self, ops: Sequence[Op]) -> list[Result | GatewayError]:
        """Every write goes through here: one group commit, then subscribers hear of new events."""
        results = await self.writer.apply(ops)
        seq = self.store.last_seq()
        if seq != self._seen_seq:
            self._seen_seq = seq
            self._new_events.set()
            self._new_events = trio.Event()
        return results

    # --- scheduling and dispatch --------------------------------------------------------------------

    def _can_transmit(self, carrier: str) -> bool:
        pool = self.pools.get(carrier)
        return pool is not None and any(b.is_bound and b.mode.transmits for b in pool.binds)

    def _transmitting(self) -> set[str]:
        """The carriers with a bound transmitter now."""
        return {carrier for carrier in self.pools if self._can_transmit(carrier)}

    def _handing_back(self, carrier: str) -> bool:
        """True once `carrier` has had no bound transmitter for its handback_seconds (the pool keeps since
        when)."""
        since = self.pools[carrier].transmitter_down_since()
        limit = self.carriers[carrier].handback_seconds if carrier in self.carriers else 30.0
        return since is not None and trio.current_time() - since >= limit

    def _fit(self, text: str, carrier: str) -> str:
        """"" when `carrier` can send `text` within its encodings and part limit, else the reason code
        (message_too_long, not_encodable): the route table's answer, kept per text (Router.fit)."""
        return self.routing.router.fit(text, carrier)[0]

    def _text_error(self, text: str, carrier: str) -> GatewayError | None:
        """The error a request gets for a text `carrier` cannot send (MessageTooLong, NotEncodable)."""
        encoding = self._encodings[carrier]
        try:
            shape = preview(text, encoding)
        except SegmentingError as err:
            return err
        return MessageTooLong(shape.parts, encoding.max_parts) if shape.too_long else None

    def _carrier_for(self, msg: Message, transmitting: set[str]) -> str | None:
        """The carrier to send on now: the one already fixed for the message (its parts share a
        concatenation reference), else the first carrier of its route with a bound transmitter that can send
        its text, one it has not left before if there is such a one."""
        if msg.carrier:
            return msg.carrier if msg.carrier in transmitting else None
        left = {c for c, _ in msg.trail}
        now = trio.current_time()
        fallback = None
        for carrier in self._route_of(msg):
            if carrier in transmitting and carrier in self._encodings and not self._fit(msg.text, carrier):
                if carrier not in left and not self._health.cooling(carrier, now):
                    return carrier
                fallback = fallback or carrier  # one it left, or one cooling down: when there is no other
        return fallback

    def _movable(self, msg: Message, carrier: str, first: int) -> bool:
        """Whether a refusal of part `first` on `carrier` may move the message to another carrier: no part of
        it was accepted (this is its first part) and its route has a carrier it has not left yet."""
        if first != 0:
            return False
        left = {c for c, _ in msg.trail}
        left.add(carrier)
        return any(c not in left for c in self._route_of(msg))

    async def _scheduler(self) -> None:
        poll = self.settings.scheduler_poll_seconds
        started_over = trio.current_time()
        while True:
            await self._schedule_round()
            now_ms = self._wall_ms()
            next_due = self.store.next_due_ms()
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
        ops: list[Op] = []
        transmitting = self._transmitting()
        skip = self._pending
        while True:
            now_ms = self._wall_ms()
            entries = self.store.due(now_ms, after=self._cursor, limit=self.settings.dispatch_batch)
            if not entries:
                break
            size = self.settings.ready_queue_size
            room = sum(size - self._ready[c].statistics().current_buffer_used for c in transmitting)
            # Every message this pass can take, read in one transaction.
            wanted = [e.message_id for e in entries if e.message_id not in skip][: max(room, 0)]
            found = self._read(wanted)
            for entry in entries:
                mid = entry.message_id
                if mid not in skip and mid not in self._sequencer and mid not in self._poisoned:
                    if room <= 0:
                        break  # every carrier is saturated: resume here when a dispatcher frees room
                    room -= 1
                    msg = found.get(mid)
                    if msg is not None:
                        try:
                            handed = self._schedule_one(msg, transmitting, now_ms, ops)
                        except Exception as err:  # the fault boundary around one message
                            self._internal_error(mid, err)
                            handed = True
                        if not handed:
                            break
                self._cursor = entry.key
            else:
                await trio.lowlevel.checkpoint()
                continue
            break
        if ops:
            results = await self._apply(ops)
            self._check_results(ops, results)
            if any(isinstance(op, Reroute) for op in ops):
                self.wake()

    def _read(self, ids: list[int]) -> dict[int, Message | None]:
        """The messages `ids` in one read; a record that cannot be read fails its message alone."""
        try:
            return dict(zip(ids, self.store.get_many(ids), strict=True))
        except Exception:
            found: dict[int, Message | None] = {}
            for mid in ids:
                try:
                    found[mid] = self.store.get(mid)
                except Exception as err:
                    self._internal_error(mid, err)
            return found

    def _schedule_one(self, msg: Message, transmitting: set[str], now_ms: int, ops: list[Op]) -> bool:
        """What to do with a due message: end it (validity passed, no carrier can send its text), take it off
        a carrier that has been down too long, or hand it to a dispatcher. False: its carrier has no room."""
        if msg.expires_ms and msg.expires_ms <= now_ms:
            ops.extend(Advance(msg.id, i, _EXPIRE) for i, s in enumerate(msg.segments) if s.state in DUE_STATES)
            return True
        if msg.carrier and msg.carrier not in transmitting and self._handing_back(msg.carrier):
            ops.append(Reroute(msg.id, msg.carrier, "no_bind"))  # ignored if a part is already there
            return True
        if not msg.carrier:
            route = [c for c in self._route_of(msg) if c in self._encodings]
            if not route or all(self._fit(msg.text, c) for c in route):
                # Accepted under a configuration that has changed since: no carrier of its route is left
                # that can send it.
                reason = self._fit(msg.text, route[0]) if route else "no_route"
                ops.append(Advance(msg.id, None, Event(Ev.FAIL, reason or "no_route")))
                return True
        return self._hand_over(msg, transmitting)

    def set_routing(self, routing: Routing) -> None:
        """A reload's routes, networks, word lists and number rules: they apply to messages accepted from now
        on (each message keeps the carriers its accept chose)."""
        self.routing = routing

    def _route_of(self, msg: Message) -> tuple[str, ...]:
        """The carriers to try for `msg`, in order: as the route table chose them at its accept; for a message
        stored before routes were (no stored route), as the route table of the day chooses now."""
        if msg.route:
            return msg.route
        number = self.routing.numbers.check_e164(msg.recipient)
        if not isinstance(number, Number):
            return ()
        network = self.store.ported_network(number.e164) if self.portability.active else None
        plan = self.routing.router.decide(
            number, account=msg.account, message_class=msg.message_class, sender=msg.sender, text=msg.text,
            rng=self._rng, network=network,
        )  # fmt: skip
        return plan.carriers if isinstance(plan, RoutePlan) else ()

    def _hand_over(self, msg: Message, transmitting: set[str]) -> bool:
        """Queue `msg` for its carrier's dispatcher; False when that carrier has no room right now."""
        carrier = self._carrier_for(msg, transmitting)
        if carrier is None:
            if not msg.carrier and not self._route_of(msg):
                log.warning("no_route", message_id=msg.id)
            return True  # nowhere to send it now: it stays due, and the next wrap-around sees it again
        try:
            self._ready[carrier].send_nowait(msg)
        except trio.WouldBlock:
            return False
        self._pending.add(msg.id)
        return True

    def _ahead_limit(self, carrier: str) -> int:
        """How many submits may be "submitting" on `carrier` before a bind took them: four times its binds'
        windows and a dispatch batch (fewer starve the binds while a dispatch commits). A crash makes each of
        them ambiguous (an at-most-once message then ends unknown though it never left), so no more are
        prepared ahead than keep the windows full."""
        pool = self.pools[carrier]
        windows = sum(b.window for b in pool.config.binds if b.mode.transmits)
        return 4 * windows + self.settings.dispatch_batch

    async def _room_ahead(self, carrier: str) -> int:
        """Wait until fewer than `_ahead_limit` submits wait for a bind of `carrier`; how many more may."""
        limit = self._ahead_limit(carrier)
        jobs = self.pools[carrier].jobs
        for _ in itertools.count():
            room = limit - jobs.statistics().current_buffer_used - self._preparing[carrier]
            if room > 0:
                return room
            # A bind takes jobs as its window frees, which its answers tell: the results task wakes us. The
            # timeout covers jobs taken without an answer (a hand-back, a bind that lost its link).
            with trio.move_on_after(_AHEAD_RECHECK_SECONDS):
                await self._answered[carrier].wait()
        raise AssertionError("unreachable")

    async def _dispatcher(self, carrier: str) -> None:
        ready = self._ready_rx[carrier]
        while True:
            room = await self._room_ahead(carrier)
            batch = await drain(ready, min(room, self.settings.dispatch_batch))
            self._preparing[carrier] += len(batch)
            try:
                jobs = await self._dispatch(carrier, batch)
            finally:
                self._preparing[carrier] -= len(batch)
                self._pending.difference_update(m.id for m in batch)
            jobs_tx = self.pools[carrier].jobs
            for job in jobs:
                # send() yields on every call; only wait when the pool's queue is really full.
                try:
                    jobs_tx.send_nowait(job)
                except trio.WouldBlock:
                    await jobs_tx.send(job)
            self.wake()

    async def _dispatch(self, carrier: str, batch: list[Message]) -> list[SubmitJob]:
        """Prepare and mark a batch "submitting" in one commit, then build its submit_sm jobs: the first due
        part of each message; its later parts wait in the sequencer for the carrier to accept the one before."""
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
                self._internal_error(msg.id, err)
                todo = []
            spans.append((msg, start, len(ops), todo))
        results = await self._apply(ops)
        self._check_results(ops, results)
        jobs: list[SubmitJob] = []
        for msg, start, end, todo in spans:
            mine = results[start:end]
            if not todo or any(isinstance(r, GatewayError) for r in mine):
                continue  # cancelled or expired meanwhile, or refused for this carrier (FAIL written)
            try:
                jobs.append(self._sequencer.start(msg.id, self._jobs(carrier, msg, mine[0], todo, texts)))
            except Exception as err:  # the fault boundary around one message
                self._sequencer.stop(msg.id)
                self._internal_error(msg.id, err)
        return jobs

    def _jobs(self, carrier: str, msg: Message, prepared: object, todo: list[int], texts: dict[str, Plan | None]) -> (
        list[SubmitJob]
    ):
        """The submit_sm of each part of `msg` in `todo`, in order."""
        encoding = self._encodings[carrier]
        ref = prepared.concat_ref if isinstance(prepared, PrepareResult) else msg.concat_ref
        parts = texts.get(msg.text) or segment(msg.text, encoding, ref=1)
        if ref:  # each long message gets its own reference
            parts = rereference(parts, _ref_for(ref, encoding.ref_bits))
        elif len(parts) > 1 and encoding.split is not SplitMethod.PAYLOAD:
            raise ValueError(f"message {msg.id} has {len(parts)} parts and no concatenation reference")
        if len(parts) != len(msg.segments) and msg.carrier:
            raise ValueError(f"message {msg.id} has {len(msg.segments)} segments, its text {len(parts)} parts")
        want = self.carriers[carrier].receipts
        movable = self._movable(msg, carrier, todo[0])
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
                texts[msg.text] = segment(msg.text, self._encodings[carrier], ref=1)
            except SegmentingError:
                texts[msg.text] = None
        parts = texts[msg.text]
        if parts is None:  # _carrier_for checks the fit: only a changed configuration gets here
            ops.append(Advance(msg.id, None, Event(Ev.FAIL, self._fit(msg.text, carrier) or "message_too_long")))
            return []
        # One segment per PDU: a message_payload split sends the whole text in one.
        n = len(parts)
        ops.append(Prepare(msg.id, carrier, n, concat=n > 1, dispatch_bind=carrier, dispatch_parts=1))
        return list(range(n))

    # --- correlation --------------------------------------------------------------------------------

    async def drained(self) -> None:
        """Once the carriers' result and inbound channels were closed and everything in them is stored."""
        await self._results_done.wait()
        await self._inbound_done.wait()

    async def _results_loop(self) -> None:
        try:
            while True:
                await self._correlate_outcomes(await drain(self._results, self.settings.correlate_batch))
        except trio.EndOfChannel:
            self._results_done.set()

    async def _correlate_outcomes(self, outcomes: list[SubmitOutcome]) -> None:
        now_ms = self._wall_ms()
        ops: list[Op] = []
        released: list[tuple[str, SubmitJob]] = []  # later parts to send once their DISPATCH is durable
        formats = self._id_formats
        deadlines = self._receipt_deadlines(now_ms)
        sequencer = self._sequencer
        self._count_health(outcomes)
        for o in outcomes:
            ref: plan.SegmentRef = o.context
            try:
                if o.kind is _ACCEPTED:  # nearly every outcome
                    event = plan.accepted_event(o, formats[o.carrier], deadlines[o.carrier])
                    ops.append(Advance(ref.message_id, ref.segment, event))
                    if ref.message_id in sequencer and (job := sequencer.next(ref.message_id)) is not None:
                        ops.append(Advance(ref.message_id, job.context.segment, Event(Ev.DISPATCH, bind=o.carrier)))
                        released.append((o.carrier, job))
                else:
                    self._unhappy(o, ref, now_ms, deadlines[o.carrier], ops)
            except Exception as err:  # the fault boundary around one message
                sequencer.stop(ref.message_id)
                self._internal_error(ref.message_id, err)
        for carrier in {o.carrier for o in outcomes}:  # their binds have window room again: see _room_ahead
            answered = self._answered.get(carrier)
            if answered is not None:
                answered.set()
                self._answered[carrier] = trio.Event()
        results = await self._apply(ops)
        self._check_results(ops, results)
        dispatched = {
            (op.message_id, op.segment) for op, r in zip(ops, results, strict=True)
            if isinstance(op, Advance) and op.event.kind is Ev.DISPATCH and not isinstance(r, GatewayError)
        }  # fmt: skip
        for carrier, job in released:
            if (job.context.message_id, job.context.segment) in dispatched:  # not cancelled or expired meanwhile
                self._release(carrier, job)
            else:
                self._rescan()  # its remaining parts are due again
        if any(isinstance(op, Advance) and op.event.kind in _RESCAN for op in ops) or any(
            isinstance(op, Reroute) for op in ops
        ):
            self._rescan()
        elif any(isinstance(op, Advance) and op.event.kind is Ev.SUBMIT_RETRY for op in ops):
            self.wake()

    def _count_health(self, outcomes: list[SubmitOutcome]) -> None:
        """Each answer into its carrier's error budget (routing/health.py): accepted, or a failure that says
        the carrier is unwell (a "next carrier" status, no answer); the others count as neither."""
        now = trio.current_time()
        health = self._health
        for o in outcomes:
            if o.kind is _ACCEPTED:
                failed = False
            elif o.kind is OutcomeKind.UNKNOWN:
                failed = True
            elif o.kind is OutcomeKind.REJECTED:
                settings = self.carriers.get(o.carrier)
                errors = settings.errors if settings is not None else ErrorClasses()
                if plan.error_class(o.status, errors) != "next_carrier":
                    continue
                failed = True
            else:
                continue  # never sent: the link, not the carrier's answer
            tripped = health.record(o.carrier, failed, now)
            if tripped is not None:
                log.warning(
                    "carrier_cooling_down", carrier=o.carrier, error_rate=round(tripped.error_rate, 3),
                    submits=tripped.submits, seconds=round(tripped.until - now, 1),
                )  # fmt: skip
                self.counters["carrier_cool_downs"] += 1
                self._rescan()  # its waiting messages may take another carrier now

    def _receipt_deadlines(self, now_ms: int) -> dict[str, int]:
        return {name: now_ms + int(c.receipt_timeout_seconds * 1000) for name, c in self.carriers.items()}

    def _unhappy(self, o: SubmitOutcome, ref: plan.SegmentRef, now_ms: int, deadline_ms: int, ops: list[Op]) -> None:
        """The ops for a part the carrier did not accept (refused, never sent, unanswered): the part's own
        event, and what it means for the later parts of its message, which were never written."""
        s = self.settings
        settings = self.carriers.get(o.carrier)
        errors = settings.errors if settings is not None else ErrorClasses()
        event = plan.outcome_event(
            o, ref, now_ms=now_ms, ids=self._id_formats[o.carrier],
            recovery=self.store.cfg.recovery_for(ref.message_class), max_attempts=s.retry_max_attempts,
            backoff_min_seconds=s.retry_backoff_min_seconds, backoff_max_seconds=s.retry_backoff_max_seconds,
            errors=errors, receipt_deadline_ms=deadline_ms,
        )  # fmt: skip
        ops.append(Advance(ref.message_id, ref.segment, event))
        waiting = [job.context.segment for job in self._sequencer.stop(ref.message_id)]
        if event.kind in (Ev.SUBMIT_REJECT, Ev.FAIL):
            # Refused for good: the parts after it never go (a handset never gets half a text).
            ops.extend(Advance(ref.message_id, i, Event(Ev.FAIL, event.reason)) for i in waiting)
        elif event.kind is Ev.SUBMIT_RETRY or (event.kind is Ev.RESEND and event.until_ms):
            # They wait with it, so they never overtake it; a move takes them along.
            ops.extend(Advance(ref.message_id, i, Event(Ev.DEFER, until_ms=event.until_ms)) for i in waiting)
            if event.kind is Ev.SUBMIT_RETRY and plan.moves_on(o, ref, errors):
                ops.append(Reroute(ref.message_id, o.carrier, event_reason(o)))
        # NOT_SENT, LOST (and a resend at once, as recovery makes): the waiting parts stay queued, due, and
        # are sent again in order.

    async def _inbound_loop(self) -> None:
        try:
            while True:
                await self._correlate_inbound(await drain(self._inbound, self.settings.correlate_batch))
        except trio.EndOfChannel:
            self._inbound_done.set()

    async def _correlate_inbound(self, items: list[Inbound]) -> None:
        now = trio.current_time()
        ops: list[Op] = []
        for item in items:
            start = len(ops)
            try:
                if item.is_receipt:
                    self._receipt_ops(item, ops)
                else:
                    part = _mo_part(item)
                    for mo in self._reassembler.add(part, now):
                        self._mo_ops(mo, item.carrier, ops)
                    if self._reassembler.holds(part):  # waits for the rest: durable before the SMSC hears
                        ops.append(_keep(part, item.carrier))
            except Exception as err:  # the fault boundary around one PDU: it never stops the others
                del ops[start:]
                self._refuse_inbound(item, err)
        results = await self._apply(ops) if ops else []
        for result in results:
            if isinstance(result, GatewayError):
                log.error("inbound_not_applied", error=str(result))
            elif getattr(result, "early", False):
                self.counters["receipts_early"] += 1
            elif getattr(result, "ignored", False):
                self.counters["receipts_ignored"] += 1
        # SMPP 3.4 4.6.2 deliver_sm_resp: only now that the receipt or MO is durable.
        for item in items:
            item.ack()

    def _refuse_inbound(self, item: Inbound, err: Exception) -> None:
        """A deliver_sm or data_sm the gateway cannot take (an MO whose UDH does not parse, text it cannot
        decode, or a bug): answered ESME_RX_P_APPN, the permanent refusal SMPP 3.4 5.1.3 gives an ESME
        (the SMSC then does not redeliver it forever), and logged with its octets so nothing goes unseen."""
        self.counters["inbound_refused"] += 1
        pdu = item.pdu
        expected = isinstance(err, WireError)  # malformed content: a warning, not a gateway bug
        self._refused_log.log(
            log.warning if expected else log.error, trio.current_time(), "inbound_refused",
            carrier=item.carrier, bind=item.bind, command=type(pdu).__name__, source=pdu.source_addr,
            destination=pdu.destination_addr, esm_class=pdu.esm_class,
            data_coding=pdu.data_coding, message_hex=item.message[:254].hex(), error=str(err) or type(err).__name__,
            status="ESME_RX_P_APPN", exc_info=None if expected else err,
        )  # fmt: skip
        item.ack(CommandStatus.ESME_RX_P_APPN)

    def _receipt_ops(self, item: Inbound, ops: list[Op]) -> None:
        try:
            receipt = parse_receipt_status(item.message, item.pdu.tlvs)
        except ReceiptError as err:
            # Acknowledged (the SMSC would resend it forever) but never silent: logged with its text.
            self.counters["receipts_unparseable"] += 1
            self._unparseable_log.log(log.error, trio.current_time(), "receipt_unparseable", carrier=item.carrier,
                                      text=item.message[:200], error=str(err))  # fmt: skip
            return
        ids = self._id_formats.get(item.carrier)
        if ids is not None:
            ops.append(plan.receipt_op(receipt, item.carrier, ids, item.message))

    def _mo_ops(self, mo: MoMessage, carrier: str, ops: list[Op]) -> None:
        account = self._mo_accounts.get(mo.destination, self._default_account)
        text = mo.text if mo.complete else f"{mo.text} [incomplete: parts {list(mo.missing)} missing]"
        self.counters["mo"] += 1
        ops.append(Mo(account, carrier, mo.source, mo.destination, text, mo.ref or 0, mo.parts))
        if mo.complete and mo.text.strip().upper() in self.settings.optout_keywords:
            number = normalise(mo.source, default_country_code=self.routing.country_code)
            if number:
                ops.append(SetOptOut(number, scope=account))

    async def _housekeeping(self) -> None:
        trimmer = Trimmer()
        while True:
            await trio.sleep(min(30.0, self.settings.mo_reassembly_timeout_seconds / 4))
            trimmer.maybe()
            ops: list[Op] = []
            for mo in self._reassembler.expire(trio.current_time()):
                self._mo_ops(mo, "", ops)
            if ops:
                await self._apply(ops)
            result = await self.writer.sweep()
            while result.more:
                result = await self.writer.sweep()
            self._report_unmatched()

    def _report_unmatched(self) -> None:
        """A receipt no response claimed in time was moved to the unmatched table by the sweep: never silent."""
        count = self.store.unmatched_count()
        if count > self.counters["receipts_unmatched"]:
            log.warning("receipts_unmatched", new=count - self.counters["receipts_unmatched"], kept=count,
                        hint="gatewayctl receipts --unmatched")  # fmt: skip
        self.counters["receipts_unmatched"] = count

    def _rescan(self) -> None:
        """Something became due behind the scheduler's cursor (a resend keeps its first due time)."""
        self._cursor = b""
        self.wake()

    def _release(self, carrier: str, job: SubmitJob) -> None:
        """Hand a released later part to its carrier's binds; never waits (the results task must not block
        on a full job queue while the binds wait for it to take their results)."""
        try:
            self.pools[carrier].jobs.send_nowait(job)
        except trio.WouldBlock:
            self._released[carrier].append(job)
            self._release_wake[carrier].set()

    async def _releaser(self, carrier: str) -> None:
        while True:
            await self._release_wake[carrier].wait()
            self._release_wake[carrier] = trio.Event()
            backlog, self._released[carrier] = self._released[carrier], []
            for job in backlog:
                await self.pools[carrier].jobs.send(job)

    # --- the fault boundary -------------------------------------------------------------------------

    def _internal_error(self, message_id: int, err: BaseException | str) -> None:
        """One message hit a bug: it ends `failed` with reason internal_error, logged once with its id (and
        the traceback), and the daemon goes on. It is never handed out again by this process."""
        self.counters["internal_errors"] += 1
        if message_id in self._poisoned:
            return
        self._poisoned.add(message_id)
        if isinstance(err, BaseException):
            log.error("message_internal_error", message_id=message_id, error=f"{type(err).__name__}: {err}",
                      exc_info=err)  # fmt: skip
        else:
            log.error("message_internal_error", message_id=message_id, error=err)
        self._failing.append((message_id, str(err)))
        self._failing_wake.set()

    def _check_results(self, ops: Sequence[Op], results: Sequence[Result | GatewayError]) -> None:
        """Per-op errors of a group: a bug in the store (OpFailed) fails that message; the rest is logged."""
        for op, result in zip(ops, results, strict=True):
            if not isinstance(result, GatewayError):
                if isinstance(op, Reroute) and isinstance(result, AdvanceResult) and not result.ignored:
                    self.counters["rerouted"] += 1
                continue
            message_id = getattr(op, "message_id", None)
            if isinstance(result, OpFailed | CorruptRecord) and message_id is not None:
                self._internal_error(message_id, str(result))
            elif not isinstance(op, Prepare | Reroute) and not (
                isinstance(op, Advance) and op.event.kind in (Ev.DISPATCH, Ev.SCHEDULE, Ev.EXPIRE)
            ):  # those meet messages cancelled or expired meanwhile: expected
                log.error("op_not_applied", op=repr(op), error=str(result))

    async def _failer(self) -> None:
        """Applies the internal_error failures; a message that cannot even be failed stays poisoned (never
        handed out again by this process) and is reported once."""
        while True:
            await self._failing_wake.wait()
            self._failing_wake = trio.Event()
            failing, self._failing = self._failing, []
            ops: list[Op] = [Advance(mid, None, _INTERNAL_ERROR) for mid, _ in failing]
            self._sequencer_stop(mid for mid, _ in failing)
            for (mid, _), result in zip(failing, await self._apply(ops), strict=True):
                if isinstance(result, GatewayError):
                    log.error("message_not_failed", message_id=mid, error=str(result))

    def _sequencer_stop(self, ids: Iterable[int]) -> None:
        for mid in ids:
            self._sequencer.stop(mid)

    # --- every message ends ---------------------------------------------------------------------------

    async def _overdue_loop(self) -> None:
        """Ends what passed its deadline (validity while waiting, receipt timeout while submitted), and hands
        the queued work of a carrier with no bound transmitter for too long back to the scheduler."""
        while True:
            await trio.sleep(self.settings.scheduler_poll_seconds)
            next_ms = self.store.next_deadline_ms()
            if next_ms is not None and next_ms <= self._wall_ms():
                more = True
                while more:
                    (result,) = await self._apply([Overdue(self.settings.dispatch_batch)])
                    if not isinstance(result, SweepResult):
                        log.error("overdue_not_applied", error=str(result))
                        break
                    self.counters["overdue_ended"] += result.messages
                    more = result.more
            for carrier in self.pools:
                if self._handing_back(carrier):
                    await self._hand_back(carrier)

    async def _hand_back(self, carrier: str) -> None:
        """Jobs no bind of `carrier` took (it has been down too long) go back to the scheduler, which moves
        their messages to the next carrier of their route when no part of them reached this one."""
        jobs = self.pools[carrier].take_unsent() + self._released[carrier]
        self._released[carrier] = []
        if not jobs:
            return
        ops: list[Op] = []
        moved: set[int] = set()
        for job in jobs:
            ref: plan.SegmentRef = job.context
            ops.append(Advance(ref.message_id, ref.segment, _REQUEUE))
            self._sequencer.stop(ref.message_id)
            if ref.message_id not in moved:
                moved.add(ref.message_id)
        ops.extend(Reroute(mid, carrier, "no_bind") for mid in moved)
        self._check_results(ops, await self._apply(ops))
        self.counters["handed_back"] += len(moved)
        log.warning("carrier_handed_back", carrier=carrier, messages=len(moved), parts=len(jobs))
        self._rescan()

    # --- UpstreamBackend ----------------------------------------------------------------------------

    async def submit(self, account: str, request: SubmitRequest) -> SubmitResult:
        now_ms = self._wall_ms()
        routing = self.routing  # one snapshot for the whole request, whatever a reload does meanwhile
        scan = routing.router.scan_text(request.text)  # the text's words, once for every recipient
        region = routing.region_of(account)
        numbers = [routing.numbers.parse(to, region) for to in request.to]
        ported = self._ported(numbers)
        checked = [
            self._recipient(routing, account, request, number, scan, ported.get(number.e164))
            if isinstance(number, Number) else (Recipient(to[:64], reject="invalid_number"), str(number))
            for to, number in zip(request.to, numbers, strict=True)
        ]  # fmt: skip
        recipients = tuple(r for r, _ in checked)
        self._refuse_text(checked, request.text)
        op = Submit(
            account=account,
            message_class=str(request.message_class),
            sender=request.sender,
            text=request.text,
            recipients=recipients,
            receipt=request.receipt,
            client_ref=request.client_ref or "",
            batch=request.batch_id or "",
            schedule_ms=int(request.schedule_at * 1000) if request.schedule_at else 0,
            expires_ms=now_ms + request.validity_seconds * 1000 if request.validity_seconds else 0,
        )
        (result,) = await self._apply([op])
        if isinstance(result, GatewayError):
            raise result
        assert not isinstance(result, AdvanceResult | PrepareResult)
        self.wake()
        messages = []
        # A duplicate answers each message's state now, as status names it (delivered, failed, ...).
        states = _PUBLIC_STATES if result.duplicate else _ACCEPT_STATES  # type: ignore[union-attr]
        for to, (r, detail), outcome in zip(request.to, checked, result.outcomes, strict=False):  # type: ignore[union-attr]
            state = states.get(outcome.state, "accepted")
            number = None if r.reject == "invalid_number" else r.number  # docs/protocol.md: normalised form
            # The detail belongs to this request's own refusal; a duplicate answers the stored state.
            why = detail if r.reject and outcome.reason == r.reject and not result.duplicate else None  # type: ignore[union-attr]
            messages.append(SubmittedMessage(to, str(outcome.message_id), state, outcome.reason or None, number, why))
        return SubmitResult(tuple(messages), result.duplicate)  # type: ignore[union-attr]

    def _ported(self, numbers: Sequence[Number | BadNumber]) -> dict[str, str]:
        """The networks ported numbers among `numbers` moved to, in one read (none without a table)."""
        if not self.portability.active:
            return {}
        e164s = [n.e164 for n in numbers if isinstance(n, Number)]
        return {n: net for n, net in zip(e164s, self.store.ported_networks(e164s), strict=True) if net}

    def _recipient(
        self, routing: Routing, account: str, request: SubmitRequest, number: Number, scan: Scan | None,
        network: str | None,
    ) -> tuple[Recipient, str]:
        """One recipient with a valid number: its route chosen (routing/router.py), the network a ported
        number moved to overriding its block; refused with the reason (and a detail for a person) when it
        cannot go."""
        plan = routing.router.decide(
            number, account=account, message_class=str(request.message_class), sender=request.sender,
            text=request.text, rng=self._rng, scan=scan, network=network,
        )  # fmt: skip
        if isinstance(plan, Refusal):
            return Recipient(number.e164, reject=plan.reason), plan.detail
        route = tuple(c for c in plan.carriers if c in self._encodings)
        if not route:  # the route names only carriers this process does not run (a reload added them)
            return Recipient(number.e164, reject="no_route"), f"route {plan.route}: no running carrier"
        return Recipient(number.e164, route=route), ""

    def _refuse_text(self, checked: Sequence[tuple[Recipient, str]], text: str) -> None:
        """A text that no routed carrier of any recipient can send is refused as a whole, as a request error
        (message_too_long, not_encodable), as before routes were checked: nothing is stored."""
        routed = [r for r, _ in checked if r.reject not in ("invalid_number", "no_route")]
        if routed and all(r.reject in _TEXT_REASONS for r in routed):
            # The first carrier that refuses the text for that reason words the request's error.
            carrier = next((c for c in self._encodings if self._fit(text, c) == routed[0].reject), None)
            error = self._text_error(text, carrier) if carrier is not None else None
            if error is not None:
                raise error

    def _messages(self, account: str, query: MessageQuery) -> list[Message]:
        if query.message_id is not None:
            ids: tuple[int, ...] = (int(query.message_id),) if _is_message_id(query.message_id) else ()
        else:
            ids = self.store.by_client_ref(account, query.client_ref or "")
        found = [m for m in (self.store.get(i) for i in ids) if m is not None and m.account == account]
        if not found:
            raise NotFound("no such message for this account")
        return found

    async def status(self, account: str, query: MessageQuery) -> Sequence[MessageStatus]:
        return [_status(m) for m in self._messages(account, query)]

    async def cancel(self, account: str, query: MessageQuery) -> CancelResult:
        # Only what no carrier has seen yet can be cancelled (SMPP cancel_sm is not reliable across SMSCs).
        found = [m for m in self._messages(account, query) if m.state in DUE_STATES]
        results = await self._apply([Advance(m.id, None, Event(Ev.CANCEL)) for m in found])
        done = tuple(
            str(m.id)
            for m, r in zip(found, results, strict=True)
            if isinstance(r, AdvanceResult) and r.state is State.CANCELLED
        )
        if not done:
            raise NotCancellable("already submitted to a carrier or final")
        return CancelResult(done)

    async def preview(self, account: str, request: PreviewRequest) -> PreviewResult:
        encoding = self._accept_encoding
        if encoding is None:
            raise NotFound("no carrier configured")
        p = preview(request.text, encoding)
        return PreviewResult(str(p.encoding), p.parts, p.units, p.chars_left, p.units_per_part)

    async def read_events(
        self, account: str, after_seq: int, limit: int, kinds: frozenset[UpstreamKind] | None = None
    ) -> Sequence[EncodedEvent]:
        # Straight from the stored arrays to frames: a subscriber reads every event, two per message.
        rows = self._account_rows(account, after_seq, limit, kinds)
        return [EncodedEvent(f[E_SEQ], _event_frame(f)) for f in rows]

    def _account_rows(
        self, account: str, after_seq: int, limit: int, kinds: frozenset[UpstreamKind] | None = None
    ) -> list[EventFields]:
        """The account's next `limit` log entries (of `kinds`) after `after_seq` (the log is shared by all
        accounts)."""
        wanted = None if kinds is None else frozenset(_STORED_KINDS[k] for k in kinds)
        # The log only grows: entries known not to match after a cursor need no second look. Without
        # this, a subscriber for final events rescans every "submitted" event ahead of the next final one
        # at each commit, for each wait and read.
        scanned = self._scanned
        key = (account, kinds, after_seq)
        after_seq = scanned.get(key, after_seq)
        out: list[EventFields] = []
        while len(out) < limit:
            batch = self.store.event_rows(after_seq, limit=max(limit, 256))
            if not batch:
                break
            for f in batch:
                if f[E_ACCOUNT] == account and (wanted is None or f[E_KIND] in wanted):
                    out.append(f)
                    if len(out) == limit:
                        return out
            after_seq = batch[-1][E_SEQ]
        if len(scanned) >= _SCANNED_ENTRIES:
            scanned.clear()
        # Nothing for this query matches up to `after_seq` beyond what `out` holds: the next query starts
        # after its last entry (or after the same cursor, if none) and can skip to here.
        scanned[(account, kinds, out[-1][E_SEQ]) if out else key] = after_seq
        return out

    async def wait_events(
        self, account: str, after_seq: int, kinds: frozenset[UpstreamKind] | None = None
    ) -> None:
        while True:
            waiter = self._new_events
            if self.store.last_seq() > after_seq and self._account_rows(account, after_seq, 1, kinds):
                return
            await waiter.wait()

    async def ack_events(self, account: str, seq: int) -> None:
        if seq > self.store.last_seq():  # a cursor ahead of the log would hide the events logged up to it
            raise InvalidRequest(f"seq {seq} is past the last event ({self.store.last_seq()})", field="seq")
        await self._apply([SetCursor(account, seq)])

    async def event_cursor(self, account: str) -> int:
        return self.store.cursor(account)

    async def last_event_seq(self) -> int:
        return self.store.last_seq()


def event_reason(o: SubmitOutcome) -> str:
    """Why a message left a carrier, for its trail: the refusal's reason code."""
    return carrier_rejected(status_name(o.status))


_EXPIRE = Event(Ev.EXPIRE)
_REQUEUE = Event(Ev.REQUEUE)
_INTERNAL_ERROR = Event(Ev.FAIL, "internal_error")
# Outcomes that leave segments due behind the scheduler's cursor.
_RESCAN = (Ev.RESEND, Ev.REQUEUE, Ev.LOST, Ev.SUBMIT_REJECT, Ev.FAIL)
_AHEAD_RECHECK_SECONDS = 0.05

# What a submit answers per recipient (docs/protocol.md, submit).
_ACCEPT_STATES = {State.REJECTED: "rejected", State.DEFERRED: "scheduled"}
_ACCEPTED = OutcomeKind.ACCEPTED


def _is_message_id(text: str) -> bool:
    """Whether `text` is a message id as the gateway writes them: ASCII digits, no leading zero, a u64. Ids
    are opaque strings to clients: "0121...", full-width or Arabic-Indic digits name no message."""
    return text.isascii() and text.isdigit() and (text == "0" or text[0] != "0") and int(text) < 1 << 64


def _ref_for(ref: int, bits: int) -> int:
    """The store's per-destination counter runs 1..65535; an 8-bit UDH takes 1..255 of it in turn."""
    return ref if bits == 16 else (ref - 1) % 255 + 1


def _keep(part: MoPart, carrier: str) -> KeepMoPart:
    return KeepMoPart(
        carrier, part.source, part.destination, part.ref or 0, part.total, part.seq, part.text, part.data_coding
    )


def _mo_part(item: Inbound) -> MoPart:
    pdu = item.pdu
    short = pdu.short_message if isinstance(pdu, P.DeliverSm) else b""
    return mo_part(pdu.source_addr, pdu.destination_addr, short, pdu.data_coding, pdu.esm_class, pdu.tlvs)


# docs/protocol.md names the states an app sees; the reason code says why a message failed.
_PUBLIC_STATES = {
    State.ACCEPTED: "accepted",
    State.DEFERRED: "scheduled",
    State.QUEUED: "queued",
    State.SUBMITTING: "queued",
    State.SUBMITTED: "submitted",
    State.UNKNOWN: "unknown",
    State.DELIVERED: "delivered",
    State.UNDELIVERABLE: "failed",
    State.EXPIRED: "expired",
    State.REJECTED: "failed",
    State.FAILED: "failed",
    State.CANCELLED: "cancelled",
}


_TEXT_REASONS = frozenset({"message_too_long", "not_encodable"})


def _status(m: Message) -> MessageStatus:
    updated = max((s.updated_ms for s in m.segments), default=m.created_ms)
    return MessageStatus(
        message_id=str(m.id),
        to=m.recipient,
        state=_PUBLIC_STATES[m.state],
        segments=len(m.segments),
        reason=m.reason or None,
        carrier=m.carrier or None,
        client_ref=m.client_ref or None,
        batch_id=m.batch or None,
        created_at=m.created_ms / 1000,
        updated_at=updated / 1000,
        possible_duplicate=m.possible_duplicate,
        trail=m.trail,
    )


_KIND_NAMES = {int(k): str(v) for k, v in _KINDS.items()}
# Subscriptions' scan positions kept (a few per subscriber are live at a time; the rest are stale).
_SCANNED_ENTRIES = 1024
_STORED_KINDS = {v: int(k) for k, v in _KINDS.items()}
_MO = int(StoredKind.MO)


def _event_frame(f: EventFields) -> bytes:
    """A stored event (records.EventFields) as its upstream frame: exactly
    what a client decodes as the stored event (tests check), without building objects on the way."""
    kind = f[E_KIND]
    frame: dict[str, Any] = {"type": "event", "seq": f[E_SEQ], "kind": _KIND_NAMES[kind], "at": f[E_AT_MS] / 1000}
    if kind == _MO:
        frame["to"] = f[E_ADDRESS]
        frame["sender"] = f[E_NUMBER]
    else:
        frame["message_id"] = str(f[E_MESSAGE_ID])
        frame["to"] = f[E_NUMBER]
        frame["sender"] = f[E_ADDRESS]
    for name, i in _OPTIONAL_EVENT_FIELDS:
        if f[i]:
            frame[name] = f[i]
    if event_duplicate(f):
        frame["possible_duplicate"] = True
    return encode_frame(frame)


_OPTIONAL_EVENT_FIELDS = (
    ("text", E_TEXT), ("reason", E_REASON), ("carrier", E_CARRIER), ("client_ref", E_CLIENT_REF),
    ("batch_id", E_BATCH),
)  # fmt: skip


