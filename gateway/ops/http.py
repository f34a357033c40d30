"""The operator's HTTP endpoints: GET /metrics (Prometheus), /live and /ready, on 127.0.0.1 by default.

    await nursery.start(serve_ops, engine, pools, "127.0.0.1", 9464)   # -> (host, port) bound

One request per connection, answered and closed (`Connection: close`): a scraper or a health probe asks once
every few seconds, so keep-alive would buy nothing and cost a state machine. The request is read by a small
pure `RequestReader` (bytes in, a `Request` out, or `BadRequest` with the status to answer), which bounds the
head's size; the trio shell bounds the time to read it and to write the answer, and the number of connections
served at once. Each connection is a fault boundary: a malformed request is answered 400, a bug is logged,
and neither ends the gateway. Not prometheus_client's `start_http_server`: it starts threads, and the
collector reads the engine's state, which only the event loop may touch.

HTTP/1.0 and 1.1 (RFC 9112) GET and HEAD only (RFC 9110 9.1: every general-purpose server supports both);
other methods get 405, other paths 404.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import structlog
import trio
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from gateway.ops.health import Readiness
from gateway.ops.metrics import GatewayCollector, registry

if TYPE_CHECKING:
    from gateway.carriers.pool import CarrierPool
    from gateway.engine.core import Engine

log = structlog.get_logger(__name__)

MAX_HEAD_BYTES = 8192  # request line and headers; a scraper sends a few hundred
READ_TIMEOUT_SECONDS = 5.0  # to receive the whole head
WRITE_TIMEOUT_SECONDS = 10.0  # to send the answer
# Served at once; a new connection past it closes the oldest one (a probe always gets through: a few idle
# sockets held open must not keep /live and /ready unanswered until their read timeout).
MAX_CONNECTIONS = 32

_PHRASES = {
    200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}  # fmt: skip
# RFC 9110 5.6.2: a token (method, header name).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VERSION = re.compile(r"HTTP/(\d)\.(\d)")
_TEXT = "text/plain; charset=utf-8"


# --- the pure part: bytes in, a request out; a response out as bytes -----------------------------------


class BadRequest(Exception):
    """A request this server cannot answer as asked: `status` says how it is answered instead."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str  # without its query string
    headers: Mapping[str, str]  # names in lower case; a repeated field's values joined with ", "


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = _TEXT
    headers: tuple[tuple[str, str], ...] = field(default=())

    def encode(self, *, head_only: bool = False) -> bytes:
        lines = [
            f"HTTP/1.1 {self.status} {_PHRASES.get(self.status, '')}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Cache-Control: no-store",
            "Connection: close",
            *(f"{name}: {value}" for name, value in self.headers),
        ]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if head_only else head + self.body


def text(status: int, body: str, **kwargs: tuple[tuple[str, str], ...]) -> Response:
    return Response(status, body.encode(), _TEXT, **kwargs)


class RequestReader:
    """`receive_data(chunk)` until it returns the request (its head: a GET has no body, and the connection
    closes after the answer, so a body sent anyway is never read). Raises BadRequest."""

    def __init__(self, limit: int = MAX_HEAD_BYTES) -> None:
        self._buffer = bytearray()
        self._limit = limit

    def receive_data(self, data: bytes) -> Request | None:
        if not data:
            raise BadRequest(400, "the connection ended inside the request")
        start = max(0, len(self._buffer) - 3)  # the blank line may straddle two chunks
        self._buffer += data
        # RFC 9112 2.2: a recipient may take a bare LF as a line end.
        end = self._buffer.find(b"\n\r\n", start)
        bare = self._buffer.find(b"\n\n", start)
        if end < 0 or 0 <= bare < end:
            end = bare
        if end < 0:
            if len(self._buffer) > self._limit:
                raise BadRequest(431, f"request head over {self._limit} bytes")
            return None
        if end > self._limit:
            raise BadRequest(431, f"request head over {self._limit} bytes")
        return parse_head(bytes(self._buffer[:end]))


def parse_head(head: bytes) -> Request:
    """The request line and header fields (RFC 9112 3, 5) of a head without its blank line."""
    lines = [line.rstrip("\r") for line in head.decode("latin-1").split("\n")]
    parts = lines[0].split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]):
        raise BadRequest(400, "malformed request line")
    method, target, version = parts
    found = _VERSION.fullmatch(version)
    if found is None:
        raise BadRequest(400, "malformed HTTP version")
    if found[1] != "1":
        raise BadRequest(505, f"{version} is not served here")
    if not target.startswith("/"):  # origin-form only (RFC 9112 3.2.1): nobody proxies through this server
        raise BadRequest(400, "the target must be a path")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name):  # RFC 9112 5.1: no space before the colon
            raise BadRequest(400, "malformed header field")
        key = name.lower()
        value = value.strip(" \t")
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    if found[2] != "0" and "host" not in headers:  # RFC 9112 3.2: an HTTP/1.1 request names its host
        raise BadRequest(400, "HTTP/1.1 request without Host")
    return Request(method, target.partition("?")[0], headers)


class OpsEndpoints:
    """GET /metrics, /live and /ready: a request in, a response out."""

    def __init__(self, metrics: CollectorRegistry, readiness: Callable[[], Readiness]) -> None:
        self._registry = metrics
        self._readiness = readiness

    def __call__(self, request: Request) -> Response:
        path = request.path
        if path not in ("/metrics", "/live", "/ready"):
            return text(404, f"no {path} here: /metrics, /live, /ready\n")
        if request.method not in ("GET", "HEAD"):
            return text(405, f"{request.method} is not allowed: GET or HEAD\n", headers=(("Allow", "GET, HEAD"),))
        if path == "/live":
            return text(200, "live\n")
        if path == "/ready":
            ready = self._readiness()
            return text(200 if ready.ready else 503, ready.describe())
        # The OpenMetrics format when the scraper asks for it in Accept, else the text format 0.0.4.
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(200, encode(self._registry), content_type)


# --- the trio shell ---------------------------------------------------------------------------------


Handler = Callable[[Request], Response]


async def serve_ops(
    engine: Engine,
    pools: Mapping[str, CarrierPool],
    host: str,
    port: int,
    *,
    stopping: Callable[[], bool] = lambda: False,
    smpp: Callable[[], Any] | None = None,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve this gateway's /metrics, /live and /ready until cancelled; `task_status` gets (host, port)."""
    collector = GatewayCollector(engine, pools, stopping=stopping, smpp=smpp)
    await serve_http(OpsEndpoints(registry(collector), collector.readiness), host, port, task_status=task_status)


async def serve_http(
    handler: Handler, host: str, port: int, *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:  # fmt: skip
    """Listen on host:port (0: any free port) and answer each connection's one request with `handler`."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()
    live: dict[int, trio.CancelScope] = {}  # the connections being served, oldest first
    log.info("ops_http_listening", host=bound[0], port=bound[1], paths=["/metrics", "/live", "/ready"])
    task_status.started((bound[0], bound[1]))
    await trio.serve_listeners(partial(_connection, handler, live), listeners)


async def _connection(handler: Handler, live: dict[int, trio.CancelScope], stream: trio.SocketStream) -> None:
    if len(live) >= MAX_CONNECTIONS:  # too many at once: the oldest is closed to make room
        live.pop(next(iter(live))).cancel()
    key = id(stream)
    try:
        with trio.CancelScope() as scope:
            live[key] = scope
            answer = await _answer(handler, stream)
            with trio.move_on_after(WRITE_TIMEOUT_SECONDS):
                await stream.send_all(answer)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the client left: nothing to answer
    except Exception as err:  # the fault boundary of one request: a bug here never ends the gateway
        log.error("ops_http_request_failed", error=f"{type(err).__name__}: {err}", exc_info=err)
    finally:
        live.pop(key, None)
        await trio.aclose_forcefully(stream)


async def _answer(handler: Handler, stream: trio.SocketStream) -> bytes:
    reader = RequestReader()
    request = None
    try:
        with trio.move_on_after(READ_TIMEOUT_SECONDS):
            while request is None:
                request = reader.receive_data(await stream.receive_some(4096))
        if request is None:
            return text(408, "the request took too long\n").encode()
    except BadRequest as err:
        return text(err.status, f"{err.reason}\n").encode()
    try:
        response = handler(request)
    except Exception as err:  # a bug in an endpoint (a part's statistics()): this request fails, not the server
        log.error("ops_http_endpoint_failed", path=request.path, error=f"{type(err).__name__}: {err}", exc_info=err)
        response = text(500, "internal error (logged)\n")
    return response.encode(head_only=request.method == "HEAD")
