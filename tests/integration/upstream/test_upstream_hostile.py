"""The upstream socket survives any request (issue 11): numbers out of range, cursors past the log, requests
before hello, bin map keys and handler bugs each get an error frame on the wire, and the connection keeps
serving. Real sockets on 127.0.0.1, the in-memory backend."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from functools import partial
from typing import Any

import msgpack
import pytest
import trio
from structlog.testing import capture_logs

from gateway.upstream import (
    ClientRefConflict,
    Credentials,
    EventKind,
    MessageClass,
    SubmitRequest,
    open_tcp_client,
    serve_tcp,
)
from gateway.upstream.schema import MAX_SCHEDULE_AT, MAX_SEQ
from tests.integration.upstream.harness import (
    ACCOUNT,
    SECRET,
    RawConnection,
    submit_frame,
    tcp_server,
)
from tests.integration.upstream.memory_backend import MemoryBackend

U64_MAX = 2**64 - 1
PING_ID = 10_000
PING = {"op": "ping", "id": PING_ID}
PONG = {"type": "result", "id": PING_ID, "result": {}}


def assert_error(reply: dict[str, Any] | None, ident: int | None, code: str, field: str | None = None) -> None:
    assert reply is not None, "the server closed the connection instead of answering"
    assert (reply["type"], reply["id"], reply["code"]) == ("error", ident, code), reply
    assert reply.get("field") == field, reply
    assert "fatal" not in reply, reply


async def answers(conn: RawConnection, count: int) -> dict[int | None, dict[str, Any]]:
    """The next `count` answers by id (answers come back in the order they finish)."""
    out: dict[int | None, dict[str, Any]] = {}
    for _ in range(count):
        reply = await conn.receive()
        assert reply is not None, "the server closed the connection"
        out[reply["id"]] = reply
    return out


@pytest.mark.parametrize(
    "schedule_at",
    [math.nan, math.inf, -math.inf, 1e308, 1.8e16, U64_MAX, -1, MAX_SCHEDULE_AT + 1],
    ids=["nan", "inf", "-inf", "1e308", "1.8e16", "u64-max", "negative", "after-year-9999"],
)
async def test_submit_with_schedule_at_out_of_range_gets_invalid_request(schedule_at: float) -> None:
    backend = MemoryBackend()
    with trio.fail_after(10), capture_logs() as logs:
        async with tcp_server(backend) as address, RawConnection.open(address) as conn:
            await conn.hello()
            await conn.send(submit_frame(5, schedule_at=schedule_at), PING)
            replies = await answers(conn, 2)
    assert_error(replies[5], 5, "invalid_request", "schedule_at")
    assert "253402300799" in replies[5]["message"]
    assert replies[PING_ID] == PONG
    assert not backend.records
    assert not [e for e in logs if e.get("log_level") in ("error", "critical")]


async def test_submit_with_schedule_at_in_year_9999_is_accepted() -> None:
    backend = MemoryBackend()
    with trio.fail_after(10):
        async with tcp_server(backend) as address, RawConnection.open(address) as conn:
            await conn.hello()
            await conn.send(submit_frame(5, schedule_at=MAX_SCHEDULE_AT))
            reply = await conn.receive()
    assert reply is not None
    assert reply["type"] == "result"
    assert [r.status.state for r in backend.records.values()] == ["scheduled"]


@pytest.mark.parametrize("after", [U64_MAX, MAX_SEQ + 1, -1])
async def test_subscribe_after_u64_max_gets_invalid_request(after: int) -> None:
    with trio.fail_after(10):
        async with tcp_server(MemoryBackend()) as address, RawConnection.open(address) as conn:
            await conn.hello()
            await conn.send({"op": "subscribe", "id": 5, "after": after}, PING)
            replies = await answers(conn, 2)
            # Refused, so not subscribed: a valid subscribe on the same connection is granted.
            await conn.send({"op": "subscribe", "id": 6, "after": 0})
            granted = await conn.receive()
    assert_error(replies[5], 5, "invalid_request", "after")
    assert replies[PING_ID] == PONG
    assert granted == {"type": "result", "id": 6, "result": {"after": 0, "window": 1000}}


async def test_ack_u64_max_gets_invalid_request_and_the_cursor_stays() -> None:
    backend = MemoryBackend()
    backend.emit(ACCOUNT, EventKind.DELIVERED, "m1")
    with trio.fail_after(10):
        async with tcp_server(backend) as address, RawConnection.open(address) as conn:
            await conn.hello()
            await conn.send({"op": "ack", "id": 5, "seq": U64_MAX}, PING)
            replies = await answers(conn, 2)
            await conn.send({"op": "subscribe", "id": 6})
            granted, event = await conn.receive(), await conn.receive()
    assert_error(replies[5], 5, "invalid_request", "seq")
    assert replies[PING_ID] == PONG
    assert backend.logs[ACCOUNT].cursor == 0
    assert granted is not None
    assert granted["result"]["after"] == 0
    assert event is not None
    assert (event["type"], event["seq"]) == ("event", 1)


async def test_ack_past_the_last_event_without_a_subscription_gets_invalid_request() -> None:
    backend = MemoryBackend()
    first = backend.emit(ACCOUNT, EventKind.DELIVERED, "m1")
    with trio.fail_after(10):
        async with tcp_server(backend) as address, RawConnection.open(address) as conn:
            await conn.hello()
            await conn.send({"op": "ack", "id": 5, "seq": first.seq + 1})
            past = await conn.receive()
            await conn.send({"op": "ack", "id": 6, "seq": first.seq})
            taken = await conn.receive()
    assert_error(past, 5, "invalid_request", "seq")
    assert taken == {"type": "result", "id": 6, "result": {"seq": first.seq}}
    assert backend.logs[ACCOUNT].cursor == first.seq


@pytest.mark.parametrize(
    "frame",
    [
        {"op": "submit", "id": 7},
        {"op": "submit", "id": 7, "to": 5, "schedule_at": math.nan, "colour": "red"},
        {"op": "subscribe", "id": 7, "after": U64_MAX},
        {"op": "ack", "id": 7, "seq": -1},
        {"op": "status", "id": 7},
        {"op": "launch", "id": 7},
        {"op": "ping", "id": 7, "extra": 1},
    ],
    ids=[
        "submit-no-fields",
        "submit-all-wrong",
        "subscribe-u64",
        "ack-negative",
        "status-empty",
        "unknown-op",
        "ping-extra-key",
    ],
)
async def test_malformed_request_before_hello_gets_not_authenticated(frame: dict[str, Any]) -> None:
    with trio.fail_after(10):
        async with tcp_server(MemoryBackend()) as address, RawConnection.open(address) as conn:
            await conn.send(frame)
            refused = await conn.receive()
            hello = await conn.hello()
    assert_error(refused, 7, "not_authenticated")
    assert hello["type"] == "result"


@pytest.mark.parametrize(
    "request_map",
    [
        {b"op": "ping", "id": 5},
        {"op": "ping", "id": 5, b"id": 6},
        {"op": "subscribe", "id": 5, "kinds": [{b"kind": "mo"}]},
    ],
    ids=["bin-op-key", "bin-key-beside-str", "bin-key-nested"],
)
async def test_bin_map_key_gets_bad_frame(request_map: dict[Any, Any]) -> None:
    payload = msgpack.packb(request_map, use_bin_type=True)
    with trio.fail_after(10):
        async with tcp_server(MemoryBackend()) as address, RawConnection.open(address) as conn:
            await conn.hello()
            await conn.send_bytes(struct.pack(">I", len(payload)) + payload)
            await conn.send(PING)
            error, pong = await conn.receive(), await conn.receive()
    assert_error(error, None, "bad_frame")
    assert pong == PONG


class BuggyBackend(MemoryBackend):
    """A backend whose status has a bug (every call raises the same way), and whose event reads may fail."""

    def __init__(self) -> None:
        super().__init__()
        self.events_fail = False

    async def status(self, account: str, query: object) -> Sequence[Any]:
        await trio.lowlevel.checkpoint()
        missing: dict[str, Any] = {}
        return [missing["no such key"]]

    async def read_events(
        self, account: str, after_seq: int, limit: int, kinds: frozenset[EventKind] | None = None
    ) -> Sequence[Any]:
        if self.events_fail:
            raise struct.error("argument out of range")
        return await super().read_events(account, after_seq, limit, kinds)


async def test_handler_bug_gets_internal_for_each_request_and_one_traceback_in_the_log() -> None:
    count = 200
    with trio.fail_after(20), capture_logs() as logs:
        async with tcp_server(BuggyBackend()) as address, RawConnection.open(address) as conn:
            await conn.hello()
            await conn.send(*({"op": "status", "id": i, "message_id": "m1"} for i in range(1, count + 1)), PING)
            replies = await answers(conn, count + 1)
    for i in range(1, count + 1):
        assert_error(replies[i], i, "internal")
        assert "no such key" not in replies[i]["message"]  # details go to the log, not to the client
    assert replies[PING_ID] == PONG
    failures = [e for e in logs if e["event"].startswith("upstream_request_failed")]
    assert [e["event"] for e in failures] == ["upstream_request_failed"]
    assert failures[0]["exc_info"] is not None
    assert failures[0]["where"].startswith("test_upstream_hostile.py:")


class RaisingCredentials(Credentials):
    def check(self, account: str, secret: str) -> bool:
        if account == "boom":
            raise RuntimeError("credential store bug")
        return super().check(account, secret)


async def test_bug_in_hello_gets_internal_and_the_connection_keeps_serving() -> None:
    credentials = RaisingCredentials({ACCOUNT: SECRET})
    with trio.fail_after(10), capture_logs():
        async with trio.open_nursery() as nursery:
            address = await nursery.start(partial(serve_tcp, MemoryBackend(), credentials))
            async with RawConnection.open(address) as conn:
                await conn.send({"op": "hello", "id": 3, "version": 1, "account": "boom", "secret": "x"})
                broken = await conn.receive()
                hello = await conn.hello()
            nursery.cancel_scope.cancel()
    assert_error(broken, 3, "internal")
    assert hello["type"] == "result"


async def test_event_stream_that_fails_ends_the_connection_with_a_fatal_internal() -> None:
    backend = BuggyBackend()
    with trio.fail_after(10), capture_logs() as logs:
        async with tcp_server(backend) as address, RawConnection.open(address) as conn:
            await conn.hello()
            backend.events_fail = True
            await conn.send({"op": "subscribe", "id": 5})
            granted, error, end = await conn.receive(), await conn.receive(), await conn.receive()
            # The server itself serves on.
            async with RawConnection.open(address) as other:
                assert (await other.hello())["type"] == "result"
    assert granted is not None
    assert granted["type"] == "result"
    assert error is not None
    assert (error["id"], error["code"], error["fatal"]) == (None, "internal", True)
    assert end is None
    assert [e["event"] for e in logs if e["event"].startswith("upstream_request_failed")] == ["upstream_request_failed"]


async def test_resubmit_with_same_client_ref_and_other_recipients_gets_client_ref_conflict() -> None:
    def sms(*to: str, text: str = "code 1234") -> SubmitRequest:
        return SubmitRequest(to, text, MessageClass.VERIFICATION, "Shop", client_ref="otp-1")

    with trio.fail_after(10):
        async with (
            tcp_server(MemoryBackend()) as address,
            open_tcp_client(*address, account=ACCOUNT, secret=SECRET) as client,
        ):
            first = await client.submit(sms("+447700900001"))
            again = await client.submit(sms("+447700900001"))
            with pytest.raises(ClientRefConflict) as other_number:
                await client.submit(sms("+447700900002"))
            with pytest.raises(ClientRefConflict):
                await client.submit(sms("+447700900001", text="code 9999"))
    assert (again.duplicate, again.messages) == (True, first.messages)
    assert (other_number.value.code, other_number.value.field) == ("client_ref_conflict", "client_ref")
