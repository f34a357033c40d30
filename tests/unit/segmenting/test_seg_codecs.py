"""GSM tables, packing and inbound decoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.segmenting import (
    NationalLanguage,
    UdhError,
    decode_text,
    gsm_codec,
    pack_septets,
    parse_udh,
    unpack_septets,
)
from gateway.segmenting.tables import DEFAULT_ALPHABET

septets = st.binary(min_size=1, max_size=200).map(lambda b: bytes(x & 0x7F for x in b))


@given(septets, st.integers(0, 6))
def test_packing_round_trips_with_any_fill(data: bytes, fill: int) -> None:
    packed = pack_septets(data, fill)
    assert len(packed) == (7 * len(data) + fill + 7) // 8
    assert unpack_septets(packed, fill, len(data)) == data


def test_seven_spare_bits_are_a_cr_not_an_at_sign() -> None:
    packed = pack_septets(b"abcdefg")  # 49 bits: 7 spare bits in the 7th octet
    assert packed[-1] >> 1 == 0x0D
    assert unpack_septets(packed) == b"abcdefg"
    assert unpack_septets(pack_septets(b"abcdefgh")) == b"abcdefgh"


def test_every_default_character_round_trips() -> None:
    codec = gsm_codec()
    text = DEFAULT_ALPHABET.replace("\x1b", "") + "^{}\\[~]|€\x0c"
    compact = codec.compact(text)
    assert isinstance(compact, bytes)
    assert codec.decode(codec.escaped(compact)) == text


@pytest.mark.parametrize("language", list(NationalLanguage))
def test_national_tables_round_trip_their_letters(language: NationalLanguage) -> None:
    locking = language if language is not NationalLanguage.SPANISH else None
    codec = gsm_codec(locking, language)
    letters = {
        NationalLanguage.TURKISH: "ĞğŞşİı€çÇ",
        NationalLanguage.SPANISH: "ÁÍÓÚáíóúç€",
        NationalLanguage.PORTUGUESE: "ãõÃÕáÁçÇêÊôÔºª∞€",
    }[language]
    compact = codec.compact(letters)
    assert isinstance(compact, bytes)
    assert codec.decode(codec.escaped(compact)) == letters


def test_unknown_extension_code_shows_the_basic_character() -> None:
    assert decode_text(b"a\x1bAb", 0).text == "aAb"  # TS 23.038 6.2.1.1 note: undefined escape


def test_decode_by_data_coding() -> None:
    assert decode_text(b"\x00\x01\x1be", 0).text == "@£€"
    assert decode_text("café".encode("latin-1"), 0, default_is_gsm=False).text == "café"
    assert decode_text("café".encode("latin-1"), 3).text == "café"
    assert decode_text(b"plain", 1).text == "plain"
    assert decode_text(b"\x00\xff", 4).text.encode("latin-1") == b"\x00\xff"
    assert decode_text("😀中".encode("utf-16-be"), 8).text == "😀中"


def test_decode_with_udh_returns_the_parsed_header() -> None:
    decoded = decode_text(bytes((6, 8, 4, 0x12, 0x34, 3, 2)) + b"hi", 0, udhi=True)
    assert decoded.text == "hi"
    assert decoded.udh is not None
    assert decoded.udh.concat is not None
    assert (decoded.udh.concat.ref, decoded.udh.concat.total, decoded.udh.concat.seq) == (0x1234, 3, 2)


def test_turkish_locking_shift_udh_changes_the_decoding() -> None:
    udh = bytes((3, 0x25, 1, 1))
    assert decode_text(udh + b"\x07", 0, udhi=True).text == "\u0131"  # dotless i at 0x07
    assert decode_text(b"\x07", 0).text == "ì"


def test_packed_inbound_with_udh() -> None:
    udh = bytes((5, 0, 3, 1, 1, 1))
    body = udh + pack_septets(b"hello", 1)
    assert decode_text(body, 0, udhi=True, packed=True).text == "hello"


@pytest.mark.parametrize("bad", [b"", b"\x05\x00\x03\x01", b"\x03\x00\x05\x01"])
def test_malformed_udh_is_refused(bad: bytes) -> None:
    with pytest.raises(UdhError):
        parse_udh(bad)
