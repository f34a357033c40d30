"""A stateful test of the message lifecycle over a real LMDB store (issue 11).

test_store_model.py throws random op groups at a store and checks that it agrees with itself. This machine
goes further: it drives one store as the engine and the carriers would, in any order (submits with and
without validity, Prepare with dispatch, every kind of submit_sm response, receipts on time, early, late,
repeated and in another id form, link losses, restarts that run recovery, clock moves with Overdue, Reroute,
retention sweeps), while a plain model beside it keeps every segment by the documented state table (restated
below, not imported from gateway.lifecycle) and predicts each op's result, refusals included. After every
step the store must agree with the model and with itself:

- store.check() == [] (every index agrees with the records);
- every message has the segments (state, final reason, carrier id, duplicate flag, receipt deadline),
  carrier, trail and final time the model predicts; a purged message is gone;
- batch counters equal a recount from the messages' states;
- the event log holds, per message, exactly the events the model predicts (kind, reason, duplicate flag),
  at most one "submitted", and for a final message one final event, or "failed" then "delivered" (the
  documented receipt upgrade); after a resend every event says possible_duplicate;
- event sequence numbers only grow, across restarts too;
- the early-receipt table holds exactly the receipts still waiting.

The `finish` rule checks that every message ends: a restart, the clock past every deadline and Overdue
until `more` is False end every message but those waiting for the scheduler without a validity; sent
and lost, those end too.

Three store bugs this machine found have their own regression tests at the end: event sequence numbers
handed out again after retention emptied the log and a restart; a second "failed" event when a part's
upgrade moved a failed message to another failure; batch counters left under a reason the message no longer
has after such an upgrade.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from gateway.errors import GatewayError
from gateway.lifecycle import RECEIPT_TIMEOUT_MS, Ev, Event, InvalidTransition, State, message_state
from gateway.store import (
    Advance,
    AdvanceResult,
    BatchCounters,
    EventKind,
    Op,
    Overdue,
    Prepare,
    PrepareResult,
    Receipt,
    ReceiptResult,
    Recipient,
    RecoveryReport,
    Reroute,
    Result,
    SetCursor,
    Store,
    StoreConfig,
    Submit,
    SubmitResult,
    Sweep,
    SweepResult,
    UnknownMessage,
    WrongState,
)
from gateway.store import keys as store_keys
from tests.integration.store.support import FakeClock, ok, submit

S, E = State, Ev
DAY = 86_400_000
RETENTION_MS = 30 * DAY  # StoreConfig.retention_days
EARLY_MS = 600_000  # StoreConfig.early_receipt_seconds
PENDING = (S.ACCEPTED, S.DEFERRED, S.QUEUED)
AWAITING = (S.SUBMITTED, S.UNKNOWN)
FINAL = frozenset({S.DELIVERED, S.UNDELIVERABLE, S.EXPIRED, S.REJECTED, S.FAILED, S.CANCELLED})
RECEIPTS = (E.RECEIPT_DELIVERED, E.RECEIPT_UNDELIVERABLE, E.RECEIPT_EXPIRED, E.RECEIPT_ENROUTE)

# The lifecycle table for the events this machine sends (docs: gateway/lifecycle.py). None: accepted and
# ignored (a duplicate or out-of-order event); a pair not here is refused with InvalidTransition.
TABLE: dict[tuple[State, Ev], State | None] = {
    **{(s, E.SCHEDULE): S.QUEUED for s in PENDING},
    (S.QUEUED, E.DISPATCH): S.SUBMITTING,
    (S.SUBMITTING, E.SUBMIT_OK): S.SUBMITTED,
    (S.UNKNOWN, E.SUBMIT_OK): S.SUBMITTED,  # a late response
    (S.SUBMITTED, E.SUBMIT_OK): None,  # the carrier sent its response twice
    (S.SUBMITTING, E.SUBMIT_RETRY): S.DEFERRED,
    (S.SUBMITTING, E.SUBMIT_REJECT): S.REJECTED,
    (S.UNKNOWN, E.SUBMIT_REJECT): S.REJECTED,
    (S.SUBMITTING, E.LOST): S.UNKNOWN,
    (S.SUBMITTING, E.RESEND): S.QUEUED,
    (S.SUBMITTING, E.REQUEUE): S.QUEUED,
    **{(s, E.REQUEUE): None for s in (S.FAILED, S.CANCELLED, S.EXPIRED)},
    (S.SUBMITTED, E.RECEIPT_DELIVERED): S.DELIVERED,
    (S.SUBMITTED, E.RECEIPT_UNDELIVERABLE): S.UNDELIVERABLE,
    (S.SUBMITTED, E.RECEIPT_EXPIRED): S.EXPIRED,
    (S.SUBMITTED, E.RECEIPT_ENROUTE): S.SUBMITTED,
    **{(s, e): None for s in (S.DELIVERED, S.FAILED, S.REJECTED) for e in RECEIPTS},
    **{(s, e): None for s in (S.UNDELIVERABLE, S.EXPIRED) for e in RECEIPTS if e is not E.RECEIPT_DELIVERED},
    (S.UNDELIVERABLE, E.RECEIPT_DELIVERED): S.DELIVERED,  # the documented upgrades
    (S.EXPIRED, E.RECEIPT_DELIVERED): S.DELIVERED,
    **{(s, E.CANCEL): S.CANCELLED for s in PENDING},
    **{(s, E.EXPIRE): S.EXPIRED for s in (*PENDING, S.SUBMITTED, S.UNKNOWN)},
    **{(s, E.FAIL): S.FAILED for s in (*PENDING, S.SUBMITTING, S.UNKNOWN, S.SUBMITTED)},
}
DEFAULT_REASON = {
    E.RECEIPT_DELIVERED: "delivered", E.RECEIPT_EXPIRED: "expired", E.RECEIPT_UNDELIVERABLE: "undeliverable:unknown",
    E.EXPIRE: "expired", E.CANCEL: "cancelled",
}  # fmt: skip
# A message is in the state of its least advanced live segment; when all are final, of its worst outcome.
ORDER = (
    S.ACCEPTED, S.DEFERRED, S.QUEUED, S.SUBMITTING, S.UNKNOWN, S.SUBMITTED,
    S.REJECTED, S.UNDELIVERABLE, S.EXPIRED, S.FAILED, S.CANCELLED, S.DELIVERED,
)  # fmt: skip


class Refused(Exception):
    """The model's InvalidTransition."""


@dataclass
class MSeg:
    state: State
    reason: str = ""
    carrier_id: str = ""
    dup: bool = False
    deadline: int = 0  # the receipt deadline while submitted or unknown


@dataclass
class MMsg:
    id: int
    batch: str
    message_class: str
    number: str
    expires_ms: int
    segs: list[MSeg]
    valid: bool = True
    carrier: str = ""
    concat_ref: int = 0
    trail: list[tuple[str, str]] = field(default_factory=list)
    reported: bool = False
    final_ms: int = 0
    billed: int = 0
    purged: bool = False
    partly_upgraded: bool = False  # a part went from failed to delivered, the message stayed failed
    counted: str = ""  # the reason the batch counters count it under (the last one reported)
    # Events as the model predicts them and as read from the store: (kind, reason, possible_duplicate).
    events: list[tuple[EventKind, str, bool]] = field(default_factory=list)
    seen: list[tuple[EventKind, str, bool]] = field(default_factory=list)
    # How many of its events were logged before its first resend (-1: never resent).
    resent_after: int = -1

    @property
    def state(self) -> State:
        return mstate(self.segs)

    def deadline(self) -> int:
        ts = [s.deadline for s in self.segs if s.state in AWAITING]
        if self.expires_ms:
            ts += [self.expires_ms for s in self.segs if s.state in PENDING]
        return -(-min(ts, default=0) // 1000) * 1000  # the store keys deadlines by the whole second, rounded up


@dataclass(frozen=True)
class MEarly:
    """An early receipt; equal fields make equal entries, as records.EarlyReceipt."""

    kind: Ev
    reason: str
    at_ms: int
    raw_id: str
    keys: tuple[str, ...]


def mstate(segs: list[MSeg]) -> State:
    return min((s.state for s in segs), key=ORDER.index)


def mreason(segs: list[MSeg]) -> str:
    state = mstate(segs)
    return next(s.reason for s in segs if s.state is state)


def step(seg: MSeg, ev: Event, now: int) -> tuple[MSeg, bool]:
    """The segment after `ev` and whether it was ignored; Refused for a pair the table lacks."""
    if (seg.state, ev.kind) not in TABLE:
        raise Refused
    target = TABLE[seg.state, ev.kind]
    if target is None:
        return seg, True
    new = replace(seg, state=target, deadline=0)
    if target in FINAL:
        unknown = ev.kind is E.EXPIRE and seg.state is S.UNKNOWN
        new.reason = ev.reason or ("unknown_after_timeout" if unknown else DEFAULT_REASON.get(ev.kind, ""))
    elif ev.kind is E.LOST:
        new.reason = ev.reason or "unknown_after_timeout"
    if ev.kind is E.SUBMIT_OK:
        new.carrier_id = ev.carrier_id
    if target in AWAITING:
        keep = seg.deadline and ev.kind not in (E.SUBMIT_OK, E.LOST)
        new.deadline = seg.deadline if keep else ev.until_ms or now + RECEIPT_TIMEOUT_MS
    new.dup = seg.dup or ev.kind is E.RESEND
    return new, False


Expected = Result | type[GatewayError]


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.path = tempfile.mkdtemp(prefix="stateful-")
        self.clock = FakeClock()
        self.store = self._open()
        self.msgs: dict[int, MMsg] = {}
        self.index: dict[tuple[str, str], tuple[int, int]] = {}  # (carrier, carrier id) -> (message, segment)
        self.early: dict[tuple[str, str], list[MEarly]] = {}
        self.refs: dict[str, int] = {}  # the last concatenation reference per destination
        self.next_cid = 0
        self.bogus = 0
        self.seen_seq = 0
        self.finished = False  # `finish` ran: once per example, it ends every message
        self.swept_ms = 0

    def _open(self) -> Store:
        return Store.open(StoreConfig(path=self.path, sync=False, map_size_bytes=16 << 20), clock=self.clock)

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.path, ignore_errors=True)

    # --- running ops against the store and the model -------------------------------------------------

    def run(self, ops: list[Op]) -> list[Result | GatewayError]:
        """Apply `ops` in one transaction; the model predicts each result (receipts after the rest, as the
        store runs them)."""
        results = self.store.apply(ops)
        order = [i for i, op in enumerate(ops) if type(op) is not Receipt]
        order += [i for i, op in enumerate(ops) if type(op) is Receipt]
        for i in order:
            self.compare(ops[i], results[i], self.model(ops[i], results[i]))
        return results

    def compare(self, op: Op, got: Result | GatewayError, want: Expected) -> None:
        if isinstance(want, type):
            assert isinstance(got, want), (op, got, want)
        elif isinstance(got, SweepResult) and isinstance(op, Sweep):
            assert isinstance(want, SweepResult)
            assert got.messages == want.messages, (op, got, want)
        else:
            assert got == want, (op, got, want)

    def model(self, op: Op, got: Result | GatewayError) -> Expected:
        if isinstance(op, Submit):
            assert isinstance(got, SubmitResult), got
            return self.m_submit(op, got)
        if isinstance(op, Overdue):
            return self.m_overdue(op)
        if isinstance(op, Sweep):
            return self.m_sweep(op)
        if isinstance(op, Receipt):
            return self.m_receipt(op)
        if isinstance(op, Prepare | Reroute | Advance):
            m = self.msgs.get(op.message_id)
            if m is None or m.purged:
                return UnknownMessage
            if isinstance(op, Prepare):
                return self.m_prepare(m, op)
            if isinstance(op, Reroute):
                return self.m_reroute(m, op)
            return self.m_advance(m, op)
        raise AssertionError(f"the model has no rule for {op}")

    def commit(self, m: MMsg, new: list[MSeg], old: list[MSeg] | None = None) -> None:
        """Replace m's segments and log what the store reports when the message's state changes."""
        before = m.segs if old is None else old
        m.segs = new
        upgraded = any(a.state in FINAL and a.state is not b.state for a, b in zip(before, new, strict=False))
        m.partly_upgraded |= upgraded and mstate(new) is not S.DELIVERED
        if mstate(before) is mstate(new):
            if mstate(new) in FINAL and mreason(new) != mreason(before):
                m.counted = mreason(new)  # counted again under its new reason, no new event
            return
        if mstate(before) in FINAL and mstate(new) is not S.DELIVERED:
            m.counted = mreason(new)  # another failure: counted again, no second "failed" event
            return
        self.report(m, any(s.dup for s in before))

    def report(self, m: MMsg, dup: bool) -> None:
        state = m.state
        final = state in FINAL
        if not m.reported and (state is S.SUBMITTED or (final and any(s.carrier_id for s in m.segs))):
            m.reported = True
            m.events.append((EventKind.SUBMITTED, "", dup))
        if final:
            kind = EventKind.DELIVERED if state is S.DELIVERED else EventKind.FAILED
            m.counted = mreason(m.segs)
            m.events.append((kind, m.counted, dup))
            m.final_ms = m.final_ms or self.clock.ms

    def m_submit(self, op: Submit, got: SubmitResult) -> Expected:
        now = self.clock.ms
        outcomes = []
        for r, o in zip(op.recipients, got.outcomes, strict=True):
            state = S.REJECTED if r.reject else S.DEFERRED if r.defer_until_ms > now else S.ACCEPTED
            m = MMsg(o.message_id, op.batch, op.message_class, r.number, op.expires_ms, [MSeg(state, r.reject)])
            m.valid = not r.reject
            assert m.id not in self.msgs
            self.msgs[m.id] = m
            if r.reject:
                self.report(m, False)
            outcomes.append(replace(o, state=state, reason=r.reject))
        return SubmitResult(tuple(outcomes))

    def m_prepare(self, m: MMsg, op: Prepare) -> Expected:
        if any(s.state not in PENDING for s in m.segs) or op.parts < 1:
            return WrongState
        if op.concat and op.parts > 1 and not m.concat_ref:
            m.concat_ref = self.refs[m.number] = self.refs.get(m.number, 0) % 0xFFFF + 1
        dup = m.segs[0].dup
        sent = min(op.dispatch_parts or op.parts, op.parts) if op.dispatch_bind else 0
        m.carrier = op.carrier
        self.commit(m, [MSeg(S.SUBMITTING if i < sent else S.QUEUED, dup=dup) for i in range(op.parts)])
        return PrepareResult(m.id, m.concat_ref)

    def m_reroute(self, m: MMsg, op: Reroute) -> Expected:
        if m.carrier != op.carrier or any(s.state not in PENDING for s in m.segs):
            return AdvanceResult(m.id, m.state, ignored=True)
        m.carrier = ""
        m.trail.append((op.carrier, op.reason))
        self.commit(m, [MSeg(S.ACCEPTED, dup=any(s.dup for s in m.segs))])
        return AdvanceResult(m.id, S.ACCEPTED)

    def m_advance(self, m: MMsg, op: Advance) -> Expected:
        if op.segment is None:
            targets = [i for i, s in enumerate(m.segs) if s.state not in FINAL]
        elif 0 <= op.segment < len(m.segs):
            targets = [op.segment]
        else:
            return UnknownMessage
        new = list(m.segs)
        ignored, billed = False, 0
        try:
            for i in targets:
                new[i], skipped = step(new[i], op.event, self.clock.ms)
                ignored = ignored or skipped
                billed += op.event.kind is E.SUBMIT_OK and not skipped
        except Refused:
            return InvalidTransition
        m.billed += billed
        early = False
        if op.event.kind is E.SUBMIT_OK and not ignored and op.segment is not None:
            early = self.claim(m, new, op.segment, op.event.carrier_id)
        if any(s.dup for s in new) and m.resent_after < 0:
            m.resent_after = len(m.events)
        self.commit(m, new)
        return AdvanceResult(m.id, m.state, ignored, early)

    def claim(self, m: MMsg, new: list[MSeg], seg: int, carrier_id: str) -> bool:
        """Index the carrier id; apply the early receipts waiting for it (ops.Receipt's rule)."""
        self.index[m.carrier, carrier_id] = (m.id, seg)
        row = self.early.get((m.carrier, carrier_id))
        if not row:
            return False
        best = min(range(len(row)), key=lambda i: (row[i].keys.index(carrier_id), i))
        claimed = [e for e in row if e.raw_id == row[best].raw_id]
        for k in dict.fromkeys(k for e in claimed for k in e.keys):
            rest = [e for e in self.early.get((m.carrier, k), []) if e not in claimed]
            if rest:
                self.early[m.carrier, k] = rest
            else:
                self.early.pop((m.carrier, k), None)
        new[seg], _ = step(new[seg], Event(claimed[0].kind, claimed[0].reason), self.clock.ms)
        for again in claimed[1:]:
            try:
                new[seg], _ = step(new[seg], Event(again.kind, again.reason), self.clock.ms)
            except Refused:
                continue
        return True

    def find(self, carrier: str, carrier_id: str) -> tuple[MMsg, int, bool] | None:
        where = self.index.get((carrier, carrier_id))
        if where is None or self.msgs[where[0]].purged:
            return None
        m = self.msgs[where[0]]
        return m, where[1], m.segs[where[1]].state in AWAITING

    def m_receipt(self, op: Receipt) -> Expected:
        found = self.find(op.carrier, op.carrier_id)
        target = found if found is not None and found[2] else None
        for alternative in op.alternatives:
            other = self.find(op.carrier, alternative)
            if target is None and other is not None and other[2]:
                target = other
        target = target or found
        if target is None:
            ids = (op.carrier_id, *op.alternatives)
            entry = MEarly(op.kind, op.reason, self.clock.ms, op.raw_id or op.carrier_id, ids)
            for k in ids:
                self.early.setdefault((op.carrier, k), []).append(entry)
            return ReceiptResult(matched=False, early=True)
        m, seg, _ = target
        new = list(m.segs)
        try:
            new[seg], ignored = step(new[seg], Event(op.kind, op.reason), self.clock.ms)
        except Refused:
            return InvalidTransition
        ended = None
        if not ignored:
            before, after = message_state([s.state for s in m.segs]), message_state([s.state for s in new])
            ended = after if after.is_final and not before.is_final else None
            self.commit(m, new)
        return ReceiptResult(True, m.id, seg, new[seg].state, ignored=ignored, ended=ended)

    def m_overdue(self, op: Overdue) -> Expected:
        now = self.clock.ms
        live = sorted((d, m.id) for m in self.msgs.values() if not m.purged and (d := m.deadline()))
        due = [i for d, i in live[: op.limit] if d <= now]
        for msg_id in due:
            m = self.msgs[msg_id]
            new = list(m.segs)
            for i, s in enumerate(m.segs):
                if s.state in AWAITING and s.deadline <= now:
                    new[i], _ = step(s, Event(E.EXPIRE, "no_receipt"), now)
            for i, s in enumerate(m.segs):
                if m.expires_ms and m.expires_ms <= now and s.state in PENDING:
                    new[i], _ = step(s, Event(E.EXPIRE), now)
            self.commit(m, new)
        return SweepResult(len(due), 0, 0, len(due) == op.limit)

    def m_sweep(self, op: Sweep) -> Expected:
        now = self.clock.ms
        old = sorted((m.final_ms, m.id) for m in self.msgs.values() if m.final_ms and not m.purged)
        purged = [i for t, i in old[: op.limit] if t < now - RETENTION_MS]
        for msg_id in purged:
            self.msgs[msg_id].purged = True
            self.index = {k: v for k, v in self.index.items() if v[0] != msg_id}
        for key, row in list(self.early.items()):
            rest = [e for e in row if e.at_ms >= now - EARLY_MS]
            if rest:
                self.early[key] = rest
            else:
                del self.early[key]
        return SweepResult(len(purged), 0, 0, False)

    # --- choosing targets ----------------------------------------------------------------------------

    def live(self) -> list[MMsg]:
        return [m for m in self.msgs.values() if not m.purged]

    def segments(self, *states: State) -> list[tuple[int, int]]:
        return sorted((m.id, i) for m in self.live() for i, s in enumerate(m.segs) if s.state in states)

    def carrier_id_for(self, m: MMsg, seg: int) -> str:
        """The next carrier id for a response that will index one; a throwaway id otherwise."""
        if m.segs[seg].state in (S.SUBMITTING, S.UNKNOWN):
            self.next_cid += 1
            return f"m{self.next_cid - 1}"
        self.bogus += 1
        return f"z{self.bogus}"

    # --- rules ---------------------------------------------------------------------------------------

    @precondition(lambda self: len([m for m in self.live() if m.state not in FINAL]) < 6)
    @rule(
        n=st.integers(1, 3),
        batch=st.sampled_from(["b1", "b2"]),
        message_class=st.sampled_from(["notification", "marketing"]),
        validity=st.sampled_from([0, 0, 300_000, 2 * DAY]),
        kinds=st.lists(st.sampled_from(["ok", "ok", "ok", "reject", "later"]), min_size=3, max_size=3),
    )
    def submit(self, n: int, batch: str, message_class: str, validity: int, kinds: list[str]) -> None:
        now = self.clock.ms
        recipients = tuple(
            Recipient(f"+4477009{i}", reject="no_route" if k == "reject" else "",
                      defer_until_ms=now + 60_000 if k == "later" else 0)
            for i, k in zip(range(n), kinds, strict=False)
        )  # fmt: skip
        expires = now + validity if validity else 0
        self.run([Submit("acme", message_class, "ACME", "hello", recipients, batch=batch, expires_ms=expires)])

    @precondition(lambda self: bool(self.live()))
    @rule(data=st.data(), carrier=st.sampled_from(["carA", "carB"]), parts=st.integers(1, 3),
          dispatch=st.integers(-1, 3), fresh=st.booleans())  # fmt: skip
    def prepare(self, data: st.DataObject, carrier: str, parts: int, dispatch: int, fresh: bool) -> None:
        """Prepare (split, and with a bind dispatch the first `dispatch` parts; 0 every part, -1 none) a
        message the engine would prepare: one that has no carrier yet; or any message, refused unless
        every part waits."""
        ready = [m.id for m in self.live() if not m.carrier and all(s.state in PENDING for s in m.segs)]
        other = [m.id for m in self.live() if any(s.state not in PENDING for s in m.segs)]
        ids = ready if fresh and ready else other
        if not ids:
            return
        msg_id = data.draw(st.sampled_from(ids))
        bind = carrier if dispatch >= 0 else ""
        op = Prepare(msg_id, carrier, parts, concat=parts > 1, dispatch_bind=bind, dispatch_parts=max(dispatch, 0))
        self.run([op])

    @precondition(lambda self: bool(self.segments(*PENDING)))
    @rule(data=st.data())
    def dispatch(self, data: st.DataObject) -> None:
        """The scheduler sends a waiting part of a prepared message (after SCHEDULE when it was deferred)."""
        targets = [(i, s) for i, s in self.segments(*PENDING) if self.msgs[i].carrier]
        if not targets:
            return
        msg_id, seg = data.draw(st.sampled_from(targets))
        ops: list[Op] = []
        if self.msgs[msg_id].segs[seg].state is not S.QUEUED:
            ops.append(Advance(msg_id, seg, Event(E.SCHEDULE)))
        self.run([*ops, Advance(msg_id, seg, Event(E.DISPATCH, bind="b", sequence=seg + 1))])

    @precondition(lambda self: bool(self.segments(S.SUBMITTING, S.UNKNOWN)))
    @rule(
        data=st.data(),
        kind=st.sampled_from([E.SUBMIT_OK, E.SUBMIT_OK, E.SUBMIT_RETRY, E.SUBMIT_REJECT, E.LOST, E.RESEND, E.REQUEUE]),
        until=st.sampled_from([0, 3_600_000]),
    )
    def respond(self, data: st.DataObject, kind: Ev, until: int) -> None:
        """A submit_sm_resp (or its absence) for a part on the wire, or a late one for an unknown part."""
        states = {E.SUBMIT_OK: (S.SUBMITTING, S.UNKNOWN, S.SUBMITTED), E.SUBMIT_REJECT: (S.SUBMITTING, S.UNKNOWN)}.get(
            kind, (S.SUBMITTING,)
        )
        targets = self.segments(*states)
        if not targets:
            return
        msg_id, seg = data.draw(st.sampled_from(targets))
        event = Event(kind)
        if kind is E.SUBMIT_OK:
            event = Event(kind, carrier_id=self.carrier_id_for(self.msgs[msg_id], seg), until_ms=self.at(until))
        elif kind is E.SUBMIT_RETRY:
            event = Event(kind, until_ms=self.clock.ms + 60_000)
        elif kind is E.SUBMIT_REJECT:
            event = Event(kind, "carrier_rejected:ESME_RINVDSTADR")
        elif kind is E.LOST:
            event = Event(kind, "unknown_after_timeout", until_ms=self.at(until))
        self.run([Advance(msg_id, seg, event)])

    def at(self, offset: int) -> int:
        return self.clock.ms + offset if offset else 0

    @rule(
        data=st.data(),
        kind=st.sampled_from(RECEIPTS),
        reason=st.sampled_from(["", "undeliverable:001"]),
        form=st.sampled_from(["known", "known", "early", "bogus", "alt_first", "alt_second"]),
        carrier=st.sampled_from(["carA", "carB"]),
    )
    def receipt(self, data: st.DataObject, kind: Ev, reason: str, form: str, carrier: str) -> None:
        """A receipt for a segment the carrier took (on time, late or again), for one whose submit_sm_resp
        has not come yet (early), for nothing we sent (bogus), or with the id in another form."""
        reason = reason if kind is E.RECEIPT_UNDELIVERABLE else ""
        known = [(k, v) for k, v in sorted(self.index.items()) if not self.msgs[v[0]].purged]
        if form == "early" or not known:
            cid = f"m{self.next_cid + data.draw(st.integers(0, 2))}"
        elif form == "bogus":
            self.bogus += 1
            cid = f"z{self.bogus}"
        else:
            (carrier, cid), _ = data.draw(st.sampled_from(known))
        alternatives: tuple[str, ...] = ()
        if form == "alt_first":  # the id written another way first, the indexed form second
            cid, alternatives = f"x{cid}", (cid,)
        elif form == "alt_second":
            alternatives = (f"x{cid}",)
        self.run([Receipt(carrier, cid, kind, reason, alternatives=alternatives)])

    @precondition(lambda self: bool(self.segments(S.SUBMITTING)))
    @rule(data=st.data(), kind=st.sampled_from(RECEIPTS), receipt_first=st.booleans())
    def response_with_receipt(self, data: st.DataObject, kind: Ev, receipt_first: bool) -> None:
        """An SMSC sends the submit_sm_resp and the receipt at once: one group, in either order."""
        targets = self.segments(S.SUBMITTING)
        if not targets:
            return
        msg_id, seg = data.draw(st.sampled_from(targets))
        m = self.msgs[msg_id]
        cid = self.carrier_id_for(m, seg)
        ops: list[Op] = [Advance(msg_id, seg, Event(E.SUBMIT_OK, carrier_id=cid)), Receipt(m.carrier, cid, kind)]
        self.run(ops[::-1] if receipt_first else ops)

    @precondition(lambda self: bool(self.segments(S.SUBMITTING)))
    @rule(mode=st.sampled_from(["lost", "resend", "mixed"]), data=st.data(), until=st.sampled_from([0, 3_600_000]))
    def link_loss(self, mode: str, data: st.DataObject, until: int) -> None:
        """A bind drops: every part on the wire gets LOST (at-most-once) or RESEND (at-least-once)."""
        self.lose_all(lambda: mode == "resend" or (mode == "mixed" and data.draw(st.booleans())), until)

    def lose_all(self, resend: Callable[[], bool], until: int = 0) -> None:
        ops: list[Op] = []
        for msg_id, seg in self.segments(S.SUBMITTING):
            event = Event(E.RESEND) if resend() else Event(E.LOST, "unknown_after_timeout", until_ms=self.at(until))
            ops.append(Advance(msg_id, seg, event))
        if ops:
            self.run(ops)

    @precondition(lambda self: bool(self.msgs))
    @rule(data=st.data(), event=st.sampled_from([
        Event(E.SCHEDULE), Event(E.DISPATCH, bind="b"), Event(E.SUBMIT_OK), Event(E.SUBMIT_RETRY, until_ms=1),
        Event(E.SUBMIT_REJECT, "carrier_rejected:0x00000458"), Event(E.LOST), Event(E.RESEND), Event(E.REQUEUE),
        Event(E.EXPIRE), Event(E.CANCEL), Event(E.FAIL, "retries_exhausted"), Event(E.RECEIPT_DELIVERED),
    ]), seg=st.sampled_from([0, 1, 2, None]))  # fmt: skip
    def any_event(self, data: st.DataObject, event: Event, seg: int | None) -> None:
        """Any event for any segment (or every live one): the model says whether the store must refuse it."""
        live = sorted(m.id for m in self.live())
        ids = live + [m.id for m in self.msgs.values() if m.purged][:1]
        if not ids:
            return
        msg_id = data.draw(st.sampled_from(ids))
        m = self.msgs[msg_id]
        if event.kind is E.SUBMIT_OK and seg is not None and not m.purged and seg < len(m.segs):
            event = event._replace(carrier_id=self.carrier_id_for(m, seg))
        self.run([Advance(msg_id, seg, event)])

    @precondition(lambda self: bool(self.live()))
    @rule(data=st.data(), same=st.booleans())
    def reroute(self, data: st.DataObject, same: bool) -> None:
        ids = sorted(m.id for m in self.live())
        if not ids:
            return
        m = self.msgs[data.draw(st.sampled_from(ids))]
        self.run([Reroute(m.id, m.carrier if same else "carB", "no_bind")])

    @rule(ms=st.sampled_from([1_000, EARLY_MS + 1, 3_600_001, DAY, 4 * DAY, 31 * DAY]))
    def tick(self, ms: int) -> None:
        self.clock.ms += ms

    @precondition(lambda self: any(0 < m.deadline() <= self.clock.ms for m in self.live()))
    @rule(limit=st.integers(1, 3))
    def overdue(self, limit: int) -> None:
        self.run([Overdue(limit)])

    @precondition(lambda self: self.swept_ms != self.clock.ms)
    @rule()
    def sweep(self) -> None:
        self.swept_ms = self.clock.ms
        self.run([Sweep(1000)])

    @precondition(lambda self: self.can_restart() and bool(self.segments(S.SUBMITTING, S.UNKNOWN, S.SUBMITTED)))
    @rule()
    def restart(self) -> None:
        self.reopen()

    def can_restart(self) -> bool:
        return True

    def reopen(self) -> None:
        """Close and reopen: recovery resends (notification) or marks unknown (marketing) every part that
        was on the wire, one Advance each, in inflight-index order."""
        self.store.close()
        self.store = self._open()
        assert self.store.last_seq() >= self.seen_seq
        ops = []
        for msg_id, seg in self.segments(S.SUBMITTING):
            m = self.msgs[msg_id]
            event = Event(E.RESEND) if m.message_class == "notification" else Event(E.LOST, "unknown_after_timeout")
            ops.append(Advance(msg_id, seg, event))
        for op in ops:
            result = self.model(op, AdvanceResult(0, S.ACCEPTED))
            assert isinstance(result, AdvanceResult), (op, result)
        resent = sum(op.event.kind is E.RESEND for op in ops)
        assert self.store.last_recovery == RecoveryReport(resent, len(ops) - resent)

    @precondition(lambda self: not self.finished and len(self.msgs) >= 4)
    @rule()
    def finish(self) -> None:
        """Every message ends: past every deadline, Overdue ends all but those waiting for the scheduler
        without a validity; sent, lost and past their deadline, they end too."""
        self.finished = True
        if self.can_restart():
            self.reopen()
        else:
            self.lose_all(lambda: False)
        self.expire_everything()
        for m in self.live():
            if m.state not in FINAL:
                assert m.expires_ms == 0, m
                assert all(s.state in (*PENDING, *FINAL) for s in m.segs), m
        for m in self.live():
            if m.state in FINAL:
                continue
            if not m.carrier:
                self.run([Prepare(m.id, "carA", 1, dispatch_bind="carA")])
                continue
            for i, s in enumerate(m.segs):
                if s.state in PENDING:
                    self.run([Advance(m.id, i, Event(E.SCHEDULE)), Advance(m.id, i, Event(E.DISPATCH, bind="b"))])
        self.lose_all(lambda: False)
        self.expire_everything()
        assert all(m.state in FINAL for m in self.live()), [m for m in self.live() if m.state not in FINAL]
        assert self.store.next_deadline_ms() is None

    def expire_everything(self) -> None:
        """The clock past every deadline (each part's receipt deadline, each validity), then Overdue until
        it has no more."""
        deadlines = [s.deadline for m in self.live() for s in m.segs] + [m.expires_ms for m in self.live()]
        self.clock.ms = max([self.clock.ms, *deadlines]) + 1000  # deadlines are keyed by the second
        while True:
            result = self.run([Overdue(2)])[0]
            assert isinstance(result, SweepResult)
            if not result.more:
                break

    # --- invariants ----------------------------------------------------------------------------------

    @invariant()
    def store_agrees_with_the_model(self) -> None:
        assert self.store.check() == []
        stored = {m.id: m for m in self.store.iter_messages()}
        assert set(stored) == {m.id for m in self.live()}
        for m in self.live():
            got = stored[m.id]
            assert (got.carrier, got.concat_ref, list(got.trail), got.final_ms) == (
                m.carrier, m.concat_ref, m.trail, m.final_ms,
            ), m  # fmt: skip
            assert got.state is m.state
            assert got.possible_duplicate == any(s.dup for s in m.segs)
            assert [self.seg_view(s.state, s.reason, s.carrier_id, s.possible_duplicate, s.due_ms)
                    for s in got.segments] == [self.seg_view(s.state, s.reason, s.carrier_id, s.dup, s.deadline)
                                                for s in m.segs], m  # fmt: skip
        for m in self.live():
            if m.state in FINAL and m.state is not S.DELIVERED:
                assert m.counted == stored[m.id].reason, m  # counted under the reason it reads
        for batch in ("b1", "b2"):
            assert self.store.batch("acme", batch) == self.recount(batch), (
                batch,
                [m for m in self.msgs.values() if m.batch == batch],
            )
        early = {store_keys.text_pair(c, k) for c, k in self.early}
        assert self.store.keys_of(b"early") == early

    @staticmethod
    def seg_view(state: State, reason: str, carrier_id: str, dup: bool, due: int) -> tuple[object, ...]:
        return (state, reason if state in FINAL else "", carrier_id, dup, due if state in AWAITING else 0)

    def recount(self, batch: str) -> BatchCounters | None:
        ms = [m for m in self.msgs.values() if m.batch == batch]
        if not ms:
            return None
        ended = [m for m in ms if m.valid and m.state in FINAL]
        failed = [m for m in ended if m.state is not S.DELIVERED]
        return BatchCounters(
            targeted=len(ms), valid=sum(m.valid for m in ms), submitted=sum(m.reported for m in ms),
            delivered=sum(m.state is S.DELIVERED for m in ms), failed=dict(Counter(m.counted for m in failed)),
            billed=sum(m.billed for m in ms), refused=dict(Counter(m.counted for m in ms if not m.valid)),
            failed_at=dict(Counter(f"{m.carrier}\x1f{m.counted}" for m in failed)), ended=len(ended),
            ended_submitted=sum(m.reported for m in ended),
            charged=sum(s.state is S.DELIVERED for m in ms for s in m.segs),
        )  # fmt: skip

    @invariant()
    def event_log_agrees(self) -> None:
        for e in self.store.events(self.seen_seq, limit=100_000):
            assert e.seq > self.seen_seq
            self.seen_seq = e.seq
            self.msgs[e.message_id].seen.append((e.kind, e.reason, e.possible_duplicate))
        assert self.store.last_seq() == self.seen_seq
        for m in self.msgs.values():
            assert m.seen == m.events, m
            kinds = [k for k, _, _ in m.seen]
            assert kinds.count(EventKind.SUBMITTED) <= 1
            finals = [k for k in kinds if k is not EventKind.SUBMITTED]
            if m.state in FINAL:
                # One final event; "failed" then "delivered" after an upgrade.
                failed = [EventKind.FAILED]
                assert finals in ([EventKind.DELIVERED], failed, [*failed, EventKind.DELIVERED]), m
            else:
                assert finals == [], m
            if m.resent_after >= 0:
                assert all(dup for _, _, dup in m.seen[m.resent_after :]), m


def test_the_lifecycle_over_a_real_store_matches_the_model() -> None:
    run_state_machine_as_test(
        StoreMachine,
        settings=settings(
            max_examples=80,
            stateful_step_count=60,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


def test_event_seq_survives_a_restart_after_retention_empties_the_log(tmp_path: Path) -> None:
    clock = FakeClock()
    cfg = StoreConfig(path=str(tmp_path / "db"), sync=False, map_size_bytes=16 << 20)
    store = Store.open(cfg, clock=clock)
    try:
        (first,) = ok(store, [submit("+447700900001")])[0].message_ids  # type: ignore[union-attr]
        ok(store, [Advance(first, None, Event(E.CANCEL)), SetCursor("acme", 1)])  # seq 1 "failed", acked
        clock.ms += 31 * DAY
        ok(store, [Sweep(100)])  # retention purges the message and its event: the log is empty
        store.close()
        store = Store.open(cfg, clock=clock)
        (second,) = ok(store, [submit("+447700900002")])[0].message_ids  # type: ignore[union-attr]
        ok(store, [Advance(second, None, Event(E.CANCEL))])
        # The subscriber resumes after its cursor (1): the new message's "failed" event must be there.
        assert [e.message_id for e in store.events(store.cursor("acme"))] == [second]
    finally:
        store.close()


def two_parts_delivered_to_the_carrier(store: Store) -> int:
    """A two-part message in batch b1, both parts submitted (carrier ids p0 and p1 on carA)."""
    (msg_id,) = ok(store, [submit("+447700900001", batch="b1")])[0].message_ids  # type: ignore[union-attr]
    ok(store, [Prepare(msg_id, "carA", 2, concat=True, dispatch_bind="carA")])
    ok(store, [Advance(msg_id, i, Event(E.SUBMIT_OK, carrier_id=f"p{i}")) for i in (0, 1)])
    return msg_id


def test_a_partial_upgrade_logs_no_second_failed_event(tmp_path: Path) -> None:
    store = Store.open(StoreConfig(path=str(tmp_path / "db"), sync=False, map_size_bytes=16 << 20), FakeClock())
    try:
        msg_id = two_parts_delivered_to_the_carrier(store)
        ok(store, [Receipt("carA", "p0", E.RECEIPT_UNDELIVERABLE, "undeliverable:001")])
        ok(store, [Receipt("carA", "p1", E.RECEIPT_EXPIRED)])  # message undeliverable: "failed" logged
        ok(store, [Receipt("carA", "p0", E.RECEIPT_DELIVERED)])  # part 0 upgraded: the message is now expired
        kinds = [e.kind for e in store.events(0) if e.message_id == msg_id]
        assert kinds == [EventKind.SUBMITTED, EventKind.FAILED]
    finally:
        store.close()


def test_a_partial_upgrade_keeps_the_batch_counters_equal_to_a_recount(tmp_path: Path) -> None:
    store = Store.open(StoreConfig(path=str(tmp_path / "db"), sync=False, map_size_bytes=16 << 20), FakeClock())
    try:
        msg_id = two_parts_delivered_to_the_carrier(store)
        ok(store, [Receipt("carA", "p0", E.RECEIPT_UNDELIVERABLE, "undeliverable:001")])
        ok(store, [Receipt("carA", "p1", E.RECEIPT_UNDELIVERABLE, "undeliverable:002")])
        ok(store, [Receipt("carA", "p0", E.RECEIPT_DELIVERED)])  # still undeliverable, by part 1 now
        msg, counters = store.get(msg_id), store.batch("acme", "b1")
        assert msg is not None
        assert counters is not None
        assert (msg.state, msg.reason) == (S.UNDELIVERABLE, "undeliverable:002")
        assert dict(counters.failed) == {"undeliverable:002": 1}
    finally:
        store.close()
