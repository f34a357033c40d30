"""One write transaction keeps each message record it touched and puts it once, before commit: later ops of
the group see what earlier ones did, an op that fails leaves the record as the ops before it left it, and a
group gives the same results and the same store as its ops applied one group each."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from typing import Any

import lmdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.lifecycle import Ev, Event, InvalidTransition, State, message_state
from gateway.store import (
    Advance,
    AdvanceResult,
    EventKind,
    Op,
    Prepare,
    Receipt,
    ReceiptResult,
    Result,
    Store,
    StoreConfig,
    SubmitResult,
    Sweep,
    SweepResult,
)
from gateway.store import store as store_module
from gateway.store.keys import DB_NAMES
from gateway.store.store import InvalidField, UnknownMessage
from tests.integration.store.conftest import StoreFactory
from tests.integration.store.support import FakeClock, ok, send, submit
from tests.integration.store.test_store_model import step, to_op

DAY_MS = 86_400_000


def two_parts_in_flight(store: Store, *numbers: str) -> list[int]:
    """Messages split in two, both parts dispatched (submitting)."""
    (result,) = ok(store, [submit(*numbers, batch="b")])
    assert isinstance(result, SubmitResult)
    ok(store, [Prepare(i, "carA", 2, dispatch_bind="bind1") for i in result.message_ids])
    return list(result.message_ids)


def submit_ok(msg_id: int, seg: int) -> Advance:
    return Advance(msg_id, seg, Event(Ev.SUBMIT_OK, carrier_id=f"{msg_id}-{seg}"))


def delivered(msg_id: int, seg: int) -> Receipt:
    return Receipt("carA", f"{msg_id}-{seg}", Ev.RECEIPT_DELIVERED)


def kinds(store: Store, msg_id: int) -> list[EventKind]:
    return [e.kind for e in store.events(0) if e.message_id == msg_id]


def test_both_parts_of_a_message_advance_in_one_group(open_store: StoreFactory) -> None:
    store = open_store()
    (msg_id,) = two_parts_in_flight(store, "+1")
    first, second = ok(store, [submit_ok(msg_id, 0), submit_ok(msg_id, 1)])
    assert isinstance(first, AdvanceResult)
    assert isinstance(second, AdvanceResult)
    # The second op saw the first one's part: the message is submitted once both are.
    assert (first.state, second.state) == (State.SUBMITTING, State.SUBMITTED)
    msg = store.get(msg_id)
    assert msg is not None
    assert [s.state for s in msg.segments] == [State.SUBMITTED, State.SUBMITTED]
    assert [s.carrier_id for s in msg.segments] == [f"{msg_id}-0", f"{msg_id}-1"]
    assert kinds(store, msg_id) == [EventKind.SUBMITTED]
    assert store.count(b"inflight") == 0
    assert store.check() == []


def test_responses_and_receipts_of_both_parts_in_one_group_deliver_the_message(open_store: StoreFactory) -> None:
    store = open_store()
    (msg_id,) = two_parts_in_flight(store, "+1")
    ops: list[Op] = [submit_ok(msg_id, 0), delivered(msg_id, 0), submit_ok(msg_id, 1), delivered(msg_id, 1)]
    results = ok(store, ops)
    last = results[-1]
    assert isinstance(last, ReceiptResult)
    assert (last.matched, last.segment, last.state) == (True, 1, State.DELIVERED)
    msg = store.get(msg_id)
    assert msg is not None
    assert msg.state is State.DELIVERED
    assert msg.final_ms
    assert kinds(store, msg_id) == [EventKind.SUBMITTED, EventKind.DELIVERED]
    counters = store.batch("acme", "b")
    assert counters is not None
    assert (counters.submitted, counters.delivered, counters.billed) == (1, 1, 2)
    assert store.check() == []


def test_a_failing_op_mid_group_leaves_the_record_as_the_earlier_ops_left_it(open_store: StoreFactory) -> None:
    store = open_store()
    (msg_id,) = two_parts_in_flight(store, "+1")
    results = store.apply(
        [
            submit_ok(msg_id, 1),
            # Part 0 may be lost, part 1 (submitted) may not: the op fails after advancing part 0.
            Advance(msg_id, None, Event(Ev.LOST)),
            submit_ok(msg_id, 0),
        ]
    )
    assert isinstance(results[1], InvalidTransition)
    last = results[2]
    assert isinstance(last, AdvanceResult)
    assert last.state is State.SUBMITTED
    msg = store.get(msg_id)
    assert msg is not None
    assert [s.state for s in msg.segments] == [State.SUBMITTED, State.SUBMITTED]
    assert [s.reason for s in msg.segments] == ["", ""]
    assert store.check() == []


def test_an_op_failing_after_editing_its_copy_leaves_the_transactions_record(
    open_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # White box: no op today raises one of its own errors after it edits the record it loaded, but if one
    # did, the edit must not reach the record the rest of the group sees (nor the one committed).
    store = open_store()
    (msg_id,) = two_parts_in_flight(store, "+1")
    write = Store._write
    calls = 0

    def failing_second_write(self: Store, *args: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise InvalidField("injected after the op edited its record")
        write(self, *args)

    monkeypatch.setattr(Store, "_write", failing_second_write)
    results = store.apply([submit_ok(msg_id, 0), submit_ok(msg_id, 1)])
    assert isinstance(results[0], AdvanceResult)
    assert isinstance(results[1], InvalidField)
    msg = store.get(msg_id)
    assert msg is not None
    assert [s.state for s in msg.segments] == [State.SUBMITTED, State.SUBMITTING]


def test_a_resubmit_in_the_group_that_changed_its_messages_replays_the_changed_state(
    open_store: StoreFactory,
) -> None:
    store = open_store()
    first = submit("+1", "+2", client_ref="ref-1")
    (accepted,) = ok(store, [first])
    assert isinstance(accepted, SubmitResult)
    one, two = accepted.message_ids
    _, replay = ok(store, [Prepare(one, "carA", 1, dispatch_bind="bind1"), first])
    assert isinstance(replay, SubmitResult)
    assert replay.duplicate
    assert [(o.message_id, o.state) for o in replay.outcomes] == [(one, State.SUBMITTING), (two, State.ACCEPTED)]


def test_new_messages_of_a_group_are_stored_after_changes_to_older_ones(open_store: StoreFactory) -> None:
    store = open_store()
    (older,) = two_parts_in_flight(store, "+1")
    results = ok(store, [submit("+2", "+3"), submit_ok(older, 0), submit("+4")])
    new_ids = [i for r in results if isinstance(r, SubmitResult) for i in r.message_ids]
    assert new_ids == sorted(new_ids)
    assert older < new_ids[0]
    assert [m.id for m in store.iter_messages()] == [older, *new_ids]
    assert all(m.state is State.ACCEPTED for m in store.get_many(new_ids) if m is not None)
    assert store.check() == []


def test_a_sweep_purges_a_record_an_earlier_op_of_its_group_changed(
    open_store: StoreFactory, clock: FakeClock
) -> None:
    store = open_store()
    (result,) = ok(store, [submit("+1", batch="b")])
    assert isinstance(result, SubmitResult)
    (msg_id,) = result.message_ids
    send(store, msg_id, "c1")
    ok(store, [Receipt("carA", "c1", Ev.RECEIPT_UNDELIVERABLE, "undeliverable:001")])
    clock.ms += 31 * DAY_MS
    # A late DELIVRD upgrades the message (its final time stays), the sweep then purges it: nothing may
    # write the record back, and a later op of the group finds no message.
    late = Advance(msg_id, 0, Event(Ev.RECEIPT_DELIVERED))
    upgraded, swept, after = store.apply([late, Sweep(100), submit_ok(msg_id, 0)])
    assert isinstance(upgraded, AdvanceResult)
    assert upgraded.state is State.DELIVERED
    assert isinstance(swept, SweepResult)
    assert swept.messages == 1
    assert isinstance(after, UnknownMessage)
    assert store.get(msg_id) is None
    assert store.check() == []


def test_a_transaction_retried_after_the_map_grew_applies_each_op_once(
    open_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(map_grow=True)
    (msg_id,) = two_parts_in_flight(store, "+1")
    flush = Store._flush_batches
    failed = False

    def full_once(self: Store, tx: Any) -> None:
        nonlocal failed
        if not failed:
            failed = True
            raise lmdb.MapFullError("injected")
        flush(self, tx)

    monkeypatch.setattr(Store, "_flush_batches", full_once)
    results = ok(store, [submit_ok(msg_id, 0), delivered(msg_id, 0), submit_ok(msg_id, 1), delivered(msg_id, 1)])
    assert failed
    assert isinstance(results[-1], ReceiptResult)
    assert results[-1].state is State.DELIVERED
    assert kinds(store, msg_id) == [EventKind.SUBMITTED, EventKind.DELIVERED]
    counters = store.batch("acme", "b")
    assert counters is not None
    assert (counters.submitted, counters.delivered, counters.billed) == (1, 1, 2)
    assert store.check() == []


def test_state_of_stored_segments_agrees_with_message_state() -> None:
    states = list(State)
    combos = [[a] for a in states] + [[a, b] for a in states for b in states]
    combos += [[a, b, c] for a in states for b in states for c in states]
    for combo in combos:
        segs = [[int(s)] for s in combo]
        assert store_module._state_of(segs) is message_state(combo), combo


# --- a group against the same ops one group each ---------------------------------------------------------


def outcome(result: Result | GatewayError) -> object:
    return (type(result), str(result)) if isinstance(result, GatewayError) else result


def snapshot(store: Store) -> dict[str, object]:
    return {
        "messages": list(store.iter_messages()),
        "events": store.events(0, limit=100_000),
        "batch": store.batch("acme", "b"),
        **{name.decode(): store.keys_of(name) for name in DB_NAMES if name != b"events"},
        "check": store.check(),
    }


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(step, min_size=1, max_size=12), min_size=1, max_size=8))
def test_a_group_does_what_its_ops_do_one_group_each(groups: list[list[tuple[object, ...]]]) -> None:
    clock = FakeClock()
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        grouped = Store.open(StoreConfig(path=a, sync=False, map_size_bytes=16 << 20), clock=clock)
        single = Store.open(StoreConfig(path=b, sync=False, map_size_bytes=16 << 20), clock=clock)
        ids: list[int] = []
        try:
            for group in groups:
                ops: Sequence[Op] = [op for action in group if (op := to_op(action, ids, clock)) is not None]
                together = grouped.apply(ops)
                # A group applies its receipts after its other ops (Store._run_ops): one op per group, in
                # that order, must give every op the same result.
                order = sorted(range(len(ops)), key=lambda i: type(ops[i]) is Receipt)
                apart: list[Result | GatewayError | None] = [None] * len(ops)
                for i in order:
                    (apart[i],) = single.apply([ops[i]])
                assert [outcome(r) for r in together] == [outcome(r) for r in apart]  # type: ignore[arg-type]
                for result in together:
                    if isinstance(result, SubmitResult):
                        ids.extend(result.message_ids)
                clock.ms += 1000
            assert snapshot(grouped) == snapshot(single)
            assert grouped.check() == []
        finally:
            grouped.close()
            single.close()
