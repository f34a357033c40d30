"""Checks that concatenated submits arrive complete and consistent.

A long message comes as parts that name (reference, total, sequence) either in a UDH information element
(3GPP TS 23.040 9.2.3.24.1 IEI 0x00, 8-bit reference; 9.2.3.24.8 IEI 0x08, 16-bit reference) with esm_class
UDHI set (SMPP 3.4 5.2.12), or in the SAR TLVs sar_msg_ref_num / sar_total_segments / sar_segment_seqnum
(SMPP 3.4 5.3.2.22-24). A group is keyed by bind system_id, source, destination and reference.

complete      every sequence number 1..total arrived, once, with one total and one data_coding
inconsistent  a part disagrees with its group (other total, other data_coding, sequence out of range or
              repeated); the group is counted once and dropped
incomplete    groups still open (counted when the snapshot is taken)
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.smpp import pdu as P
from gateway.smpp.constants import EsmClass, Tag


@dataclass(frozen=True, slots=True)
class PartInfo:
    ref: int
    total: int
    seq: int


_UDHI = int(EsmClass.UDHI)
_T_SAR_MSG_REF_NUM = int(Tag.SAR_MSG_REF_NUM)
_T_SAR_TOTAL_SEGMENTS = int(Tag.SAR_TOTAL_SEGMENTS)
_T_SAR_SEGMENT_SEQNUM = int(Tag.SAR_SEGMENT_SEQNUM)
# The UDH of nearly every concatenated part is exactly one concatenation element: UDHL 5, IEI 0x00, IEDL 3
# (8-bit reference) or UDHL 6, IEI 0x08, IEDL 4 (16-bit reference).
_UDH_8BIT = b"\x05\x00\x03"
_UDH_16BIT = b"\x06\x08\x04"


def part_info(pdu: P.SubmitSm) -> PartInfo | None:
    """The concatenation header of a submit, or None for a single message."""
    parts = _parts(pdu)
    return None if parts is None else PartInfo(*parts)


def _parts(pdu: P.SubmitSm) -> tuple[int, int, int] | None:
    """(reference, total, sequence) of a concatenated part, or None; a plain tuple, built once per part."""
    if pdu.esm_class & _UDHI:
        sm = pdu.short_message
        head = sm[:3]
        if head == _UDH_8BIT and len(sm) >= 6:
            return sm[3], sm[4], sm[5]
        if head == _UDH_16BIT and len(sm) >= 7:
            return (sm[3] << 8) | sm[4], sm[5], sm[6]
        return _from_udh(sm)
    ref = pdu.tlv(_T_SAR_MSG_REF_NUM)
    if isinstance(ref, int):
        total = pdu.tlv(_T_SAR_TOTAL_SEGMENTS)
        seq = pdu.tlv(_T_SAR_SEGMENT_SEQNUM)
        if isinstance(total, int) and isinstance(seq, int):
            return ref, total, seq
    return None


def _from_udh(sm: bytes) -> tuple[int, int, int] | None:
    if not sm:
        return None
    udhl = sm[0]
    udh = sm[1 : 1 + udhl]
    i = 0
    while i + 1 < len(udh):
        iei, length = udh[i], udh[i + 1]
        data = udh[i + 2 : i + 2 + length]
        if iei == 0x00 and len(data) == 3:
            return data[0], data[1], data[2]
        if iei == 0x08 and len(data) == 4:
            return (data[0] << 8) | data[1], data[2], data[3]
        i += 2 + length
    return None


@dataclass(slots=True)
class _Group:
    total: int
    data_coding: int
    seen: int = 0  # bit n set: part n arrived (an int, not a set: one object less per message)


class ConcatChecker:
    def __init__(self, max_open: int = 100_000) -> None:
        self._open: dict[tuple[str, str, str, int], _Group] = {}
        self._max_open = max_open
        self.complete = 0
        self.inconsistent = 0

    @property
    def incomplete(self) -> int:
        return len(self._open)

    def feed(self, system_id: str, pdu: P.SubmitSm) -> None:
        parts = _parts(pdu)
        if parts is None:
            return
        ref, total, seq = parts
        key = (system_id, pdu.source_addr, pdu.destination_addr, ref)
        group = self._open.get(key)
        if group is None:
            if len(self._open) >= self._max_open:
                return  # bounded memory: a flood of never-finished groups is already visible
            group = self._open[key] = _Group(total, pdu.data_coding)
        bad = (
            total != group.total
            or pdu.data_coding != group.data_coding
            or not 1 <= seq <= total
            or group.seen >> seq & 1
        )
        if bad:
            self.inconsistent += 1
            del self._open[key]
            return
        group.seen |= 1 << seq
        if group.seen == (2 << total) - 2:  # bits 1..total: every part, each once
            self.complete += 1
            del self._open[key]
