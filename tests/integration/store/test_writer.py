"""The group-commit writer: callers are told after their commit, groups form under load, the tail is
committed on close, errors reach the right caller."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from gateway.lifecycle import Ev, Event, State
from gateway.smpp.constants import CommandStatus
from gateway.smpp.errors import StoreFull
from gateway.store import Advance, Store, SubmitResult, UnknownMessage, Writer, WriterClosed
from tests.integration.store.conftest import StoreFactory
from tests.integration.store.support import submit


async def test_every_caller_sees_its_message_committed_when_told(open_store: StoreFactory) -> None:
    store = open_store(group_wait_seconds=0.005)
    writer = Writer(store)
    ids: list[int] = []

    async def caller(n: int) -> None:
        result = await writer.do(submit(f"+44{n:08d}"))
        # A fresh read transaction sees only committed data: the ack came after the commit.
        msg = store.get(result.message_ids[0])
        assert msg is not None
        assert msg.recipient == f"+44{n:08d}"
        ids.extend(result.message_ids)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            async with trio.open_nursery() as callers:
                for n in range(200):
                    callers.start_soon(caller, n)
            await writer.aclose()
    assert len(set(ids)) == 200
    assert writer.ops == 200
    assert writer.groups < 100  # group commit: many callers share one transaction


async def test_group_closes_at_group_max(open_store: StoreFactory) -> None:
    store = open_store(group_max=10, group_wait_seconds=1.0)
    writer = Writer(store)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            async with trio.open_nursery() as callers:
                for n in range(50):
                    callers.start_soon(writer.do, submit(f"+{n}"))
            await writer.aclose()
    assert writer.ops == 50
    assert writer.groups >= 5


async def test_close_commits_the_queued_tail_then_refuses(open_store: StoreFactory) -> None:
    store = open_store()
    writer = Writer(store)
    results: list[SubmitResult] = []

    async def caller(n: int) -> None:
        results.append(await writer.do(submit(f"+{n}")))

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for n in range(30):
                nursery.start_soon(caller, n)
            await trio.testing.wait_all_tasks_blocked()
            # The callers' ops are queued before the writer even starts; closing must not drop them.
            await writer.aclose()
            nursery.start_soon(writer.run)
    assert len(results) == 30
    assert store.count(b"messages") == 30
    with pytest.raises(WriterClosed):
        await writer.do(submit("+late"))


async def test_one_callers_error_does_not_fail_the_others(open_store: StoreFactory) -> None:
    store = open_store(group_wait_seconds=0.05)
    writer = Writer(store)
    outcome: dict[str, object] = {}

    async def bad() -> None:
        with pytest.raises(UnknownMessage):
            await writer.do(Advance(1, 0, Event(Ev.CANCEL)))
        outcome["bad"] = "raised"

    async def good() -> None:
        outcome["good"] = (await writer.do(submit("+1"))).outcomes[0].state

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            async with trio.open_nursery() as callers:
                callers.start_soon(bad)
                callers.start_soon(good)
            await writer.aclose()
    assert outcome == {"bad": "raised", "good": State.ACCEPTED}
    assert writer.groups == 1


async def test_full_store_answers_submitters_with_rmsgqful(open_store: StoreFactory) -> None:
    store: Store = open_store(map_size_bytes=256 * 1024, map_grow=False)
    writer = Writer(store)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            refused: StoreFull | None = None
            for i in range(10_000):
                try:
                    await writer.do(submit(*[f"+{i}-{j}" for j in range(50)], text="z" * 300))
                except StoreFull as err:
                    refused = err
                    break
            await writer.aclose()
    assert refused is not None
    assert refused.command_status is CommandStatus.ESME_RMSGQFUL
    assert store.check() == []
