"""Server fixtures and a raw frame connection for the upstream socket tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import trio

from gateway.upstream import Credentials, ServerConfig, serve_tcp, serve_unix
from gateway.upstream.frames import FrameDecoder, RawFrame, decode_payload, encode_frame
from gateway.upstream.server import Drain
from tests.integration.upstream.memory_backend import MemoryBackend

ACCOUNT = "shop"
SECRET = "s3cret-shop"
OTHER_ACCOUNT = "bank"
OTHER_SECRET = "s3cret-bank"
DEFAULT_CONFIG = ServerConfig()
CREDENTIALS = Credentials({ACCOUNT: SECRET, OTHER_ACCOUNT: OTHER_SECRET})


@asynccontextmanager
async def tcp_server(
    backend: MemoryBackend, config: ServerConfig = DEFAULT_CONFIG, drain: Drain | None = None
) -> AsyncIterator[tuple[str, int]]:
    async with trio.open_nursery() as nursery:
        address = await nursery.start(partial(serve_tcp, backend, CREDENTIALS, config, drain=drain))
        yield address
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def unix_server(backend: MemoryBackend, path: Path, config: ServerConfig = DEFAULT_CONFIG) -> AsyncIterator[str]:
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(serve_unix, path, backend, CREDENTIALS, config)
        yield bound
        nursery.cancel_scope.cancel()


def submit_frame(ident: int, to: Any = "+15550001", **extra: Any) -> dict[str, Any]:
    frame = {
        "op": "submit",
        "id": ident,
        "to": to,
        "text": "hello",
        "class": "notification",
        "sender": "Shop",
    }
    frame.update(extra)
    return frame


class RawConnection:
    """Frames by hand, to send what a well-behaved client never would."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._decoder = FrameDecoder(64 << 20)

    @classmethod
    @asynccontextmanager
    async def open(cls, address: tuple[str, int]) -> AsyncIterator[RawConnection]:
        conn = cls(await trio.open_tcp_stream(*address))
        try:
            yield conn
        finally:
            await conn.aclose()

    async def send(self, *frames: object) -> None:
        await self.stream.send_all(b"".join(encode_frame(frame) for frame in frames))

    async def send_bytes(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def receive(self) -> dict[str, Any] | None:
        """The next frame the server sent, or None at end of stream."""
        while True:
            event = self._decoder.next_event()
            if isinstance(event, RawFrame):
                frame = decode_payload(event.payload)
                assert isinstance(frame, dict)
                return frame
            assert event is None, event
            data = await self.stream.receive_some(65536)
            if not data:
                return None
            self._decoder.receive_data(data)

    async def hello(self, account: str = ACCOUNT, secret: str = SECRET) -> dict[str, Any]:
        await self.send({"op": "hello", "id": 0, "version": 1, "account": account, "secret": secret})
        reply = await self.receive()
        assert reply is not None
        return reply

    async def aclose(self) -> None:
        await self.stream.aclose()
