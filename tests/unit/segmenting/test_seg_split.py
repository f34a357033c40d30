"""Capacities, split methods, encoding choice and refusals, on texts a reader can check by eye."""

from __future__ import annotations

import pytest

from gateway.segmenting import (
    DefaultAlphabet,
    Encoding,
    MessageTooLong,
    NationalLanguage,
    NotEncodable,
    RouteEncoding,
    SplitMethod,
    decode_text,
    parse_udh,
    preview,
    rereference,
    segment,
    segment_bytes,
    unpack_septets,
)
from gateway.smpp.constants import CommandStatus
from tests.unit.segmenting.seg_helpers import joined

GSM = RouteEncoding()
UDH16 = RouteEncoding(split=SplitMethod.UDH16)
SAR = RouteEncoding(split=SplitMethod.SAR)
PAYLOAD = RouteEncoding(split=SplitMethod.PAYLOAD)


@pytest.mark.parametrize(("route", "single", "multi"), [(GSM, 160, 153), (UDH16, 160, 152), (SAR, 160, 153)])
def test_gsm7_capacities_are_160_153_152_septets(route: RouteEncoding, single: int, multi: int) -> None:
    assert len(segment("a" * single, route)) == 1
    plan = segment("a" * (single + 1), route, ref=9)
    assert [p.units for p in plan] == [multi, single + 1 - multi]
    assert len(segment("a" * multi * 3, route, ref=9)) == 3
    assert len(segment("a" * (multi * 3 + 1), route, ref=9)) == 4


@pytest.mark.parametrize(("route", "single", "multi"), [(GSM, 70, 67), (UDH16, 70, 66)])
def test_ucs2_capacities_are_70_67_66_units(route: RouteEncoding, single: int, multi: int) -> None:
    assert len(segment("中" * single, route)) == 1
    plan = segment("中" * (single + 1), route, ref=9)
    assert [p.units for p in plan] == [multi, single + 1 - multi]
    assert all((len(p.short_message) - parse_udh(p.short_message)[0].length) % 2 == 0 for p in plan)


@pytest.mark.parametrize(("route", "single", "multi"), [(GSM, 140, 134), (UDH16, 140, 133)])
def test_binary_and_latin1_capacities_are_140_134_133_octets(route: RouteEncoding, single: int, multi: int) -> None:
    assert len(segment_bytes(b"\xff" * single, route)) == 1
    assert [p.units for p in segment_bytes(b"\xff" * (single + 1), route, ref=1)] == [multi, single + 1 - multi]
    latin1 = RouteEncoding(encodings=frozenset({Encoding.LATIN1}), split=route.split)
    plan = segment("ô" * (single + 1), latin1, ref=1)
    assert (plan.data_coding, [p.units for p in plan]) == (3, [multi, single + 1 - multi])


def test_udh8_header_carries_reference_total_and_sequence() -> None:
    plan = segment("x" * 400, GSM, ref=0xAB)
    assert [p.short_message[:6] for p in plan] == [bytes((5, 0, 3, 0xAB, 3, seq)) for seq in (1, 2, 3)]
    assert all(p.esm_class == 0x40 and p.data_coding == 0 for p in plan)


def test_udh16_header_carries_a_two_octet_reference() -> None:
    plan = segment("x" * 200, UDH16, ref=0xBEEF)
    assert plan[1].short_message[:7] == bytes((6, 8, 4, 0xBE, 0xEF, 2, 2))


def test_sar_parts_carry_tlvs_and_no_udh() -> None:
    plan = segment("y" * 200, SAR, ref=0x1234)
    assert [p.tlvs for p in plan] == [
        ((0x020C, 0x1234), (0x020E, 2), (0x020F, 1)),
        ((0x020C, 0x1234), (0x020E, 2), (0x020F, 2)),
    ]
    assert [p.esm_class for p in plan] == [0, 0]
    assert plan[0].short_message == b"y" * 153


def test_payload_route_sends_one_pdu_with_message_payload() -> None:
    plan = segment("z" * 500, PAYLOAD)
    assert len(plan) == 1
    assert plan[0].short_message == b""
    assert plan[0].tlvs == ((0x0424, b"z" * 500),)


def test_a_short_text_on_a_payload_route_uses_short_message() -> None:
    plan = segment("hi", PAYLOAD)
    assert (plan[0].short_message, plan[0].tlvs) == (b"hi", ())


def test_extension_character_costs_two_septets_and_stays_with_its_escape() -> None:
    text = "a" * 152 + "€" + "b" * 10
    plan = segment(text, GSM, ref=1)
    assert plan[0].units == 152  # the escape pair did not fit after 152 septets: it moved to part 2
    assert plan[1].short_message[6:8] == b"\x1be"
    assert joined(plan, GSM) == text
    assert len(segment("€" * 80, GSM)) == 1
    assert len(segment("€" * 81, GSM, ref=1)) == 2


def test_crlf_is_not_split() -> None:
    plan = segment("a" * 152 + "\r\n" + "b" * 10, GSM, ref=1)
    assert plan[0].text.endswith("a")
    assert plan[1].text.startswith("\r\n")


def test_emoji_surrogate_pair_moves_to_the_next_part() -> None:
    text = "中" * 66 + "😀" + "中" * 10
    plan = segment(text, GSM, ref=1)
    assert plan[0].text == "中" * 66
    assert plan[1].text.startswith("😀")


@pytest.mark.parametrize("cluster", ["👨\u200d👩\u200d👧\u200d👦", "🇫🇷", "e\u0301\u0302"])
def test_grapheme_cluster_moves_whole_to_the_next_part(cluster: str) -> None:
    text = "中" * 65 + cluster + "中" * 10
    plan = segment(text, GSM, ref=1)
    assert plan[0].text == "中" * 65
    assert plan[1].text.startswith(cluster)


def test_a_combining_mark_away_from_the_cuts_leaves_every_part_full() -> None:
    text = "中" * 30 + "e\u0301" + "中" * 200
    plan = segment(text, GSM, ref=1)
    assert [p.units for p in plan] == [67, 67, 67, 31]
    assert "".join(p.text for p in plan) == text


def test_a_combining_mark_right_after_a_cut_takes_its_base_along() -> None:
    text = "中" * 66 + "e\u0301" + "中" * 100
    plan = segment(text, GSM, ref=1)
    assert plan[0].text == "中" * 66
    assert plan[1].text.startswith("e\u0301")


def test_hangul_syllables_are_cut_at_full_parts_but_conjoining_jamo_stay_together() -> None:
    syllables = "한국어" * 50  # precomposed: a boundary between any two (UAX #29 GB6-GB8 join jamo only)
    assert [p.units for p in segment(syllables, GSM, ref=1)] == [67, 67, 16]
    jamo = "中" * 66 + "\u1100\u1161\u11a8" + "中" * 10  # one syllable written as L V T
    plan = segment(jamo, GSM, ref=1)
    assert plan[0].text == "中" * 66
    assert plan[1].text.startswith("\u1100\u1161\u11a8")


def test_a_cluster_longer_than_a_part_is_cut_between_code_points_only() -> None:
    family = "👨\u200d👩\u200d👧\u200d👦" * 10  # one cluster of 110 code units (ZWJ chain)
    plan = segment(family, GSM, ref=1)
    assert "".join(p.text for p in plan) == family
    assert all(not "\ud800" <= p.text[-1] <= "\udbff" for p in plan)


def test_too_long_raises_with_parts_needed_and_rinvmsglen() -> None:
    with pytest.raises(MessageTooLong) as caught:
        segment("a" * (153 * 10 + 1), GSM, ref=1)
    assert caught.value.parts_needed == 11
    assert caught.value.command_status == CommandStatus.ESME_RINVMSGLEN
    assert len(segment("a" * 153 * 10, GSM, ref=1)) == 10


def test_not_encodable_names_the_character_and_position() -> None:
    route = RouteEncoding(encodings=frozenset({Encoding.GSM7}))
    with pytest.raises(NotEncodable) as caught:
        segment("hello 中文", route)
    assert (caught.value.char, caught.value.position, caught.value.encoding) == ("中", 6, "gsm7")


def test_literal_escape_and_other_controls_are_not_gsm() -> None:
    route = RouteEncoding(encodings=frozenset({Encoding.GSM7}))
    for control in ("\x1b", "\x00", "\t", "\x07"):
        with pytest.raises(NotEncodable):
            segment(f"a{control}b", route)
    assert segment("line\nfeed\rand\x0cpage", route)[0].short_message == b"line\nfeed\rand\x1b\npage"


def test_multipart_without_reference_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="reference"):
        segment("a" * 200, GSM)
    with pytest.raises(ValueError, match="8 bits"):
        segment("a" * 200, GSM, ref=256)


def test_packed_gsm_puts_fill_bits_after_the_udh() -> None:
    route = RouteEncoding(packed=True)
    plan = segment("hellohello" * 20, route, ref=7)
    first = plan[0].short_message
    assert first[:6] == bytes((5, 0, 3, 7, 2, 1))
    # 6 UDH octets = 48 bits, one fill bit to reach 7 septets; 153 septets then fill 134 octets.
    assert len(first) == 6 + 134
    assert unpack_septets(first[6:], 1, 153) == b"hellohello" * 15 + b"hel"
    assert decode_text(first, 0, udhi=True, packed=True).text == plan[0].text


def test_packed_single_part_matches_the_ts_23038_example() -> None:
    plan = segment("hellohello", RouteEncoding(packed=True))
    assert plan[0].short_message.hex() == "e8329bfd4697d9ec37"


def test_ascii_route_uses_data_coding_0_and_septet_capacity() -> None:
    route = RouteEncoding(encodings=frozenset({Encoding.ASCII}), default_alphabet=DefaultAlphabet.ASCII)
    plan = segment("`{}`" * 40, route)
    assert (plan.data_coding, plan[0].short_message) == (0, b"`{}`" * 40)


def test_gsm_is_preferred_and_latin1_wins_when_extension_characters_need_more_parts() -> None:
    both = RouteEncoding(encodings=frozenset({Encoding.GSM7, Encoding.LATIN1, Encoding.UCS2}))
    assert segment("plain text", both).encoding is Encoding.GSM7
    assert segment("{" * 200, both, ref=1).encoding is Encoding.LATIN1  # 2 parts, GSM would need 3


def test_turkish_uses_shift_tables_only_when_allowed_and_fewer_parts_than_ucs2() -> None:
    text = "Şişli'de \u0131ğd\u0131r çok güzel, ğ ş \u0131 İ " * 5
    plain = segment(text, GSM, ref=1)
    assert plain.encoding is Encoding.UCS2
    turkish = RouteEncoding(national=frozenset({NationalLanguage.TURKISH}))
    plan = segment(text, turkish, ref=1)
    assert plan.encoding is Encoding.GSM7
    assert len(plan) < len(plain)
    assert plan.locking_shift is NationalLanguage.TURKISH or plan.single_shift is NationalLanguage.TURKISH
    assert joined(plan, turkish) == text
    udh = parse_udh(plan[0].short_message)[0]
    assert NationalLanguage.TURKISH in (udh.single_shift, udh.locking_shift)


def test_single_shift_capacity_is_reduced_by_its_ie() -> None:
    route = RouteEncoding(national=frozenset({NationalLanguage.SPANISH}))
    text = "ú" + "a" * 153  # 2 + 153 = 155 septets fit one part after a 4-octet UDH (1 + 3)
    plan = segment(text, route)
    assert (len(plan), plan.single_shift) == (1, NationalLanguage.SPANISH)
    assert plan[0].short_message[:4] == bytes((3, 0x24, 1, 2))
    assert len(segment(text + "a", route, ref=1)) == 2
    assert [p.units for p in segment("ú" + "a" * 300, route, ref=1)] == [149, 149, 4]


def test_portuguese_locking_and_single_shift_round_trip() -> None:
    route = RouteEncoding(national=frozenset({NationalLanguage.PORTUGUESE}))
    text = "Atenção: você não está só, ÁÍÓÚ ãõ êÊ ª º ∞ " * 3
    plan = segment(text, route, ref=5)
    assert plan.encoding is Encoding.GSM7
    assert joined(plan, route) == text


def test_transliteration_keeps_text_gsm_and_reports_replacements() -> None:
    text = "“Sale” \u2013 50% off… don\u2019t miss\u00a0it"
    assert segment(text, GSM).encoding is Encoding.UCS2
    route = RouteEncoding(transliterate=True)
    plan = segment(text, route)
    assert plan.encoding is Encoding.GSM7
    assert plan[0].text == '"Sale" - 50% off... don\'t miss it'
    assert [(r.position, r.original) for r in plan.replacements] == [
        (0, "“"), (5, "”"), (7, "\u2013"), (16, "…"), (21, "\u2019"), (28, "\u00a0"),
    ]  # fmt: skip


def test_transliteration_is_not_applied_when_ucs2_is_needed_anyway() -> None:
    plan = segment("“中文”", RouteEncoding(transliterate=True))
    assert (plan.encoding, plan.replacements, plan[0].text) == (Encoding.UCS2, (), "“中文”")


def test_preview_reports_encoding_parts_and_room_left() -> None:
    p = preview("a" * 150, GSM)
    assert (p.encoding, p.parts, p.units_per_part, p.chars_left, p.too_long) == (Encoding.GSM7, 1, 160, 10, False)
    p = preview("a" * 200, GSM)
    assert (p.parts, p.units_per_part, p.chars_left) == (2, 153, 106)
    p = preview("中" * 71, GSM)
    assert (p.encoding, p.data_coding, p.parts, p.chars_left) == (Encoding.UCS2, 8, 2, 63)
    assert preview("a" * 2000, GSM).too_long
    assert preview("don\u2019t", RouteEncoding(transliterate=True)).replacements[0].original == "\u2019"


def test_national_tables_are_not_used_when_ucs2_needs_no_more_parts() -> None:
    turkish = RouteEncoding(national=frozenset({NationalLanguage.TURKISH}))
    assert segment("\u0131\u015f", turkish).encoding is Encoding.UCS2  # 1 part either way


def test_route_rejects_contradictory_settings() -> None:
    with pytest.raises(ValueError, match="GSM7"):
        RouteEncoding(default_alphabet=DefaultAlphabet.ASCII)
    with pytest.raises(ValueError, match="max_parts"):
        RouteEncoding(max_parts=0)


def test_rereference_stamps_the_reference_where_a_receiver_reads_it() -> None:
    udh8 = rereference(segment("a" * 200, GSM, ref=1), 200)
    assert [parse_udh(p.short_message)[0].concat.ref for p in udh8] == [200, 200]  # type: ignore[union-attr]
    udh16 = rereference(segment("a" * 200, UDH16, ref=1), 0xBEEF)
    assert [parse_udh(p.short_message)[0].concat.ref for p in udh16] == [0xBEEF, 0xBEEF]  # type: ignore[union-attr]
    sar = rereference(segment("a" * 200, SAR, ref=1), 0xBEEF)
    assert [dict(p.tlvs)[0x020C] for p in sar] == [0xBEEF, 0xBEEF]
    single = segment("a" * 20, GSM)
    assert rereference(single, 7) is single  # one part carries no reference


@pytest.mark.parametrize(("route", "ref"), [(GSM, 256), (GSM, -1), (UDH16, 0x10000), (SAR, 0x10000)])
def test_rereference_refuses_a_reference_the_route_cannot_carry(route: RouteEncoding, ref: int) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        rereference(segment("a" * 200, route, ref=1), ref)
