"""Client references (issue 11, defect 6): a resend of the same submit under its client_ref gets the first
submit's ids; another request under the same reference is refused with ClientRefReused and stores nothing,
instead of being answered with another number's message ids. In this process and through the writer process."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest
import trio

from gateway.errors import ClientRefReused
from gateway.store import Store, StoreConfig, SubmitResult, Writer, keys, records
from gateway.store.remote import WriterProcess
from tests.integration.store.conftest import StoreFactory
from tests.integration.store.support import FakeClock, ok, submit


def test_resend_with_the_same_request_gets_the_first_ids_as_duplicate(open_store: StoreFactory) -> None:
    store = open_store()
    (first,) = ok(store, [submit("+447700900001", "+447700900002", client_ref="otp-1", text="code 1234")])
    (again,) = ok(store, [submit("+447700900001", "+447700900002", client_ref="otp-1", text="code 1234")])
    assert isinstance(first, SubmitResult)
    assert isinstance(again, SubmitResult)
    assert again.duplicate
    assert again.message_ids == first.message_ids
    assert store.count(b"messages") == 2


FIRST = ("+447700900001", "+447700900002")


@pytest.mark.parametrize(
    ("numbers", "changed"),
    [
        (("+447700900001", "+447700900003"), {}),
        (("+447700900001",), {}),
        (("+447700900002", "+447700900001"), {}),
        (FIRST, {"text": "code 9999"}),
        (FIRST, {"sender": "OTHER"}),
    ],
    ids=["other-number", "fewer-numbers", "other-order", "other-text", "other-sender"],
)
def test_other_request_under_a_used_client_ref_is_refused_and_stores_nothing(
    open_store: StoreFactory, numbers: tuple[str, ...], changed: dict[str, object]
) -> None:
    store = open_store()
    (first,) = ok(store, [submit(*FIRST, client_ref="otp-1", text="code 1234")])
    fields: dict[str, object] = {"client_ref": "otp-1", "text": "code 1234"} | changed
    (refused,) = store.apply([submit(*numbers, **fields)])
    assert isinstance(refused, ClientRefReused)
    assert "otp-1" in str(refused)
    assert store.count(b"messages") == 2
    assert isinstance(first, SubmitResult)
    assert store.by_client_ref("acme", "otp-1") == first.message_ids


def test_refusal_is_per_op_and_the_rest_of_the_group_commits(open_store: StoreFactory) -> None:
    store = open_store()
    ok(store, [submit("+447700900001", client_ref="r1")])
    results = store.apply([submit("+447700900002", client_ref="r1"), submit("+447700900003", client_ref="r2")])
    assert isinstance(results[0], ClientRefReused)
    assert isinstance(results[1], SubmitResult)
    assert not results[1].duplicate
    assert store.count(b"messages") == 2


def test_reference_stored_before_fingerprints_is_still_a_duplicate(open_store: StoreFactory) -> None:
    """An idempotency record written by an earlier release (no fingerprint): the old answer, not a refusal."""
    store = open_store()
    (first,) = ok(store, [submit("+447700900001", client_ref="old")])
    assert isinstance(first, SubmitResult)
    key = keys.text_pair("acme", "old")
    legacy = msgpack.packb([records.VERSION, 0, list(first.message_ids)])
    with store._env.begin(write=True) as txn:
        txn.put(key, legacy, db=store._dbs[b"idem"])
    (again,) = ok(store, [submit("+447700900009", client_ref="old")])
    assert isinstance(again, SubmitResult)
    assert (again.duplicate, again.message_ids) == (True, first.message_ids)


async def test_refusal_crosses_the_writer_process_as_client_ref_reused(tmp_path: Path) -> None:
    clock = FakeClock()
    cfg = StoreConfig(path=str(tmp_path / "db"), sync=False)
    with trio.fail_after(25):
        process = await WriterProcess.start(cfg, clock())
        try:
            store = Store(cfg, clock)
            try:
                store.observe_seq(process.last_seq)
                writer = Writer(store, process=process)
                async with trio.open_nursery() as nursery:
                    await nursery.start(writer.run)
                    first = await writer.do(submit("+447700900001", client_ref="otp-1"))
                    with pytest.raises(ClientRefReused):
                        await writer.do(submit("+447700900002", client_ref="otp-1"))
                    again = await writer.do(submit("+447700900001", client_ref="otp-1"))
                    await writer.aclose()
            finally:
                store.close()
        finally:
            await process.aclose()
    assert isinstance(first, SubmitResult)
    assert isinstance(again, SubmitResult)
    assert again.message_ids == first.message_ids
