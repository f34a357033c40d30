"""Cutting a TCP byte stream into whole SMPP PDUs.

SMPP 3.4 3.2: every PDU starts with a 4-octet command_length that counts the whole PDU, header included.
A length under 16 or above the configured maximum cannot be a PDU, and nothing after it can be trusted to be
aligned, so the framer refuses it as soon as the 4 octets are in, before buffering the body it announces.
"""

from __future__ import annotations

import struct

from gateway.smpp.constants import HEADER_SIZE
from gateway.smpp.constants import CommandStatus as S
from gateway.smpp.errors import FrameError

DEFAULT_MAX_COMMAND_LENGTH = 64 * 1024
_unpack_len = struct.Struct(">I").unpack_from


class Framer:
    """Feed arbitrary chunks with `feed`, take every complete PDU with `frames`."""

    __slots__ = ("_buf", "_error", "failed", "max_command_length")

    def __init__(self, max_command_length: int = DEFAULT_MAX_COMMAND_LENGTH) -> None:
        if max_command_length < HEADER_SIZE:
            raise ValueError("max_command_length below the 16-octet header")
        self.max_command_length = max_command_length
        self._buf = bytearray()
        self._error: FrameError | None = None
        # An impossible length is waiting to be raised by the next `frames()` (the whole PDUs before it came
        # out first). A plain attribute: the session reads it after every read.
        self.failed = False

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        """Octets held that do not yet make a whole PDU."""
        return len(self._buf)

    def frames(self) -> list[bytes]:
        """Every whole PDU buffered so far, in order. Raises `FrameError` on an impossible length: at once
        when it comes first, else on the next call, after the whole PDUs before it (a bind_resp and a
        broken PDU in one read: the bind_resp still counts)."""
        if self._error is not None:
            err, self._error = self._error, None
            self.failed = False
            raise err
        buf = self._buf
        size = len(buf)
        pos = 0
        out: list[bytes] = []
        limit = self.max_command_length
        while size - pos >= 4:
            (length,) = _unpack_len(buf, pos)
            if length < HEADER_SIZE or length > limit:
                seq = _unpack_len(buf, pos + 12)[0] if size - pos >= HEADER_SIZE else None
                self._buf = bytearray()
                err = FrameError(
                    f"command_length {length} outside {HEADER_SIZE}..{limit}",
                    command_status=S.ESME_RINVCMDLEN,
                    sequence_number=seq,
                )
                if not out:
                    raise err
                self._error = err
                self.failed = True
                return out
            if size - pos < length:
                break
            out.append(bytes(buf[pos : pos + length]))
            pos += length
        if pos:
            del buf[:pos]
        return out
