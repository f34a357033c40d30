"""What a route allows: encodings, the meaning of data_coding 0, packing, split method, part limit."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from gateway.segmenting.tables import NationalLanguage


class Encoding(StrEnum):
    """Text encodings, in the order of preference when two need the same number of parts."""

    GSM7 = "gsm7"  # TS 23.038 default alphabet (+ national shift tables where allowed), data_coding 0
    ASCII = "ascii"  # data_coding 0 where the SMSC's default alphabet is ASCII, else 1 (IA5)
    LATIN1 = "latin1"  # data_coding 0 where the SMSC's default alphabet is Latin-1, else 3
    UCS2 = "ucs2"  # UTF-16BE, data_coding 8
    BINARY = "binary"  # 8-bit octets, data_coding 4 (segment_bytes only)


class DefaultAlphabet(StrEnum):
    """What an SMSC means by data_coding 0 (SMPP 3.4 5.2.19: "SMSC default alphabet")."""

    GSM = "gsm"
    ASCII = "ascii"
    LATIN1 = "latin1"


class SplitMethod(StrEnum):
    """How a long message travels: SMPP 3.4 5.2.12 (UDHI) and 5.3.2.22-24 (SAR), 5.3.2.32 (payload)."""

    UDH8 = "udh8"
    UDH16 = "udh16"
    SAR = "sar"
    PAYLOAD = "payload"


@dataclass(frozen=True, slots=True)
class RouteEncoding:
    """The encoding rules of one carrier route. Frozen so one instance serves every message."""

    encodings: frozenset[Encoding] = frozenset({Encoding.GSM7, Encoding.UCS2})
    default_alphabet: DefaultAlphabet = DefaultAlphabet.GSM
    packed: bool = False  # packed 7-bit; most SMSCs expect one septet per octet for data_coding 0
    split: SplitMethod = SplitMethod.UDH8
    max_parts: int = 10
    national: frozenset[NationalLanguage] = field(default_factory=frozenset)
    transliterate: bool = False
    # The allowed text encodings in preference order, worked out once: hashing an enum member runs
    # Python code, and segment() would otherwise do it on every call.
    preference: tuple[Encoding, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        order = (Encoding.GSM7, Encoding.ASCII, Encoding.LATIN1, Encoding.UCS2)
        object.__setattr__(self, "preference", tuple(e for e in order if e in self.encodings))
        if not 1 <= self.max_parts <= 255:
            raise ValueError("max_parts must be 1..255 (TS 23.040 9.2.3.24.1: one octet)")
        if Encoding.GSM7 in self.encodings and self.default_alphabet is not DefaultAlphabet.GSM:
            raise ValueError("GSM7 needs a route whose data_coding 0 means the GSM alphabet")
        if Encoding.BINARY in self.encodings:
            raise ValueError("binary is not a text encoding; use segment_bytes")
        if self.packed and self.default_alphabet is not DefaultAlphabet.GSM:
            raise ValueError("packing applies to the GSM 7-bit alphabet only")

    @property
    def ref_bits(self) -> int:
        """Width of the concatenation reference this route needs (sar_msg_ref_num is 2 octets)."""
        return 8 if self.split is SplitMethod.UDH8 else 16
