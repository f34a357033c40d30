"""What the store does for failover, deadlines and poison ops (issue 11): Reroute, receipt deadlines in the
due index, the possible-duplicate flag on events, and a bug in one op that must not take its group down."""

from __future__ import annotations

import pytest

from gateway.lifecycle import RECEIPT_TIMEOUT_MS, Ev, Event, State
from gateway.store import Advance, AdvanceResult, OpFailed, Overdue, Prepare, Reroute, SubmitResult, SweepResult
from gateway.store import store as store_module
from gateway.store.records import EventKind
from tests.integration.store.conftest import StoreFactory
from tests.integration.store.support import T0, FakeClock, ok, send, submit


def _one(store: object, number: str = "+447700900001", **kwargs: object) -> int:
    (result,) = ok(store, [submit(number, **kwargs)])  # type: ignore[arg-type]
    assert isinstance(result, SubmitResult)
    return result.message_ids[0]


def test_reroute_takes_a_message_nobody_has_back_to_one_waiting_segment(open_store: StoreFactory) -> None:
    store = open_store()
    msg_id = _one(store)
    ok(store, [Prepare(msg_id, "carA", 2, concat=True, dispatch_bind="carA")])
    # Both parts refused with an error that moves the message on: back-off first, then the reroute.
    ok(store, [Advance(msg_id, i, Event(Ev.SUBMIT_RETRY, until_ms=T0 + 5_000)) for i in (0, 1)])
    (result,) = ok(store, [Reroute(msg_id, "carA", "carrier_rejected:ESME_RSYSERR")])
    assert isinstance(result, AdvanceResult)
    assert not result.ignored
    msg = store.get(msg_id)
    assert msg is not None
    assert (msg.carrier, msg.state, len(msg.segments)) == ("", State.ACCEPTED, 1)
    assert msg.trail == (("carA", "carrier_rejected:ESME_RSYSERR"),)
    assert msg.segments[0].attempts == 1  # attempts carry over: retries stay bounded across carriers
    assert [e.message_id for e in store.due(T0)] == [msg_id]  # due now, not after the back-off
    # The next carrier prepares it as a new message would be.
    ok(store, [Prepare(msg_id, "carB", 1, dispatch_bind="carB")])
    moved = store.get(msg_id)
    assert moved is not None
    assert (moved.carrier, moved.trail) == ("carB", (("carA", "carrier_rejected:ESME_RSYSERR"),))


def test_reroute_keeps_every_part_on_the_carrier_that_took_one(open_store: StoreFactory) -> None:
    store = open_store()
    msg_id = _one(store)
    ok(store, [Prepare(msg_id, "carA", 2, concat=True, dispatch_bind="carA")])
    ok(store, [Advance(msg_id, 0, Event(Ev.SUBMIT_OK, carrier_id="c0"))])
    ok(store, [Advance(msg_id, 1, Event(Ev.SUBMIT_RETRY, until_ms=T0 + 5_000))])
    (result,) = ok(store, [Reroute(msg_id, "carA", "carrier_rejected:ESME_RSYSERR")])
    assert isinstance(result, AdvanceResult)
    assert result.ignored
    msg = store.get(msg_id)
    assert msg is not None
    assert (msg.carrier, len(msg.segments), msg.trail) == ("carA", 2, ())


def test_reroute_from_a_carrier_it_already_left_changes_nothing(open_store: StoreFactory) -> None:
    store = open_store()
    msg_id = _one(store)
    (result,) = ok(store, [Reroute(msg_id, "carA", "no_bind")])  # never prepared for carA
    assert isinstance(result, AdvanceResult)
    assert result.ignored


def test_submitted_segment_without_a_receipt_ends_at_its_deadline(
    open_store: StoreFactory, clock: FakeClock
) -> None:
    store = open_store()
    msg_id = _one(store)
    ok(store, [Prepare(msg_id, "carA", 1, dispatch_bind="carA")])
    ok(store, [Advance(msg_id, 0, Event(Ev.SUBMIT_OK, carrier_id="c1", until_ms=T0 + 60_000))])
    clock.ms = T0 + 59_999
    (early,) = ok(store, [Overdue(100)])
    assert isinstance(early, SweepResult)
    assert early.messages == 0
    clock.ms = T0 + 60_000
    (result,) = ok(store, [Overdue(100)])
    assert isinstance(result, SweepResult)
    assert (result.messages, result.more) == (1, False)
    msg = store.get(msg_id)
    assert msg is not None
    assert (msg.state, msg.reason) == (State.EXPIRED, "no_receipt")
    assert [e.kind for e in store.events(0)][-1] is EventKind.FAILED
    assert store.keys_of(b"deadline") == set()  # final: nothing left to end
    assert store.check() == []


def test_unknown_segment_ends_no_receipt_at_the_default_deadline(open_store: StoreFactory, clock: FakeClock) -> None:
    store = open_store()
    msg_id = _one(store)
    ok(store, [Prepare(msg_id, "carA", 1, dispatch_bind="carA")])
    ok(store, [Advance(msg_id, 0, Event(Ev.LOST, "unknown_after_timeout"))])
    clock.ms = T0 + RECEIPT_TIMEOUT_MS
    ok(store, [Overdue(100)])
    msg = store.get(msg_id)
    assert msg is not None
    assert (msg.state, msg.reason) == (State.EXPIRED, "no_receipt")


def test_waiting_message_ends_at_its_validity_whatever_the_carriers_do(
    open_store: StoreFactory, clock: FakeClock
) -> None:
    store = open_store()
    msg_id = _one(store, expires_ms=T0 + 5_000)  # no carrier ever takes it
    clock.ms = T0 + 5_000
    (result,) = ok(store, [Overdue(100)])
    assert isinstance(result, SweepResult)
    assert result.messages == 1
    msg = store.get(msg_id)
    assert msg is not None
    assert (msg.state, msg.reason) == (State.EXPIRED, "expired")
    assert store.due(T0 + 10_000) == []
    assert store.check() == []


def test_receipt_takes_the_message_off_the_deadline_index(open_store: StoreFactory) -> None:
    store = open_store()
    msg_id = _one(store)
    send(store, msg_id, "c1")
    assert len(store.keys_of(b"deadline")) == 1  # the default deadline
    ok(store, [Advance(msg_id, 0, Event(Ev.RECEIPT_DELIVERED))])
    assert store.keys_of(b"deadline") == set()
    assert store.check() == []


def test_events_of_a_resent_message_say_possible_duplicate(open_store: StoreFactory) -> None:
    store = open_store()
    msg_id = _one(store)
    ok(store, [Prepare(msg_id, "carA", 1, dispatch_bind="carA")])
    ok(store, [Advance(msg_id, 0, Event(Ev.RESEND))])
    ok(store, [Advance(msg_id, 0, Event(Ev.DISPATCH, bind="carA"))])
    ok(store, [Advance(msg_id, 0, Event(Ev.SUBMIT_OK, carrier_id="c1"))])
    ok(store, [Advance(msg_id, 0, Event(Ev.RECEIPT_DELIVERED))])
    events = [e for e in store.events(0) if e.message_id == msg_id]
    assert [e.kind for e in events] == [EventKind.SUBMITTED, EventKind.DELIVERED]
    assert all(e.possible_duplicate for e in events)
    msg = store.get(msg_id)
    assert msg is not None
    assert msg.possible_duplicate


def test_events_of_an_ordinary_message_are_not_flagged(open_store: StoreFactory) -> None:
    store = open_store()
    msg_id = _one(store)
    send(store, msg_id, "c1")
    assert not any(e.possible_duplicate for e in store.events(0))


def test_an_op_that_hits_a_bug_fails_alone_and_its_group_commits(
    open_store: StoreFactory, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = open_store()
    first, poison, last = _one(store, "+447700900001"), _one(store, "+447700900002"), _one(store, "+447700900003")
    real = store._handlers[Prepare]

    def buggy(tx: object, op: Prepare) -> object:
        if op.message_id == poison:
            raise OverflowError("int too big to convert")
        return real(tx, op)  # type: ignore[arg-type]

    monkeypatch.setitem(store._handlers, Prepare, buggy)
    monkeypatch.setattr(store_module, "_REPORTED_BUGS", set())
    results = store.apply([Prepare(m, "carA", 1) for m in (first, poison, last)])
    assert isinstance(results[1], OpFailed)
    assert "OverflowError" in str(results[1])
    assert not isinstance(results[0], OpFailed)
    assert not isinstance(results[2], OpFailed)
    for msg_id, carrier in ((first, "carA"), (poison, ""), (last, "carA")):
        msg = store.get(msg_id)
        assert msg is not None
        assert msg.carrier == carrier
    assert "OverflowError" in capsys.readouterr().err  # its traceback, once
    store.apply([Prepare(poison, "carA", 1)])
    assert "OverflowError" not in capsys.readouterr().err  # not again for the same place
