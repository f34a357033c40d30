"""The delivery receipt the simulator sends for an accepted submit_sm: SMPP 3.4 Appendix B text plus TLVs.

Built once per submitted segment, so built as octets, not as a PDU: a receipt deliver_sm differs from the next
only in its addresses, its id and the first 20 octets of the message, so each outcome of the receipt mix keeps
the body of its deliver_sm (SMPP 3.4 4.6.1, everything after the header) as one template with holes for those.
Appendix B dates (YYMMDDhhmm) change once a minute, so the templates are rebuilt when the minute turns, not
per PDU. Each style of config.ReceiptStyle (TLVs, or a text alone with the id zero-padded, in decimal, in the
compact upper-case layout, or `stat:FAILED`) has its own templates. What goes on the wire is what the codec
writes for the DeliverSm with the same fields (tests/integration/sim/test_wire_equivalence.py compares them).

    receipts = Receipts(config.receipt_mix, rng)
    body = receipts.build(submit_sm, b"5f3a")   # None when the submit asked for no receipt
    session.send_encoded(CommandId.DELIVER_SM, body, now, context=...)
"""

from __future__ import annotations

import random
import time
from bisect import bisect
from collections.abc import Callable
from itertools import accumulate

from gateway.sim.config import ReceiptOutcome, ReceiptStyle
from gateway.smpp import pdu as P
from gateway.smpp import tlv
from gateway.smpp.constants import EsmClass, Tag

# Plain ints: enum attribute lookups and IntFlag arithmetic run Python code in enum.py, once per receipt.
_UDHI = int(EsmClass.UDHI)
# SMPP 3.4 5.3.2.31: network_error_code's first octet is the network type; 3 = GSM.
_NETWORK_GSM = 3
# SMPP 3.4 Appendix B: the original message's first 20 characters follow `Text:`.
_TEXT_OCTETS = 20
# receipted_message_id is a C-Octet String TLV of at most 65 octets with its NUL (SMPP 3.4 5.3.2.12).
MAX_ID_OCTETS = 64
_ID = b"id:"

# The deliver_sm body (SMPP 3.4 4.6.1) as a %-template. Its holes: source_addr_ton, source_addr_npi,
# source_addr (the submit's destination), dest_addr_ton, dest_addr_npi, destination_addr (the submit's
# source), sm_length, the id, the message's first octets, receipted_message_id's length and the id again.
# The constant fields: service_type "", esm_class 0x04 (5.2.12: SMSC delivery receipt), protocol_id,
# priority_flag, schedule_delivery_time "", validity_period "", registered_delivery, replace_if_present_flag,
# data_coding, sm_default_msg_id all 0; then the TLVs receipted_message_id, message_state, network_error_code.
_HEAD = b"\x00%c%c%s\x00%c%c%s\x00" + bytes((int(EsmClass.DELIVERY_RECEIPT),)) + bytes(8)
_RECEIPTED_MESSAGE_ID = tlv.pack_tl(Tag.RECEIPTED_MESSAGE_ID, 0)[:2]


class _Prepared:
    """One receipt mix outcome in one style: its deliver_sm template (see _HEAD), rebuilt when the minute
    turns. Styles without TLVs end the template after the message's first octets."""

    __slots__ = ("delivered", "fixed_sm", "head", "prefix", "style", "tail", "template", "tlvs")

    def __init__(self, outcome: ReceiptOutcome, style: ReceiptStyle = ReceiptStyle.TLV) -> None:
        self.style = style
        failed = style is ReceiptStyle.FAILED
        self.delivered = outcome.stat == "DELIVRD" and not failed
        dlvrd = b"001" if self.delivered else b"000"
        stat = b"FAILED" if failed else outcome.stat.encode()
        err = (outcome.err or 1) if failed else outcome.err
        if style is ReceiptStyle.COMPACT:
            self.prefix = b"ID:"
            self.head = b" SUB:001 DLVRD:%s SUBMITDATE:" % dlvrd
            self.tail = b" STAT:%s ERR:%03d TEXT:" % (stat, err % 1000)
        else:
            self.prefix = _ID
            # Between "id:..." and the message's first octets; the dates go in when the minute turns.
            self.head = b" sub:001 dlvrd:%s submit date:" % dlvrd
            self.tail = b" stat:%s err:%03d Text:" % (stat, err % 1000)
        # message_state and network_error_code, after receipted_message_id: the same for every receipt.
        self.tlvs = b""
        if style is ReceiptStyle.TLV:
            self.tlvs = tlv.encode_tlvs(
                (
                    (Tag.MESSAGE_STATE, int(outcome.message_state)),
                    (Tag.NETWORK_ERROR_CODE, bytes((_NETWORK_GSM, (err >> 8) & 0xFF, err & 0xFF))),
                )
            )
        self.template = b""
        # Octets of short_message that are neither the id nor the message's first octets.
        self.fixed_sm = 0

    def set_dates(self, date: bytes, long_date: bytes) -> None:
        """`date` YYMMDDhhmm (Appendix B), `long_date` YYYYMMDDhhmm (the compact style's)."""
        day = long_date if self.style is ReceiptStyle.COMPACT else date
        done = b" DONEDATE:" if self.style is ReceiptStyle.COMPACT else b" done date:"
        middle = b"".join((self.head, day, done, day, self.tail))
        self.fixed_sm = len(self.prefix) + len(middle)
        parts = [
            _HEAD,
            b"%c",  # sm_length
            self.prefix,
            b"%s",  # the id as the text writes it
            middle.replace(b"%", b"%%"),
            b"%s",  # the message's first octets
        ]
        if self.style is ReceiptStyle.TLV:
            parts += [
                _RECEIPTED_MESSAGE_ID,
                b"\x00%c%s\x00",  # length (high octet 0: at most 65), the id and its NUL
                self.tlvs.replace(b"%", b"%%"),
            ]
        self.template = b"".join(parts)


class Receipts:
    """Chooses each receipt's outcome from the mix and its style (drawing from `rng`, only where there is
    a choice) and builds its deliver_sm body."""

    def __init__(
        self,
        mix: tuple[ReceiptOutcome, ...],
        rng: random.Random,
        clock: Callable[[], float] = time.time,
        styles: tuple[tuple[ReceiptStyle, float], ...] = ((ReceiptStyle.TLV, 1.0),),
    ) -> None:
        # By style, then by outcome.
        self._prepared = [[_Prepared(o, style) for o in mix] for style, _ in styles]
        self._all = [p for row in self._prepared for p in row]
        self._single = self._prepared[0][0] if len(mix) == 1 and len(styles) == 1 else None
        self._cum = list(accumulate(o.weight for o in mix))
        self._style_cum = list(accumulate(w for _, w in styles))
        self._rng = rng
        self._clock = clock
        # The UTC minute [start, end) whose dates the prepared templates hold; empty until the first receipt.
        self._minute = (0.0, 0.0)

    def build(self, pdu: P.SubmitSm, msg_id: bytes, value: int = 0) -> bytes | None:
        """The deliver_sm body (after the header) of the receipt for `pdu`, or None when none was asked for:
        SMPP 3.4 Appendix B text (plus the 5.3.2 TLVs in the TLV style). `msg_id` has at most MAX_ID_OCTETS
        ASCII octets; `value` is its number (the decimal and compact styles write it in decimal)."""
        wants = pdu.registered_delivery & 0x03  # 5.2.17 bits 1-0: 01 always, 10 on failure only
        if not wants:
            return None
        prep = self._single or self._choose()
        if wants == 2 and prep.delivered:
            return None
        now = self._clock()
        start, end = self._minute
        if not start <= now < end:
            self._new_minute(now)
        sm = pdu.short_message
        if pdu.esm_class & _UDHI and sm:
            skip = 1 + sm[0]
            text = sm[skip : skip + _TEXT_OCTETS]
        else:
            text = sm[:_TEXT_OCTETS]
        # Addresses came off the wire as ASCII of at most 20 characters (the codec checked), so they fit.
        addresses = (
            pdu.dest_addr_ton,
            pdu.dest_addr_npi,
            pdu.destination_addr.encode(),
            pdu.source_addr_ton,
            pdu.source_addr_npi,
            pdu.source_addr.encode(),
        )
        if prep.style is _TLV:
            n = len(msg_id)
            return prep.template % (*addresses, prep.fixed_sm + n + len(text), msg_id, text, n + 1, msg_id)
        text_id = text_id_of(prep.style, msg_id, value)
        return prep.template % (*addresses, prep.fixed_sm + len(text_id) + len(text), text_id, text)

    def _choose(self) -> _Prepared:
        row = self._prepared[0]
        if len(self._style_cum) > 1:
            pick = self._rng.random() * self._style_cum[-1]
            row = self._prepared[min(bisect(self._style_cum, pick), len(self._prepared) - 1)]
        if len(row) == 1:
            return row[0]
        pick = self._rng.random() * self._cum[-1]
        return row[min(bisect(self._cum, pick), len(row) - 1)]

    def _new_minute(self, now: float) -> None:
        # POSIX time has no leap seconds, so a UTC minute starts at a multiple of 60.
        second = int(now)
        start = second - second % 60
        self._minute = (start, start + 60)
        long_date = time.strftime("%Y%m%d%H%M", time.gmtime(second)).encode()
        for prep in self._all:
            prep.set_dates(long_date[2:], long_date)


_TLV = ReceiptStyle.TLV


def text_id_of(style: ReceiptStyle, msg_id: bytes, value: int) -> bytes:
    """The id as a receipt of `style` writes it in its text, for the message_id `msg_id` whose number is
    `value`."""
    if style is ReceiptStyle.PADDED:
        return msg_id.rjust(10, b"0")
    if style is ReceiptStyle.DECIMAL:
        return b"%d" % value
    if style is ReceiptStyle.COMPACT:
        return b"%010d" % value
    return msg_id
