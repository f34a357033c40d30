"""Store round trips and the behaviour the engine relies on, on a real LMDB environment."""

from __future__ import annotations

from pathlib import Path

import lmdb
import pytest

from gateway.lifecycle import Ev, Event, InvalidReason, InvalidTransition, State
from gateway.smpp.constants import CommandStatus
from gateway.smpp.errors import StoreFull
from gateway.store import (
    Advance,
    AdvanceResult,
    CapCheck,
    CorruptRecord,
    EventKind,
    InvalidField,
    Mo,
    Prepare,
    PrepareResult,
    Receipt,
    ReceiptResult,
    Recipient,
    Recovery,
    SetBlacklist,
    SetCursor,
    SetOptOut,
    Store,
    StoreConfig,
    Submit,
    SubmitResult,
    Sweep,
    SweepResult,
    UnknownMessage,
)
from gateway.store import keys as store_keys
from tests.integration.store.conftest import StoreFactory
from tests.integration.store.support import T0, FakeClock, ok, send, submit

DAY = 86_400_000


def accepted(store_result: object) -> SubmitResult:
    assert isinstance(store_result, SubmitResult)
    return store_result


def test_submit_round_trips_every_field(open_store: StoreFactory) -> None:
    store = open_store()
    op = submit("+447700900001", "+447700900002", text="Grüße €", batch="b1", client_ref="r1", receipt=False)
    result = accepted(ok(store, [op])[0])
    first, second = result.message_ids
    assert second > first
    msg = store.get(first)
    assert msg is not None
    assert (msg.account, msg.recipient, msg.text, msg.batch, msg.client_ref) == (
        "acme", "+447700900001", "Grüße €", "b1", "r1",
    )  # fmt: skip
    assert (msg.receipt, msg.state, msg.created_ms) == (False, State.ACCEPTED, T0)
    assert store_keys.id_time_ms(first) == T0
    assert store.recent("+447700900002") == [second]


def test_ids_survive_a_reopen_in_order(open_store: StoreFactory, clock: FakeClock) -> None:
    store = open_store()
    (a,) = accepted(ok(store, [submit("+1")])[0]).message_ids
    clock.ms -= 60_000  # the wall clock stepped back while we were down
    store = open_store()
    (b,) = accepted(ok(store, [submit("+1")])[0]).message_ids
    assert b > a
    assert store.recent("+1") == [b, a]


def test_same_client_reference_returns_the_same_ids(open_store: StoreFactory) -> None:
    store = open_store()
    first = accepted(ok(store, [submit("+1", "+2", client_ref="ref-9")])[0])
    again = accepted(ok(store, [submit("+1", "+2", client_ref="ref-9")])[0])  # another request: test_client_ref
    other = accepted(ok(store, [submit("+1", account="other", client_ref="ref-9")])[0])
    assert again.duplicate
    assert again.message_ids == first.message_ids
    assert not other.duplicate
    assert store.count(b"messages") == 3


def test_optout_blacklist_are_checked_in_the_write(open_store: StoreFactory) -> None:
    store = open_store()
    ok(store, [SetOptOut("+1"), SetOptOut("+2", scope="acme"), SetOptOut("+3", scope="other"), SetBlacklist("+4")])
    result = accepted(ok(store, [submit("+1", "+2", "+3", "+4", "+5")])[0])
    reasons = [o.reason for o in result.outcomes]
    assert reasons == ["opted_out", "opted_out", "", "blacklisted", ""]
    assert [o.state for o in result.outcomes][2] is State.ACCEPTED
    ok(store, [SetOptOut("+1", opted_out=False)])
    assert not store.is_opted_out("+1", "acme")
    assert store.is_opted_out("+2", "acme")


def test_frequency_cap_admits_exactly_the_limit_within_one_group(
    open_store: StoreFactory, clock: FakeClock
) -> None:
    store = open_store()
    cap = (CapCheck("hourly", "*", 3600, 2),)
    results = ok(store, [submit("+1", caps=cap) for _ in range(4)])
    outcomes = [accepted(r).outcomes[0] for r in results]
    assert [o.reason for o in outcomes] == ["", "", "frequency_capped", "frequency_capped"]
    assert outcomes[2].detail == "rule hourly: at most 2 in 1 hour"
    clock.ms += 3600 * 1000 - 1  # a sliding window: both still count a millisecond before the hour
    assert accepted(ok(store, [submit("+1", caps=cap)])[0]).outcomes[0].reason == "frequency_capped"
    clock.ms += 1
    assert accepted(ok(store, [submit("+1", caps=cap)])[0]).outcomes[0].reason == ""


def test_every_cap_must_have_room_and_a_refusal_takes_no_slot(open_store: StoreFactory) -> None:
    store = open_store()
    day = CapCheck("day", "*", 86400, 3)
    seller = CapCheck("seller", "acme", 172800, 1)
    first, second = (accepted(ok(store, [submit("+1", caps=(day, seller))])[0]).outcomes[0] for _ in range(2))
    assert (first.reason, second.reason) == ("", "frequency_capped")
    assert second.detail == "rule seller: at most 1 in 2 days"
    # Refused ones take no slot of "day": one from another seller and one with no seller rule fill it.
    other = CapCheck("seller", "shop", 172800, 1)
    assert [accepted(r).outcomes[0].reason for r in ok(store, [submit("+1", caps=(day, other)) for _ in range(3)])] == [
        "", "frequency_capped", "frequency_capped",
    ]  # fmt: skip
    assert accepted(ok(store, [submit("+1", caps=(day,))])[0]).outcomes[0].reason == ""
    assert accepted(ok(store, [submit("+1", caps=(day,))])[0]).outcomes[0].detail == "rule day: at most 3 in 1 day"


def test_a_message_that_ends_failed_gives_its_slot_back(open_store: StoreFactory) -> None:
    store = open_store()
    cap = (CapCheck("day", "*", 86400, 1),)
    kept = (CapCheck("strict", "*", 86400, 1, give_back=False),)
    (msg_id,) = accepted(ok(store, [submit("+1", caps=cap + kept)])[0]).message_ids
    assert accepted(ok(store, [submit("+1", caps=cap)])[0]).outcomes[0].reason == "frequency_capped"
    ok(store, [Advance(msg_id, None, Event(Ev.CANCEL))])  # never sent: failed for the recipient
    assert accepted(ok(store, [submit("+1", caps=cap)])[0]).outcomes[0].reason == ""
    assert accepted(ok(store, [submit("+1", caps=kept)])[0]).outcomes[0].reason == "frequency_capped"
    # A delivered message keeps its slot.
    (delivered,) = accepted(ok(store, [submit("+2", caps=cap)])[0]).message_ids
    send(store, delivered, "d1")
    ok(store, [Receipt("carA", "d1", Ev.RECEIPT_DELIVERED)])
    assert accepted(ok(store, [submit("+2", caps=cap)])[0]).outcomes[0].reason == "frequency_capped"


def test_cap_counters_whose_window_passed_are_swept(open_store: StoreFactory, clock: FakeClock) -> None:
    store = open_store()
    ok(store, [submit(f"+{n}", caps=(CapCheck("hour", "*", 3600, 5),)) for n in range(50)])
    assert store.count(b"caps") == 50
    clock.ms += 3600 * 1000 + 1
    for _ in range(10):
        ok(store, [Sweep(limit=7)])
    assert store.count(b"caps") == 0
    # A number's row holds all its counters: the hour's leaves with its window, the day's stays with the row.
    hour, day = CapCheck("hour", "*", 3600, 1), CapCheck("day", "*", 86400, 2)
    ok(store, [submit("+1", caps=(hour, day))])
    clock.ms += 3600 * 1000 + 1
    for _ in range(3):
        ok(store, [Sweep(limit=7)])
    assert store.count(b"caps") == 1
    outcomes = [accepted(r).outcomes[0].reason for r in ok(store, [submit("+1", caps=(hour, day)) for _ in range(2)])]
    assert outcomes == ["", "frequency_capped"]  # the hour has room again; the day's two are taken


def test_blacklists_by_scope_and_a_carrier_list_leaves_the_others(open_store: StoreFactory) -> None:
    store = open_store()
    ok(store, [
        SetBlacklist("+1", source="api"), SetBlacklist("+2", scope="account:acme"),
        SetBlacklist("+3", scope="account:other"), SetBlacklist("+4", scope="carrier:carA"),
        SetBlacklist("+5", scope="carrier:carA"), SetBlacklist("+5", scope="carrier:carB"),
    ])  # fmt: skip
    recipients = tuple(Recipient(f"+{n}", route=("carA", "carB")) for n in range(1, 6))
    op = Submit("acme", "marketing", "ACME", "x", recipients)
    outcomes = accepted(ok(store, [op])[0]).outcomes
    assert [o.reason for o in outcomes] == ["blacklisted", "blacklisted", "", "", "blacklisted"]
    assert outcomes[1].detail == "on account acme's blacklist"
    assert outcomes[4].detail == "on the blacklist of every carrier of its route (carA, carB)"
    moved = store.get(outcomes[3].message_id)
    assert moved is not None
    assert moved.route == ("carB",)  # carA's list left carB
    entry = store.blacklisted("+1")
    assert entry is not None
    assert entry[1] == "api"
    ok(store, [SetBlacklist("+1", listed=False)])
    assert store.blacklisted("+1") is None


def test_an_opt_out_keeps_when_how_and_what_was_said(open_store: StoreFactory) -> None:
    store = open_store()
    ok(store, [SetOptOut("+1", scope="acme", source="mo:carA", note="TD 谢谢")])
    assert store.opt_out("+1", "acme") == (T0, "mo:carA", "TD 谢谢")
    assert store.opt_out("+1") is None


def test_policy_rejection_from_the_engine_is_final_and_reported(open_store: StoreFactory) -> None:
    store = open_store()
    op = Submit("acme", "marketing", "ACME", "x", (Recipient("+1", reject="no_route"),), batch="b")
    (msg_id,) = accepted(ok(store, [op])[0]).message_ids
    msg = store.get(msg_id)
    assert msg is not None
    assert (msg.state, msg.reason) == (State.REJECTED, "no_route")
    (event,) = store.events(0)
    assert (event.kind, event.message_id, event.reason) == (EventKind.FAILED, msg_id, "no_route")
    counters = store.batch("acme", "b")
    assert counters is not None
    counted = (counters.targeted, counters.valid, dict(counters.refused), dict(counters.failed))
    assert counted == (1, 0, {"no_route": 1}, {})


def test_due_index_streams_in_time_order_with_a_cursor(open_store: StoreFactory) -> None:
    store = open_store()
    later = accepted(ok(store, [submit("+9", schedule_ms=T0 + 5000)])[0]).message_ids[0]
    now_ids = accepted(ok(store, [submit(*[f"+{i}" for i in range(25)])])[0]).message_ids
    assert store.get(later) is not None
    assert store.get(later).state is State.DEFERRED  # type: ignore[union-attr]
    seen: list[int] = []
    cursor = b""
    while page := store.due(T0, after=cursor, limit=10):
        seen += [e.message_id for e in page]
        cursor = page[-1].key
    assert seen == list(now_ids)
    assert store.next_due_ms() == T0
    assert [e.message_id for e in store.due(T0 + 5000, limit=100)][-1] == later


def test_full_path_to_delivered_logs_events_and_counts(open_store: StoreFactory) -> None:
    store = open_store()
    (msg_id,) = accepted(ok(store, [submit("+1", batch="b")])[0]).message_ids
    send(store, msg_id, "ABC", parts=2)
    assert store.find_segment("carA", "ABC") == (msg_id, 0)
    assert store.get(msg_id).state is State.SUBMITTED  # type: ignore[union-attr]
    assert not store.due(T0 + DAY)
    (first,) = ok(store, [Receipt("carA", "ABC", Ev.RECEIPT_DELIVERED)])
    assert isinstance(first, ReceiptResult)
    assert (first.matched, first.state) == (True, State.DELIVERED)
    assert first.ended is None  # one part of two: the message goes on
    assert store.get(msg_id).state is State.SUBMITTED  # type: ignore[union-attr]
    (last,) = ok(store, [Receipt("carA", "ABC-1", Ev.RECEIPT_DELIVERED)])
    assert isinstance(last, ReceiptResult)
    assert last.ended is State.DELIVERED  # the last part's receipt ends the message: counted once
    assert store.get(msg_id).state is State.DELIVERED  # type: ignore[union-attr]
    assert [e.kind for e in store.events(0)] == [EventKind.SUBMITTED, EventKind.DELIVERED]
    counters = store.batch("acme", "b")
    assert counters is not None
    assert (counters.submitted, counters.delivered, counters.billed) == (1, 1, 2)


def test_concat_reference_is_per_destination_and_wraps(open_store: StoreFactory) -> None:
    store = open_store()
    ids = accepted(ok(store, [submit("+1", "+1", "+2")])[0]).message_ids
    refs = [r.concat_ref for r in ok(store, [Prepare(i, "carA", 3, concat=True) for i in ids])
            if isinstance(r, PrepareResult)]  # fmt: skip
    assert refs == [1, 2, 1]
    store.close()
    with lmdb.open(store.cfg.path, max_dbs=20) as env, env.begin(write=True) as txn:
        # Put the counter at the top of its range.
        txn.put(b"+2", store_keys.u16(0xFFFF), db=env.open_db(b"concat", txn=txn))
    store = open_store()
    (more,) = accepted(ok(store, [submit("+2")])[0]).message_ids
    (res,) = ok(store, [Prepare(more, "carA", 2, concat=True)])
    assert isinstance(res, PrepareResult)
    assert res.concat_ref == 1


def test_receipt_before_submit_response_waits_and_then_applies(open_store: StoreFactory) -> None:
    store = open_store()
    (msg_id,) = accepted(ok(store, [submit("+1")])[0]).message_ids
    ok(store, [Prepare(msg_id, "carA", 1), Advance(msg_id, 0, Event(Ev.DISPATCH, bind="b", sequence=1))])
    (early,) = ok(store, [Receipt("carA", "X9", Ev.RECEIPT_DELIVERED)])
    assert isinstance(early, ReceiptResult)
    assert (early.matched, early.early) == (False, True)
    (resp,) = ok(store, [Advance(msg_id, 0, Event(Ev.SUBMIT_OK, carrier_id="X9"))])
    assert isinstance(resp, AdvanceResult)
    assert resp.early_receipt_applied
    assert resp.state is State.DELIVERED
    assert store.count(b"early") == 0
    # The app still hears that a carrier took the message, before it hears the outcome.
    kinds = [e.kind for e in store.events(0) if e.message_id == msg_id]
    assert kinds == [EventKind.SUBMITTED, EventKind.DELIVERED]


def test_duplicate_and_late_receipts(open_store: StoreFactory) -> None:
    store = open_store()
    (msg_id,) = accepted(ok(store, [submit("+1", batch="b")])[0]).message_ids
    send(store, msg_id, "C1")
    ok(store, [Receipt("carA", "C1", Ev.RECEIPT_EXPIRED)])
    (dup,) = ok(store, [Receipt("carA", "C1", Ev.RECEIPT_EXPIRED)])
    assert isinstance(dup, ReceiptResult)
    assert dup.ignored
    counters = store.batch("acme", "b")
    assert counters is not None
    assert (counters.delivered, dict(counters.failed)) == (0, {"expired": 1})
    (late,) = ok(store, [Receipt("carA", "C1", Ev.RECEIPT_DELIVERED)])
    assert isinstance(late, ReceiptResult)
    assert late.state is State.DELIVERED
    counters = store.batch("acme", "b")
    assert counters is not None
    assert (counters.delivered, dict(counters.failed)) == (1, {})
    kinds = [e.kind for e in store.events(0)]
    assert kinds == [EventKind.SUBMITTED, EventKind.FAILED, EventKind.DELIVERED]


def test_a_bad_op_fails_alone_and_the_group_commits(open_store: StoreFactory) -> None:
    store = open_store()
    (msg_id,) = accepted(ok(store, [submit("+1")])[0]).message_ids
    results = store.apply(
        [
            Advance(msg_id, 0, Event(Ev.RECEIPT_DELIVERED)),  # not submitted yet
            Advance(12345, 0, Event(Ev.CANCEL)),
            Advance(msg_id, None, Event(Ev.CANCEL)),
        ]
    )
    assert isinstance(results[0], InvalidTransition)
    assert isinstance(results[1], UnknownMessage)
    assert isinstance(results[2], AdvanceResult)
    msg = store.get(msg_id)
    assert msg is not None
    assert (msg.state, msg.reason) == (State.CANCELLED, "cancelled")
    assert store.check() == []


@pytest.mark.parametrize(
    ("message_class", "state", "duplicate"),
    [("verification", State.QUEUED, True), ("marketing", State.UNKNOWN, False)],
)
def test_recovery_of_segments_left_submitting(
    open_store: StoreFactory, message_class: str, state: State, duplicate: bool
) -> None:
    store = open_store()
    (msg_id,) = accepted(ok(store, [submit("+1", message_class=message_class)])[0]).message_ids
    ok(store, [Prepare(msg_id, "carA", 1), Advance(msg_id, 0, Event(Ev.DISPATCH, bind="b", sequence=4))])
    assert store.count(b"inflight") == 1
    store = open_store(recovery={"verification": Recovery.AT_LEAST_ONCE, "marketing": Recovery.AT_MOST_ONCE})
    msg = store.get(msg_id)
    assert msg is not None
    seg = msg.segments[0]
    assert (seg.state, seg.possible_duplicate) == (state, duplicate)
    assert store.count(b"inflight") == 0
    assert [e.message_id for e in store.due(T0)] == ([msg_id] if state is State.QUEUED else [])
    assert store.check() == []


def test_retention_purges_old_final_messages_only(open_store: StoreFactory, clock: FakeClock) -> None:
    store = open_store(retention_days=30, sweep_batch=3)
    old = accepted(ok(store, [submit(*[f"+{i}" for i in range(7)], client_ref="r")])[0]).message_ids
    for i, msg_id in enumerate(old):
        send(store, msg_id, f"old{i}")
        ok(store, [Receipt("carA", f"old{i}", Ev.RECEIPT_DELIVERED)])
    live = accepted(ok(store, [submit("+100")])[0]).message_ids[0]
    ok(store, [Mo("acme", "carA", "+447700900001", "12345", "STOP")])
    clock.ms += 20 * DAY
    young = accepted(ok(store, [submit("+200")])[0]).message_ids[0]
    ok(store, [Advance(young, None, Event(Ev.CANCEL))])
    clock.ms += 11 * DAY
    swept = []
    while True:
        (res,) = ok(store, [Sweep(3)])
        assert isinstance(res, SweepResult)
        swept.append(res)
        if not res.more:
            break
    assert sum(r.messages for r in swept) == 7
    assert max(r.messages for r in swept) <= 3  # small transactions
    assert all(store.get(i) is None for i in old)
    assert store.get(live) is not None
    assert store.get(young) is not None
    assert store.find_segment("carA", "old0") is None
    assert store.recent("+1") == []
    assert store.count(b"idem") == 0
    assert all(e.at_ms >= clock.ms - 30 * DAY for e in store.events(0))
    assert store.check() == []


def test_full_map_refuses_new_work_and_keeps_what_is_stored(open_store: StoreFactory) -> None:
    store = open_store(map_size_bytes=256 * 1024, map_grow=False)
    (first,) = accepted(ok(store, [submit("+1")])[0]).message_ids
    send(store, first, "K1")
    for i in range(10_000):
        (result,) = store.apply([submit(*[f"+{i}-{j}" for j in range(20)], text="x" * 300)])
        if isinstance(result, StoreFull):
            break
    assert isinstance(result, StoreFull)
    assert result.command_status is CommandStatus.ESME_RMSGQFUL
    assert i > 0
    msg = store.get(first)
    assert msg is not None
    assert msg.state is State.SUBMITTED
    # New work in the same group is refused; the receipt for work already accepted is not.
    results = store.apply([submit(*[f"+x{j}" for j in range(200)], text="y" * 300),
                           Receipt("carA", "K1", Ev.RECEIPT_DELIVERED)])  # fmt: skip
    assert isinstance(results[0], StoreFull)
    assert isinstance(results[1], ReceiptResult)
    assert store.get(first).state is State.DELIVERED  # type: ignore[union-attr]
    assert store.check() == []


def test_full_map_grows_when_configured(open_store: StoreFactory) -> None:
    store = open_store(map_size_bytes=256 * 1024, map_grow=True)
    for i in range(60):
        ok(store, [submit(*[f"+{i}-{j}" for j in range(20)], text="x" * 300)])
    assert store.count(b"messages") == 1200
    assert store.check() == []


def test_event_log_cursor_continues_after_reopen(open_store: StoreFactory) -> None:
    store = open_store()
    for n in range(5):
        ok(store, [Mo("acme", "carA", f"+{n}", "12345", f"text {n}")])
    assert [e.seq for e in store.events(2)] == [3, 4, 5]
    store = open_store()
    ok(store, [Mo("acme", "carA", "+9", "12345", "again")])
    events = store.events(5)
    assert [(e.seq, e.kind, e.number, e.text) for e in events] == [(6, EventKind.MO, "+9", "again")]


def test_record_with_unknown_schema_version_is_refused(open_store: StoreFactory) -> None:
    store = open_store()
    (msg_id,) = accepted(ok(store, [submit("+1")])[0]).message_ids
    store.close()
    with lmdb.open(store.cfg.path, max_dbs=20) as env, env.begin(write=True) as txn:
        txn.put(store_keys.u64(msg_id), b"\x92\x63\x01", db=env.open_db(b"messages", txn=txn))
    store = open_store()
    with pytest.raises(CorruptRecord):
        store.get(msg_id)


def test_overlong_key_field_fails_alone(open_store: StoreFactory) -> None:
    store = open_store()
    results = store.apply([submit("+1", client_ref="r" * 1000), submit("+2")])
    assert isinstance(results[0], InvalidField)
    assert results[0].command_status is CommandStatus.ESME_RINVPARLEN
    assert isinstance(results[1], SubmitResult)
    assert store.count(b"messages") == 1


def test_prepared_message_keeps_its_place_in_the_due_index(open_store: StoreFactory, clock: FakeClock) -> None:
    store = open_store()
    ids = accepted(ok(store, [submit("+1", "+2", "+3")])[0]).message_ids
    page = store.due(T0, limit=2)
    clock.ms += 500
    ok(store, [Prepare(page[0].message_id, "carA", 1)])  # the scheduler took the first one
    rest = store.due(clock.ms, after=page[-1].key)
    assert [e.message_id for e in page + rest] == list(ids)  # nobody twice, nobody missed
    ok(store, [Advance(ids[0], 0, Event(Ev.DISPATCH, bind="b", sequence=1))])
    assert [e.message_id for e in store.due(clock.ms)] == list(ids[1:])


def test_receipt_with_an_undocumented_reason_is_refused_before_it_waits(open_store: StoreFactory) -> None:
    store = open_store()
    (bad,) = store.apply([Receipt("carA", "Z1", Ev.RECEIPT_UNDELIVERABLE, reason="whatever")])
    assert isinstance(bad, InvalidReason)
    (wrong_kind,) = store.apply([Receipt("carA", "Z1", Ev.CANCEL)])
    assert isinstance(wrong_kind, InvalidTransition)
    assert store.count(b"early") == 0


def test_event_cursor_is_durable_and_never_moves_back(tmp_path: Path) -> None:
    cfg = StoreConfig(path=str(tmp_path / "cur"), sync=False)
    store = Store.open(cfg)
    assert store.cursor("acme") == 0
    store.apply([SetCursor("acme", 41), SetCursor("acme", 7)])
    store.close()
    store = Store.open(cfg)
    assert store.cursor("acme") == 41
    assert store.cursor("other") == 0
    store.close()


def test_prepare_with_dispatch_equals_prepare_then_dispatch(open_store: StoreFactory) -> None:
    store = open_store()
    a, b = accepted(ok(store, [submit("+1", "+2")])[0]).message_ids
    ok(store, [Prepare(a, "carA", 2, concat=True), Advance(a, None, Event(Ev.DISPATCH, bind="carA"))])
    ok(store, [Prepare(b, "carA", 2, concat=True, dispatch_bind="carA")])
    one, two = store.get(a), store.get(b)
    assert one is not None
    assert two is not None
    assert [s.state for s in two.segments] == [State.SUBMITTING, State.SUBMITTING]
    assert [s._replace(updated_ms=0) for s in one.segments] == [s._replace(updated_ms=0) for s in two.segments]
    assert store.count(b"inflight") == 4
    assert store.count(b"due") == 0
    assert store.check() == []
