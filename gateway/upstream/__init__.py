"""The upstream internal socket: how applications hand messages to the gateway and read events back.

Wire contract: docs/protocol.md. Pure parts (no trio): `frames` (length-prefixed msgpack codec),
`schema` (requests, validation, results), `session` (client side, sans-IO), `auth`, `errors`.
Shell: `server` (serve_unix / serve_tcp over an `UpstreamBackend`), `client` (trio), `blocking` (socket).

The shell's names are imported on first use (PEP 562), so importing a pure module of this package
(`gateway.upstream.frames`, or `schema` from the engine's pure plan) does not import trio or socket.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gateway.upstream.auth import Credentials
from gateway.upstream.backend import UpstreamBackend
from gateway.upstream.errors import (
    AuthFailed,
    BadFrame,
    ClientRefConflict,
    ConnectionLost,
    ErrorCode,
    FrameTooLarge,
    InternalError,
    InvalidNumber,
    InvalidRequest,
    NotAuthenticated,
    NotCancellable,
    NotFound,
    Overloaded,
    TextNotEncodable,
    TextTooLong,
    UnknownOp,
    UnsupportedVersion,
    UpstreamError,
    UpstreamStoreFull,
)
from gateway.upstream.schema import (
    PROTOCOL_VERSION,
    AdminRequest,
    AdminResult,
    CancelResult,
    EncodedEvent,
    Event,
    EventKind,
    ListAction,
    ListEntry,
    ListName,
    ListRequest,
    ListResult,
    MessageClass,
    MessageQuery,
    MessageStatus,
    PreviewRequest,
    PreviewResult,
    SubmitRequest,
    SubmitResult,
    SubmittedMessage,
)

if TYPE_CHECKING:
    from gateway.upstream.blocking import BlockingClient
    from gateway.upstream.client import Subscription, UpstreamClient, open_tcp_client, open_unix_client
    from gateway.upstream.server import ServerConfig, serve_tcp, serve_unix

_SHELL = {
    "BlockingClient": "blocking",
    "Subscription": "client",
    "UpstreamClient": "client",
    "open_tcp_client": "client",
    "open_unix_client": "client",
    "ServerConfig": "server",
    "serve_tcp": "server",
    "serve_unix": "server",
}

__all__ = [
    "PROTOCOL_VERSION",
    "AdminRequest",
    "AdminResult",
    "AuthFailed",
    "BadFrame",
    "BlockingClient",
    "CancelResult",
    "ClientRefConflict",
    "ConnectionLost",
    "Credentials",
    "EncodedEvent",
    "ErrorCode",
    "Event",
    "EventKind",
    "FrameTooLarge",
    "InternalError",
    "InvalidNumber",
    "InvalidRequest",
    "ListAction",
    "ListEntry",
    "ListName",
    "ListRequest",
    "ListResult",
    "MessageClass",
    "MessageQuery",
    "MessageStatus",
    "NotAuthenticated",
    "NotCancellable",
    "NotFound",
    "Overloaded",
    "PreviewRequest",
    "PreviewResult",
    "ServerConfig",
    "SubmitRequest",
    "SubmitResult",
    "SubmittedMessage",
    "Subscription",
    "TextNotEncodable",
    "TextTooLong",
    "UnknownOp",
    "UnsupportedVersion",
    "UpstreamBackend",
    "UpstreamClient",
    "UpstreamError",
    "UpstreamStoreFull",
    "open_tcp_client",
    "open_unix_client",
    "serve_tcp",
    "serve_unix",
]


def __getattr__(name: str) -> Any:
    module = _SHELL.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway.upstream' has no attribute {name!r}")
    return getattr(importlib.import_module(f"gateway.upstream.{module}"), name)
