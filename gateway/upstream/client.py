"""Trio client of the upstream socket: pipelined requests answered by id, and an event subscription.

    async with open_unix_client("var/upstream.sock", account="shop", secret=s) as client:
        result = await client.submit(SubmitRequest(("+15550001",), "hi", MessageClass.NOTIFICATION, "Shop"))

Any number of tasks may call one client at once; each request gets an id and waits for its own answer, so
they are pipelined on one connection. An error frame raises its `UpstreamError` subclass.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import structlog
import trio

from gateway.upstream.errors import BadFrame, ConnectionLost, UpstreamError
from gateway.upstream.frames import DEFAULT_MAX_FRAME_BYTES
from gateway.upstream.schema import (
    PROTOCOL_VERSION,
    Ack,
    AdminRequest,
    Body,
    CancelResult,
    Event,
    EventKind,
    Hello,
    HelloResult,
    ListAction,
    ListName,
    ListRequest,
    ListResult,
    MessageClass,
    MessageQuery,
    MessageStatus,
    Op,
    PreviewRequest,
    PreviewResult,
    SubmitRequest,
    SubmitResult,
    Subscribe,
    cancel_result_from_wire,
    hello_result_from_wire,
    list_result_from_wire,
    preview_result_from_wire,
    statuses_from_wire,
    submit_result_from_wire,
    subscribe_result_from_wire,
)
from gateway.upstream.session import ClientSession, Reply

log = structlog.get_logger(__name__)

_OUTGOING_FRAMES = 1024
_READ_BYTES = 64 * 1024
_COALESCE_BYTES = 256 * 1024
# A read carries hundreds of events. The subscription's iterator checks for cancellation on every event but
# lets other tasks run only every this many events it takes from the queue (and whenever the queue is
# empty): one trip through trio's scheduler per event cost more than reading the event.
_EVENTS_PER_SCHEDULE_POINT = 64


class _Call:
    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.reply: Reply | None = None


class Subscription:
    """Events pushed by the server after `after`; iterate, and `ack` what has been processed.

    Each step of the iteration checks for cancellation; it lets other tasks run when it has to wait for an
    event and otherwise every `_EVENTS_PER_SCHEDULE_POINT` events."""

    def __init__(self, client: UpstreamClient, window: int) -> None:
        self._client = client
        self.after = 0
        self.window = window
        self._send, self._recv = trio.open_memory_channel[Event](window)
        self._taken = 0

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        # As trio's receive does: a cancellation is seen before an event is taken, so none is lost.
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            event = self._recv.receive_nowait()
        except trio.WouldBlock:
            event = await self._receive()
        except trio.EndOfChannel:
            raise self._client.closed_error() from None
        else:
            self._taken += 1
            if self._taken >= _EVENTS_PER_SCHEDULE_POINT:
                self._taken = 0
                await trio.lowlevel.cancel_shielded_checkpoint()
        return event

    async def _receive(self) -> Event:
        try:
            return await self._recv.receive()
        except trio.EndOfChannel:
            raise self._client.closed_error() from None

    async def ack(self, seq: int) -> None:
        """Consume events up to seq: the server stores the cursor and opens the window again."""
        await self._client.ack(seq)

    async def deliver(self, event: Event) -> None:
        # The server never has more than `window` events unacknowledged, so this never blocks for long.
        await self._send.send(event)

    def offer(self, event: Event) -> bool:
        """Queue an event without waiting (the reader's usual case); False when the queue is full."""
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            return False
        return True

    def close(self) -> None:
        self._send.close()


class UpstreamClient:
    def __init__(self, stream: trio.abc.Stream, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self._stream = stream
        self._session = ClientSession(max_frame_bytes)
        self._pending: dict[int, _Call] = {}
        self._out_send, self._out_recv = trio.open_memory_channel[bytes](_OUTGOING_FRAMES)
        self._subscription: Subscription | None = None
        self._closed: UpstreamError | None = None
        self.hello_result: HelloResult | None = None
        # The last error frame the server could not tie to a request id (a frame it could not parse).
        self.last_unattributed_error: UpstreamError | None = None

    # --- operations ---------------------------------------------------------------------------------

    async def hello(self, account: str, secret: str, version: int = PROTOCOL_VERSION) -> HelloResult:
        self.hello_result = hello_result_from_wire(await self.call(Op.HELLO, Hello(version, account, secret)))
        self._session.max_request_bytes = self.hello_result.max_frame_bytes
        return self.hello_result

    async def submit(self, request: SubmitRequest) -> SubmitResult:
        return submit_result_from_wire(await self.call(Op.SUBMIT, request))

    async def status(
        self, *, message_id: str | None = None, client_ref: str | None = None
    ) -> tuple[MessageStatus, ...]:
        return statuses_from_wire(await self.call(Op.STATUS, MessageQuery(message_id, client_ref)))

    async def cancel(self, *, message_id: str | None = None, client_ref: str | None = None) -> CancelResult:
        return cancel_result_from_wire(await self.call(Op.CANCEL, MessageQuery(message_id, client_ref)))

    async def lists(
        self, name: ListName | str, action: ListAction | str, numbers: Sequence[str] = (), *, after: str | None = None,
        limit: int | None = None,
    ) -> ListResult:
        """Add, remove or check `numbers` on the account's opt-out or blacklist, or read a page of it
        (action "page", from after `after`)."""
        request = ListRequest(ListName(name), ListAction(action), tuple(numbers), after, limit)
        return list_result_from_wire(await self.call(Op.LISTS, request))

    async def account(self, command: str, **args: Any) -> dict[str, Any]:
        """The account's own batches, templates and balance (`batch`, `template`, `balance`: docs/protocol.md,
        `account`)."""
        result = await self.call(Op.ACCOUNT, AdminRequest(command, {k: v for k, v in args.items() if v is not None}))
        if not isinstance(result, dict):
            raise BadFrame("server sent an account answer that is not a map")
        return result

    async def preview(self, text: str, message_class: MessageClass | str | None = None) -> PreviewResult:
        """With a class, as the account's submit of that class would send it (its opt-out wording too)."""
        cls = MessageClass(message_class) if message_class is not None else None
        return preview_result_from_wire(await self.call(Op.PREVIEW, PreviewRequest(text, cls)))

    async def ping(self) -> None:
        await self.call(Op.PING)

    async def ack(self, seq: int) -> None:
        await self.call(Op.ACK, Ack(seq))

    async def subscribe(
        self, after: int | None = None, window: int = 1000, kinds: Sequence[EventKind | str] | None = None
    ) -> Subscription:
        """Start the event stream after `after` (None: after this account's acknowledged cursor); only events
        of `kinds` when given (say ("delivered", "failed") for final outcomes only)."""
        if self._subscription is not None:
            raise RuntimeError("this connection is already subscribed")
        # Ready before the request goes out: events may follow the answer in the same read.
        wanted = None if kinds is None else tuple(EventKind(k) for k in kinds)
        self._subscription = Subscription(self, window)
        try:
            granted = subscribe_result_from_wire(await self.call(Op.SUBSCRIBE, Subscribe(after, window, wanted)))
        except BaseException:
            # Refused (docs/protocol.md: the connection is then without a subscription) or not sent: a
            # corrected subscribe may follow.
            self._subscription = None
            raise
        self._subscription.after = granted.after
        self._subscription.window = granted.window
        return self._subscription

    async def call(self, op: Op, body: Body | None = None) -> object:
        """Send one request and wait for its answer; the raw result map, or raise the error frame's class."""
        if self._closed is not None:
            raise self._closed
        ident, data = self._session.request(op, body)
        call = self._pending[ident] = _Call()
        try:
            await self._out_send.send(data)
            await call.done.wait()
        finally:
            self._pending.pop(ident, None)
        reply = call.reply
        if reply is None:
            raise self.closed_error()
        if reply.error is not None:
            raise reply.error
        return reply.result

    def closed_error(self) -> UpstreamError:
        return self._closed or ConnectionLost("connection closed")

    # --- tasks --------------------------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Reader and writer; returns when the connection ends. `open_*_client` starts it for you."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._writer)
            task_status.started()
            try:
                await self._reader()
            finally:
                self._shut(ConnectionLost("connection closed"))
                nursery.cancel_scope.cancel()

    async def _reader(self) -> None:
        while True:
            try:
                data = await self._stream.receive_some(_READ_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            self._session.receive_data(data)
            try:
                while (message := self._session.next_message()) is not None:
                    if isinstance(message, Event):
                        subscription = self._subscription
                        if subscription is not None and not subscription.offer(message):
                            await subscription.deliver(message)
                    else:
                        self._answer(message)
            except UpstreamError as err:
                self._shut(err)
                return

    def _answer(self, message: Reply) -> None:
        if message.fatal and message.error is not None:
            self._shut(message.error)
        call = self._pending.get(message.id) if message.id is not None else None
        if call is None:
            if message.error is not None:
                log.warning("upstream_unattributed_error", code=message.error.code, error=message.error.message)
                self.last_unattributed_error = message.error
            return
        call.reply = message
        call.done.set()

    async def _writer(self) -> None:
        async for first in self._out_recv:
            batch = [first]
            size = len(first)
            while size < _COALESCE_BYTES:
                try:
                    batch.append(self._out_recv.receive_nowait())
                except trio.WouldBlock:
                    break
                size += len(batch[-1])
            try:
                await self._stream.send_all(b"".join(batch))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._shut(ConnectionLost("connection closed while sending"))
                return

    def _shut(self, error: UpstreamError) -> None:
        """Fail every waiting call with `error` (the first reason wins) and end the subscription."""
        if self._closed is None:
            self._closed = error
        for call in self._pending.values():
            call.done.set()
        if self._subscription is not None:
            self._subscription.close()

    async def aclose(self) -> None:
        self._shut(ConnectionLost("client closed"))
        await self._stream.aclose()


@asynccontextmanager
async def _open(stream: trio.abc.Stream, account: str, secret: str, version: int) -> AsyncIterator[UpstreamClient]:
    client = UpstreamClient(stream)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
            try:
                await client.hello(account, secret, version)
                yield client
            finally:
                nursery.cancel_scope.cancel()
                with trio.CancelScope(shield=True):
                    await client.aclose()
    except ExceptionGroup as group:
        # The nursery only runs the reader, which never raises: a lone error is the caller's own (or the
        # hello's), and `except AuthFailed` around the block should see it as it was raised.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


@asynccontextmanager
async def open_tcp_client(
    host: str, port: int, *, account: str, secret: str, version: int = PROTOCOL_VERSION
) -> AsyncIterator[UpstreamClient]:
    """Connect, say hello, yield an authenticated client; closes on exit."""
    # trio sets TCP_NODELAY on its TCP streams: a lone request is not held back by Nagle.
    stream = await trio.open_tcp_stream(host, port)
    async with _open(stream, account, secret, version) as client:
        yield client


@asynccontextmanager
async def open_unix_client(
    path: str | os.PathLike[str], *, account: str, secret: str, version: int = PROTOCOL_VERSION
) -> AsyncIterator[UpstreamClient]:
    stream = await trio.open_unix_socket(os.fspath(path))
    async with _open(stream, account, secret, version) as client:
        yield client
