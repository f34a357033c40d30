"""Receipts matched by candidate keys (issue 11): every form of an id, a waiting segment preferred, early
receipts claimed by whichever form the response gives and removed completely, and stale ones moved to the
unmatched table, counted, listed and purged by retention."""

from __future__ import annotations

import msgpack
import pytest

from gateway.lifecycle import Ev, Event, State
from gateway.smpp.msgid import CarrierIdFormats
from gateway.store import (
    Advance,
    AdvanceResult,
    ForgetEarly,
    Prepare,
    Receipt,
    ReceiptResult,
    Store,
    Sweep,
    SweepResult,
)
from gateway.store.store import read_unmatched
from tests.integration.store.conftest import StoreFactory
from tests.integration.store.support import FakeClock, ok, submit

IDS = CarrierIdFormats()  # every form
DAY_MS = 86_400_000


def receipt(raw: str, kind: Ev = Ev.RECEIPT_DELIVERED, *, from_tlv: bool = False, text: bytes = b"") -> Receipt:
    keys = IDS.receipt_keys(raw, from_tlv=from_tlv)
    return Receipt("carA", keys[0], kind, "", keys[1:], "" if raw == keys[0] else raw, text)


def message(store: Store, number: str = "+1") -> int:
    (result,) = ok(store, [submit(number)])
    return result.message_ids[0]  # type: ignore[union-attr]


def dispatched(store: Store, number: str = "+1") -> int:
    msg_id = message(store, number)
    ok(store, [Prepare(msg_id, "carA", 1, dispatch_bind="b1")])
    return msg_id


def respond(store: Store, msg_id: int, response_id: str) -> AdvanceResult:
    (result,) = ok(store, [Advance(msg_id, 0, Event(Ev.SUBMIT_OK, carrier_id=IDS.response_key(response_id)))])
    assert isinstance(result, AdvanceResult)
    return result


def state(store: Store, msg_id: int) -> State:
    msg = store.get(msg_id)
    assert msg is not None
    return msg.state


@pytest.mark.parametrize(
    ("response_id", "receipt_id", "from_tlv"),
    [
        ("18c5a3b2f00", "18c5a3b2f00", True),  # (a) the TLV, as the response gave it
        ("18c5a3b2f00", "000018c5a3b2f00", False),  # (b) zero-padded
        ("18c5a3b2f00", str(0x18C5A3B2F00), False),  # (c) decimal for a hex response
        ("18C5A3B2F00", f"{0x18C5A3B2F00:020d}", False),  # (d) decimal, padded, response upper case
        ("1700000000000", f"{1700000000000:x}", False),  # hex for a decimal response
        ("aB-9", "AB-9", False),  # letters in the other case
    ],
)
def test_a_receipt_matches_in_every_form(
    open_store: StoreFactory, response_id: str, receipt_id: str, from_tlv: bool
) -> None:
    store = open_store()
    msg_id = dispatched(store)
    respond(store, msg_id, response_id)
    (result,) = ok(store, [receipt(receipt_id, from_tlv=from_tlv)])
    assert isinstance(result, ReceiptResult)
    assert (result.matched, result.message_id, result.state) == (True, msg_id, State.DELIVERED)
    assert store.check() == []


def test_a_segment_waiting_for_its_receipt_is_preferred(open_store: StoreFactory) -> None:
    store = open_store()
    done, waiting = dispatched(store, "+1"), dispatched(store, "+2")
    respond(store, done, "123")  # hex 0x123, already delivered
    ok(store, [receipt("123")])
    respond(store, waiting, "7b")  # hex 0x7b: its receipt writes the decimal "123"
    (result,) = ok(store, [receipt("123", Ev.RECEIPT_UNDELIVERABLE)])
    assert isinstance(result, ReceiptResult)
    assert (result.message_id, result.state) == (waiting, State.UNDELIVERABLE)
    assert state(store, done) is State.DELIVERED


def test_a_repeated_receipt_goes_to_its_own_form_and_is_ignored(open_store: StoreFactory) -> None:
    store = open_store()
    msg_id = dispatched(store)
    respond(store, msg_id, "123")
    ok(store, [receipt("123")])
    (again,) = ok(store, [receipt("123")])
    assert isinstance(again, ReceiptResult)
    assert (again.message_id, again.ignored) == (msg_id, True)
    assert store.count(b"early") == 0


def test_a_receipt_whose_other_readings_only_find_finished_segments_waits(open_store: StoreFactory) -> None:
    # The decimal "123" may be for a message whose hex "7b" response has not come yet: not lost on "291".
    store = open_store()
    done, later = dispatched(store, "+1"), dispatched(store, "+2")
    respond(store, done, "291")
    ok(store, [receipt("291")])
    (result,) = ok(store, [receipt("123")])
    assert isinstance(result, ReceiptResult)
    assert result.early
    assert respond(store, later, "7b").early_receipt_applied
    assert state(store, later) is State.DELIVERED


def test_early_receipt_is_claimed_by_another_form_and_removed_everywhere(open_store: StoreFactory) -> None:
    store = open_store()
    msg_id = dispatched(store)
    decimal = str(0x18C5A3B2F00)
    (early,) = ok(store, [receipt(decimal, Ev.RECEIPT_EXPIRED)])
    assert isinstance(early, ReceiptResult)
    assert early.early
    assert store.count(b"early") == len(IDS.receipt_keys(decimal)) > 1
    assert store.count(b"early_time") == 1
    result = respond(store, msg_id, "18C5A3B2F00")
    assert (result.early_receipt_applied, result.state) == (True, State.EXPIRED)
    assert store.count(b"early") == store.count(b"early_time") == 0
    assert store.check() == []


def test_two_early_receipts_sharing_a_key_each_reach_their_message(open_store: StoreFactory) -> None:
    store = open_store()
    first, second = dispatched(store, "+1"), dispatched(store, "+2")
    ok(store, [receipt("123", Ev.RECEIPT_UNDELIVERABLE), receipt("7b")])  # "123" decimal is "7b" hex
    assert respond(store, second, "7b").early_receipt_applied  # "7b" is the first candidate of "7b" only
    assert respond(store, first, "123").early_receipt_applied
    assert (state(store, first), state(store, second)) == (State.UNDELIVERABLE, State.DELIVERED)
    assert store.count(b"early") == store.count(b"early_time") == 0


def test_an_intermediate_and_a_final_early_receipt_both_apply(open_store: StoreFactory) -> None:
    store = open_store()
    msg_id = dispatched(store)
    ok(store, [receipt("abc", Ev.RECEIPT_ENROUTE)])
    ok(store, [receipt("ABC")])
    assert respond(store, msg_id, "abc").state is State.DELIVERED
    assert store.count(b"early") == 0


def sweep_all(store: Store) -> int:
    moved = 0
    while True:
        (res,) = ok(store, [Sweep(2)])
        assert isinstance(res, SweepResult)
        moved += res.other
        if not res.more:
            return moved


def test_unclaimed_receipts_move_to_unmatched_then_retention_purges_them(
    open_store: StoreFactory, clock: FakeClock
) -> None:
    store = open_store(early_receipt_seconds=600, retention_days=1)
    at = clock.ms
    ok(store, [receipt(f"{n:010d}", text=b"id:%010d stat:DELIVRD text:hello" % n) for n in range(5)])
    clock.ms += 599_000
    assert sweep_all(store) == 0
    assert store.count(b"early") > 0
    clock.ms += 2_000
    assert sweep_all(store) == 5  # more than one Sweep(2) limit: `more` kept the sweep going
    assert store.count(b"early") == store.count(b"early_time") == 0
    assert store.unmatched_count() == 5
    first = store.unmatched_receipts(limit=2)
    rest = store.unmatched_receipts(after=first[-1].key)
    rows = first + rest
    assert [r.raw_id for r in rows] == [f"{n:010d}" for n in range(5)]
    assert {(r.carrier, r.kind, r.at_ms, r.expired_ms) for r in rows} == {("carA", Ev.RECEIPT_DELIVERED, at, clock.ms)}
    assert rows[3].text == b"id:0000000003 stat:DELIVRD text:hello"
    # A response after the move finds nothing waiting: the receipt stays unmatched, the message submitted.
    msg_id = dispatched(store)
    assert not respond(store, msg_id, "1").early_receipt_applied
    clock.ms += DAY_MS
    sweep_all(store)
    assert store.unmatched_count() == 0


def test_early_rows_stored_before_the_forms_existed_still_match_and_expire(
    open_store: StoreFactory, clock: FakeClock
) -> None:
    store = open_store(early_receipt_seconds=60)
    old = msgpack.packb([1, int(Ev.RECEIPT_DELIVERED), "", clock.ms])
    with store._env.begin(write=True) as txn:
        txn.put(b"carA\0x1", old, db=store._dbs[b"early"])
        txn.put(b"carA\0x2", old, db=store._dbs[b"early"])
    store = open_store(early_receipt_seconds=60)
    msg_id = dispatched(store)
    assert respond(store, msg_id, "x1").early_receipt_applied
    clock.ms += 61_000
    assert sweep_all(store) == 1
    assert [r.raw_id for r in store.unmatched_receipts()] == ["x2"]
    assert store.count(b"early") == 0


def test_unmatched_receipts_read_from_the_files_alone(open_store: StoreFactory, clock: FakeClock) -> None:
    # What gatewayctl receipts --unmatched reads (read-only, in a process of its own: here after closing).
    store = open_store(early_receipt_seconds=60)
    ok(store, [receipt("dead01", text=b"id:dead01 stat:DELIVRD")])
    clock.ms += 61_000
    sweep_all(store)
    path = store.cfg.path
    store.close()
    count, rows = read_unmatched(path)
    assert count == 1
    assert [(r.raw_id, r.text) for r in rows] == [("dead01", b"id:dead01 stat:DELIVRD")]
    assert read_unmatched(path, after=rows[0].key) == (1, [])


def test_an_early_receipt_handed_to_another_node_is_forgotten_under_every_form(open_store: StoreFactory) -> None:
    # gateway.cluster: a receipt kept here early, then handed to the node that sent its part, waits no longer:
    # no response here can claim it, and the retention sweep never counts it unmatched.
    store = open_store()
    msg_id = dispatched(store)
    handed = receipt(str(0x18C5A3B2F00))
    kept = receipt("7b")
    ok(store, [handed, kept])
    ok(store, [ForgetEarly("carA", handed.carrier_id), ForgetEarly("carA", "no-such-id")])
    assert store.count(b"early_time") == 1
    assert store.count(b"early") == len(IDS.receipt_keys("7b"))
    assert not respond(store, msg_id, "18C5A3B2F00").early_receipt_applied
    assert state(store, msg_id) is State.SUBMITTED
    assert store.check() == []
