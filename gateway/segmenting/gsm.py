"""GSM 7-bit codecs (3GPP TS 23.038 6.2.1) built from precomputed tables, and septet packing.

The encoder's working form is *compact*: one octet per character, the septet code for a character of the
basic (or locking shift) table, or `0x80 | code` for a character of the extension (or single shift) table.
A compact string shows every character's cost at once (high bit set: two septets) and becomes the wire
form, escape pairs included, with a handful of `bytes.replace` calls. Text that is all Latin-1 (nearly
all GSM text) is mapped by `str.encode('latin-1')` and one `bytes.translate`, both in C.
"""

from __future__ import annotations

import codecs
import re
from functools import cache
from typing import Final

from gateway.segmenting.tables import (
    ESCAPE,
    NationalLanguage,
    basic_table,
    extension_table,
)

_UNENCODABLE: Final = 0xFF  # never a compact code: extension codes stay below 0x80 | 0x7F
_EXT_FLAG: Final = 0x80
ESC_BYTE: Final = bytes((ESCAPE,))


class GsmCodec:
    """One (locking shift, single shift) table pair; None for either means the default table."""

    __slots__ = ("_bad", "_by_ord", "_decode", "_ext_decode", "_latin1", "_pairs", "locking", "single")

    def __init__(self, locking: NationalLanguage | None, single: NationalLanguage | None) -> None:
        self.locking = locking
        self.single = single
        basic = basic_table(locking)
        ext = extension_table(single)
        by_ord: dict[int, int] = {}
        # Extension first so that a character in both tables gets the cheaper basic code.
        for code, char in ext.items():
            by_ord[ord(char)] = _EXT_FLAG | code
        for code, char in enumerate(basic):
            if code != ESCAPE:  # TS 23.038 6.2.1: 0x1B is the escape, never a character
                by_ord[ord(char)] = code
        self._by_ord = by_ord
        latin1 = bytearray([_UNENCODABLE]) * 256
        for cp, code in by_ord.items():
            if cp < 256:
                latin1[cp] = code
        self._latin1 = bytes(latin1)
        # Finds the first character outside both tables in C, so a text that is not GSM at all (Chinese,
        # emoji) is turned away before the slower dict-driven encoder runs over it.
        self._bad = re.compile("[^" + "".join(re.escape(chr(cp)) for cp in sorted(by_ord)) + "]")
        self._pairs = tuple((bytes((_EXT_FLAG | code,)), bytes((ESCAPE, code))) for code in sorted(ext))
        dec = [basic[c] if c != ESCAPE else "\ufffe" for c in range(128)] + ["\ufffe"] * 128
        self._decode = "".join(dec)
        self._ext_decode = dict(ext)

    def compact(self, text: str) -> bytes | int:
        """One octet per character (see module doc), or the index of the first character neither table
        has. An int, not an exception: refusing is the common case for non-Latin text, and cheap."""
        if text.isascii():
            out = text.encode("ascii").translate(self._latin1)
            bad = out.find(_UNENCODABLE)
            return out if bad < 0 else bad
        found = self._bad.search(text)
        if found is not None:
            return found.start()
        try:
            return text.encode("latin-1").translate(self._latin1)
        except UnicodeEncodeError:
            # Greek capitals, the euro sign, national letters: the C charmap encoder with a dict.
            return codecs.charmap_encode(text, "strict", self._by_ord)[0]

    def escaped(self, compact: bytes) -> bytes:
        """The unpacked septets: every extension character becomes the pair ESC, code (TS 23.038 6.2.1.1)."""
        if compact.isascii():
            return compact
        for flagged, pair in self._pairs:
            if flagged in compact:
                compact = compact.replace(flagged, pair)
        return compact

    def decode(self, septets: bytes) -> str:
        """Unpacked septets to text. An escape before a code the table lacks shows the basic character
        (TS 23.038 6.2.1.1 note 1); a dangling escape at the end is dropped."""
        if ESCAPE not in septets:
            return codecs.charmap_decode(septets, "replace", self._decode)[0]
        chunks = septets.split(ESC_BYTE)
        out = [codecs.charmap_decode(chunks[0], "replace", self._decode)[0]]
        for chunk in chunks[1:]:
            if not chunk:
                continue
            code = chunk[0]
            ext = self._ext_decode.get(code)
            rest = chunk[1:] if ext is not None else chunk
            out.append((ext or "") + codecs.charmap_decode(rest, "replace", self._decode)[0])
        return "".join(out)


@cache
def gsm_codec(locking: NationalLanguage | None = None, single: NationalLanguage | None = None) -> GsmCodec:
    """The shared codec for a table pair (built once)."""
    return GsmCodec(locking, single)


DEFAULT_CODEC: Final = gsm_codec()


# --- packing (TS 23.038 6.1.2.1.1, TS 23.040 9.2.3.24 for fill bits after a UDH) ----------------------


@cache
def _pack_masks(octets: int) -> tuple[int, int, int, int, int, int]:
    """Masks that squeeze 8-bit lanes holding septets into 56-bit runs per 64 bits, in three steps."""

    def rep(pattern: int, width: int) -> int:
        return int.from_bytes(pattern.to_bytes(width // 8, "little") * (octets * 8 // width), "little")

    return (
        rep(0x00FF, 16), rep(0xFF00, 16),
        rep(0x0000FFFF, 32), rep(0xFFFF0000, 32),
        rep(0x00000000FFFFFFFF, 64), rep(0xFFFFFFFF00000000, 64),
    )  # fmt: skip


def pack_septets(septets: bytes, fill_bits: int = 0) -> bytes:
    """Pack septets LSB first after `fill_bits` zero bits. When 7 bits are left over in the last octet
    they are a CR, not zeros, so the receiver does not read an '@' (TS 23.038 6.1.2.3.1)."""
    count = len(septets)
    if count == 0:
        return b""
    padded = septets + bytes(-count % 8)
    lo1, hi1, lo2, hi2, lo3, hi3 = _pack_masks(len(padded))
    x = int.from_bytes(padded, "little")
    x = (x & lo1) | ((x & hi1) >> 1)
    x = (x & lo2) | ((x & hi2) >> 2)
    x = (x & lo3) | ((x & hi3) >> 4)
    lanes = bytearray(x.to_bytes(len(padded), "little"))
    del lanes[7::8]  # the top octet of every 64-bit lane is now empty
    bits = 7 * count + fill_bits
    stream = int.from_bytes(lanes, "little") << fill_bits
    if (-bits) % 8 == 7:
        stream |= 0x0D << bits
    return stream.to_bytes((bits + 7) // 8, "little")


def unpack_septets(data: bytes, fill_bits: int = 0, count: int | None = None) -> bytes:
    """Inverse of pack_septets. Without `count` (SMPP gives octets, not septets) every whole septet is
    read, and a CR in the last 7 spare bits is taken for padding (TS 23.038 6.1.2.3.1)."""
    bits = len(data) * 8 - fill_bits
    stream = int.from_bytes(data, "little") >> fill_bits
    whole = bits // 7 if count is None else count
    out = bytes((stream >> (7 * i)) & 0x7F for i in range(whole))
    if count is None and bits % 7 == 0 and out.endswith(b"\r"):
        # Exactly the padding case; a sender whose text really ends in CR there doubles it (6.1.2.3.1).
        return out[:-1]
    return out


def septet_capacity(udh_octets: int) -> int:
    """Septets that fit in 140 octets after a UDH (TS 23.040 9.2.3.24: the UDH is padded to a septet
    boundary): 160 without a UDH, 153 after a 6-octet one, 152 after 7."""
    return (140 - udh_octets) * 8 // 7
