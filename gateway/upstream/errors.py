"""Errors of the upstream socket, each carrying its stable wire code (docs/protocol.md, "Error codes").

The server turns any `UpstreamError` a backend raises into an error frame with `err.code`, `str(err)` and
`err.field`; the clients turn an error frame back into the same class, so a caller catches
`InvalidNumber` on both sides of the socket. Errors of the other cores (store full, text not encodable,
too many parts) are mapped by `upstream_error_for()`, so the engine may let them propagate unchanged.
"""

from __future__ import annotations

from enum import StrEnum

from gateway.errors import ClientRefReused, GatewayError
from gateway.smpp.errors import MessageTooLong, NotEncodable, StoreFull


class ErrorCode(StrEnum):
    """The stable error codes of protocol version 1. Never renamed; new ones only added."""

    BAD_FRAME = "bad_frame"
    FRAME_TOO_LARGE = "frame_too_large"
    UNSUPPORTED_VERSION = "unsupported_version"
    AUTH_FAILED = "auth_failed"
    NOT_AUTHENTICATED = "not_authenticated"
    UNKNOWN_OP = "unknown_op"
    INVALID_REQUEST = "invalid_request"
    INVALID_NUMBER = "invalid_number"
    NOT_ENCODABLE = "not_encodable"
    TOO_LONG = "too_long"
    NOT_FOUND = "not_found"
    NOT_CANCELLABLE = "not_cancellable"
    STORE_FULL = "store_full"
    OVERLOADED = "overloaded"
    INTERNAL = "internal"
    CLIENT_REF_CONFLICT = "client_ref_conflict"
    SHUTTING_DOWN = "shutting_down"


class UpstreamError(GatewayError):
    """An error with an upstream wire code. `field` names the request key at fault, when there is one.

    `code` is a plain str on instances so that a client can carry a code a newer server invented.
    """

    code: str = ErrorCode.INTERNAL

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code


class BadFrame(UpstreamError):
    """The frame is not one msgpack map (or is empty)."""

    code = ErrorCode.BAD_FRAME


class FrameTooLarge(UpstreamError):
    """The length prefix is over the maximum frame size."""

    code = ErrorCode.FRAME_TOO_LARGE


class UnsupportedVersion(UpstreamError):
    code = ErrorCode.UNSUPPORTED_VERSION


class AuthFailed(UpstreamError):
    code = ErrorCode.AUTH_FAILED


class NotAuthenticated(UpstreamError):
    code = ErrorCode.NOT_AUTHENTICATED


class UnknownOp(UpstreamError):
    code = ErrorCode.UNKNOWN_OP


class InvalidRequest(UpstreamError):
    code = ErrorCode.INVALID_REQUEST


class InvalidNumber(InvalidRequest):
    code = ErrorCode.INVALID_NUMBER


class TextNotEncodable(UpstreamError):
    code = ErrorCode.NOT_ENCODABLE


class TextTooLong(UpstreamError):
    code = ErrorCode.TOO_LONG


class NotFound(UpstreamError):
    code = ErrorCode.NOT_FOUND


class NotCancellable(UpstreamError):
    code = ErrorCode.NOT_CANCELLABLE


class UpstreamStoreFull(UpstreamError):
    code = ErrorCode.STORE_FULL


class Overloaded(UpstreamError):
    code = ErrorCode.OVERLOADED


class InternalError(UpstreamError):
    code = ErrorCode.INTERNAL


class ClientRefConflict(UpstreamError):
    """A submit reused a client_ref of the account for a different request (other recipients, sender or
    text): answering with the first submit's message ids would name another number's message."""

    code = ErrorCode.CLIENT_REF_CONFLICT


class ShuttingDown(UpstreamError):
    """The gateway is stopping: the requests it had read were answered; connect again once it is back."""

    code = ErrorCode.SHUTTING_DOWN


class ConnectionLost(UpstreamError):
    """Client side only: the connection closed before the answer came, without a fatal error frame."""

    code = "connection_lost"


_BY_CODE: dict[str, type[UpstreamError]] = {
    cls.code: cls
    for cls in (
        BadFrame,
        FrameTooLarge,
        UnsupportedVersion,
        AuthFailed,
        NotAuthenticated,
        UnknownOp,
        InvalidRequest,
        InvalidNumber,
        TextNotEncodable,
        TextTooLong,
        NotFound,
        NotCancellable,
        UpstreamStoreFull,
        Overloaded,
        InternalError,
        ClientRefConflict,
        ShuttingDown,
    )
}


def error_from_wire(code: str, message: str, field: str | None = None) -> UpstreamError:
    """The exception a client raises for an error frame; an unknown code keeps its text."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return UpstreamError(message, field=field, code=code)
    return cls(message, field=field)


def upstream_error_for(exc: Exception) -> UpstreamError | None:
    """Map an error of another core to its upstream code, or None when it has no stable mapping."""
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, StoreFull):
        return UpstreamStoreFull(str(exc) or "store full")
    if isinstance(exc, NotEncodable):
        return TextNotEncodable(str(exc), field="text")
    if isinstance(exc, MessageTooLong):
        return TextTooLong(str(exc), field="text")
    if isinstance(exc, ClientRefReused):
        return ClientRefConflict(str(exc) or "client_ref was used for another request", field="client_ref")
    return None
