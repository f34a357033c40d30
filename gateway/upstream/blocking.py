"""Blocking client of the upstream socket (plain `socket`), for the admin CLI and scripts.

One request at a time per client, guarded by a lock so threads may share it; events that arrive while
waiting for an answer are kept for `events()`. Same errors as the trio client.
"""

from __future__ import annotations

import os
import socket
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any

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
    SubscribeResult,
    cancel_result_from_wire,
    hello_result_from_wire,
    list_result_from_wire,
    preview_result_from_wire,
    statuses_from_wire,
    submit_result_from_wire,
    subscribe_result_from_wire,
)
from gateway.upstream.session import ClientSession, Reply

_READ_BYTES = 64 * 1024
# Events kept while a caller waits for an answer; the server's window bounds them anyway.
_MAX_BUFFERED_EVENTS = 100_000


class BlockingClient:
    def __init__(self, sock: socket.socket, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self._sock = sock
        self._session = ClientSession(max_frame_bytes)
        self._events: deque[Event] = deque(maxlen=_MAX_BUFFERED_EVENTS)
        self._lock = threading.Lock()
        self._closed: UpstreamError | None = None
        self.hello_result: HelloResult | None = None

    @classmethod
    def connect_tcp(
        cls, host: str, port: int, *, account: str, secret: str, timeout: float | None = 30.0
    ) -> BlockingClient:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls._authenticated(sock, account, secret)

    @classmethod
    def connect_unix(
        cls, path: str | os.PathLike[str], *, account: str, secret: str, timeout: float | None = 30.0
    ) -> BlockingClient:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(os.fspath(path))
        except OSError:
            sock.close()
            raise
        return cls._authenticated(sock, account, secret)

    @classmethod
    def _authenticated(cls, sock: socket.socket, account: str, secret: str) -> BlockingClient:
        client = cls(sock)
        authenticated = False
        try:
            client.hello(account, secret)
            authenticated = True
        finally:
            if not authenticated:
                client.close()
        return client

    # --- operations ---------------------------------------------------------------------------------

    def hello(self, account: str, secret: str, version: int = PROTOCOL_VERSION) -> HelloResult:
        self.hello_result = hello_result_from_wire(self.call(Op.HELLO, Hello(version, account, secret)))
        self._session.max_request_bytes = self.hello_result.max_frame_bytes
        return self.hello_result

    def submit(self, request: SubmitRequest) -> SubmitResult:
        return submit_result_from_wire(self.call(Op.SUBMIT, request))

    def status(self, *, message_id: str | None = None, client_ref: str | None = None) -> tuple[MessageStatus, ...]:
        return statuses_from_wire(self.call(Op.STATUS, MessageQuery(message_id, client_ref)))

    def cancel(self, *, message_id: str | None = None, client_ref: str | None = None) -> CancelResult:
        return cancel_result_from_wire(self.call(Op.CANCEL, MessageQuery(message_id, client_ref)))

    def lists(
        self, name: ListName | str, action: ListAction | str, numbers: Sequence[str] = (), *, after: str | None = None,
        limit: int | None = None,
    ) -> ListResult:
        """Add, remove or check `numbers` on the account's opt-out or blacklist, or read a page of it
        (action "page", from after `after`)."""
        request = ListRequest(ListName(name), ListAction(action), tuple(numbers), after, limit)
        return list_result_from_wire(self.call(Op.LISTS, request))

    def preview(self, text: str, message_class: MessageClass | str | None = None) -> PreviewResult:
        """With a class, as the account's submit of that class would send it (its opt-out wording too)."""
        cls = MessageClass(message_class) if message_class is not None else None
        return preview_result_from_wire(self.call(Op.PREVIEW, PreviewRequest(text, cls)))

    def ping(self) -> None:
        self.call(Op.PING)

    def admin(self, command: str, **args: Any) -> dict[str, Any]:
        """An operator's command on the admin socket (docs/admin.md); its answer's map."""
        return _admin_map(self.call(Op.ADMIN, AdminRequest(command, _args(args))))

    def account(self, command: str, **args: Any) -> dict[str, Any]:
        """The account's own batches, templates and balance (docs/protocol.md, `account`)."""
        return _admin_map(self.call(Op.ACCOUNT, AdminRequest(command, _args(args))))

    def admin_many(self, command: str, args: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """`admin` for each map of arguments, the requests in flight together."""
        return [_admin_map(r) for r in self.call_many(Op.ADMIN, [AdminRequest(command, _args(a)) for a in args])]

    def ack(self, seq: int) -> None:
        self.call(Op.ACK, Ack(seq))

    def subscribe(
        self, after: int | None = None, window: int = 1000, kinds: Sequence[EventKind | str] | None = None
    ) -> SubscribeResult:
        wanted = None if kinds is None else tuple(EventKind(k) for k in kinds)
        return subscribe_result_from_wire(self.call(Op.SUBSCRIBE, Subscribe(after, window, wanted)))

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Events after `subscribe`, as they come; stops when none arrives within `timeout` seconds."""
        while True:
            with self._lock:
                self._drain(None)
                if not self._events:
                    previous = self._sock.gettimeout()
                    self._sock.settimeout(timeout)
                    try:
                        self._fill()
                    except TimeoutError:
                        return
                    finally:
                        self._sock.settimeout(previous)
                    self._drain(None)
                event = self._events.popleft() if self._events else None
            if event is not None:
                yield event

    def call(self, op: Op, body: Body | None = None) -> object:
        with self._lock:
            if self._closed is not None:
                raise self._closed
            ident, data = self._session.request(op, body)
            try:
                self._sock.sendall(data)
            except OSError as err:
                raise self._shut(ConnectionLost(f"send failed: {err}")) from err
            while (reply := self._drain(ident)) is None:
                self._fill()
        if reply.error is not None:
            raise reply.error
        return reply.result

    def call_many(self, op: Op, bodies: Sequence[Body]) -> list[object]:
        """Several requests of one kind in flight at once on this connection (pipelined: the server works
        on the next while the store commits the one before); their results in order. The first error, once
        every answer came, is raised."""
        with self._lock:
            if self._closed is not None:
                raise self._closed
            idents = []
            data = []
            for body in bodies:
                ident, encoded = self._session.request(op, body)
                idents.append(ident)
                data.append(encoded)
            try:
                self._sock.sendall(b"".join(data))
            except OSError as err:
                raise self._shut(ConnectionLost(f"send failed: {err}")) from err
            replies: dict[int, Reply] = {}
            wanted = set(idents)
            while len(replies) < len(idents):
                while (message := self._session.next_message()) is not None:
                    if isinstance(message, Event):
                        self._events.append(message)
                    elif message.id in wanted:
                        replies[message.id] = message
                    elif message.fatal and message.error is not None:
                        raise self._shut(message.error)
                if len(replies) < len(idents):
                    self._fill()
        for ident in idents:
            if replies[ident].error is not None:
                raise replies[ident].error  # type: ignore[misc]
        return [replies[ident].result for ident in idents]

    def lists_many(self, name: ListName | str, action: ListAction | str, chunks: Sequence[Sequence[str]]) -> (
        list[ListResult]
    ):
        """`lists` for each chunk of numbers, the requests in flight together (an import's pace)."""
        requests = [ListRequest(ListName(name), ListAction(action), tuple(chunk)) for chunk in chunks]
        return [list_result_from_wire(result) for result in self.call_many(Op.LISTS, requests)]

    def _drain(self, ident: int | None) -> Reply | None:
        """Handle every whole frame received; return the reply to `ident` if it came."""
        while (message := self._session.next_message()) is not None:
            if isinstance(message, Event):
                self._events.append(message)
            elif message.id is not None and message.id == ident:
                if message.fatal and message.error is not None:
                    self._shut(message.error)
                return message
            elif message.fatal and message.error is not None:
                raise self._shut(message.error)
        return None

    def _fill(self) -> None:
        if self._closed is not None:
            raise self._closed
        data = self._sock.recv(_READ_BYTES)
        if not data:
            raise self._shut(ConnectionLost("server closed the connection"))
        self._session.receive_data(data)

    def _shut(self, error: UpstreamError) -> UpstreamError:
        if self._closed is None:
            self._closed = error
        return self._closed

    def close(self) -> None:
        self._shut(ConnectionLost("client closed"))
        self._sock.close()

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _args(args: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in args.items() if value is not None}


def _admin_map(result: object) -> dict[str, Any]:
    if not isinstance(result, dict):
        raise BadFrame("server sent an admin result that is not a map")
    return result
