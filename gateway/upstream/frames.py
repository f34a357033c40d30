"""Sans-IO frame codec of the upstream socket (docs/protocol.md, "Framing").

A frame is a 4-byte big-endian unsigned length N followed by N bytes of one msgpack object. The decoder
takes bytes as they arrive in any chunking (`receive_data`) and hands out whole frames (`next_event`), so
the shell parses every read to its end. No socket, no clock, no event loop here.

Length faults are events, not exceptions, because the right answer differs:
- N == 0 or N > max_frame_bytes but <= skip_limit_bytes: the frame boundary is known, so the decoder
  reports the fault and skips the payload without buffering it; the stream stays in step.
- N > skip_limit_bytes: almost certainly not a length at all (text typed at the port, a lost byte), so
  the stream cannot be resynchronised; the decoder reports a fatal fault and ignores everything after.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import msgpack

from gateway.fastinit import fast_init
from gateway.upstream.errors import BadFrame, FrameTooLarge, UpstreamError

PREFIX = struct.Struct(">I")
PREFIX_SIZE = PREFIX.size
DEFAULT_MAX_FRAME_BYTES = 1 << 20
# A declared length above this many times the maximum is taken as garbage, not as a big frame.
SKIP_LIMIT_FACTOR = 16


@dataclass(frozen=True, slots=True)
class RawFrame:
    """One whole frame's payload, not yet unpacked."""

    payload: bytes


fast_init(RawFrame)  # one per frame, on both sides


@dataclass(frozen=True, slots=True)
class FrameFault:
    """A length prefix that cannot be a valid frame; `fatal` when the stream is lost."""

    error: UpstreamError
    fatal: bool


FrameEvent = RawFrame | FrameFault


class FrameDecoder:
    """Bytes in, `RawFrame` / `FrameFault` out."""

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, skip_limit_bytes: int | None = None):
        self.max_frame_bytes = max_frame_bytes
        self.skip_limit_bytes = (
            skip_limit_bytes if skip_limit_bytes is not None else max_frame_bytes * SKIP_LIMIT_FACTOR
        )
        self._buffer = bytearray()
        self._pos = 0
        self._skip = 0
        self.dead = False

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer) - self._pos

    def receive_data(self, data: bytes | bytearray) -> None:
        if self.dead:
            return
        if self._skip:
            # Skipped payload is dropped as it arrives: an oversize frame never occupies memory.
            dropped = min(self._skip, len(data))
            self._skip -= dropped
            data = data[dropped:]
        self._buffer += data

    def next_event(self) -> FrameEvent | None:
        """The next frame or fault, or None when more bytes are needed."""
        if self.dead or self._skip:
            return None
        available = len(self._buffer) - self._pos
        if available < PREFIX_SIZE:
            self._compact()
            return None
        (length,) = PREFIX.unpack_from(self._buffer, self._pos)
        if length == 0 or length > self.max_frame_bytes:
            return self._fault(length)
        if available - PREFIX_SIZE < length:
            self._compact()
            return None
        start = self._pos + PREFIX_SIZE
        self._pos = start + length
        return RawFrame(bytes(self._buffer[start : self._pos]))

    def _fault(self, length: int) -> FrameFault:
        if length > self.skip_limit_bytes:
            self.dead = True
            self._buffer.clear()
            self._pos = 0
            return FrameFault(
                FrameTooLarge(f"declared length {length} is over {self.max_frame_bytes}; stream lost"),
                fatal=True,
            )
        self._pos += PREFIX_SIZE
        in_buffer = min(length, len(self._buffer) - self._pos)
        self._pos += in_buffer
        self._skip = length - in_buffer
        self._compact()
        if length == 0:
            return FrameFault(BadFrame("empty frame"), fatal=False)
        return FrameFault(
            FrameTooLarge(f"frame of {length} bytes is over the maximum of {self.max_frame_bytes}"),
            fatal=False,
        )

    def _compact(self) -> None:
        if self._pos:
            del self._buffer[: self._pos]
            self._pos = 0


def encode_frame(obj: object) -> bytes:
    """One object as a whole frame, prefix included."""
    payload: bytes = msgpack.packb(obj, use_bin_type=True)
    return PREFIX.pack(len(payload)) + payload


def decode_payload(payload: bytes) -> object:
    """Unpack one frame's payload; anything but exactly one valid msgpack object is `BadFrame`."""
    try:
        return msgpack.unpackb(payload, raw=False, strict_map_key=True, use_list=True)
    except (ValueError, TypeError, msgpack.UnpackException) as err:
        # ExtraData, FormatError, StackError, invalid UTF-8 and truncation all derive from ValueError.
        raise BadFrame(f"payload is not one msgpack object: {err}") from err


def decode_request(payload: bytes) -> object:
    """`decode_payload` for what a client sends: besides one msgpack object, every map key in it must be a
    str (docs/protocol.md, "Framing"). A bin key (b"op") is `BadFrame`: read as a key it would be a second
    "op" beside the str one, or a key no check looks at."""
    obj = decode_payload(payload)
    pending = [obj]
    while pending:  # a loop, not recursion: msgpack nests far deeper than Python's recursion limit
        item = pending.pop()
        if type(item) is dict:
            for key, value in item.items():
                if type(key) is not str:
                    raise BadFrame(f"map key {key!r} is not a string")
                if type(value) is dict or type(value) is list:
                    pending.append(value)
        elif type(item) is list:
            pending.extend(value for value in item if type(value) is dict or type(value) is list)
    return obj
