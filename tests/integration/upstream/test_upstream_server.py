"""The upstream server over real sockets: hello, pipelining, every documented error, backpressure."""

from __future__ import annotations

import os
import socket
import stat
import struct
from pathlib import Path

import pytest
import trio
import trio.lowlevel
import trio.testing
from structlog.testing import capture_logs

from gateway.smpp.errors import StoreFull
from gateway.upstream import (
    AuthFailed,
    FrameTooLarge,
    MessageClass,
    NotCancellable,
    NotFound,
    ServerConfig,
    SubmitRequest,
    TextNotEncodable,
    UnsupportedVersion,
    open_tcp_client,
    open_unix_client,
)
from gateway.upstream.server import Drain
from tests.integration.upstream.harness import (
    ACCOUNT,
    OTHER_ACCOUNT,
    OTHER_SECRET,
    SECRET,
    RawConnection,
    submit_frame,
    tcp_server,
    unix_server,
)
from tests.integration.upstream.memory_backend import MemoryBackend


def sms(*to: str, text: str = "hello", **extra: object) -> SubmitRequest:
    return SubmitRequest(to, text, MessageClass.NOTIFICATION, "Shop", **extra)  # type: ignore[arg-type]


async def test_hello_and_submit_over_tcp() -> None:
    backend = MemoryBackend()
    with trio.fail_after(10):
        async with (
            tcp_server(backend) as (host, port),
            open_tcp_client(host, port, account=ACCOUNT, secret=SECRET) as client,
        ):
            assert client.hello_result is not None
            assert client.hello_result.version == 1
            assert client.hello_result.max_inflight == ServerConfig().max_inflight
            result = await client.submit(sms("+15550001", "15550002"))
    assert [m.to for m in result.messages] == ["+15550001", "15550002"]
    assert {m.message_id for m in result.messages} == set(backend.records)


async def test_unix_socket_is_private_and_serves(tmp_path: Path) -> None:
    backend = MemoryBackend()
    path = tmp_path / "upstream.sock"
    path.touch()  # a stale file that is not a socket must not be clobbered
    with trio.fail_after(10):
        with pytest.RaisesGroup(FileExistsError):
            async with unix_server(backend, path):
                pass
        path.unlink()
        async with unix_server(backend, path) as bound:
            assert stat.S_IMODE(os.stat(bound).st_mode) == 0o600
            async with open_unix_client(bound, account=ACCOUNT, secret=SECRET) as client:
                await client.ping()
                preview = await client.preview("x" * 161)
    assert (preview.encoding, preview.parts, preview.chars_left) == ("gsm7", 2, 306 - 161)


async def test_wrong_secret_is_refused_then_right_one_accepted() -> None:
    with trio.fail_after(10):
        async with tcp_server(MemoryBackend()) as address:
            with pytest.raises(AuthFailed):
                async with open_tcp_client(*address, account=ACCOUNT, secret="guess"):
                    pass
            with pytest.raises(AuthFailed):
                async with open_tcp_client(*address, account=ACCOUNT, secret=OTHER_SECRET):
                    pass
            async with RawConnection.open(address) as conn:
                refused = await conn.hello(secret="wrong")
                accepted = await conn.hello()
                await conn.aclose()
    assert (refused["type"], refused["code"], refused["id"]) == ("error", "auth_failed", 0)
    assert accepted["type"] == "result"
    assert accepted["result"]["account"] == ACCOUNT


async def test_third_failed_hello_closes_with_a_fatal_error() -> None:
    with trio.fail_after(10):
        async with (
            tcp_server(MemoryBackend(), ServerConfig(max_auth_failures=3)) as address,
            RawConnection.open(address) as conn,
        ):
            replies = [await conn.hello(secret=f"guess{i}") for i in range(3)]
            end = await conn.receive()
    assert [r["code"] for r in replies] == ["auth_failed"] * 3
    assert "fatal" not in replies[0]
    assert (replies[2]["id"], replies[2]["fatal"]) == (0, True)
    assert end is None


async def test_request_before_hello_is_not_authenticated() -> None:
    with trio.fail_after(10):
        async with tcp_server(MemoryBackend()) as address, RawConnection.open(address) as conn:
            await conn.send(submit_frame(7))
            refused = await conn.receive()
            assert (await conn.hello())["type"] == "result"
    assert refused is not None
    assert (refused["id"], refused["code"]) == (7, "not_authenticated")


async def test_unsupported_version_names_the_supported_ones() -> None:
    with trio.fail_after(10):
        async with tcp_server(MemoryBackend()) as address:
            with pytest.raises(UnsupportedVersion, match="supported: 1"):
                async with open_tcp_client(*address, account=ACCOUNT, secret=SECRET, version=9):
                    pass


async def test_no_hello_in_time_closes_with_not_authenticated(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(60):
        async with (
            tcp_server(MemoryBackend(), ServerConfig(hello_timeout_seconds=5)) as address,
            RawConnection.open(address) as conn,
        ):
            start = trio.current_time()
            refused = await conn.receive()
            end = await conn.receive()
    assert refused is not None
    assert (refused["code"], refused["fatal"]) == ("not_authenticated", True)
    assert trio.current_time() - start == pytest.approx(5, abs=0.1)
    assert end is None


async def test_pipelined_submits_are_answered_by_id_out_of_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The backend takes longer for earlier requests, so answers come back in reverse.
    count = 30
    frames = [submit_frame(i, to=f"+1555{i:04d}", batch_id=str(count - i)) for i in range(1, count + 1)]
    with trio.fail_after(120):
        async with tcp_server(MemoryBackend()) as address, RawConnection.open(address) as conn:
            await conn.hello()
            await conn.send(*frames)
            replies = [await conn.receive() for _ in frames]
    ids = [reply["id"] for reply in replies if reply is not None]
    assert sorted(ids) == list(range(1, count + 1))
    assert ids == sorted(ids, reverse=True)
    for reply in replies:
        assert reply is not None
        assert reply["result"]["messages"][0]["to"] == f"+1555{reply['id']:04d}"


async def test_many_client_tasks_share_one_connection() -> None:
    backend = MemoryBackend()
    results: dict[str, str] = {}

    async def send(client: object, to: str) -> None:
        result = await client.submit(sms(to))  # type: ignore[attr-defined]
        results[to] = result.messages[0].message_id

    with trio.fail_after(20):
        async with (
            tcp_server(backend) as address,
            open_tcp_client(*address, account=ACCOUNT, secret=SECRET) as client,
            trio.open_nursery() as nursery,
        ):
            for i in range(500):
                nursery.start_soon(send, client, f"+4470000{i:05d}")
    assert len(results) == 500
    assert {backend.records[mid].status.to for mid in results.values()} == set(results)


@pytest.mark.parametrize(
    ("frame", "code", "field"),
    [
        ({"op": "launch", "id": 5}, "unknown_op", "op"),
        (
            {"op": "submit", "id": 5, "to": "+15550001", "class": "marketing", "sender": "Shop"},
            "invalid_request",
            "text",
        ),
        (submit_frame(5, to=["+15550001", "call\x00me"]), "invalid_number", "to[1]"),
        (submit_frame(5, sender="ThisIsTooLong"), "invalid_number", "sender"),
        (submit_frame(5, **{"class": "spam"}), "invalid_request", "class"),
        (submit_frame(5, receipt=1), "invalid_request", "receipt"),
        (submit_frame(5, scheduled_at=1.0), "invalid_request", "scheduled_at"),
        (submit_frame(5, text="x" * 10_001), "too_long", "text"),
        ({"op": "status", "id": 5}, "invalid_request", "message_id"),
        ({"op": "ack", "id": 5, "seq": -1}, "invalid_request", "seq"),
    ],
)
async def test_invalid_request_gets_its_code_and_the_connection_keeps_serving(
    frame: dict[str, object], code: str, field: str
) -> None:
    backend = MemoryBackend()
    with trio.fail_after(10):
        async with tcp_server(backend) as address, RawConnection.open(address) as conn:
            await conn.hello()
            await conn.send(frame, {"op": "ping", "id": 6})
            error, pong = await conn.receive(), await conn.receive()
    assert error is not None
    assert error == {"type": "error", "id": 5, "code": code, "message": error["message"], "field": field}
    assert pong == {"type": "result", "id": 6, "result": {}}
    assert not backend.records


@pytest.mark.parametrize(
    "payload",
    [b"\xc1", b"\x92\x01", b"\x01\x02", b"\xa2\xff\xfe", b"\x81\x01\x02"],
    ids=["never-used-byte", "truncated-array", "two-objects", "bad-utf8", "int-key"],
)
async def test_malformed_frame_gets_bad_frame_and_the_connection_keeps_serving(payload: bytes) -> None:
    with trio.fail_after(10):
        async with tcp_server(MemoryBackend()) as address, RawConnection.open(address) as conn:
            await conn.hello()
            await conn.send_bytes(struct.pack(">I", len(payload)) + payload)
            await conn.send({"op": "ping", "id": 2})
            error, pong = await conn.receive(), await conn.receive()
    assert error is not None
    assert (error["type"], error["id"], error["code"]) == ("error", None, "bad_frame")
    assert pong == {"type": "result", "id": 2, "result": {}}


async def test_id_is_kept_when_the_frame_is_a_map_but_not_a_request() -> None:
    with trio.fail_after(10):
        async with tcp_server(MemoryBackend()) as address, RawConnection.open(address) as conn:
            await conn.hello()
            await conn.send({"id": 3}, {"op": "ping", "id": "x"})
            missing_op, bad_id = await conn.receive(), await conn.receive()
    assert missing_op is not None
    assert bad_id is not None
    assert (missing_op["id"], missing_op["code"], missing_op["field"]) == (3, "invalid_request", "op")
    assert (bad_id["id"], bad_id["code"], bad_id["field"]) == (None, "invalid_request", "id")


async def test_oversize_frame_is_skipped_and_the_connection_keeps_serving() -> None:
    config = ServerConfig(max_frame_bytes=1024)
    with trio.fail_after(10):
        async with (
            tcp_server(MemoryBackend(), config) as address,
            RawConnection.open(address) as conn,
        ):
            await conn.hello()
            big = submit_frame(1, text="x" * 5000)
            await conn.send(big, {"op": "ping", "id": 2})
            error, pong = await conn.receive(), await conn.receive()
    assert error is not None
    assert (error["id"], error["code"]) == (None, "frame_too_large")
    assert pong == {"type": "result", "id": 2, "result": {}}


async def test_garbage_length_closes_the_connection_after_a_fatal_error() -> None:
    with trio.fail_after(10):
        async with tcp_server(MemoryBackend()) as address, RawConnection.open(address) as conn:
            await conn.hello()
            await conn.send_bytes(b"GET / HTTP/1.1\r\nHost: gateway\r\n\r\n")
            error, end = await conn.receive(), await conn.receive()
            # The server itself is unharmed: the next connection is served.
            async with RawConnection.open(address) as other:
                assert (await other.hello())["type"] == "result"
    assert error is not None
    assert (error["code"], error["fatal"]) == ("frame_too_large", True)
    assert end is None


async def test_backend_errors_become_their_codes() -> None:
    backend = MemoryBackend(gsm_only_accounts=frozenset({OTHER_ACCOUNT}), capacity=3)
    with trio.fail_after(10):
        async with tcp_server(backend) as address:
            async with open_tcp_client(*address, account=OTHER_ACCOUNT, secret=OTHER_SECRET) as client:
                with pytest.raises(TextNotEncodable) as not_encodable:
                    await client.submit(sms("+15550001", text="price 5 € 🙂"))
            async with RawConnection.open(address) as conn:
                await conn.hello()
                await conn.send(submit_frame(1, to=["+15550001", "+15550002", "+15550003", "+15550004"]))
                full = await conn.receive()
                backend.fail_next_with = RuntimeError("disk on fire")
                await conn.send(submit_frame(2), {"op": "ping", "id": 3})
                # Answers go out by id as they finish: the ping may overtake the submit.
                replies = {r["id"]: r for r in [await conn.receive(), await conn.receive()] if r is not None}
                internal, pong = replies[2], replies[3]
    assert not_encodable.value.field == "text"
    assert "'🙂' at 10" in not_encodable.value.message
    assert full is not None
    assert (full["id"], full["code"]) == (1, "store_full")
    assert internal["code"] == "internal"
    assert "disk on fire" not in internal["message"]  # internals are logged, not sent
    assert pong["type"] == "result"


async def test_store_full_raised_by_the_store_is_mapped() -> None:
    backend = MemoryBackend()
    backend.fail_next_with = StoreFull("map full")
    with trio.fail_after(10):
        async with (
            tcp_server(backend) as address,
            open_tcp_client(*address, account=ACCOUNT, secret=SECRET) as client,
        ):
            with pytest.raises(Exception, match="map full") as raised:
                await client.submit(sms("+15550001"))
    assert getattr(raised.value, "code", None) == "store_full"


async def test_client_ref_status_and_cancel() -> None:
    backend = MemoryBackend()
    with trio.fail_after(10):
        async with (
            tcp_server(backend) as address,
            open_tcp_client(*address, account=ACCOUNT, secret=SECRET) as client,
        ):
            first = await client.submit(sms("+15550001", "+15550002", client_ref="order-1"))
            again = await client.submit(sms("+15550001", "+15550002", client_ref="order-1"))
            statuses = await client.status(client_ref="order-1")
            backend.set_state(first.messages[0].message_id, "submitted")
            cancelled = await client.cancel(client_ref="order-1")
            with pytest.raises(NotCancellable):
                await client.cancel(message_id=first.messages[0].message_id)
            with pytest.raises(NotFound):
                await client.status(message_id="m999")
            async with open_tcp_client(*address, account=OTHER_ACCOUNT, secret=OTHER_SECRET) as other:
                with pytest.raises(NotFound):  # another account's message does not exist for it
                    await other.status(message_id=first.messages[0].message_id)
    assert again.messages == first.messages
    assert (first.duplicate, again.duplicate) == (False, True)
    assert sorted(s.to for s in statuses) == ["+15550001", "+15550002"]
    assert {s.state for s in statuses} == {"accepted"}
    assert cancelled.cancelled == (first.messages[1].message_id,)


async def test_backpressure_bounds_unanswered_requests(autojump_clock: trio.testing.MockClock) -> None:
    backend = MemoryBackend()
    backend.gate = trio.Event()
    config = ServerConfig(max_inflight=4)
    count = 40
    with trio.fail_after(120):
        async with tcp_server(backend, config) as address, RawConnection.open(address) as conn:
            await conn.hello()
            await conn.send(*(submit_frame(i) for i in range(1, count + 1)))
            await backend.wait_in_submit(4)
            await trio.sleep(5)  # plenty of (virtual) time for a fifth to slip through, if one could
            stalled_at = backend.in_submit
            backend.gate.set()
            replies = [await conn.receive() for _ in range(count)]
    assert stalled_at == 4
    assert backend.max_in_submit == 4
    assert sorted(r["id"] for r in replies if r is not None and r["type"] == "result") == list(range(1, count + 1))


async def test_connection_closing_mid_request_fails_the_waiting_call() -> None:
    backend = MemoryBackend()
    backend.gate = trio.Event()
    with trio.fail_after(10):
        async with tcp_server(backend) as address, RawConnection.open(address) as conn:
            await conn.hello()
            await conn.send(submit_frame(1))
            await backend.wait_in_submit(1)
            await conn.aclose()
            backend.gate.set()
            # The answer has nowhere to go; the server drops the connection and serves on.
            async with open_tcp_client(*address, account=ACCOUNT, secret=SECRET) as client:
                await client.ping()
    assert len(backend.records) == 1


async def test_client_refuses_a_request_over_the_servers_frame_limit() -> None:
    with trio.fail_after(10):
        async with (
            tcp_server(MemoryBackend(), ServerConfig(max_frame_bytes=1024)) as address,
            open_tcp_client(*address, account=ACCOUNT, secret=SECRET) as client,
        ):
            with pytest.raises(FrameTooLarge):
                await client.submit(sms("+15550001", text="x" * 2000))
            await client.ping()


async def test_a_client_that_reads_nothing_is_cut_off_and_its_answers_freed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A client that pipelined big answers and stopped reading held up to max_inflight answers (36 MB for
    # 256 status answers of 1,000 messages) for as long as it stayed connected.
    config = ServerConfig(write_timeout_seconds=30.0)
    many = [f"+1555{i:07d}" for i in range(1000)]
    with trio.fail_after(600):
        async with tcp_server(MemoryBackend(), config) as address, RawConnection.open(address) as conn:
            await conn.hello()
            started = trio.current_time()
            with trio.move_on_after(60):  # until the server stops reading (its answers have nowhere to go)
                try:
                    for i in range(2, 2000):
                        await conn.send(submit_frame(i, to=many))
                except trio.BrokenResourceError:
                    pass  # cut off while still sending
            ended = False
            while not ended:  # what made it into the socket buffers, then the end (or a reset) of the stream
                try:
                    ended = await conn.receive() is None
                except trio.BrokenResourceError:
                    ended = True
            assert trio.current_time() - started < 120  # cut off after the write timeout, not left open
            async with open_tcp_client(*address, account=ACCOUNT, secret=SECRET) as client:
                await client.ping()  # and the server serves on


async def test_a_stream_that_ends_inside_a_frame_is_told_so_before_the_close() -> None:
    # It was closed without a word, though the doc promises no silent close for a frame fault.
    with trio.fail_after(10):
        async with tcp_server(MemoryBackend()) as address, RawConnection.open(address) as conn:
            await conn.hello()
            await conn.send_bytes(struct.pack(">I", 100) + b"\x85\xa2op")  # 100 octets announced, 4 sent
            await conn.stream.send_eof()
            error = await conn.receive()
            assert error is not None
            assert (error["type"], error["code"], error["id"]) == ("error", "bad_frame", None)
            assert await conn.receive() is None


async def test_a_request_read_before_the_shutdown_is_answered_before_the_close() -> None:
    # A submit that arrived just as SIGTERM did was committed but never answered: the connection was torn
    # down. A drain stops reading and accepting, lets what was read finish and be answered, then closes.
    backend = MemoryBackend()
    backend.gate = trio.Event()
    drain = Drain()
    with trio.fail_after(10):
        async with tcp_server(backend, drain=drain) as address, RawConnection.open(address) as conn:
            await conn.hello()
            await conn.send(submit_frame(7))
            await backend.wait_in_submit(1)
            drain.begin()
            await trio.lowlevel.checkpoint()
            backend.gate.set()  # the store commits it now, after the shutdown began
            answer = await conn.receive()
            assert answer is not None
            assert (answer["type"], answer["id"]) == ("result", 7)
            last = await conn.receive()  # then a last word, not a silent EOF
            assert last is not None
            assert (last["type"], last["code"], last["id"], last["fatal"]) == ("error", "shutting_down", None, True)
            assert await conn.receive() is None  # then the close
            await drain.wait()
            with pytest.raises(OSError, match="connect"):  # and no new connection is accepted
                await trio.open_tcp_stream(*address)
    assert len(backend.records) == 1


async def test_a_socket_left_by_a_killed_gateway_is_replaced_and_said(tmp_path: Path) -> None:
    # A gateway removes its socket when it stops cleanly; after kill -9 the next start said nothing of it.
    path = tmp_path / "upstream.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()  # what a killed gateway leaves: the file, no listener
    with trio.fail_after(10), capture_logs() as logs:
        async with unix_server(MemoryBackend(), path) as bound, open_unix_client(
            bound, account=ACCOUNT, secret=SECRET
        ) as client:
            await client.ping()
        assert [e["path"] for e in logs if e["event"] == "previous_stop_unclean"] == [str(path)]
        async with unix_server(MemoryBackend(), path):  # after a clean stop: nothing to say
            pass
    assert len([e for e in logs if e["event"] == "previous_stop_unclean"]) == 1
