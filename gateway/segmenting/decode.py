"""Inbound: short_message / message_payload octets to text, by data_coding (SMPP 3.4 5.2.19)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.segmenting.gsm import gsm_codec, unpack_septets
from gateway.segmenting.tables import NationalLanguage
from gateway.segmenting.udh import Udh, fill_bits, parse_udh
from gateway.smpp.constants import DataCoding


@dataclass(frozen=True, slots=True)
class DecodedText:
    """Text of one short_message, and its UDH when UDHI was set."""

    text: str
    udh: Udh | None = None


def _language(code: int | None) -> NationalLanguage | None:
    if code is None:
        return None
    try:
        return NationalLanguage(code)
    except ValueError:
        return None  # a table we do not have: TS 23.038 says show the default table instead


def decode_text(
    data: bytes,
    data_coding: int,
    *,
    default_is_gsm: bool = True,
    udhi: bool = False,
    packed: bool = False,
) -> DecodedText:
    """Decode inbound user data.

    data_coding 0 is GSM 7-bit (one septet per octet unless `packed`) or, where `default_is_gsm` is
    false, Latin-1; 1 is IA5/ASCII; 3 Latin-1; 8 UCS-2 (UTF-16BE; surrogate halves are kept so a pair
    split across parts by a sender joins back up); 2 and 4 (8-bit data) come back one character per
    octet (Latin-1) so the bytes are recoverable with `.encode('latin-1')`. Other codings are read as
    Latin-1 too rather than refused: an MO is never lost for its alphabet.
    """
    udh: Udh | None = None
    if udhi:
        udh, data = parse_udh(data)
    if data_coding == DataCoding.DEFAULT and default_is_gsm:
        return DecodedText(_decode_gsm(data, udh, packed), udh)
    if data_coding == DataCoding.UCS2:
        return DecodedText(
            data.decode("utf-16-be", "surrogatepass")
            if len(data) % 2 == 0
            else data[:-1].decode("utf-16-be", "surrogatepass") + "\ufffd",
            udh,
        )
    if data_coding == DataCoding.IA5:
        return DecodedText(data.decode("ascii", "replace"), udh)
    return DecodedText(data.decode("latin-1"), udh)


def _decode_gsm(data: bytes, udh: Udh | None, packed: bool) -> str:
    codec = gsm_codec(_language(udh.locking_shift) if udh else None, _language(udh.single_shift) if udh else None)
    if packed:
        # The UDH was cut off already; its fill bits still sit before the first septet.
        data = unpack_septets(data, fill_bits(udh.length) if udh else 0)
    return codec.decode(data)
