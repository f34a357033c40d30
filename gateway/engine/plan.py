"""Pure decisions of the engine: what a carrier outcome or a receipt does to a segment, and the submit_sm
a message part becomes. No trio, no store: values in, values out, tested without a network."""

from __future__ import annotations

import time
from typing import NamedTuple

from gateway.carriers.jobs import OutcomeKind, SubmitOutcome
from gateway.engine.settings import ErrorClasses
from gateway.lifecycle import Ev, Event, carrier_rejected, undeliverable
from gateway.segmenting import Part
from gateway.smpp import pdu as P
from gateway.smpp.constants import MessageState, Npi, Ton, status_name
from gateway.smpp.msgid import CarrierIdFormats
from gateway.smpp.receipt import Receipt, ReceiptStatus
from gateway.smpp.tlv import encode_tlvs
from gateway.store.config import Recovery
from gateway.store.ops import Receipt as ReceiptOp
from gateway.store.records import Message


class SegmentRef(NamedTuple):
    """What travels with a submit_sm through the carrier pool and comes back with its outcome."""

    message_id: int
    segment: int
    message_class: str
    attempts: int
    # The message may still leave this carrier: no part of it was accepted here (this is its first unsent
    # part) and its route has a carrier it has not tried.
    movable: bool = False


_DEFAULT_ERRORS = ErrorClasses()


def backoff_ms(attempts: int, min_seconds: float, max_seconds: float) -> int:
    """Exponential back-off for a temporary carrier error: min, 2*min, 4*min ... capped at max."""
    return int(min(max_seconds, min_seconds * 2 ** max(0, attempts - 1)) * 1000)


def accepted_event(outcome: SubmitOutcome, ids: CarrierIdFormats, receipt_deadline_ms: int = 0) -> Event:
    """outcome_event of an ACCEPTED outcome (the engine calls it directly for those, nearly all of them):
    SUBMIT_OK with the carrier's message id as receipts will be matched against it, and the time by which
    its receipt must come (0: lifecycle.RECEIPT_TIMEOUT_MS from now)."""
    return Event(
        _SUBMIT_OK, "", ids.response_key(outcome.message_id), outcome.bind, outcome.sequence_number or 0,
        receipt_deadline_ms,
    )  # fmt: skip


def error_class(status: int, errors: ErrorClasses) -> str:
    """"retry", "next_carrier" or "permanent": what a submit_sm_resp command_status means (unlisted: permanent)."""
    if status in errors.retry:
        return "retry"
    if status in errors.next_carrier:
        return "next_carrier"
    return "permanent"


def moves_on(outcome: SubmitOutcome, ref: SegmentRef, errors: ErrorClasses) -> bool:
    """Whether this outcome sends the message to the next carrier of its route (store.Reroute)."""
    return (
        ref.movable
        and outcome.kind is OutcomeKind.REJECTED
        and error_class(outcome.status, errors) == "next_carrier"
    )


_SUBMIT_OK = Ev.SUBMIT_OK


def outcome_event(
    outcome: SubmitOutcome,
    ref: SegmentRef,
    *,
    now_ms: int,
    ids: CarrierIdFormats,
    recovery: Recovery,
    max_attempts: int,
    backoff_min_seconds: float,
    backoff_max_seconds: float,
    errors: ErrorClasses = _DEFAULT_ERRORS,
    receipt_deadline_ms: int = 0,
) -> Event:
    """The lifecycle event a submit_sm outcome means (ARCHITECTURE.md step 5). An error in the carrier's
    retry list waits a back-off and tries the same carrier; one in its next_carrier list is due at once and
    `moves_on` says the engine moves the message (or, when it cannot move, waits a back-off here); any other
    error is permanent. Every retry counts against `max_attempts`, on whichever carrier."""
    kind = outcome.kind
    if kind is OutcomeKind.ACCEPTED:
        return accepted_event(outcome, ids, receipt_deadline_ms)
    if kind is OutcomeKind.REJECTED:
        klass = error_class(outcome.status, errors)
        if klass == "permanent":
            return Event(Ev.SUBMIT_REJECT, carrier_rejected(status_name(outcome.status)))
        if ref.attempts >= max_attempts:
            return Event(Ev.FAIL, "retries_exhausted")
        if klass == "next_carrier" and ref.movable:
            return Event(Ev.SUBMIT_RETRY, until_ms=now_ms)
        wait = backoff_ms(ref.attempts, backoff_min_seconds, backoff_max_seconds)
        return Event(Ev.SUBMIT_RETRY, until_ms=now_ms + wait)
    if kind is OutcomeKind.NOT_SENT:
        # Never reached the socket: sending it again cannot duplicate anything (no duplicate flag).
        return Event(Ev.REQUEUE)
    # Written, no usable answer: the carrier may have it. The message class decides (store.Recovery).
    if recovery is Recovery.AT_LEAST_ONCE and ref.attempts < max_attempts:
        # Sent again after a back-off, never at once: an SMSC that answers late or unreadably would get
        # the same message again and again. Each resend counts as an attempt; after the last one the
        # message waits for a receipt like an at-most-once one.
        wait = backoff_ms(ref.attempts, backoff_min_seconds, backoff_max_seconds)
        return Event(Ev.RESEND, until_ms=now_ms + wait)
    return Event(Ev.LOST, "unknown_after_timeout", until_ms=receipt_deadline_ms)


_RECEIPT_EVENTS: dict[int, Ev] = {
    MessageState.DELIVERED: Ev.RECEIPT_DELIVERED,
    MessageState.EXPIRED: Ev.RECEIPT_EXPIRED,
    MessageState.UNDELIVERABLE: Ev.RECEIPT_UNDELIVERABLE,
    MessageState.REJECTED: Ev.RECEIPT_UNDELIVERABLE,
    MessageState.DELETED: Ev.RECEIPT_UNDELIVERABLE,
    MessageState.UNKNOWN: Ev.RECEIPT_UNDELIVERABLE,
    # ACCEPTD is "accepted by the SMSC" on most networks (Kannel reads it so): not final.
    MessageState.ACCEPTED: Ev.RECEIPT_ENROUTE,
    MessageState.ENROUTE: Ev.RECEIPT_ENROUTE,
}


def receipt_op(
    receipt: Receipt | ReceiptStatus, carrier: str, ids: CarrierIdFormats, text: bytes = b""
) -> ReceiptOp:
    """A parsed delivery receipt as a store operation: its id as the candidate keys of every form the
    carrier may write it in (gateway.smpp.msgid, best first), and the start of its `text`, kept should no
    submit_sm_resp ever claim it."""
    kind = _RECEIPT_EVENTS.get(int(receipt.state), Ev.RECEIPT_UNDELIVERABLE)  # int: C-level hash
    reason = undeliverable(receipt.err) if kind is Ev.RECEIPT_UNDELIVERABLE else ""
    raw = receipt.message_id
    keys = ids.receipt_keys(raw, from_tlv=receipt.from_tlv)
    first = keys[0]
    return ReceiptOp(
        carrier, first, kind, reason, keys[1:], "" if raw == first else raw[:_RAW_ID_KEPT],
        text[:_TEXT_KEPT],
    )  # fmt: skip


# What a receipt op carries for the unmatched table (store.UNMATCHED_TEXT_BYTES keeps 160 octets of text;
# SMPP 3.4 5.2.23 ids have at most 64 characters, longer ones are garbage worth seeing only in part).
_TEXT_KEPT = 160
_RAW_ID_KEPT = 64


def smpp_absolute_time(ms: int) -> str:
    """SMPP 3.4 7.1.1 absolute time `YYMMDDhhmmsstnnp` in UTC (nn = 00 quarter hours, p = '+')."""
    t = time.gmtime(ms // 1000)
    tenths = (ms % 1000) // 100
    return time.strftime("%y%m%d%H%M%S", t) + f"{tenths}00+"


def source_address(sender: str) -> tuple[int, int, str]:
    """(ton, npi, addr) for a sender: alphanumeric (5.2.5 TON 5), international number, or short code."""
    digits = sender[1:] if sender.startswith("+") else sender
    if not digits.isdigit():
        return Ton.ALPHANUMERIC, Npi.UNKNOWN, sender
    if len(digits) > 8:
        return Ton.INTERNATIONAL, Npi.ISDN, digits
    return Ton.NETWORK_SPECIFIC, Npi.UNKNOWN, digits  # a short code


def submit_sm_body(msg: Message, part: Part, *, want_receipt: bool) -> bytes | None:
    """The octets after the header of `submit_sm(msg, part, want_receipt=...)`, as codec.encode writes them
    (tested equal), without building the PDU: the engine sends one per segment. None for anything the
    codec would refuse (an over-long or non-ASCII address, an over-long short_message): the caller builds the
    PDU then, and the bind refuses it as it always did."""
    ton, npi, source = source_address(msg.sender)
    dest = msg.recipient
    sm = part.short_message
    if len(source) > _MAX_ADDR or len(dest) > _MAX_ADDR or len(sm) > _MAX_SM or not (source + dest).isascii():
        return None
    validity = smpp_absolute_time(msg.expires_ms).encode() if msg.expires_ms else b""
    octet = _OCTET
    return b"".join((
        b"\x00", octet[ton], octet[npi], source.encode(), b"\x00",  # service_type "", source
        _INTERNATIONAL_ISDN, dest.encode(), b"\x00",
        # esm_class, protocol_id 0, priority_flag 0, schedule_delivery_time "", validity_period
        octet[part.esm_class], b"\x00\x00\x00", validity, b"\x00",
        # registered_delivery (5.2.17: 1 = receipt on final outcome), replace_if_present 0, data_coding,
        # sm_default_msg_id 0, sm_length, short_message, TLVs
        octet[1 if (want_receipt and msg.receipt) else 0], b"\x00", octet[part.data_coding], b"\x00",
        octet[len(sm)], sm, encode_tlvs(part.tlvs) if part.tlvs else b"",
    ))  # fmt: skip


_OCTET = tuple(bytes((i,)) for i in range(256))
_INTERNATIONAL_ISDN = bytes((Ton.INTERNATIONAL, Npi.ISDN))
_MAX_ADDR = 20  # SMPP 3.4 5.2.8 / 5.2.10: C-Octet Strings of 21 octets with the NUL
_MAX_SM = 254  # 5.2.22


def submit_sm(msg: Message, part: Part, *, want_receipt: bool) -> P.SubmitSm:
    """The submit_sm for one part of a message."""
    ton, npi, source = source_address(msg.sender)
    return P.SubmitSm(
        source_addr_ton=ton,
        source_addr_npi=npi,
        source_addr=source,
        dest_addr_ton=Ton.INTERNATIONAL,
        dest_addr_npi=Npi.ISDN,
        destination_addr=msg.recipient,
        esm_class=part.esm_class,
        validity_period=smpp_absolute_time(msg.expires_ms) if msg.expires_ms else "",
        # SMPP 3.4 5.2.17: 1 = receipt on final outcome, success or failure.
        registered_delivery=1 if (want_receipt and msg.receipt) else 0,
        data_coding=part.data_coding,
        short_message=part.short_message,
        tlvs=part.tlvs,
    )
