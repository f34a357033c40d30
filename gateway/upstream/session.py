"""Sans-IO client side of the upstream protocol, shared by the trio and the blocking client.

`request(op, body)` numbers a request and returns its frame bytes; `receive_data` + `next_message` turn
the server's bytes into `Reply` (by id) and `Event` values. Sockets and waiting belong to the clients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.fastinit import fast_init
from gateway.upstream.errors import BadFrame, FrameTooLarge, UpstreamError, error_from_wire
from gateway.upstream.frames import (
    DEFAULT_MAX_FRAME_BYTES,
    PREFIX_SIZE,
    FrameDecoder,
    FrameFault,
    decode_payload,
    encode_frame,
)
from gateway.upstream.schema import MAX_ID, Body, Event, Op, event_from_wire, request_body


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to request `id` (None for an error about a frame the server could not attribute)."""

    id: int | None
    result: object = None
    error: UpstreamError | None = None
    # The server closes the connection after a fatal error frame.
    fatal: bool = False


fast_init(Reply)

ServerMessage = Reply | Event


class ClientSession:
    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        # Server frames are bounded by the same maximum; a client accepts up to 4x to ride out a mismatch.
        self._decoder = FrameDecoder(max_frame_bytes * 4)
        self._next_id = 1
        # Set from the hello result. A request over the server's maximum is refused here: the server would
        # skip it and answer frame_too_large without an id, and the caller would wait for ever.
        self.max_request_bytes = max_frame_bytes

    def request(self, op: Op, body: Body | None = None) -> tuple[int, bytes]:
        ident = self._next_id
        self._next_id = 1 if ident >= MAX_ID else ident + 1
        frame: dict[str, Any] = request_body(body) if body is not None else {}
        frame["op"] = str(op)
        frame["id"] = ident
        data = encode_frame(frame)
        if len(data) - PREFIX_SIZE > self.max_request_bytes:
            raise FrameTooLarge(f"request of {len(data) - PREFIX_SIZE} bytes is over {self.max_request_bytes}")
        return ident, data

    def receive_data(self, data: bytes | bytearray) -> None:
        self._decoder.receive_data(data)

    def next_message(self) -> ServerMessage | None:
        """The next reply or event, or None when more bytes are needed. Raises BadFrame if unreadable."""
        event = self._decoder.next_event()
        if event is None:
            return None
        if isinstance(event, FrameFault):
            raise BadFrame(f"server sent an unreadable frame: {event.error.message}")
        frame = decode_payload(event.payload)
        if not isinstance(frame, dict):
            raise BadFrame("server frame is not a map")
        return _message(frame)


def _message(frame: dict[str, Any]) -> ServerMessage:
    kind = frame.get("type")
    ident = frame.get("id")
    if ident is not None and not isinstance(ident, int):
        raise BadFrame("server frame has a bad id")
    if kind == "event":  # the most frequent, by far, on a subscribed connection
        return event_from_wire(frame)
    if kind == "result":
        return Reply(ident, result=frame.get("result"))
    if kind == "error":
        error = error_from_wire(str(frame.get("code", "internal")), str(frame.get("message", "")), _opt_field(frame))
        return Reply(ident, error=error, fatal=bool(frame.get("fatal", False)))
    raise BadFrame(f"server frame of unknown type {kind!r}")


def _opt_field(frame: dict[str, Any]) -> str | None:
    field = frame.get("field")
    return field if isinstance(field, str) else None
