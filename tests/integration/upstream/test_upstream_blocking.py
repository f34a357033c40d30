"""The blocking client from a worker thread, against the trio server, over TCP and a Unix socket."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import trio

from gateway.upstream import (
    AuthFailed,
    BlockingClient,
    EventKind,
    InvalidNumber,
    MessageClass,
    SubmitRequest,
)
from tests.integration.upstream.harness import ACCOUNT, SECRET, tcp_server, unix_server
from tests.integration.upstream.memory_backend import MemoryBackend


def send_and_follow(client: BlockingClient) -> tuple[list[str], list[str], list[int], str | None]:
    result = client.submit(SubmitRequest(("+15550001",), "hi", MessageClass.MARKETING, "+15559999"))
    message_id = result.messages[0].message_id
    states = [s.state for s in client.status(message_id=message_id)]
    client.subscribe(after=0)
    seqs = [event.seq for event in itertools.islice(client.events(timeout=5), 2)]
    with pytest.raises(InvalidNumber) as refused:
        client.submit(SubmitRequest(("555\t0001",), "hi", MessageClass.MARKETING, "Shop"))
    client.ping()  # still serving after the refusal
    return [message_id], states, seqs, refused.value.field


async def test_blocking_client_from_a_thread_over_tcp() -> None:
    backend = MemoryBackend()
    expected = [backend.emit(ACCOUNT, EventKind.DELIVERED, "m0").seq for _ in range(2)]

    def work(host: str, port: int) -> tuple[list[str], list[str], list[int], str | None]:
        with BlockingClient.connect_tcp(host, port, account=ACCOUNT, secret=SECRET, timeout=5) as client:
            return send_and_follow(client)

    with trio.fail_after(20):
        async with tcp_server(backend) as (host, port):
            ids, states, seqs, bad_field = await trio.to_thread.run_sync(work, host, port)
    assert ids == list(backend.records)
    assert states == ["accepted"]
    assert seqs == expected
    assert bad_field == "to[0]"


async def test_blocking_client_over_unix_socket_and_wrong_secret(tmp_path: Path) -> None:
    backend = MemoryBackend()

    def work(path: str) -> str:
        with pytest.raises(AuthFailed):
            BlockingClient.connect_unix(path, account=ACCOUNT, secret="nope", timeout=5)
        with BlockingClient.connect_unix(path, account=ACCOUNT, secret=SECRET, timeout=5) as client:
            return client.preview("你好" * 50).encoding

    with trio.fail_after(20):
        async with unix_server(backend, tmp_path / "gw.sock") as path:
            encoding = await trio.to_thread.run_sync(work, path)
    assert encoding == "ucs2"
