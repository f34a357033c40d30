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

from dataclasses import dataclass, field

from gateway.smpp import pdu as P
from gateway.smpp.constants import EsmClass, Tag


@dataclass(frozen=True, slots=True)
class PartInfo:
    ref: int
    total: int
    seq: int


_UDHI = int(EsmClass.UDHI)

def part_info(pdu: P.SubmitSm) -> PartInfo | None:
    """The concatenation header of a submit, or None for a single message."""
    if pdu.esm_class & _UDHI:
        return _from_udh(pdu.short_message)
    ref = pdu.tlv(Tag.SAR_MSG_REF_NUM)
    if isinstance(ref, int):
        total = pdu.tlv(Tag.SAR_TOTAL_SEGMENTS)
        seq = pdu.tlv(Tag.SAR_SEGMENT_SEQNUM)
        if isinstance(total, int) and isinstance(seq, int):
            return PartInfo(ref, total, seq)
    return None


def _from_udh(sm: bytes) -> PartInfo | None:
    if not sm:
        return None
    udhl = sm[0]
    udh = sm[1 : 1 + udhl]
    i = 0
    while i + 1 < len(udh):
        iei, length = udh[i], udh[i + 1]
        data = udh[i + 2 : i + 2 + length]
        if iei == 0x00 and len(data) == 3:
            return PartInfo(data[0], data[1], data[2])
        if iei == 0x08 and len(data) == 4:
            return PartInfo((data[0] << 8) | data[1], data[2], data[3])
        i += 2 + length
    return None


@dataclass(slots=True)
class _Group:
    total: int
    data_coding: int
    seen: set[int] = field(default_factory=set)


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
        info = part_info(pdu)
        if info is None:
            return
        key = (system_id, pdu.source_addr, pdu.destination_addr, info.ref)
        group = self._open.get(key)
        if group is None:
            if len(self._open) >= self._max_open:
                return  # bounded memory: a flood of never-finished groups is already visible
            group = self._open[key] = _Group(info.total, pdu.data_coding)
        bad = (
            info.total != group.total
            or pdu.data_coding != group.data_coding
            or not 1 <= info.seq <= info.total
            or info.seq in group.seen
        )
        if bad:
            self.inconsistent += 1
            del self._open[key]
            return
        group.seen.add(info.seq)
        if len(group.seen) == group.total:
            self.complete += 1
            del self._open[key]
