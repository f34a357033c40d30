"""Event subscription over real sockets: live push, window, acknowledgement and resume from the cursor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from gateway.upstream import EventKind, InvalidRequest, UpstreamClient, open_tcp_client
from tests.integration.upstream.harness import (
    ACCOUNT,
    OTHER_ACCOUNT,
    OTHER_SECRET,
    SECRET,
    RawConnection,
    tcp_server,
)
from tests.integration.upstream.memory_backend import MemoryBackend


@asynccontextmanager
async def connected(address: tuple[str, int]) -> AsyncIterator[UpstreamClient]:
    async with open_tcp_client(*address, account=ACCOUNT, secret=SECRET) as client:
        yield client


def emit_many(backend: MemoryBackend, count: int, account: str = ACCOUNT) -> list[int]:
    return [backend.emit(account, EventKind.DELIVERED, f"m{i}").seq for i in range(count)]


async def test_subscriber_receives_backlog_then_live_events_in_order() -> None:
    backend = MemoryBackend()
    backlog = emit_many(backend, 3)
    backend.emit(OTHER_ACCOUNT, EventKind.MO, sender="+15550009", text="STOP")
    with trio.fail_after(10):
        async with tcp_server(backend) as address, connected(address) as client:
            subscription = await client.subscribe(after=0)
            got = [await subscription.__anext__() for _ in range(3)]
            failed = backend.emit(ACCOUNT, EventKind.FAILED, "m9", reason="ESME_RINVDSTADR").seq
            mo = backend.emit(ACCOUNT, EventKind.MO, to="+15550000", sender="+15550009", text="STOP").seq
            got += [await subscription.__anext__() for _ in range(2)]
    assert [e.seq for e in got] == [*backlog, failed, mo]
    assert (got[3].kind, got[3].reason, got[3].message_id) == (EventKind.FAILED, "ESME_RINVDSTADR", "m9")
    assert (got[4].kind, got[4].sender, got[4].text) == (EventKind.MO, "+15550009", "STOP")
    assert subscription.after == 0


async def test_disconnected_subscriber_resumes_from_its_cursor_missing_nothing() -> None:
    backend = MemoryBackend()
    first_batch = emit_many(backend, 10)
    with trio.fail_after(10):
        async with tcp_server(backend) as address:
            async with connected(address) as client:
                subscription = await client.subscribe()
                seen = [(await subscription.__anext__()).seq for _ in range(6)]
                await subscription.ack(seen[3])  # processed 4 of the 6 it read, then went away
            while_away = emit_many(backend, 5)
            async with connected(address) as client:
                subscription = await client.subscribe()
                resumed = [(await subscription.__anext__()).seq for _ in range(11)]
    assert subscription.after == seen[3]
    assert resumed == first_batch[4:] + while_away


async def test_window_limits_unacknowledged_events(autojump_clock: trio.testing.MockClock) -> None:
    backend = MemoryBackend()
    seqs = emit_many(backend, 20)
    received: list[int] = []
    with trio.fail_after(120):
        async with tcp_server(backend) as address, connected(address) as client:
            subscription = await client.subscribe(after=0, window=5)
            with trio.move_on_after(10):
                async for event in subscription:
                    received.append(event.seq)
            stalled = list(received)
            await subscription.ack(received[1])
            with trio.move_on_after(10):
                async for event in subscription:
                    received.append(event.seq)
    assert stalled == seqs[:5]
    assert received == seqs[:7]


async def test_events_are_per_account() -> None:
    backend = MemoryBackend()
    mine = emit_many(backend, 2)
    emit_many(backend, 2, account=OTHER_ACCOUNT)
    with trio.fail_after(10):
        async with tcp_server(backend) as address:
            async with open_tcp_client(*address, account=OTHER_ACCOUNT, secret=OTHER_SECRET) as other:
                theirs = await other.subscribe(after=0)
                assert [(await theirs.__anext__()).seq for _ in range(2)] == [3, 4]
            async with connected(address) as client:
                subscription = await client.subscribe(after=0)
                assert [(await subscription.__anext__()).seq for _ in range(2)] == mine


async def test_ack_past_what_was_sent_is_refused() -> None:
    backend = MemoryBackend()
    seqs = emit_many(backend, 2)
    with trio.fail_after(10):
        async with tcp_server(backend) as address, connected(address) as client:
            subscription = await client.subscribe(after=0)
            await subscription.__anext__()
            await subscription.__anext__()
            with pytest.raises(InvalidRequest) as refused:
                await subscription.ack(seqs[1] + 100)
            await subscription.ack(seqs[1])
    assert refused.value.field == "seq"
    assert backend.logs[ACCOUNT].cursor == seqs[1]


async def test_second_subscribe_on_one_connection_is_refused() -> None:
    with trio.fail_after(10):
        async with tcp_server(MemoryBackend()) as address, RawConnection.open(address) as conn:
            await conn.hello()
            await conn.send({"op": "subscribe", "id": 1}, {"op": "subscribe", "id": 2})
            replies = {r["id"]: r for r in [await conn.receive(), await conn.receive()] if r is not None}
    assert replies[1] == {"type": "result", "id": 1, "result": {"after": 0, "window": 1000}}
    assert (replies[2]["type"], replies[2]["code"]) == ("error", "invalid_request")


async def test_subscriber_asking_for_some_kinds_gets_only_those_in_order() -> None:
    # A platform that shows only final outcomes asks for delivered and failed: the rest never crosses the wire.
    backend = MemoryBackend()
    backend.emit(ACCOUNT, EventKind.SUBMITTED, "m1")
    first = backend.emit(ACCOUNT, EventKind.DELIVERED, "m1").seq
    backend.emit(ACCOUNT, EventKind.MO, to="+15550000", sender="+15550009", text="hi")
    with trio.fail_after(10):
        async with tcp_server(backend) as address, connected(address) as client:
            subscription = await client.subscribe(after=0, kinds=("delivered", EventKind.FAILED))
            got = [await subscription.__anext__()]
            backend.emit(ACCOUNT, EventKind.SUBMITTED, "m2")  # live events of other kinds wake nobody up
            failed = backend.emit(ACCOUNT, EventKind.FAILED, "m2", reason="UNDELIV").seq
            got.append(await subscription.__anext__())
            await subscription.ack(failed)
    assert [(e.seq, e.kind) for e in got] == [(first, EventKind.DELIVERED), (failed, EventKind.FAILED)]
    assert backend.logs[ACCOUNT].cursor == failed


@pytest.mark.parametrize("kinds", [["nope"], [], "delivered", [1], ["delivered", None]])
async def test_subscribe_with_bad_kinds_gets_invalid_request(kinds: object) -> None:
    with trio.fail_after(10):
        async with tcp_server(MemoryBackend()) as address, RawConnection.open(address) as conn:
            await conn.hello()
            await conn.send({"op": "subscribe", "id": 1, "kinds": kinds})
            reply = await conn.receive()
            await conn.send({"op": "ping", "id": 2})  # and the connection still serves
            pong = await conn.receive()
    assert reply is not None
    assert (reply["type"], reply["code"], reply.get("field")) == ("error", "invalid_request", "kinds")
    assert pong == {"type": "result", "id": 2, "result": {}}


async def test_subscribe_after_a_seq_not_yet_logged_is_refused() -> None:
    # Accepted, it hid every event logged up to that seq (after = 1e15: all of them, for good).
    backend = MemoryBackend()
    emit_many(backend, 3)
    with trio.fail_after(10):
        async with tcp_server(backend) as address, connected(address) as client:
            with pytest.raises(InvalidRequest) as info:
                await client.subscribe(after=10**15)
            assert info.value.field == "after"
            subscription = await client.subscribe(after=3)  # the newest event: fine, live from here
            seq = backend.emit(ACCOUNT, EventKind.DELIVERED, "m4").seq
            assert (await subscription.__anext__()).seq == seq
