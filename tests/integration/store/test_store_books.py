"""Balances (reserve at accept, charge what is delivered, release the rest), batch reports kept as counters
and indexes, and batch definitions with their rows: in the same transactions as the messages."""

from __future__ import annotations

from dataclasses import replace

from gateway.lifecycle import Ev, Event, State
from gateway.store import Advance, Op, Receipt, Recipient, Store, Submit, SubmitResult, WrongState
from gateway.store import records as R
from gateway.store.ops import BalanceResult, BatchRows, PutBatch, PutTemplate, Sweep, SweepResult, TopUp
from tests.integration.store.conftest import StoreFactory
from tests.integration.store.support import FakeClock, ok, send


def submit_parts(*recipients: tuple[str, int], batch: str = "b", account: str = "acme") -> Submit:
    rs = tuple(Recipient(n, route=("carA",), parts=p) for n, p in recipients)
    return Submit(account, "notification", "ACME", "hello", rs, batch=batch)


def refused(store: Store, op: Op) -> str:
    (result,) = store.apply([op])
    assert isinstance(result, WrongState), result
    return str(result)


def outcomes(store_result: object) -> list[tuple[State, str]]:
    assert isinstance(store_result, SubmitResult)
    return [(o.state, o.reason) for o in store_result.outcomes]


def test_an_account_without_a_balance_is_unlimited(open_store: StoreFactory) -> None:
    store = open_store()
    (result,) = ok(store, [submit_parts(("+1", 5))])
    assert outcomes(result) == [(State.ACCEPTED, "")]
    assert store.balance("acme") == BalanceResult("acme")


def test_a_submit_reserves_and_concurrent_submits_cannot_overdraw(open_store: StoreFactory) -> None:
    store = open_store()
    ok(store, [TopUp("acme", 5, "first order")])
    # Two submits in one group commit: the first takes 3 of 5 parts, the second's 2-part recipient fits,
    # its next does not.
    first, second = ok(store, [submit_parts(("+1", 3)), submit_parts(("+2", 2), ("+3", 1))])
    assert outcomes(first) == [(State.ACCEPTED, "")]
    assert outcomes(second) == [(State.ACCEPTED, ""), (State.REJECTED, "insufficient_balance")]
    assert store.balance("acme") == BalanceResult("acme", 0, 5, 0, True)
    counters = store.batch("acme", "b")
    assert counters is not None
    assert (counters.valid, dict(counters.refused)) == (2, {"insufficient_balance": 1})


def test_delivered_parts_are_charged_and_the_rest_released(open_store: StoreFactory) -> None:
    store = open_store()
    ok(store, [TopUp("acme", 10)])
    (result,) = ok(store, [submit_parts(("+1", 2), ("+2", 2), ("+3", 1))])
    assert isinstance(result, SubmitResult)
    delivered, failed, cancelled = result.message_ids
    send(store, delivered, "D", parts=2)
    send(store, failed, "F", parts=2)
    ok(store, [Receipt("carA", "D", Ev.RECEIPT_DELIVERED), Receipt("carA", "D-1", Ev.RECEIPT_DELIVERED)])
    # One part of the long message delivered, the other not: the delivered part is charged.
    ok(store, [Receipt("carA", "F", Ev.RECEIPT_DELIVERED)])
    ok(store, [Receipt("carA", "F-1", Ev.RECEIPT_UNDELIVERABLE, "undeliverable:001")])
    ok(store, [Advance(cancelled, None, Event(Ev.CANCEL))])
    assert store.balance("acme") == BalanceResult("acme", 7, 0, 3, True)
    entries = store.statement("acme")
    assert sum(e.reserved for e in entries) == 5
    assert sum(e.charged for e in entries) == 3
    assert sum(e.released for e in entries) == 2
    assert sum(e.topped_up for e in entries) == 10
    counters = store.batch("acme", "b")
    assert counters is not None
    assert (counters.billed, counters.charged, counters.delivered, counters.ended) == (4, 3, 1, 3)
    assert counters.waiting_receipt == 0
    assert dict(counters.failed_at) == {"carA\x1fundeliverable:001": 1, "\x1fcancelled": 1}


def test_a_message_split_into_more_parts_than_reserved_is_charged_what_it_used(open_store: StoreFactory) -> None:
    store = open_store()
    ok(store, [TopUp("acme", 4)])
    (result,) = ok(store, [submit_parts(("+1", 1))])
    assert isinstance(result, SubmitResult)
    (msg_id,) = result.message_ids
    send(store, msg_id, "X", parts=2)
    ok(store, [Receipt("carA", "X", Ev.RECEIPT_DELIVERED), Receipt("carA", "X-1", Ev.RECEIPT_DELIVERED)])
    assert store.balance("acme") == BalanceResult("acme", 2, 0, 2, True)


def test_unlimited_removes_the_balance_and_keeps_the_statement(open_store: StoreFactory) -> None:
    store = open_store()
    ok(store, [TopUp("acme", 1)])
    (result,) = ok(store, [submit_parts(("+1", 1), ("+2", 1))])
    assert outcomes(result)[1] == (State.REJECTED, "insufficient_balance")
    ok(store, [TopUp("acme", unlimited=True)])
    (result,) = ok(store, [submit_parts(("+3", 9))])
    assert outcomes(result) == [(State.ACCEPTED, "")]
    assert store.balance("acme").limited is False
    assert store.statement("acme")


def test_batch_details_page_by_outcome_and_reason(open_store: StoreFactory) -> None:
    store = open_store()
    numbers = [(f"+{i}", 1) for i in range(1, 8)]
    rs = [Recipient(n, route=("carA",)) for n, _ in numbers]
    rs[5] = Recipient("+6", reject="opted_out")
    (result,) = ok(store, [Submit("acme", "notification", "ACME", "hi", tuple(rs), batch="b")])
    assert isinstance(result, SubmitResult)
    ids = result.message_ids
    for i in (0, 1, 2, 3):
        send(store, ids[i], f"C{i}")
    ok(store, [Receipt("carA", "C0", Ev.RECEIPT_DELIVERED)])
    ok(store, [Receipt("carA", "C1", Ev.RECEIPT_UNDELIVERABLE, "undeliverable:001")])
    ok(store, [Receipt("carA", "C2", Ev.RECEIPT_UNDELIVERABLE, "undeliverable:045")])
    # A failure upgraded to delivered by a later receipt moves in the index.
    ok(store, [Receipt("carA", "C2", Ev.RECEIPT_DELIVERED)])

    def page(outcome: str | None, **kw: object) -> list[int]:
        return [m.id for m in store.batch_details("acme", "b", outcome, **kw)[0]]  # type: ignore[arg-type]

    assert page("delivered") == [ids[0], ids[2]]
    assert page("failed") == [ids[1]]
    assert page("refused") == [ids[5]]
    assert page("waiting") == [ids[3], ids[4], ids[6]]
    assert page(None) == list(ids)
    assert page("failed", reason="undeliverable:0") == [ids[1]]
    assert page("failed", reason="expired") == []
    first, after = store.batch_details("acme", "b", None, limit=4)
    assert [m.id for m in first] == list(ids[:4])
    rest, end = store.batch_details("acme", "b", None, after=after, limit=4)
    assert [m.id for m in rest] == list(ids[4:])
    assert end == 0
    counters = store.batch("acme", "b")
    assert counters is not None
    assert (counters.targeted, counters.valid, counters.submitted, counters.delivered) == (7, 6, 4, 2)
    assert (counters.waiting_receipt, counters.in_progress) == (1, 3)
    # Another account's batch of the same name is another batch.
    assert store.batch("other", "b") is None


def test_batch_definitions_rows_and_revisions(open_store: StoreFactory) -> None:
    store = open_store()
    b = R.BatchDef("marketing", "ACME", text="Sale {name}", created_ms=1)
    ok(store, [PutBatch("acme", "spring", 0, R.pack_batch_def(b))])
    assert "exists already" in refused(store, PutBatch("acme", "spring", 0, R.pack_batch_def(b)))
    rows = tuple(R.pack_batch_row(f"+{i}", {"name": f"N{i}"}) for i in range(5))
    ok(store, [BatchRows("acme", "spring", 0, rows[:3])])
    ok(store, [BatchRows("acme", "spring", 2, rows[2:])])  # the chunk boundary resent: no duplicate
    stored = store.batch_def("acme", "spring")
    assert stored is not None
    assert (stored.recipients, stored.rev) == (5, 3)
    assert [(i, n, v["name"]) for i, n, v in store.batch_rows("acme", "spring", 3, 10)] == [
        (3, "+3", "N3"), (4, "+4", "N4"),
    ]  # fmt: skip
    due = replace(stored, state="pending", next_ms=5_000)
    ok(store, [PutBatch("acme", "spring", stored.rev, R.pack_batch_def(due))])
    assert store.due_batches(4_999) == []
    assert store.due_batches(5_000) == [(5_000, "acme", "spring")]
    assert "draft" in refused(store, BatchRows("acme", "spring", 5, rows[:1]))
    assert "changed meanwhile" in refused(store, PutBatch("acme", "spring", stored.rev, R.pack_batch_def(due)))
    later = store.batch_def("acme", "spring")
    assert later is not None
    ok(store, [PutBatch("acme", "spring", later.rev, R.pack_batch_def(replace(later, next_ms=0, state="sent")))])
    assert store.due_batches(10**13) == []
    assert [k for k, _ in store.batch_defs("acme")] == ["spring"]


def test_templates_are_kept_per_account_with_revisions(open_store: StoreFactory) -> None:
    store = open_store()
    t = R.Template("Your code is {code}", "verification", "pending", created_ms=1)
    ok(store, [PutTemplate("acme", "otp", 0, R.pack_template(t))])
    stored = store.template("acme", "otp")
    assert stored is not None
    assert (stored.state, stored.rev) == ("pending", 1)
    ok(store, [PutTemplate("acme", "otp", 1, R.pack_template(replace(stored, state="approved")))])
    assert [(k, v.state) for k, v in store.templates("acme")] == [("otp", "approved")]
    assert store.templates("other") == []
    ok(store, [PutTemplate("acme", "otp", -1, b"")])
    assert store.template("acme", "otp") is None


def test_retention_removes_the_rows_and_definitions_of_batches_that_ended_long_ago(
    open_store: StoreFactory, clock: FakeClock
) -> None:
    store = open_store(retention_days=30.0)
    now = clock()
    old = now - 31 * 86_400_000
    rows = tuple(R.pack_batch_row(f"+{i}", {}) for i in range(5))
    for batch_id, state, updated in (("old", "sent", old), ("stopped", "stopped", old), ("recent", "sent", now),
                                     ("recurring", "pending", old), ("draft", "draft", old)):  # fmt: skip
        b = R.BatchDef("marketing", "ACME", text="Sale", created_ms=old)
        ok(store, [PutBatch("acme", batch_id, 0, R.pack_batch_def(b)), BatchRows("acme", batch_id, 0, rows)])
        stored = store.batch_def("acme", batch_id)
        assert stored is not None
        ended = replace(stored, state=state, updated_ms=updated, next_ms=now + 1000 if state == "pending" else 0)
        ok(store, [PutBatch("acme", batch_id, stored.rev, R.pack_batch_def(ended))])
    sweeps = 0
    while True:
        (result,) = ok(store, [Sweep(limit=3)])  # a few rows a sweep: the writer is never held for long
        sweeps += 1
        assert isinstance(result, SweepResult)
        if not result.more:
            break
    assert sweeps > 2
    assert [k for k, _ in store.batch_defs("acme")] == ["draft", "recent", "recurring"]
    for gone in ("old", "stopped"):
        assert store.batch_rows("acme", gone, 0, 10) == []
    for kept in ("draft", "recent", "recurring"):
        assert len(store.batch_rows("acme", kept, 0, 10)) == 5
