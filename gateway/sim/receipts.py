"""The delivery receipt the simulator sends for an accepted submit_sm: SMPP 3.4 Appendix B text plus TLVs.

Built once per submitted segment, so built from prepared parts: everything in a receipt except its id, its
addresses and the first 20 octets of the message is fixed per outcome of the receipt mix, and Appendix B dates
(YYMMDDhhmm) change once a minute, so each outcome's text between the id and `Text:` is formatted when the
minute turns, not per PDU. What goes on the wire is the same as formatting every receipt from scratch.

    receipts = Receipts(config.receipt_mix, rng)
    deliver_sm = receipts.build(submit_sm, "5f3a")   # None when the submit asked for no receipt
"""

from __future__ import annotations

import random
import time
from bisect import bisect
from collections.abc import Callable
from itertools import accumulate

from gateway.sim.config import ReceiptOutcome
from gateway.smpp import pdu as P
from gateway.smpp.constants import EsmClass, Tag

# Plain ints: enum attribute lookups and IntFlag arithmetic run Python code in enum.py, once per receipt.
_UDHI = int(EsmClass.UDHI)
_DELIVERY_RECEIPT = int(EsmClass.DELIVERY_RECEIPT)
_T_RECEIPTED_MESSAGE_ID = int(Tag.RECEIPTED_MESSAGE_ID)
_T_MESSAGE_STATE = int(Tag.MESSAGE_STATE)
_T_NETWORK_ERROR_CODE = int(Tag.NETWORK_ERROR_CODE)
# SMPP 3.4 5.3.2.31: network_error_code's first octet is the network type; 3 = GSM.
_NETWORK_GSM = 3
# SMPP 3.4 Appendix B: the original message's first 20 characters follow `Text:`.
_TEXT_OCTETS = 20


class _Prepared:
    """One receipt mix outcome, as the octets and TLVs every receipt with that outcome shares."""

    __slots__ = ("delivered", "error_tlv", "head", "middle", "state_tlv", "tail")

    def __init__(self, outcome: ReceiptOutcome) -> None:
        self.delivered = outcome.stat == "DELIVRD"
        # Between "id:..." and the message's first octets; the dates go in when the minute turns.
        self.head = b" sub:001 dlvrd:%s submit date:" % (b"001" if self.delivered else b"000")
        self.tail = b" stat:%s err:%03d Text:" % (outcome.stat.encode(), outcome.err % 1000)
        self.middle = b""
        self.state_tlv: tuple[int, int] = (_T_MESSAGE_STATE, int(outcome.message_state))
        err = outcome.err
        self.error_tlv: tuple[int, bytes] = (
            _T_NETWORK_ERROR_CODE,
            bytes((_NETWORK_GSM, (err >> 8) & 0xFF, err & 0xFF)),
        )


class Receipts:
    """Chooses each receipt's outcome from the mix (drawing from `rng`) and builds its deliver_sm."""

    def __init__(
        self,
        mix: tuple[ReceiptOutcome, ...],
        rng: random.Random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._prepared = [_Prepared(o) for o in mix]
        self._single = self._prepared[0] if len(mix) == 1 else None
        self._cum = list(accumulate(o.weight for o in mix))
        self._rng = rng
        self._clock = clock
        # The UTC minute [start, end) whose dates the prepared middles hold; empty until the first receipt.
        self._minute = (0.0, 0.0)

    def build(self, pdu: P.SubmitSm, msg_id: str) -> P.DeliverSm | None:
        """SMPP 3.4 Appendix B receipt text plus the 5.3.2 TLVs, or None when none was asked for."""
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
        return P.DeliverSm(
            source_addr_ton=pdu.dest_addr_ton,
            source_addr_npi=pdu.dest_addr_npi,
            source_addr=pdu.destination_addr,
            dest_addr_ton=pdu.source_addr_ton,
            dest_addr_npi=pdu.source_addr_npi,
            destination_addr=pdu.source_addr,
            esm_class=_DELIVERY_RECEIPT,
            short_message=b"".join((b"id:", msg_id.encode(), prep.middle, text)),
            tlvs=((_T_RECEIPTED_MESSAGE_ID, msg_id), prep.state_tlv, prep.error_tlv),
        )

    def _choose(self) -> _Prepared:
        pick = self._rng.random() * self._cum[-1]
        return self._prepared[min(bisect(self._cum, pick), len(self._prepared) - 1)]

    def _new_minute(self, now: float) -> None:
        # POSIX time has no leap seconds, so a UTC minute starts at a multiple of 60.
        second = int(now)
        start = second - second % 60
        self._minute = (start, start + 60)
        date = time.strftime("%y%m%d%H%M", time.gmtime(second)).encode()
        for prep in self._prepared:
            prep.middle = b"".join((prep.head, date, b" done date:", date, prep.tail))
