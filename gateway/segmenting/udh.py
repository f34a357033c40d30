"""User Data Header: build and parse the information elements the gateway uses (3GPP TS 23.040 9.2.3.24).

A UDH is UDHL (one octet, the length of what follows) and then IEs, each IEI, IEDL, data.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from gateway.smpp.errors import SegmentingError


class Iei(IntEnum):
    """TS 23.040 9.2.3.24: information element identifiers used here."""

    CONCAT_8BIT = 0x00  # 9.2.3.24.1: reference, total, sequence
    CONCAT_16BIT = 0x08  # 9.2.3.24.8: reference (2 octets), total, sequence
    SINGLE_SHIFT = 0x24  # 9.2.3.24.15: national language single shift
    LOCKING_SHIFT = 0x25  # 9.2.3.24.16: national language locking shift


SHIFT_IE_OCTETS: Final = 3  # IEI, IEDL=1, language
CONCAT_IE_OCTETS: Final = {8: 5, 16: 6}


class UdhError(SegmentingError):
    """A UDH whose lengths do not add up."""


@dataclass(frozen=True, slots=True)
class Concat:
    """A concatenation IE: which message (reference), how many parts, and which part this is."""

    ref: int
    total: int
    seq: int
    ref_bits: int


@dataclass(frozen=True, slots=True)
class Udh:
    """A parsed UDH. `length` counts every header octet, UDHL included."""

    length: int
    concat: Concat | None = None
    single_shift: int | None = None
    locking_shift: int | None = None
    other: tuple[tuple[int, bytes], ...] = ()


def build_udh(ies: list[tuple[int, bytes]]) -> bytes:
    """UDHL followed by the IEs; empty when there are none."""
    if not ies:
        return b""
    body = b"".join(bytes((iei, len(data))) + data for iei, data in ies)
    return bytes((len(body),)) + body


def concat_ie(ref: int, total: int, seq: int, ref_bits: int) -> tuple[int, bytes]:
    """The 8-bit (IEI 0x00) or 16-bit (IEI 0x08) reference concatenation IE."""
    if ref_bits == 8:
        return Iei.CONCAT_8BIT, bytes((ref, total, seq))
    return Iei.CONCAT_16BIT, bytes((ref >> 8, ref & 0xFF, total, seq))


def parse_udh(data: bytes) -> tuple[Udh, bytes]:
    """Split user data with UDHI set into its parsed UDH and the rest. Unknown IEs are kept in `other`."""
    if not data or data[0] + 1 > len(data):
        raise UdhError("UDH length exceeds the user data")
    end = data[0] + 1
    pos = 1
    fields: dict[str, object] = {}
    other: list[tuple[int, bytes]] = []
    while pos < end:
        if pos + 2 > end or pos + 2 + data[pos + 1] > end:
            raise UdhError(f"UDH information element at octet {pos} overruns the header")
        iei, ie = data[pos], data[pos + 2 : pos + 2 + data[pos + 1]]
        pos += 2 + len(ie)
        _read_ie(iei, ie, fields, other)
    udh = Udh(length=end, other=tuple(other), **fields)  # type: ignore[arg-type]
    return udh, data[end:]


def _read_ie(iei: int, ie: bytes, fields: dict[str, object], other: list[tuple[int, bytes]]) -> None:
    if iei == Iei.CONCAT_8BIT and len(ie) == 3:
        fields["concat"] = Concat(ie[0], ie[1], ie[2], 8)
    elif iei == Iei.CONCAT_16BIT and len(ie) == 4:
        fields["concat"] = Concat(ie[0] << 8 | ie[1], ie[2], ie[3], 16)
    elif iei == Iei.SINGLE_SHIFT and len(ie) == 1:
        fields["single_shift"] = ie[0]
    elif iei == Iei.LOCKING_SHIFT and len(ie) == 1:
        fields["locking_shift"] = ie[0]
    else:
        other.append((iei, ie))


def fill_bits(udh_octets: int) -> int:
    """Fill bits after a UDH so the first septet starts on a septet boundary (TS 23.040 9.2.3.24)."""
    return (7 - udh_octets * 8 % 7) % 7
