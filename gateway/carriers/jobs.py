"""What the engine hands a carrier pool, and what comes back.

A submit is a `SubmitJob`; each job comes back exactly once as a `SubmitOutcome`:

- ACCEPTED  the SMSC answered ESME_ROK with its message_id.
- REJECTED  the SMSC answered with an error status (never a throttle status: those are retried here).
- NOT_SENT  the PDU never reached the socket (link lost, stop): resending it is safe.
- UNKNOWN   the PDU was written but no usable answer came (deadline, link lost, unreadable response).
            The SMSC may have acted on it, so it is never resent blindly; the engine decides.

Inbound deliver_sm/data_sm come out as `Inbound`; its deliver_sm_resp is written only when the engine calls
`ack()` after storing it, as ARCHITECTURE.md step 6 requires ("deliver_sm_resp only after durable").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from gateway.fastinit import fast_init
from gateway.smpp import pdu as P
from gateway.smpp.constants import Tag


@dataclass(frozen=True, slots=True)
class SubmitJob:
    """A submit_sm to send: `pdu`, or its body octets already encoded (`wire`, what follows the 16-octet
    header; the engine writes them straight from a message part, and `pdu` is then None)."""

    pdu: P.SubmitSm | None
    context: Any = None
    wire: bytes = b""


class OutcomeKind(Enum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    NOT_SENT = "not_sent"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitOutcome:
    context: Any
    kind: OutcomeKind
    carrier: str
    bind: str
    message_id: str = ""
    status: int = 0
    # The sequence number the PDU carried on the wire (None when it never got one).
    sequence_number: int | None = None
    reason: str = ""

    @property
    def sent(self) -> bool:
        """Whether the PDU may have reached the SMSC (everything but NOT_SENT)."""
        return self.kind is not OutcomeKind.NOT_SENT


# One of each per segment sent.
fast_init(SubmitJob)
fast_init(SubmitOutcome)


class Inbound:
    """A deliver_sm or data_sm from the SMSC, waiting for the engine to store it and call `ack`."""

    __slots__ = ("_acked", "_answer", "bind", "carrier", "pdu")

    def __init__(
        self,
        pdu: P.DeliverSm | P.DataSm,
        carrier: str,
        bind: str,
        answer: Callable[[P.DeliverSm | P.DataSm, int], None],
    ) -> None:
        self.pdu = pdu
        self.carrier = carrier
        self.bind = bind
        self._answer = answer
        self._acked = False

    @property
    def is_receipt(self) -> bool:
        """SMPP 3.4 5.2.12: esm_class message type 0b0001 (bits 5-2) is an SMSC delivery receipt."""
        return (self.pdu.esm_class & 0x3C) == 0x04

    @property
    def message(self) -> bytes:
        """The payload: short_message, or the message_payload TLV (SMPP 3.4 5.3.2.32) that data_sm always
        uses and deliver_sm may use instead of short_message."""
        if isinstance(self.pdu, P.DeliverSm) and self.pdu.short_message:
            return self.pdu.short_message
        payload = self.pdu.tlv(Tag.MESSAGE_PAYLOAD, b"")
        return payload if isinstance(payload, bytes) else b""

    def ack(self, status: int = 0) -> None:
        """Answer the SMSC (deliver_sm_resp/data_sm_resp with `status`). Once only; later calls do nothing.

        If the link that brought it is gone, nothing is written: the SMSC redelivers unanswered PDUs.
        """
        if self._acked:
            return
        self._acked = True
        self._answer(self.pdu, status)  # the bind writes its deliver_sm_resp / data_sm_resp

    def __repr__(self) -> str:
        return f"Inbound({type(self.pdu).__name__} seq={self.pdu.sequence_number} bind={self.bind})"
