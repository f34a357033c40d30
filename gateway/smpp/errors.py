"""Errors that answer with an SMPP status.

Each carries its `command_status` as a class attribute (as h2's errors carry `error_code`), so the shell
answers with `err.command_status` and never parses a message. They live here, beside the constants they name,
so that `gateway/errors.py` (the root of the tree) imports nothing of the gateway.
"""

from __future__ import annotations

from gateway.errors import GatewayError, StoreError
from gateway.smpp.constants import CommandStatus


class WireError(GatewayError):
    """An error with an SMPP command_status to answer with."""

    command_status: CommandStatus = CommandStatus.ESME_RSYSERR


# --- SMPP codec and session -------------------------------------------------------------------------


class SmppError(WireError):
    """Something in SMPP bytes or SMPP state is wrong."""


class DecodeError(SmppError):
    """Bytes that are not a valid SMPP 3.4 PDU.

    `sequence_number` is set when the header was readable, so the answer (a response with this status, or
    generic_nack) can carry it; `command_id` likewise.
    """

    command_status = CommandStatus.ESME_RSYSERR

    def __init__(
        self,
        reason: str,
        *,
        command_status: CommandStatus | None = None,
        sequence_number: int | None = None,
        command_id: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        if command_status is not None:
            self.command_status = command_status
        self.sequence_number = sequence_number
        self.command_id = command_id


class FrameError(DecodeError):
    """The length prefix itself is impossible: the stream cannot be resynchronised and must close."""

    command_status = CommandStatus.ESME_RINVCMDLEN


class EncodeError(SmppError):
    """A PDU whose field values cannot be put on the wire (too long, out of range)."""

    command_status = CommandStatus.ESME_RSYSERR

    def __init__(self, reason: str, *, command_status: CommandStatus | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if command_status is not None:
            self.command_status = command_status


class ProtocolError(SmppError):
    """A PDU the session may not send or receive in its current state."""

    command_status = CommandStatus.ESME_RINVBNDSTS


class WindowFull(SmppError):
    """The caller tried to send a request with no free slot in the window."""

    command_status = CommandStatus.ESME_RTHROTTLED


# --- segmenting -------------------------------------------------------------------------------------


class SegmentingError(WireError):
    """Text that cannot be sent as asked."""

    command_status = CommandStatus.ESME_RINVMSGLEN


class MessageTooLong(SegmentingError):
    """More parts than the route allows; nothing is ever cut."""

    command_status = CommandStatus.ESME_RINVMSGLEN

    def __init__(self, parts_needed: int, max_parts: int) -> None:
        super().__init__(f"text needs {parts_needed} parts, the route allows {max_parts}")
        self.parts_needed = parts_needed
        self.max_parts = max_parts


class NotEncodable(SegmentingError):
    """A character that none of the allowed encodings can represent."""

    command_status = CommandStatus.ESME_RINVPARLEN

    def __init__(self, char: str, position: int, encoding: str) -> None:
        super().__init__(f"{char!r} at {position} cannot be encoded in {encoding}")
        self.char = char
        self.position = position
        self.encoding = encoding


# --- store ------------------------------------------------------------------------------------------


class StoreFull(StoreError, WireError):
    """Disk or map full: new work is refused, nothing stored is damaged."""

    command_status = CommandStatus.ESME_RMSGQFUL
