"""The write path edits stored record arrays in place and skips the early-receipt lookup while that table
is empty: records written earlier must still read and update, and no early receipt may be missed."""

from __future__ import annotations

import gc
from typing import Any

import lmdb
import msgpack
import pytest

from gateway.lifecycle import Ev, Event, State
from gateway.store import (
    Advance,
    AdvanceResult,
    EventKind,
    Prepare,
    Receipt,
    ReceiptResult,
    Recipient,
    Store,
    Submit,
    SubmitResult,
    UnknownMessage,
)
from gateway.store import keys as store_keys
from tests.integration.store.conftest import StoreFactory
from tests.integration.store.support import T0, ok, submit


def only_id(store: Store, *numbers: str, message_class: str = "notification") -> list[int]:
    (result,) = ok(store, [submit(*numbers, batch="b", message_class=message_class)])
    return list(result.message_ids)  # type: ignore[union-attr]


def dispatch(store: Store, msg_id: int, parts: int = 1) -> None:
    ok(store, [Prepare(msg_id, "carA", parts, dispatch_bind="bind1")])


def test_early_receipt_stored_before_a_reopen_is_applied_after_it(open_store: StoreFactory) -> None:
    store = open_store()
    # Marketing recovers at-most-once: the reopen marks the segment unknown, and a late response still lands.
    (msg_id,) = only_id(store, "+1", message_class="marketing")
    dispatch(store, msg_id)
    (early,) = ok(store, [Receipt("carA", "E1", Ev.RECEIPT_DELIVERED)])
    assert isinstance(early, ReceiptResult)
    assert early.early
    store = open_store()
    assert store.get(msg_id).state is State.UNKNOWN  # type: ignore[union-attr]
    (resp,) = ok(store, [Advance(msg_id, 0, Event(Ev.SUBMIT_OK, carrier_id="E1"))])
    assert isinstance(resp, AdvanceResult)
    assert (resp.early_receipt_applied, resp.state) == (True, State.DELIVERED)
    assert store.check() == []


def test_early_receipts_after_the_table_emptied_are_still_found(open_store: StoreFactory) -> None:
    store = open_store()
    first, second, third = only_id(store, "+1", "+2", "+3")
    for msg_id in (first, second, third):
        dispatch(store, msg_id)
    ok(store, [Receipt("carA", "A", Ev.RECEIPT_DELIVERED)])
    ok(store, [Advance(first, 0, Event(Ev.SUBMIT_OK, carrier_id="A"))])
    assert store.count(b"early") == 0
    # A plain submit_sm_resp while nothing waits, then a receipt that races ahead of the next one.
    (plain,) = ok(store, [Advance(second, 0, Event(Ev.SUBMIT_OK, carrier_id="B"))])
    assert isinstance(plain, AdvanceResult)
    assert not plain.early_receipt_applied
    (early,) = ok(store, [Receipt("carA", "C", Ev.RECEIPT_UNDELIVERABLE, "undeliverable:001")])
    assert isinstance(early, ReceiptResult)
    assert early.early
    (late,) = ok(store, [Advance(third, 0, Event(Ev.SUBMIT_OK, carrier_id="C"))])
    assert isinstance(late, AdvanceResult)
    assert (late.early_receipt_applied, late.state) == (True, State.UNDELIVERABLE)
    msg = store.get(third)
    assert msg is not None
    assert msg.reason == "undeliverable:001"
    assert store.check() == []


@pytest.mark.parametrize(
    "added", [[], [[]], [[], []], [[], [], []]],
    ids=["17 fields", "18 fields, with the trail", "19 fields, with the route", "20 fields, with the caps"],
)
def test_a_record_in_the_version_1_layout_reads_and_updates(open_store: StoreFactory, added: list[Any]) -> None:
    store = open_store()
    (msg_id,) = only_id(store, "+44790")
    store.close()
    # The documented version 1 array, built here by hand, replaces what the store wrote. Version 1 grew
    # at its end: the trail (18 fields), the route (19), the caps taken (20), then the parts reserved from a
    # balance (21): each length is read.
    seg = [int(State.ACCEPTED), "", "", "", 0, 0, False, T0, T0]
    v1 = [1, msg_id, "acme", "b", "notification", "ACME", "+44790", "hello", True, "", T0, 0, [seg], "", 0, 0, 0]
    raw = msgpack.packb(v1 + added, use_bin_type=True)
    with lmdb.open(store.cfg.path, max_dbs=40) as env, env.begin(write=True) as txn:
        db = env.open_db(b"messages", txn=txn)
        written = msgpack.packb([*v1, [], [], [], 0], use_bin_type=True)  # trail, route, caps, reserved: none
        assert txn.get(store_keys.u64(msg_id), db=db) == written  # the layout did not change
        txn.put(store_keys.u64(msg_id), raw, db=db)
    store = open_store()
    msg = store.get(msg_id)
    assert msg is not None
    assert (msg.recipient, msg.text, msg.state, msg.segments[0].due_ms) == ("+44790", "hello", State.ACCEPTED, T0)
    dispatch(store, msg_id)
    ok(store, [Advance(msg_id, 0, Event(Ev.SUBMIT_OK, carrier_id="V1"))])
    (receipt,) = ok(store, [Receipt("carA", "V1", Ev.RECEIPT_DELIVERED)])
    assert isinstance(receipt, ReceiptResult)
    assert receipt.state is State.DELIVERED
    kinds = [e.kind for e in store.events(0) if e.message_id == msg_id]
    assert kinds == [EventKind.SUBMITTED, EventKind.DELIVERED]
    assert store.check() == []


def test_every_part_of_a_split_message_is_tracked_until_its_receipt(open_store: StoreFactory) -> None:
    store = open_store()
    (msg_id,) = only_id(store, "+1")
    dispatch(store, msg_id, parts=3)
    assert store.count(b"inflight") == 3
    assert store.count(b"due") == 0
    for part in range(3):
        ok(store, [Advance(msg_id, part, Event(Ev.SUBMIT_OK, carrier_id=f"P{part}"))])
    assert store.count(b"inflight") == 0
    events = [e.kind for e in store.events(0) if e.message_id == msg_id]
    assert events == [EventKind.SUBMITTED]  # once for the message, not once per part
    states = []
    for part in range(3):
        (r,) = ok(store, [Receipt("carA", f"P{part}", Ev.RECEIPT_DELIVERED)])
        assert isinstance(r, ReceiptResult)
        states.append(store.get(msg_id).state)  # type: ignore[union-attr]
    assert states == [State.SUBMITTED, State.SUBMITTED, State.DELIVERED]
    counters = store.batch("acme", "b")
    assert counters is not None
    assert (counters.submitted, counters.delivered, counters.billed) == (1, 1, 3)
    assert store.check() == []


def test_a_receipt_queued_before_its_response_in_one_group_matches_at_once(open_store: StoreFactory) -> None:
    # The engine's two correlation tasks queue a response and its receipt in either order; in one group the
    # receipt is applied after the response: matched, not parked as early, "submitted" logged first.
    store = open_store()
    (msg_id,) = only_id(store, "+1")
    dispatch(store, msg_id)
    receipt, response = ok(
        store, [Receipt("carA", "D", Ev.RECEIPT_DELIVERED), Advance(msg_id, 0, Event(Ev.SUBMIT_OK, carrier_id="D"))]
    )
    assert isinstance(receipt, ReceiptResult)
    assert (receipt.matched, receipt.early, receipt.state) == (True, False, State.DELIVERED)
    assert isinstance(response, AdvanceResult)
    assert not response.early_receipt_applied
    assert store.count(b"early") == 0
    kinds = [e.kind for e in store.events(0) if e.message_id == msg_id]
    assert kinds == [EventKind.SUBMITTED, EventKind.DELIVERED]
    assert store.check() == []


def test_the_carriers_a_recipient_was_routed_to_are_stored_with_it(open_store: StoreFactory) -> None:
    store = open_store()
    routed = Submit(
        account="acme", message_class="notification", sender="ACME", text="hello",
        recipients=(Recipient("447400123456", route=("cmcc", "cucc")), Recipient("447400123457")),
    )  # fmt: skip
    (result,) = ok(store, [routed])
    assert isinstance(result, SubmitResult)
    first, second = (store.get(o.message_id) for o in result.outcomes)
    assert first is not None
    assert second is not None
    assert (first.route, second.route) == (("cmcc", "cucc"), ())
    # Kept through every write the message goes through.
    dispatch(store, first.id)
    again = store.get(first.id)
    assert again is not None
    assert again.route == ("cmcc", "cucc")


def test_a_refused_op_leaves_no_garbage_cycle_behind(open_store: StoreFactory) -> None:
    # A refusal comes back as a value. With its traceback it would hold the group's frames, which hold it:
    # a cycle that only the (tuned, rarely running) cyclic collector frees, with the group's records in it.
    store = open_store()
    gc.collect()
    gc.disable()
    try:
        ours = set()  # ids: an exception takes no weak reference; a live object's id is not reused
        for i in range(50):
            (refused,) = store.apply([Advance(10_000 + i, 0, Event(Ev.SUBMIT_OK, carrier_id="X"))])
            assert isinstance(refused, UnknownMessage)
            assert refused.__traceback__ is None
            ours.add(id(refused))
        del refused
        assert not [o for o in gc.get_objects() if isinstance(o, UnknownMessage) and id(o) in ours]
    finally:
        gc.enable()
