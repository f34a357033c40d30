"""Random operation sequences: after each group every index agrees with the records, and the batch
counters and event log agree with the messages' states."""

from __future__ import annotations

import tempfile
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.lifecycle import Ev, Event, State
from gateway.store import (
    Advance,
    EventKind,
    Op,
    Prepare,
    Receipt,
    Recipient,
    Store,
    StoreConfig,
    Submit,
    SubmitResult,
    Sweep,
)
from tests.integration.store.support import FakeClock

NUMBERS = ["+1", "+2", "+3"]
RECEIPTS = [Ev.RECEIPT_DELIVERED, Ev.RECEIPT_EXPIRED, Ev.RECEIPT_UNDELIVERABLE, Ev.RECEIPT_ENROUTE]
SEGMENT_EVENTS = [
    Event(Ev.DISPATCH, bind="b", sequence=1),
    Event(Ev.LOST),
    Event(Ev.RESEND),
    Event(Ev.SUBMIT_RETRY, until_ms=1),
    Event(Ev.SUBMIT_REJECT, "carrier_rejected:ESME_RINVDSTADR"),
    Event(Ev.EXPIRE),
    Event(Ev.CANCEL),
    Event(Ev.FAIL, "no_route"),
    Event(Ev.SCHEDULE),
]

step = st.one_of(
    st.tuples(st.just("submit"), st.lists(st.sampled_from(NUMBERS), min_size=1, max_size=3), st.booleans()),
    st.tuples(st.just("prepare"), st.integers(0, 20), st.integers(1, 3)),
    st.tuples(st.just("event"), st.integers(0, 20), st.integers(0, 2), st.sampled_from(SEGMENT_EVENTS)),
    st.tuples(st.just("submit_ok"), st.integers(0, 20), st.integers(0, 2)),
    st.tuples(st.just("receipt"), st.integers(0, 30), st.sampled_from(RECEIPTS)),
    st.tuples(st.just("sweep"), st.integers(0, 40)),
)


def to_op(action: tuple[object, ...], ids: list[int], clock: FakeClock) -> Op | None:
    kind = action[0]
    if kind == "submit":
        numbers, batched = action[1], action[2]
        assert isinstance(numbers, list)
        return Submit("acme", "notification", "S", "t", tuple(Recipient(n) for n in numbers),
                      batch="b" if batched else "", client_ref="")  # fmt: skip
    if kind == "sweep":
        assert isinstance(action[1], int)
        clock.ms += action[1] * 86_400_000
        return Sweep(5)
    if not ids:
        return None
    if kind == "receipt":
        assert isinstance(action[1], int)
        assert isinstance(action[2], Ev)
        return Receipt("c", f"id{action[1]}", action[2])
    assert isinstance(action[1], int)
    assert isinstance(action[2], int)
    msg_id = ids[action[1] % len(ids)]
    if kind == "prepare":
        return Prepare(msg_id, "c", action[2], concat=True)
    if kind == "submit_ok":
        return Advance(msg_id, action[2], Event(Ev.SUBMIT_OK, carrier_id=f"id{len(ids) + action[1]}"))
    event = action[3]
    assert isinstance(event, Event)
    return Advance(msg_id, action[2], event)


def assert_consistent(store: Store) -> None:
    assert store.check() == []
    messages = list(store.iter_messages())
    counters = store.batch("acme", "b")
    if counters is None:
        return
    in_batch = [m for m in messages if m.batch == "b"]
    # Purged messages left the store but stay counted: compare only while nothing was purged.
    if counters.targeted != len(in_batch):
        return
    states = Counter(m.state for m in in_batch)
    assert counters.delivered == states[State.DELIVERED]
    failed = sum(n for s, n in states.items() if s.is_final and s is not State.DELIVERED)
    assert sum(counters.failed.values()) == failed
    assert counters.valid == counters.targeted  # no stored policy in this model refuses anyone


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(step, min_size=1, max_size=6), min_size=1, max_size=12))
def test_random_operations_keep_indexes_and_counters_consistent(groups: list[list[tuple[object, ...]]]) -> None:
    clock = FakeClock()
    with tempfile.TemporaryDirectory() as path:
        store = Store.open(StoreConfig(path=path, sync=False, map_size_bytes=16 << 20), clock=clock)
        ids: list[int] = []
        try:
            for group in groups:
                ops = [op for action in group if (op := to_op(action, ids, clock)) is not None]
                for result in store.apply(ops):
                    if isinstance(result, SubmitResult):
                        ids.extend(result.message_ids)
                clock.ms += 1000
                assert_consistent(store)
            seqs = [e.seq for e in store.events(0, limit=10_000)]
            assert seqs == sorted(seqs)
            if seqs:
                assert seqs[-1] == store.last_seq()
            # Every final message still inside the retention window has its outcome in the event log.
            logged = {e.message_id for e in store.events(0, limit=10_000) if e.kind is not EventKind.SUBMITTED}
            cutoff = clock.ms - 30 * 86_400_000
            assert all(m.id in logged for m in store.iter_messages() if m.state.is_final and m.final_ms > cutoff)
        finally:
            store.close()
