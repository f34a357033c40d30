"""The upstream socket server (trio): one task per connection, frames in, backend calls, frames out.

Per connection (docs/protocol.md, "Flow control"):
- a reader task parses every read to its end (many frames per read); each frame takes one slot of
  `max_inflight` before it is handled, and its answer gives the slot back only once written, so a client
  that pipelines faster than the backend answers finds the server not reading: backpressure reaches the
  client's socket;
- hello, ping and malformed frames are answered by the reader; other operations run as their own task,
  so answers go out by id, in whatever order they finish;
- a fault boundary around each request: whatever its handling raises that has no error code (a bug) is
  answered `internal` and logged through one `FaultLog` (a traceback once per cause), and the connection
  keeps serving;
- one writer task drains a bounded channel and coalesces whatever is queued into one send;
- a subscription task pushes events, at most `window` unacknowledged.
"""

from __future__ import annotations

import math
import os
import socket
import stat
import struct
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import structlog
import trio

from gateway.config import limits  # stdlib and gateway.errors only: no engine, no app
from gateway.errors import forget_traceback
from gateway.upstream.auth import Credentials
from gateway.upstream.backend import AdminBackend, UpstreamBackend
from gateway.upstream.errors import (
    AuthFailed,
    BadFrame,
    InternalError,
    InvalidRequest,
    NotAuthenticated,
    ShuttingDown,
    UnknownOp,
    UnsupportedVersion,
    UpstreamError,
    upstream_error_for,
)
from gateway.upstream.faults import AuthLog, FaultLog
from gateway.upstream.frames import FrameDecoder, FrameFault, decode_request, encode_frame
from gateway.upstream.schema import (
    OPERATOR,
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    Ack,
    AdminRequest,
    EncodedEvent,
    Envelope,
    Event,
    EventKind,
    Hello,
    HelloResult,
    ListRequest,
    MessageQuery,
    Op,
    Ping,
    PreviewRequest,
    Result,
    SubmitRequest,
    Subscribe,
    SubscribeResult,
    error_frame,
    event_frame,
    parse_request,
    request_id,
    result_frame,
)

log = structlog.get_logger(__name__)

# Enough bytes per write that a burst of answers goes out in one send, not one syscall per frame.
_COALESCE_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """[server.upstream]: the limits of one application connection. Every bound is finite and above 0: a
    zero window or timeout would stall or cut off every client (docs/protocol.md, "Flow control")."""

    # The length prefix is a uint32 (docs/protocol.md); a GiB is already far beyond any request.
    max_frame_bytes: int = field(default=1 << 20, metadata=limits(1024, 1 << 30))
    max_inflight: int = field(default=256, metadata=limits(1, 65536))
    default_event_window: int = field(default=1000, metadata=limits(1, 1_000_000))
    max_event_window: int = field(default=10_000, metadata=limits(1, 1_000_000))
    event_batch: int = field(default=500, metadata=limits(1, 100_000))
    hello_timeout_seconds: float = field(default=10.0, metadata=limits(0.1, 3600.0))
    max_auth_failures: int = field(default=3, metadata=limits(1, 1000))
    close_timeout_seconds: float = field(default=5.0, metadata=limits(0.1, 3600.0))
    # A client that takes nothing from its socket this long while answers or events wait for it is cut off:
    # what it left unread (up to max_inflight answers) is freed, not held for ever.
    write_timeout_seconds: float = field(default=60.0, metadata=limits(0.1, 86400.0))
    read_size_bytes: int = field(default=64 * 1024, metadata=limits(512, 16 << 20))
    unix_mode: int = 0o600

    def mistakes(self) -> list[tuple[str, str]]:
        """What the values mean together, as (key, reason) (gateway.config reports each as a problem)."""
        found = []
        if self.default_event_window > self.max_event_window:
            found.append(("default_event_window", f"must be at most max_event_window ({self.max_event_window}), "
                          f"got {self.default_event_window}"))  # fmt: skip
        mode = _socket_mode_mistake(self.unix_mode)
        if mode:
            found.append(("unix_mode", mode))
        return found


_MODES = "0o600, or 0o660 for the gateway's group"


def _socket_mode_mistake(mode: int) -> str | None:
    """Why `mode` is wrong for the upstream socket file, or None. Connecting to a Unix socket takes write
    permission on it (unix(7)), so the mode decides who may reach the login: the gateway's user, and its group
    where 0o660 says so; read alone and execute mean nothing on a socket."""
    if not 0 <= mode <= 0o777:
        return f"{mode:#o} is not a permission mode (0o000-0o777; set-id and sticky bits mean nothing on a socket)"
    if mode & 0o002:
        return f"{mode:#o} lets every local user connect (write on a Unix socket is the right to connect): {_MODES}"
    if mode & 0o005:
        return f"{mode:#o} gives other users access they cannot use: {_MODES}"
    if mode & 0o110:
        return f"{mode:#o} has execute bits, which mean nothing on a socket: {_MODES}"
    if not mode & 0o200:
        return f"{mode:#o} leaves the gateway's own user unable to connect: 0o600 at least"
    return None


class Drain:
    """The graceful end of a server's connections, shared by its listeners: once `begin` is called, no new
    connection is accepted and each open one stops reading, finishes the requests it already read (a
    submit the store committed gets its answer), writes what it owes and closes; `wait` returns when the
    last one has."""

    def __init__(self) -> None:
        self.begun = trio.Event()
        self._live = 0
        self._idle = trio.Event()
        self._idle.set()

    def begin(self) -> None:
        self.begun.set()

    async def wait(self) -> None:
        await self._idle.wait()

    def enter(self) -> None:
        self._live += 1
        if self._idle.is_set():
            self._idle = trio.Event()

    def leave(self) -> None:
        self._live -= 1
        if self._live == 0:
            self._idle.set()


@dataclass(frozen=True, slots=True)
class _Out:
    data: bytes
    # True for the answer to a frame: writing it frees that frame's slot.
    frees_slot: bool


class _Connection:
    def __init__(
        self,
        stream: trio.abc.Stream,
        backend: UpstreamBackend,
        credentials: Credentials,
        config: ServerConfig,
        faults: FaultLog,
        auth_log: AuthLog | None = None,
        drain: Drain | None = None,
        admin: AdminBackend | None = None,
    ) -> None:
        self._stream = stream
        # Set on the admin socket: a hello names any account (or "*", the operator's own) without its
        # secret, and admin commands are served.
        self._admin = admin
        self._drain = drain
        self._drain_watch = trio.CancelScope()
        # When the write in progress began (None: none waits) and its size, for the stall watch.
        self._writing_since: float | None = None
        self._writing_bytes = 0
        self._faults = faults
        self._auth_log = auth_log or AuthLog()
        self._peer = _peer(stream)
        self._backend = backend
        self._credentials = credentials
        self._config = config
        self._decoder = FrameDecoder(config.max_frame_bytes)
        self._slots = trio.Semaphore(config.max_inflight)
        self._out_send, self._out_recv = trio.open_memory_channel[_Out](config.max_inflight + config.max_event_window)
        self._account: str | None = None
        self._auth_failures = 0
        # The request a fatal error answers, when there is one (the last failed hello).
        self._fatal_ident: int | None = None
        self._hello_scope = trio.CancelScope()
        # Cancelled, with `_fatal` set, when something other than the reader must end the connection.
        self._read_scope = trio.CancelScope()
        self._fatal: UpstreamError | None = None
        self._subscription: _Subscription | None = None

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._writer, nursery.cancel_scope)
            if self._drain is not None:
                nursery.start_soon(self._stop_reading_on, self._drain)
            async with trio.open_nursery() as work:
                fatal = await self._read_until_done(work)
                self._drain_watch.cancel()  # reading is over either way
                # Whatever ended the reading, the rest (in-flight answers, a last error frame) gets a bound.
                nursery.cancel_scope.deadline = trio.current_time() + self._config.close_timeout_seconds
                if fatal is not None:
                    work.cancel_scope.cancel()
                elif self._subscription is not None:
                    self._subscription.scope.cancel()
            if fatal is None and self._drain is not None and self._drain.begun.is_set():
                # The last word of a connection the shutdown ended: not a silent EOF.
                last = error_frame(None, self._shutting_down(), fatal=True)
                await self._out_send.send(_Out(encode_frame(last), False))
            if fatal is not None:
                if isinstance(fatal, AuthFailed):  # counted with the failed hellos, under the same bound
                    self._auth_log.failed(trio.current_time(), "upstream_connection_refused", code=str(fatal.code),
                                          reason=fatal.message, peer=self._peer)  # fmt: skip
                else:
                    log.info("upstream_connection_refused", code=str(fatal.code), reason=fatal.message, peer=self._peer)
                await self._out_send.send(_Out(encode_frame(error_frame(self._fatal_ident, fatal, fatal=True)), False))
            self._out_send.close()

    # --- reading ------------------------------------------------------------------------------------

    @staticmethod
    def _shutting_down() -> ShuttingDown:
        return ShuttingDown("the gateway is stopping; the requests it read were answered: connect again later")

    async def _stop_reading_on(self, drain: Drain) -> None:
        """The gateway is stopping: read no more requests; what was read is answered (run's close bound)."""
        with self._drain_watch:
            await drain.begun.wait()
            self._read_scope.cancel()

    async def _read_until_done(self, work: trio.Nursery) -> UpstreamError | None:
        """Read until the end of the stream (None) or an error that ends the connection (returned)."""
        self._hello_scope.deadline = trio.current_time() + self._config.hello_timeout_seconds
        with self._read_scope:
            with self._hello_scope:
                return await self._read_loop(work)
            return NotAuthenticated(f"no hello within {self._config.hello_timeout_seconds} s")
        return self._fatal

    async def _read_loop(self, work: trio.Nursery) -> UpstreamError | None:
        while True:
            try:
                data = await self._stream.receive_some(self._config.read_size_bytes)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
            if not data:
                if self._decoder.buffered_bytes:
                    # A half-closed client may still read: say why its last bytes were not a request.
                    await self._slots.acquire()
                    pending = self._decoder.buffered_bytes
                    await self.answer_error(None, BadFrame(f"the stream ended inside a frame ({pending} octets)"))
                return None
            self._decoder.receive_data(data)
            while (event := self._decoder.next_event()) is not None:
                await self._slots.acquire()
                if isinstance(event, FrameFault):
                    if event.fatal:
                        self._slots.release()
                        return event.error
                    await self.answer_error(None, event.error)
                    continue
                fatal = await self._on_frame(event.payload, work)
                if fatal is not None:
                    return fatal

    async def _on_frame(self, payload: bytes, work: trio.Nursery) -> UpstreamError | None:
        """Answer one frame (or start its task); the fault boundary of what the reader handles itself."""
        obj: object = None
        try:
            obj = decode_request(payload)
            return await self._dispatch(parse_request(obj, authenticated=self._account is not None), work)
        except UpstreamError as err:
            await self.answer_error(request_id(obj), err)
        except Exception as exc:  # a bug; trio.Cancelled is a BaseException and passes
            op = obj.get("op") if isinstance(obj, dict) else None
            await self.answer_error(request_id(obj), self.fault(exc, op=op if isinstance(op, str) else None))
        return None

    async def _dispatch(self, envelope: Envelope, work: trio.Nursery) -> UpstreamError | None:
        if envelope.op is Op.HELLO:
            return await self._on_hello(envelope)
        if envelope.op is Op.PING:
            await self.answer(envelope.id, Ping())
        elif envelope.op is Op.SUBSCRIBE:
            await self._on_subscribe(envelope, work)
        else:
            work.start_soon(self._handle, envelope)
        return None

    async def _on_hello(self, envelope: Envelope) -> UpstreamError | None:
        hello = envelope.body
        if not isinstance(hello, Hello):
            raise TypeError("hello body expected")
        if self._account is not None:
            await self.answer_error(envelope.id, InvalidRequest("already authenticated", field="op"))
        elif hello.version not in SUPPORTED_VERSIONS:
            supported = ", ".join(map(str, SUPPORTED_VERSIONS))
            message = f"version {hello.version} unsupported; supported: {supported}"
            await self.answer_error(envelope.id, UnsupportedVersion(message, field="version"))
        elif not self._admitted(hello):
            self._auth_failures += 1
            self._auth_log.failed(trio.current_time(), "upstream_auth_failed", account=hello.account[:64],
                                  peer=self._peer, failures=self._auth_failures)  # fmt: skip
            if self._auth_failures >= self._config.max_auth_failures:
                self._slots.release()
                self._fatal_ident = envelope.id
                return AuthFailed(f"{self._auth_failures} failed hellos; closing")
            await self.answer_error(envelope.id, AuthFailed("wrong account or secret"))
        else:
            self._account = hello.account
            self._hello_scope.deadline = math.inf
            structlog.contextvars.bind_contextvars(account=hello.account)
            log.info("upstream_authenticated")
            result = HelloResult(
                PROTOCOL_VERSION, hello.account, self._config.max_frame_bytes, self._config.max_inflight
            )
            await self.answer(envelope.id, result)
        return None

    def _admitted(self, hello: Hello) -> bool:
        if self._admin is not None:
            return hello.account == OPERATOR or self._credentials.knows(hello.account)
        return self._credentials.check(hello.account, hello.secret)

    # --- operations ---------------------------------------------------------------------------------

    async def _handle(self, envelope: Envelope) -> None:
        try:
            result = await self._call(envelope)
        except Exception as exc:  # every failure is answered by id; Cancelled is a BaseException
            error = upstream_error_for(exc) or self.fault(exc, op=str(envelope.op))  # a fault logs its traceback
            forget_traceback(exc)  # answered: its frames, which hold `error`, are not kept for the collector
            await self.answer_error(envelope.id, error)
            return
        await self.answer(envelope.id, result)

    async def _call(self, envelope: Envelope) -> Result:
        account, body, backend = self._account or "", envelope.body, self._backend
        if isinstance(body, AdminRequest) and envelope.op is Op.ADMIN:
            if self._admin is None:
                raise UnknownOp("admin commands are served on the admin socket only", field="op")
            return await self._admin.admin(None if account == OPERATOR else account, body)
        if self._admin is not None and account == OPERATOR:
            raise InvalidRequest(f"{envelope.op} acts for an account: name one in the hello", field="op")
        if not self.still_known(account):  # a reload removed the account: its connections end too
            raise AuthFailed(f"account {account!r} was removed")
        if isinstance(body, SubmitRequest):
            return await backend.submit(account, body)
        if isinstance(body, MessageQuery) and envelope.op is Op.STATUS:
            return tuple(await backend.status(account, body))
        if isinstance(body, MessageQuery):
            return await backend.cancel(account, body)
        if isinstance(body, PreviewRequest):
            return await backend.preview(account, body)
        if isinstance(body, ListRequest):
            return await backend.lists(account, body)
        if isinstance(body, AdminRequest):  # Op.ACCOUNT: its batches, templates, balance
            return await backend.account(account, body)
        if isinstance(body, Ack):
            return await self._ack(account, body)
        raise TypeError(f"no handler for {envelope.op}")

    async def _ack(self, account: str, ack: Ack) -> Ack:
        subscription = self._subscription
        if subscription is not None and ack.seq > subscription.cursor:
            raise InvalidRequest(f"seq {ack.seq} is past the last event sent", field="seq")
        await self._backend.ack_events(account, ack.seq)
        if subscription is not None:
            subscription.acked(ack.seq)
        return ack

    async def _on_subscribe(self, envelope: Envelope, work: trio.Nursery) -> None:
        request = envelope.body
        if not isinstance(request, Subscribe):
            raise TypeError("subscribe body expected")
        if self._subscription is not None:
            await self.answer_error(envelope.id, InvalidRequest("already subscribed", field="op"))
            return
        if self._admin is not None and self._account == OPERATOR:
            error = InvalidRequest("events are an account's: name one in the hello", field="op")
            await self.answer_error(envelope.id, error)
            return
        window = min(request.window or self._config.default_event_window, self._config.max_event_window)
        kinds = None if request.kinds is None else frozenset(request.kinds)
        self._subscription = _Subscription(self, window, kinds)
        work.start_soon(self._subscription.run, envelope.id, request.after)

    def still_known(self, account: str) -> bool:
        """False, and the connection ending, once a reload removed the account (the admin socket's
        operator connections are never revoked)."""
        if account == OPERATOR and self._admin is not None:
            return True
        if self._credentials.knows(account):
            return True
        self._revoke(account)
        return False

    def _revoke(self, account: str) -> None:
        """End this connection of an account the config no longer has (after this request's answer)."""
        if self._fatal is None:
            log.warning("upstream_account_revoked", account=account, peer=self._peer)
            self._fatal = AuthFailed(f"account {account!r} was removed; closing")
            self._read_scope.cancel()

    def fault(self, exc: Exception, **context: object) -> InternalError:
        """A bug met while serving a request: logged within the bound, answered as `internal` (the details
        stay in the log)."""
        self._faults.report(exc, trio.current_time(), **context)
        op = context.get("op")
        return InternalError(f"internal error in {op}" if op else "internal error")

    def subscription_failed(self, exc: Exception) -> None:
        """The event stream cannot go on (a bug, a record it cannot read): end the connection with a fatal
        `internal`, so the client knows and subscribes again from its cursor (at least once)."""
        self._subscription = None
        self._fatal = self.fault(exc, op="subscribe")
        self._read_scope.cancel()

    # --- writing ------------------------------------------------------------------------------------

    async def answer(self, ident: int, result: Result) -> None:
        try:
            data = encode_frame(result_frame(ident, result))
        except (TypeError, ValueError, OverflowError) as exc:
            data = encode_frame(error_frame(ident, self.fault(exc, op="encode result")))
        if len(data) - 4 > self._config.max_frame_bytes:
            data = encode_frame(error_frame(ident, InternalError("result is over the maximum frame size")))
        await self._out_send.send(_Out(data, True))

    async def answer_error(self, ident: int | None, error: UpstreamError) -> None:
        await self._out_send.send(_Out(encode_frame(error_frame(ident, error)), True))

    async def push_events(self, events: Sequence[Event | EncodedEvent]) -> None:
        data = b"".join([e.frame if isinstance(e, EncodedEvent) else encode_frame(event_frame(e)) for e in events])
        await self._out_send.send(_Out(data, False))

    async def _writer(self, connection_scope: trio.CancelScope) -> None:
        async with trio.open_nursery() as watching:
            watching.start_soon(self._stall_watch, connection_scope)
            try:
                await self._write_all(connection_scope)
            finally:
                watching.cancel_scope.cancel()

    async def _stall_watch(self, connection_scope: trio.CancelScope) -> None:
        """Cut off a client that has taken nothing from its socket for write_timeout_seconds while a write
        waits for it. One sleeping task per connection, not a deadline per write (the writer's hot path)."""
        timeout = self._config.write_timeout_seconds
        while True:
            await trio.sleep(timeout / 4)
            since = self._writing_since
            if since is not None and trio.current_time() - since >= timeout:
                log.warning("upstream_connection_stalled", account=self._account, seconds=timeout,
                            unread_bytes=self._writing_bytes)  # fmt: skip
                connection_scope.cancel()
                return

    async def _write_all(self, connection_scope: trio.CancelScope) -> None:
        try:
            async with self._out_recv:
                async for first in self._out_recv:
                    batch = [first]
                    size = len(first.data)
                    while size < _COALESCE_BYTES:
                        try:
                            item = self._out_recv.receive_nowait()
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                        batch.append(item)
                        size += len(item.data)
                    self._writing_since, self._writing_bytes = trio.current_time(), size
                    await self._stream.send_all(b"".join(item.data for item in batch))
                    self._writing_since = None
                    for item in batch:
                        if item.frees_slot:
                            self._slots.release()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # The client is gone: nothing more can be answered, so the whole connection ends.
            connection_scope.cancel()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await self._stream.aclose()

    def unsubscribe(self) -> None:
        self._subscription = None

    @property
    def account(self) -> str:
        return self._account or ""

    @property
    def backend(self) -> UpstreamBackend:
        return self._backend

    @property
    def event_batch(self) -> int:
        return self._config.event_batch


class _Subscription:
    """Pushes the account's events after a cursor, never more than `window` unacknowledged."""

    def __init__(self, connection: _Connection, window: int, kinds: frozenset[EventKind] | None = None) -> None:
        self._connection = connection
        self._kinds = kinds
        self._window = trio.Semaphore(window)
        self._window_size = window
        self._unacked: deque[int] = deque()
        self.cursor = 0
        self.scope = trio.CancelScope()

    async def run(self, ident: int, after: int | None) -> None:
        conn, account = self._connection, self._connection.account
        with self.scope:
            try:
                if after is not None and after > (newest := await conn.backend.last_event_seq()):
                    # As for ack: a start past the log would hide every event logged up to it.
                    raise InvalidRequest(f"after {after} is past the last event ({newest})", field="after")
                self.cursor = after if after is not None else await conn.backend.event_cursor(account)
            except Exception as exc:
                # Not subscribed after all: the client may try again on this connection.
                conn.unsubscribe()
                await conn.answer_error(ident, upstream_error_for(exc) or conn.fault(exc, op="subscribe"))
                return
            # The answer goes before the first event: both pass through the same FIFO channel.
            await conn.answer(ident, SubscribeResult(self.cursor, self._window_size))
            try:
                await self._push_forever(account)
            except Exception as exc:
                conn.subscription_failed(exc)

    async def _push_forever(self, account: str) -> None:
        backend = self._connection.backend
        while True:
            batch = self._connection.event_batch
            events: Sequence[Event | EncodedEvent] = await backend.read_events(account, self.cursor, batch, self._kinds)
            if not self._connection.still_known(account):  # a reload removed the account
                return
            if not events:
                await backend.wait_events(account, self.cursor, self._kinds)
                continue
            i = 0
            while i < len(events):
                # As many events as the window has room for go out as one write: one frame per event, but
                # not one wake-up and one syscall per event.
                await self._window.acquire()
                chunk = [events[i]]
                i += 1
                while i < len(events):
                    try:
                        self._window.acquire_nowait()
                    except trio.WouldBlock:
                        break
                    chunk.append(events[i])
                    i += 1
                self._unacked.extend(e.seq for e in chunk)
                self.cursor = chunk[-1].seq
                await self._connection.push_events(chunk)

    def acked(self, seq: int) -> None:
        while self._unacked and self._unacked[0] <= seq:
            self._unacked.popleft()
            self._window.release()


async def _serve_connection(
    stream: trio.abc.Stream, backend: UpstreamBackend, credentials: Credentials, config: ServerConfig,
    faults: FaultLog,
    auth_log: AuthLog | None = None,
    drain: Drain | None = None,
    admin: AdminBackend | None = None,
) -> None:  # fmt: skip
    structlog.contextvars.clear_contextvars()
    if drain is not None:
        drain.enter()
    try:
        await _Connection(stream, backend, credentials, config, faults, auth_log, drain, admin).run()
    except Exception:
        # One connection's failure must not end the listener and with it every other connection.
        log.exception("upstream_connection_failed")
    finally:
        if drain is not None:
            drain.leave()


async def serve_tcp(
    backend: UpstreamBackend,
    credentials: Credentials,
    config: ServerConfig = ServerConfig(),
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    drain: Drain | None = None,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve on TCP; `await nursery.start(serve_tcp, ...)` returns the bound (host, port)."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    sockname: Any = listeners[0].socket.getsockname()
    log.info("upstream_listening", transport="tcp", host=sockname[0], port=sockname[1])
    address = (sockname[0], sockname[1])
    await _serve_listeners(listeners, backend, credentials, config, task_status, address, drain)


async def serve_unix(
    path: str | os.PathLike[str],
    backend: UpstreamBackend,
    credentials: Credentials,
    config: ServerConfig = ServerConfig(),
    *,
    drain: Drain | None = None,
    admin: AdminBackend | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve on a Unix socket created with `config.unix_mode` (0600: only the gateway's user may connect).

    A stale socket file from a previous run is replaced; any other kind of file at `path` is an error.
    With `admin`, this is the admin socket (docs/admin.md): its file mode is the credential, so a hello
    names an account without its secret (or "*" for the operator), and admin commands are served.
    """
    path = os.fspath(path)
    _remove_stale_socket(path)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    # The umask makes the file private from the first instant; chmod alone would leave a window. (umask is
    # process-wide; the gateway binds its sockets at start-up, before it starts any thread.)
    old_umask = os.umask(0o777 & ~config.unix_mode)
    try:
        await sock.bind(path)
    finally:
        os.umask(old_umask)
    os.chmod(path, config.unix_mode)
    created = os.lstat(path)
    sock.listen(128)
    log.info("admin_listening" if admin is not None else "upstream_listening", transport="unix", path=path)
    try:
        await _serve_listeners(
            [trio.SocketListener(sock)], backend, credentials, config, task_status, path, drain, admin
        )
    finally:
        _remove_own_socket(path, created)


def _remove_own_socket(path: str, created: os.stat_result) -> None:
    """Unlink the socket file this server created, and nothing else: another process may have replaced it
    (a newer gateway on the same path must keep its socket when this one exits)."""
    try:
        now = os.lstat(path)
    except FileNotFoundError:
        return
    if (now.st_dev, now.st_ino) == (created.st_dev, created.st_ino):
        os.unlink(path)


def _peer(stream: trio.abc.Stream) -> str:
    """Who is on the other end, for the log: host:port over TCP, the process's pid and uid over the Unix
    socket (SO_PEERCRED), "" when the stream cannot say."""
    sock = getattr(stream, "socket", None)
    try:
        if sock is None:
            return ""
        if sock.family == socket.AF_UNIX:
            pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            return f"pid {pid} uid {uid}"
        host, port = sock.getpeername()[:2]
        return f"{host}:{port}"
    except (OSError, AttributeError, struct.error):
        return ""


def _remove_stale_socket(path: str) -> None:
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise FileExistsError(f"{path} exists and is not a socket")
        os.unlink(path)
        # A gateway removes its socket when it stops cleanly: one left behind means the last one did not.
        log.warning("previous_stop_unclean", path=path,
                    note="a socket file was left: the last gateway here was killed or crashed")  # fmt: skip


async def _serve_listeners(
    listeners: Sequence[trio.abc.Listener[Any]],
    backend: UpstreamBackend,
    credentials: Credentials,
    config: ServerConfig,
    task_status: trio.TaskStatus[Any],
    address: object,
    drain: Drain | None = None,
    admin: AdminBackend | None = None,
) -> None:
    # One per server: a bug any connection hits is logged with its traceback once, not once per connection.
    faults = FaultLog()
    auth_log = AuthLog()

    async def handler(stream: trio.abc.Stream) -> None:
        await _serve_connection(stream, backend, credentials, config, faults, auth_log, drain, admin)

    async with trio.open_nursery() as connections:
        # Accepting runs in a nursery of its own, apart from the connections: a drain stops it and lets
        # them finish.
        async with trio.open_nursery() as accepting:
            if drain is not None:
                accepting.start_soon(_stop_accepting_on, drain, accepting.cancel_scope)
            await accepting.start(partial(trio.serve_listeners, handler, list(listeners), handler_nursery=connections))
            task_status.started(address)
        for listener in listeners:  # drained: a new client is refused at once, not left in the backlog
            await listener.aclose()
        await trio.sleep_forever()  # the connections end by themselves, or with the caller's cancel


async def _stop_accepting_on(drain: Drain, accepting: trio.CancelScope) -> None:
    await drain.begun.wait()
    accepting.cancel()
