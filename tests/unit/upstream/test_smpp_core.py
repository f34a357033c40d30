"""The SMPP server face's pure decisions (gateway/upstream/smpp_core.py): what a submit asks (SMPP times,
data_coding, concatenation, destinations), long messages held until whole, receipts and MO in flight, the
bind lock-out, the refusal table, and what goes back (receipts, MO, query_sm answers). No sockets."""

from __future__ import annotations

import calendar
import itertools
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.segmenting.decode import decode_text
from gateway.smpp import codec
from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandStatus as S
from gateway.smpp.constants import DataCoding, EsmClass, MessageState, Npi, Tag, Ton
from gateway.smpp.receipt import parse_receipt
from gateway.upstream.errors import (
    ClientRefConflict,
    InternalError,
    InvalidNumber,
    InvalidRequest,
    NotFound,
    Overloaded,
    ShuttingDown,
    TextNotEncodable,
    TextTooLong,
    UpstreamError,
    UpstreamStoreFull,
)
from gateway.upstream.schema import Event, EventKind, MessageStatus
from gateway.upstream.smpp_core import (
    MAX_TEXT,
    Assembly,
    AuthGuard,
    Outbox,
    Piece,
    Refused,
    SmppAccountConfig,
    SmppServerConfig,
    TooLong,
    Whole,
    _time,
    bind_type,
    mo_pdu,
    parse_status,
    query_answer,
    read_submit,
    receipt_pdu,
    smpp_time,
    status_for_error,
    status_for_reason,
)

NOW = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
ACCOUNT = SmppAccountConfig(account="acme", system_id="acmesmpp", password_env="ACME_SMPP")
LATIN1 = replace(ACCOUNT, default_alphabet="latin1")
TO = "447700900001"


def submit(short_message: bytes = b"hello", **changes: Any) -> P.SubmitSm:
    pdu = P.SubmitSm(source_addr="ACME", destination_addr=TO, short_message=short_message)
    return replace(pdu, **changes)


def read(pdu: P.SubmitSm | P.DataSm | P.SubmitMulti, account: SmppAccountConfig = ACCOUNT) -> Piece:
    return read_submit(pdu, account, NOW)


def refusal(pdu: P.SubmitSm | P.DataSm | P.SubmitMulti, account: SmppAccountConfig = ACCOUNT) -> S:
    with pytest.raises(Refused) as caught:
        read_submit(pdu, account, NOW)
    return S(caught.value.command_status)


def udh8(ref: int, total: int, seq: int) -> bytes:
    # 3GPP TS 23.040 9.2.3.24.1: UDHL 5, IEI 0x00, IEDL 3, ref, total, seq.
    return bytes((5, 0x00, 3, ref, total, seq))


def udh16(ref: int, total: int, seq: int) -> bytes:
    # 9.2.3.24.8: UDHL 6, IEI 0x08, IEDL 4, ref (2 octets), total, seq.
    return bytes((6, 0x08, 4, ref >> 8, ref & 0xFF, total, seq))


def sar(ref: int, total: int, seq: int) -> tuple[tuple[int, int], ...]:
    return ((Tag.SAR_MSG_REF_NUM, ref), (Tag.SAR_TOTAL_SEGMENTS, total), (Tag.SAR_SEGMENT_SEQNUM, seq))


def ucs2_part(data: bytes, ref: int, total: int, seq: int) -> P.SubmitSm:
    return submit(udh8(ref, total, seq) + data, esm_class=EsmClass.UDHI, data_coding=DataCoding.UCS2)


def utc(*fields: int) -> float:
    return float(calendar.timegm((*fields, 0, 0, 0)))


# --- SMPP times (3.4 7.1.1) ---------------------------------------------------------------------------


def parse_time(value: str, now: float = NOW) -> float | None:
    return _time(value, now, S.ESME_RINVSCHED, "schedule_delivery_time")


def test_empty_time_is_none() -> None:
    assert parse_time("") is None


def test_absolute_time_in_utc() -> None:
    assert parse_time("300115103000000+") == utc(2030, 1, 15, 10, 30, 0)


def test_absolute_time_with_quarter_hour_offsets_is_converted_to_utc() -> None:
    local = utc(2030, 1, 15, 10, 30, 0)
    # "+" is local time ahead of UTC by nn quarter hours, "-" behind it.
    assert parse_time("300115103000004+") == local - 3600
    assert parse_time("300115103000004-") == local + 3600
    assert parse_time("300115103000022+") == local - 22 * 900  # India, +05:30
    assert parse_time("300115103000048-") == local + 12 * 3600


def test_absolute_time_keeps_its_tenths_of_a_second() -> None:
    assert parse_time("300115103000700+") == utc(2030, 1, 15, 10, 30, 0) + 0.7


def test_relative_time_counts_from_now() -> None:
    assert parse_time("000000013000000R") == NOW + 5400
    assert parse_time("000001000000000R") == NOW + 86400
    # SMPP 3.4 7.1.1.2: years and months as the SMSC counts them (365 and 30 days).
    assert parse_time("010203040506000R") == NOW + (365 + 60 + 3) * 86400 + 4 * 3600 + 5 * 60 + 6


@pytest.mark.parametrize(
    "value",
    [
        "30011510300000+",  # 15 characters
        "3001151030000000+",  # 17
        "3001151030000X0+",
        "300115103000000Z",  # neither +, - nor R
        "300115103000000 ",
        "301315103000000+",  # month 13
        "300015103000000+",  # month 0
        "300100103000000+",  # day 0
        "300132103000000+",  # day 32
        "300115243000000+",  # hour 24
        "300115106000000+",  # minute 60
        "300115103060000+",  # second 60
    ],
)
def test_malformed_time_is_refused_with_the_fields_status(value: str) -> None:
    for status, name in ((S.ESME_RINVSCHED, "schedule_delivery_time"), (S.ESME_RINVEXPIRY, "validity_period")):
        with pytest.raises(Refused) as caught:
            _time(value, NOW, status, name)
        assert S(caught.value.command_status) is status
        assert name in caught.value.reason


def test_a_day_the_month_does_not_have_is_refused() -> None:
    # 31 February names no moment; it must not be read as 3 March.
    with pytest.raises(Refused):
        parse_time("300231103000000+")


def test_an_offset_over_48_quarter_hours_is_refused() -> None:
    # SMPP 3.4 7.1.1.1: nn is 00-48.
    with pytest.raises(Refused):
        parse_time("300115103000049+")


@given(st.integers(min_value=int(utc(2000, 1, 1, 0, 0, 0)), max_value=int(utc(2099, 12, 31, 23, 59, 59))))
def test_any_absolute_time_round_trips_through_smpp_time(at: int) -> None:
    text = smpp_time(at)
    assert len(text) == 16
    assert text.endswith("000+")
    assert parse_time(text) == at


@given(
    st.integers(min_value=int(utc(2001, 1, 1, 0, 0, 0)), max_value=int(utc(2098, 12, 31, 0, 0, 0))),
    st.integers(min_value=0, max_value=48),
    st.sampled_from("+-"),
    st.integers(min_value=0, max_value=9),
)
def test_any_local_time_with_its_offset_names_the_same_utc_moment(at: int, nn: int, sign: str, tenths: int) -> None:
    local = at + (nn * 900 if sign == "+" else -nn * 900)
    text = smpp_time(local)[:12] + f"{tenths}{nn:02d}{sign}"
    assert parse_time(text) == pytest.approx(at + tenths / 10)


def test_schedule_and_validity_in_a_submit() -> None:
    piece = read(submit(schedule_delivery_time="000000010000000R", validity_period="000001000000000R"))
    assert piece.schedule_at == NOW + 3600
    assert piece.validity_seconds == 86400
    piece = read(submit(validity_period=smpp_time(NOW + 600)))
    assert piece.validity_seconds == 600


def test_malformed_schedule_is_rinvsched_and_malformed_validity_is_rinvexpiry() -> None:
    assert refusal(submit(schedule_delivery_time="301315103000000+")) is S.ESME_RINVSCHED
    assert refusal(submit(schedule_delivery_time="abcdefghijklmnoR")) is S.ESME_RINVSCHED
    assert refusal(submit(validity_period="301315103000000+")) is S.ESME_RINVEXPIRY
    assert refusal(submit(validity_period="30011510300000+-")) is S.ESME_RINVEXPIRY


def test_validity_in_the_past_is_rinvexpiry() -> None:
    assert refusal(submit(validity_period=smpp_time(NOW - 60))) is S.ESME_RINVEXPIRY
    assert refusal(submit(validity_period="000000000000000R")) is S.ESME_RINVEXPIRY
    assert refusal(submit(validity_period=smpp_time(NOW))) is S.ESME_RINVEXPIRY


# --- data_coding (SMPP 3.4 5.2.19, 3GPP TS 23.038) -------------------------------------------------------


def test_data_coding_0_is_gsm_unpacked_with_extension_characters() -> None:
    assert read(submit(b"\x00\x01\x02Hello")).text == "@£$Hello"
    # TS 23.038 6.2.1.1: the extension table behind ESC (0x1B).
    assert read(submit(b"\x1b\x65 \x1b\x28\x1b\x29 \x1b\x3c\x1b\x3e \x1b\x14 \x1b\x2f")).text == "€ {} [] ^ \\"
    assert read(submit(b"\x7f\x7b\x05")).text == "àäé"


def test_data_coding_0_is_latin1_for_an_esme_that_says_so() -> None:
    assert read(submit(b"caf\xe9 \xa3"), LATIN1).text == "café £"
    assert read(submit(b"\x00"), LATIN1).text == "\x00"


def test_data_coding_1_is_ia5_and_3_is_latin1() -> None:
    assert read(submit(b"Hello {x}", data_coding=DataCoding.IA5)).text == "Hello {x}"
    assert read(submit(b"caf\xe9", data_coding=DataCoding.LATIN1)).text == "café"


def test_data_coding_8_is_ucs2_with_surrogate_pairs() -> None:
    for text in ("Привет", "€ ok", "😀 ok 🎉", "𝄞"):
        assert read(submit(text.encode("utf-16-be"), data_coding=DataCoding.UCS2)).text == text


def test_ucs2_with_half_a_surrogate_pair_and_no_other_part_is_refused() -> None:
    half = "😀".encode("utf-16-be")[:2]
    assert refusal(submit(b"\x00a" + half, data_coding=DataCoding.UCS2)) is S.ESME_RSUBMITFAIL


def test_other_text_codings_the_gateway_reads() -> None:
    cases = [
        (DataCoding.CYRILLIC, "Привет", "iso8859_5"),
        (DataCoding.HEBREW, "שלום", "iso8859_8"),
        (DataCoding.ISO_2022_JP, "こんにちは", "iso2022_jp"),
        (0x0E, "안녕", "euc_kr"),
    ]
    for dc, text, codec_name in cases:
        assert read(submit(text.encode(codec_name), data_coding=dc)).text == text


def test_cyrillic_part_with_a_udh_is_read_after_its_header() -> None:
    piece = read(submit(udh8(9, 2, 1) + "Привет".encode("iso8859_5"), esm_class=EsmClass.UDHI, data_coding=6))
    assert (piece.text, piece.ref, piece.total, piece.seq) == ("Привет", 9, 2, 1)


@pytest.mark.parametrize("dc", [0x10, 0x11, 0x12, 0x13, 0xF0, 0xF1, 0xF2, 0xF3])
def test_message_class_codings_with_the_gsm_alphabet(dc: int) -> None:
    assert read(submit(b"\x1b\x65\x00ok", data_coding=dc)).text == "€@ok"


@pytest.mark.parametrize("dc", [0x10, 0xF0])
def test_message_class_codings_are_gsm_even_where_data_coding_0_is_latin1(dc: int) -> None:
    # TS 23.038 4: 0x10-0x13 and 0xF0-0xF3 name the GSM 7-bit default alphabet itself, not the SMSC default.
    assert read(submit(b"\x1b\x65\x00ok", data_coding=dc), LATIN1).text == "€@ok"


@pytest.mark.parametrize("dc", [0x18, 0x19, 0x1A, 0x1B])
def test_message_class_codings_with_ucs2(dc: int) -> None:
    assert read(submit("Привет😀".encode("utf-16-be"), data_coding=dc)).text == "Привет😀"


@pytest.mark.parametrize("dc", [0x02, 0x04, 0x14, 0x15, 0x1C, 0x1F, 0xF4, 0xF5, 0xF7])
def test_binary_codings_are_refused(dc: int) -> None:
    assert refusal(submit(b"\x01\x02\x03", data_coding=dc)) is S.ESME_RSUBMITFAIL


@pytest.mark.parametrize("dc", [0x05, 0x09, 0x0D, 0x20, 0x40, 0xC0, 0xE0])
def test_codings_the_gateway_does_not_read_are_refused(dc: int) -> None:
    assert refusal(submit(b"abc", data_coding=dc)) is S.ESME_RSUBMITFAIL


@given(
    st.binary(max_size=40),
    st.one_of(st.integers(min_value=0, max_value=255), st.sampled_from([0, 1, 3, 6, 8, 0x10, 0x18, 0xF0])),
    st.sampled_from([0, int(EsmClass.UDHI)]),
    st.sampled_from([ACCOUNT, LATIN1]),
)
def test_any_user_data_is_read_or_refused_never_an_error(
    data: bytes, dc: int, esm_class: int, account: SmppAccountConfig
) -> None:
    try:
        piece = read_submit(submit(data, esm_class=esm_class, data_coding=dc), account, NOW)
    except Refused as err:
        status = err.command_status
    else:
        status, _ = S.ESME_ROK, piece.text
    assert status in S.__members__.values()


def test_a_udh_longer_than_the_user_data_is_refused() -> None:
    for data in (b"\x09\x00\x03\x01", b"\x05\x00\x07\x01\x02\x01abc", b"\x04\x96\x81\xf4\xa13j\xa2\x14"):
        status = refusal(submit(data, esm_class=EsmClass.UDHI))
        assert status in (S.ESME_RSUBMITFAIL, S.ESME_RINVESMCLASS, S.ESME_RINVMSGLEN)


# --- concatenation --------------------------------------------------------------------------------------


def test_udh_8bit_concatenation_gives_ref_total_seq() -> None:
    piece = read(submit(udh8(0xAB, 3, 2) + b"part", esm_class=EsmClass.UDHI))
    assert (piece.ref, piece.total, piece.seq, piece.text) == (0xAB, 3, 2, "part")


def test_udh_16bit_concatenation_gives_ref_total_seq() -> None:
    piece = read(submit(udh16(0x1234, 4, 4) + b"last", esm_class=EsmClass.UDHI))
    assert (piece.ref, piece.total, piece.seq, piece.text) == (0x1234, 4, 4, "last")


def test_udh_on_ucs2_text() -> None:
    piece = read(ucs2_part("Привет".encode("utf-16-be"), 7, 2, 1))
    assert (piece.ref, piece.total, piece.seq, piece.text) == (7, 2, 1, "Привет")


def test_sar_tlvs_give_ref_total_seq() -> None:
    piece = read(submit(b"sar part", tlvs=sar(0xBEEF, 5, 3)))
    assert (piece.ref, piece.total, piece.seq, piece.text) == (0xBEEF, 5, 3, "sar part")
    piece = read(P.DataSm(source_addr="ACME", destination_addr=TO, tlvs=((Tag.MESSAGE_PAYLOAD, b"dp"), *sar(1, 2, 2))))
    assert (piece.ref, piece.total, piece.seq, piece.text) == (1, 2, 2, "dp")


def test_a_udh_concatenation_wins_over_sar_tlvs() -> None:
    piece = read(submit(udh8(1, 2, 1) + b"x", esm_class=EsmClass.UDHI, tlvs=sar(99, 3, 3)))
    assert (piece.ref, piece.total, piece.seq) == (1, 2, 1)


def test_a_udh_without_concatenation_is_a_whole_message() -> None:
    # IEI 0x24 (national language single shift, Turkish): no concatenation, the text is whole.
    piece = read(submit(bytes((3, 0x24, 1, 1)) + b"abc", esm_class=EsmClass.UDHI))
    assert (piece.ref, piece.total, piece.seq) == (0, 1, 1)


def test_one_part_of_one_is_a_whole_message() -> None:
    for pdu in (submit(udh8(5, 1, 1) + b"x", esm_class=EsmClass.UDHI), submit(b"x", tlvs=sar(5, 1, 1))):
        piece = read(pdu)
        assert (piece.ref, piece.total, piece.seq, piece.text) == (0, 1, 1, "x")


@pytest.mark.parametrize(("total", "seq"), [(3, 0), (3, 4), (0, 0), (0, 1), (2, 255)])
def test_a_part_number_outside_its_message_is_rinvesmclass(total: int, seq: int) -> None:
    assert refusal(submit(udh8(1, total, seq) + b"x", esm_class=EsmClass.UDHI)) is S.ESME_RINVESMCLASS
    assert refusal(submit(udh16(1, total, seq) + b"x", esm_class=EsmClass.UDHI)) is S.ESME_RINVESMCLASS
    assert refusal(submit(b"x", tlvs=sar(1, total, seq))) is S.ESME_RINVESMCLASS


def test_sar_parts_of_a_ucs2_text_may_split_a_surrogate_pair() -> None:
    data = "ab😀cd".encode("utf-16-be")
    first, second = data[:6], data[6:]  # the cut falls between the two halves of 😀
    assembly = Assembly(60.0)
    pieces = [
        read(submit(part, data_coding=DataCoding.UCS2, tlvs=sar(77, 2, seq))) for seq, part in ((1, first), (2, second))
    ]
    assert assembly.add("acme", pieces[0], ("c", 1), NOW) is None
    whole = assembly.add("acme", pieces[1], ("c", 2), NOW)
    assert whole is not None
    assert whole.piece.text == "ab😀cd"


# --- what a submit carries ------------------------------------------------------------------------------


def test_short_message_and_message_payload_both_set_is_rinvparlen() -> None:
    assert refusal(submit(b"short", tlvs=((Tag.MESSAGE_PAYLOAD, b"payload"),))) is S.ESME_RINVPARLEN


def test_message_payload_alone_carries_the_text() -> None:
    assert read(submit(b"", tlvs=((Tag.MESSAGE_PAYLOAD, b"x" * 300),))).text == "x" * 300
    # An empty message_payload beside a short_message is no second text.
    assert read(submit(b"short", tlvs=((Tag.MESSAGE_PAYLOAD, b""),))).text == "short"


def test_no_text_is_rinvmsglen() -> None:
    assert refusal(submit(b"")) is S.ESME_RINVMSGLEN
    assert refusal(submit(b"", tlvs=((Tag.MESSAGE_PAYLOAD, b""),))) is S.ESME_RINVMSGLEN
    assert refusal(P.DataSm(source_addr="ACME", destination_addr=TO)) is S.ESME_RINVMSGLEN


def test_a_text_over_10000_characters_is_rinvmsglen() -> None:
    assert read(submit(b"", tlvs=((Tag.MESSAGE_PAYLOAD, b"x" * MAX_TEXT),))).text == "x" * MAX_TEXT
    assert refusal(submit(b"", tlvs=((Tag.MESSAGE_PAYLOAD, b"x" * (MAX_TEXT + 1)),))) is S.ESME_RINVMSGLEN


def test_an_empty_destination_is_rinvdstadr() -> None:
    assert refusal(submit(destination_addr="")) is S.ESME_RINVDSTADR


def test_sender_recipient_and_receipt_request() -> None:
    piece = read(submit(registered_delivery=1))
    assert (piece.sender, piece.to, piece.receipt) == ("ACME", (TO,), True)
    # SMPP 3.4 5.2.17: bits 1-0 ask for a receipt (1: any outcome, 2: failure only); the rest do not.
    assert read(submit(registered_delivery=2)).receipt
    assert not read(submit(registered_delivery=0)).receipt
    assert not read(submit(registered_delivery=0x10)).receipt


def test_data_sm_reads_like_submit_sm_without_times() -> None:
    pdu = P.DataSm(source_addr="ACME", destination_addr=TO, registered_delivery=1,
                   tlvs=((Tag.MESSAGE_PAYLOAD, "Привет".encode("utf-16-be")),), data_coding=8)  # fmt: skip
    piece = read(pdu)
    assert (piece.text, piece.to, piece.receipt, piece.schedule_at, piece.validity_seconds) == (
        "Привет", (TO,), True, None, None
    )  # fmt: skip


def test_service_type_may_name_a_class() -> None:
    # SMPP 3.4 5.2.11: service_type is at most 5 characters: the short names, and the full ones too.
    for service_type, wanted in (("MKT", "marketing"), ("ntf", "notification"), ("NOTIF", "notification"),
                                 ("OTP", "verification"), ("Verif", "verification"), (" otp ", "verification"),
                                 ("MARKETING", "marketing"), ("verification", "verification")):  # fmt: skip
        assert read(submit(service_type=service_type)).message_class == wanted, service_type


def test_service_type_naming_no_class_takes_the_accounts() -> None:
    assert read(submit(service_type="")).message_class == "notification"
    assert read(submit(service_type="CMT")).message_class == "notification"
    marketer = replace(ACCOUNT, message_class="marketing")
    assert read(submit(service_type="WAP"), marketer).message_class == "marketing"
    assert read(submit(service_type="NTF"), marketer).message_class == "notification"


def multi(*dests: P.DestAddress | P.DistributionList, **changes: Any) -> P.SubmitMulti:
    return replace(P.SubmitMulti(source_addr="ACME", dest_addresses=dests, short_message=b"to many"), **changes)


def test_submit_multi_to_several_numbers() -> None:
    piece = read(multi(P.DestAddress(1, 1, TO), P.DestAddress(1, 1, "447700900002")))
    assert piece.to == (TO, "447700900002")
    assert piece.unsuccess == ()
    assert piece.text == "to many"


def test_submit_multi_distribution_lists_and_empty_addresses_are_unsuccess_entries() -> None:
    piece = read(multi(P.DistributionList("friends"), P.DestAddress(1, 1, TO), P.DestAddress(1, 1, "")))
    assert piece.to == (TO,)
    assert [(u.address, S(u.error_status_code)) for u in piece.unsuccess] == [
        ("friends", S.ESME_RINVDLNAME),
        ("", S.ESME_RINVDSTADR),
    ]


def test_submit_multi_with_nowhere_to_send_is_refused() -> None:
    assert refusal(multi(P.DistributionList("friends"), P.DestAddress(1, 1, ""))) is S.ESME_RINVDSTADR
    assert refusal(multi()) is S.ESME_RINVNUMDESTS
    too_many = [P.DestAddress(1, 1, f"4477009{i:05d}") for i in range(255)]
    assert refusal(multi(*too_many)) is S.ESME_RINVNUMDESTS
    assert len(read(multi(*too_many[:254])).to) == 254


# --- long messages --------------------------------------------------------------------------------------


def part(seq: int, total: int = 3, *, ref: int = 1, text: str | None = None, to: str = TO) -> Piece:
    return Piece(sender="ACME", to=(to,), text=f"<{seq}>" if text is None else text, message_class="marketing",
                 receipt=True, schedule_at=None, validity_seconds=3600, ref=ref, total=total, seq=seq)  # fmt: skip


def test_parts_in_any_order_make_the_whole_text() -> None:
    assembly = Assembly(60.0)
    assert assembly.add("acme", part(3), ("c", 13), NOW) is None
    assert assembly.add("acme", part(1), ("c", 11), NOW) is None
    assert assembly.pending == 1
    whole = assembly.add("acme", part(2), ("c", 12), NOW)
    assert isinstance(whole, Whole)
    assert whole.piece.text == "<1><2><3>"
    assert whole.tokens == (("c", 13), ("c", 11), ("c", 12))
    # The first part's fields, as a whole message.
    assert (whole.piece.sender, whole.piece.to, whole.piece.message_class, whole.piece.receipt) == (
        "ACME", (TO,), "marketing", True
    )  # fmt: skip
    assert (whole.piece.ref, whole.piece.total, whole.piece.seq, whole.piece.validity_seconds) == (0, 1, 1, 3600)
    assert assembly.pending == 0


def test_a_part_sent_twice_keeps_the_first_copy_and_answers_both() -> None:
    assembly = Assembly(60.0)
    assert assembly.add("acme", part(1, 2), ("c", 1), NOW) is None
    assert assembly.add("acme", part(1, 2, text="again"), ("c", 2), NOW) is None
    whole = assembly.add("acme", part(2, 2), ("c", 3), NOW)
    assert whole is not None
    assert whole.piece.text == "<1><2>"
    assert whole.tokens == (("c", 1), ("c", 2), ("c", 3))


def test_interleaved_groups_stay_apart() -> None:
    assembly = Assembly(60.0)
    done = []
    adds = [
        ("acme", part(1, 2, ref=1)), ("acme", part(1, 2, ref=2)), ("acme", part(1, 2, ref=1, to="447700900002")),
        ("other", part(1, 2, ref=1)), ("acme", part(2, 2, ref=2, text="B")), ("acme", part(2, 2, ref=1, text="A")),
        ("other", part(2, 2, ref=1, text="O")), ("acme", part(2, 2, ref=1, to="447700900002", text="T")),
    ]  # fmt: skip
    for i, (account, piece) in enumerate(adds):
        whole = assembly.add(account, piece, ("c", i), NOW)
        if whole is not None:
            done.append((whole.piece.text, whole.piece.to, whole.tokens))
    assert done == [
        ("<1>B", (TO,), (("c", 1), ("c", 4))),
        ("<1>A", (TO,), (("c", 0), ("c", 5))),
        ("<1>O", (TO,), (("c", 3), ("c", 6))),
        ("<1>T", ("447700900002",), (("c", 2), ("c", 7))),
    ]
    assert assembly.pending == 0


def test_a_group_whose_parts_stop_coming_expires_with_its_tokens() -> None:
    assembly = Assembly(5.0)
    assembly.add("acme", part(1), ("c", 1), NOW)
    assembly.add("acme", part(3), ("c", 3), NOW + 2)
    assembly.add("acme", part(1, ref=9), ("c", 9), NOW + 3)
    assert assembly.next_deadline() == NOW + 5
    assert assembly.expire(NOW + 4.9) == []
    assert assembly.expire(NOW + 5) == [(("c", 1), ("c", 3))]
    assert assembly.pending == 1
    assert assembly.next_deadline() == NOW + 8
    assert assembly.expire(NOW + 8) == [(("c", 9),)]
    assert assembly.next_deadline() is None
    # The late part starts a group of its own, which waits again.
    assert assembly.add("acme", part(2), ("c", 2), NOW + 9) is None


def test_forget_drops_a_closed_connections_tokens_and_the_groups_left_without_any() -> None:
    a, b = object(), object()
    assembly = Assembly(60.0)
    assembly.add("acme", part(1), (a, 1), NOW)
    assembly.add("acme", part(2), (b, 2), NOW)
    assembly.add("acme", part(1, ref=2), (a, 3), NOW)
    assembly.forget(a)
    assert assembly.pending == 1  # the group with b's part stays; the one with only a's part goes
    assert assembly.expire(NOW + 60) == [((b, 2),)]  # a's token is no longer answered
    # What a's part said stays in its group (only its answer is gone): b's last part completes it.
    assembly.add("acme", part(1), (a, 1), NOW)
    assembly.add("acme", part(2), (b, 2), NOW)
    assembly.forget(a)
    whole = assembly.add("acme", part(3), (b, 4), NOW)
    assert whole is not None
    assert whole.piece.text == "<1><2><3>"
    assert whole.tokens == ((b, 2), (b, 4))


def test_more_groups_than_max_groups_is_rmsgqful() -> None:
    assembly = Assembly(60.0, max_groups=2)
    assembly.add("acme", part(1, ref=1), ("c", 1), NOW)
    assembly.add("acme", part(1, ref=2), ("c", 2), NOW)
    with pytest.raises(Refused) as caught:
        assembly.add("acme", part(1, ref=3), ("c", 3), NOW)
    assert S(caught.value.command_status) is S.ESME_RMSGQFUL
    # A part of a group already held is still taken.
    assert assembly.add("acme", part(2, ref=1), ("c", 4), NOW) is None
    assert assembly.pending == 2


def test_a_whole_over_10000_characters_refuses_every_part() -> None:
    assembly = Assembly(60.0)
    chunk = "x" * 4000
    assembly.add("acme", part(1, text=chunk), ("c", 1), NOW)
    assembly.add("acme", part(2, text=chunk), ("c", 2), NOW)
    with pytest.raises(TooLong) as caught:
        assembly.add("acme", part(3, text=chunk[:2001]), ("c", 3), NOW)
    assert caught.value.tokens == (("c", 1), ("c", 2), ("c", 3))
    assert S(caught.value.command_status) is S.ESME_RINVMSGLEN
    assert assembly.pending == 0
    # Exactly 10,000 is a whole message.
    assembly.add("acme", part(1, text=chunk), ("c", 1), NOW)
    assembly.add("acme", part(2, text=chunk), ("c", 2), NOW)
    whole = assembly.add("acme", part(3, text=chunk[:2000]), ("c", 3), NOW)
    assert whole is not None
    assert len(whole.piece.text) == MAX_TEXT


def test_a_surrogate_pair_split_across_udh_parts_joins() -> None:
    data = "hi 😀".encode("utf-16-be")
    cut = len(data) - 2  # between the halves of the emoji
    assembly = Assembly(60.0)
    assert assembly.add("acme", read(ucs2_part(data[cut:], 5, 2, 2)), ("c", 2), NOW) is None
    whole = assembly.add("acme", read(ucs2_part(data[:cut], 5, 2, 1)), ("c", 1), NOW)
    assert whole is not None
    assert whole.piece.text == "hi 😀"


@st.composite
def ucs2_parts(draw: st.DrawFn) -> tuple[str, list[bytes]]:
    """A text (emoji and all) as UCS-2, cut at any code-unit boundaries into 2 to 8 parts."""
    text = draw(st.text(min_size=2, max_size=60))
    data = text.encode("utf-16-be", "surrogatepass")
    units = len(data) // 2
    assume(units >= 2)
    count = draw(st.integers(min_value=2, max_value=min(8, units)))
    cuts = sorted(draw(st.sets(st.integers(min_value=1, max_value=units - 1), min_size=count - 1,
                               max_size=count - 1)))  # fmt: skip
    bounds = [0, *cuts, units]
    return text, [data[2 * a : 2 * b] for a, b in itertools.pairwise(bounds)]


@given(ucs2_parts(), st.randoms(use_true_random=False), st.integers(min_value=0, max_value=255))
def test_any_ucs2_text_cut_anywhere_comes_back_whole_in_any_order(
    split: tuple[str, list[bytes]], rnd: Any, ref: int
) -> None:
    text, chunks = split
    total = len(chunks)
    order = list(range(1, total + 1))
    rnd.shuffle(order)
    assembly = Assembly(60.0)
    results = [assembly.add("acme", read(ucs2_part(chunks[seq - 1], ref, total, seq)), ("c", seq), NOW)
               for seq in order]  # fmt: skip
    assert results[:-1] == [None] * (total - 1)
    whole = results[-1]
    assert whole is not None
    assert whole.piece.text == text
    assert sorted(t[1] for t in whole.tokens) == list(range(1, total + 1))
    assert assembly.pending == 0


# --- receipts and MO in flight --------------------------------------------------------------------------


def test_outbox_cursor_moves_only_over_a_done_prefix() -> None:
    box = Outbox(cursor=10, retry_after=5.0)
    for seq in (11, 12, 13):
        box.add(seq, f"e{seq}")
    assert (box.cursor, box.read_to, box.in_flight) == (10, 13, 3)
    assert box.done(12) is False
    assert (box.cursor, box.in_flight) == (10, 2)
    assert box.done(11) is True
    assert (box.cursor, box.in_flight) == (12, 1)
    assert box.done(13) is True
    assert (box.cursor, box.in_flight) == (13, 0)


def test_outbox_done_of_what_is_not_in_flight_changes_nothing() -> None:
    box = Outbox(cursor=10, retry_after=5.0)
    box.add(11, "e")
    assert box.done(99) is False
    assert box.done(11) is True
    assert box.done(11) is False
    assert box.cursor == 11


def test_outbox_skip_is_done_at_once_but_waits_behind_older_events() -> None:
    box = Outbox(cursor=0, retry_after=5.0)
    box.skip(1)
    assert (box.cursor, box.in_flight) == (1, 0)
    box.add(2, "e2")
    box.skip(3)
    box.skip(4)
    assert (box.cursor, box.read_to, box.in_flight) == (1, 4, 1)
    assert box.done(2) is True
    assert box.cursor == 4


def test_outbox_again_comes_due_after_retry_after() -> None:
    box = Outbox(cursor=0, retry_after=5.0)
    box.add(1, "e1")
    box.add(2, "e2")
    box.again(2, 100.0)
    box.again(1, 101.0)
    assert box.next_retry() == 105.0
    assert box.due(104.9, 10) == []
    assert box.due(105.0, 10) == [(2, "e2")]
    assert box.due(106.0, 10) == [(1, "e1")]
    assert box.next_retry() is None
    assert box.in_flight == 2  # sent again, still in flight until answered


def test_outbox_due_takes_at_most_limit_earliest_first_and_the_rest_stay_due() -> None:
    box = Outbox(cursor=0, retry_after=1.0)
    for seq in range(1, 6):
        box.add(seq, f"e{seq}")
    # Out of order: a bind that went puts its events back "at once" (now - retry_after).
    for seq, now in ((1, 10.0), (2, 5.0), (3, 9.0), (4, 0.0), (5, 7.0)):
        box.again(seq, now)
    assert box.due(20.0, 2) == [(4, "e4"), (2, "e2")]
    assert box.due(20.0, 2) == [(5, "e5"), (3, "e3")]
    assert box.due(20.0, 2) == [(1, "e1")]
    assert box.due(20.0, 2) == []


def test_outbox_gives_up_an_event_after_max_failures_and_the_cursor_moves_past_it() -> None:
    box = Outbox(cursor=10, retry_after=1.0, max_failures=3)
    box.add(11, "poison")
    box.add(12, "fine")
    box.done(12)
    assert box.cursor == 10  # 11 holds it
    assert box.again(11, 0.0)
    assert box.again(11, 1.0)
    assert not box.again(11, 2.0)  # the third failure: given up
    assert box.cursor == 12
    assert box.due(100.0, 10) == []
    assert box.in_flight == 0


def test_outbox_a_lost_bind_does_not_count_towards_giving_up() -> None:
    box = Outbox(cursor=0, retry_after=1.0, max_failures=2)
    box.add(1, "r")
    for t in range(10):
        assert box.again(1, float(t), failed=False)
    assert box.again(1, 20.0)  # the first real failure
    assert box.cursor == 0
    assert not box.again(1, 21.0)
    assert box.cursor == 1


def test_outbox_a_retry_answered_meanwhile_is_not_sent_again() -> None:
    box = Outbox(cursor=0, retry_after=1.0)
    box.add(1, "e1")
    box.add(2, "e2")
    box.again(1, 0.0)
    box.again(2, 0.0)
    box.done(2)  # the first send's answer came late
    assert box.due(5.0, 10) == [(1, "e1")]
    box.done(1)
    box.again(1, 5.0)  # after done: nothing to retry
    assert box.due(100.0, 10) == []
    assert (box.cursor, box.in_flight) == (2, 0)


@given(st.permutations(list(range(1, 21))), st.integers(min_value=0, max_value=20))
def test_outbox_cursor_is_the_longest_done_prefix(order: list[int], answered: int) -> None:
    box = Outbox(cursor=0, retry_after=1.0)
    for seq in range(1, 21):
        box.add(seq, seq)
    done = set(order[:answered])
    for seq in order[:answered]:
        box.done(seq)
    prefix = 0
    while prefix + 1 in done:
        prefix += 1
    assert box.cursor == prefix
    assert box.in_flight == 20 - answered


# --- binds ----------------------------------------------------------------------------------------------


def test_authguard_locks_out_after_failures_within_the_window() -> None:
    guard = AuthGuard(failures=3, window=10.0)
    for t in (0.0, 1.0):
        guard.failed("10.0.0.1", t)
    assert not guard.locked("10.0.0.1", 1.5)
    guard.failed("10.0.0.1", 2.0)
    assert guard.locked("10.0.0.1", 2.0)
    assert guard.locked("10.0.0.1", 9.9)
    assert not guard.locked("10.0.0.2", 2.0)  # per source address


def test_authguard_failures_further_apart_than_the_window_never_lock() -> None:
    guard = AuthGuard(failures=3, window=10.0)
    for t in (0.0, 10.0, 20.0, 30.0):
        guard.failed("10.0.0.1", t)
        assert not guard.locked("10.0.0.1", t)


def test_authguard_lockout_expires() -> None:
    guard = AuthGuard(failures=2, window=10.0)
    guard.failed("10.0.0.1", 0.0)
    guard.failed("10.0.0.1", 0.0)
    assert guard.locked("10.0.0.1", 5.0)
    assert not guard.locked("10.0.0.1", 10.0)


def test_authguard_lockout_lasts_the_window_after_the_last_failure() -> None:
    # The class says: refused "until `window` has passed since the last" failure.
    guard = AuthGuard(failures=3, window=10.0)
    for t in (0.0, 5.0, 9.0):
        guard.failed("10.0.0.1", t)
    assert guard.locked("10.0.0.1", 9.0)
    assert guard.locked("10.0.0.1", 18.9)
    assert not guard.locked("10.0.0.1", 19.0)


def test_authguard_success_clears_the_failures() -> None:
    guard = AuthGuard(failures=2, window=10.0)
    guard.failed("10.0.0.1", 0.0)
    guard.succeeded("10.0.0.1")
    guard.failed("10.0.0.1", 1.0)
    assert not guard.locked("10.0.0.1", 1.0)


def test_authguard_remembers_a_bounded_number_of_sources() -> None:
    guard = AuthGuard(failures=1, window=10.0, max_sources=2)
    for source in ("a", "b", "c"):
        guard.failed(source, 0.0)
    assert not guard.locked("a", 1.0)  # the oldest was forgotten
    assert guard.locked("b", 1.0)
    assert guard.locked("c", 1.0)


def test_bind_type_of_each_bind() -> None:
    assert [bind_type(c.command_id) for c in (P.BindTransmitter, P.BindReceiver, P.BindTransceiver)] == [
        "transmitter", "receiver", "transceiver"
    ]  # fmt: skip


# --- configuration ---------------------------------------------------------------------------------------


def test_parse_status_by_name_or_hex() -> None:
    assert parse_status("ESME_RSUBMITFAIL") == S.ESME_RSUBMITFAIL
    assert parse_status("0x00000045") == 0x45
    assert parse_status("0X58") == S.ESME_RTHROTTLED
    for bad in ("", "nonsense", "0x", "0xZZ", "0x0", "0x100000000", "69"):
        assert parse_status(bad) is None, bad


def test_config_mistakes_are_all_reported() -> None:
    account = SmppAccountConfig(account="acme", system_id="x" * 16, bind_types=())
    assert [name for name, _ in account.mistakes()] == ["system_id", "password_env", "bind_types"]
    assert next(name for name, _ in replace(account, system_id="é").mistakes()) == "system_id"
    server = SmppServerConfig(refused_status="ESME_NOPE", tls_cert_file="cert.pem", accounts=(ACCOUNT, ACCOUNT))
    assert [name for name, _ in server.mistakes()] == ["refused_status", "tls_cert_file", "accounts[1].system_id"]
    assert SmppServerConfig().status_refused() == S.ESME_RSUBMITFAIL
    assert SmppServerConfig(refused_status="0x00000058").status_refused() == S.ESME_RTHROTTLED


# --- refusals -------------------------------------------------------------------------------------------


def test_status_for_reason() -> None:
    refused = int(S.ESME_RX_R_APPN)
    assert status_for_reason("invalid_number", refused) == S.ESME_RINVDSTADR
    assert status_for_reason("no_route", refused) == S.ESME_RINVDSTADR
    assert status_for_reason("message_too_long", refused) == S.ESME_RINVMSGLEN
    assert status_for_reason("not_encodable", refused) == S.ESME_RINVMSGLEN
    for reason in ("opted_out", "blacklisted", "frequency_capped", "content_blocked", "insufficient_balance", ""):
        assert status_for_reason(reason, refused) == refused


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidNumber("bad sender", field="sender"), S.ESME_RINVSRCADR),
        (InvalidNumber("bad number", field="to"), S.ESME_RINVDSTADR),
        (InvalidNumber("bad number"), S.ESME_RINVDSTADR),
        (InvalidRequest("sender", field="sender"), S.ESME_RINVSRCADR),
        (InvalidRequest("needs a template", field="class"), S.ESME_RINVSERTYP),
        (InvalidRequest("text", field="text"), S.ESME_RINVMSGLEN),
        (InvalidRequest("schedule", field="schedule_at"), S.ESME_RINVSCHED),
        (InvalidRequest("validity", field="validity_seconds"), S.ESME_RINVEXPIRY),
        (InvalidRequest("client_ref", field="client_ref"), S.ESME_RSUBMITFAIL),
        (InvalidRequest("no field"), S.ESME_RSUBMITFAIL),
        (TextTooLong("long"), S.ESME_RINVMSGLEN),
        (TextNotEncodable("no"), S.ESME_RINVMSGLEN),
        (UpstreamStoreFull("full"), S.ESME_RMSGQFUL),
        (Overloaded("busy"), S.ESME_RTHROTTLED),
        (ShuttingDown("bye"), S.ESME_RSYSERR),
        (NotFound("none"), S.ESME_RINVMSGID),
        (InternalError("bug"), S.ESME_RSYSERR),
        (ClientRefConflict("reused"), S.ESME_RSYSERR),
        (UpstreamError("from a newer server", code="something_new"), S.ESME_RSYSERR),
    ],
)
def test_status_for_error(error: UpstreamError, status: S) -> None:
    assert status_for_error(error) == status


# --- receipts -------------------------------------------------------------------------------------------

SUBMITTED = NOW - 125.0


def final(kind: EventKind, reason: str | None = None, **changes: Any) -> Event:
    event = Event(seq=42, kind=kind, at=NOW, message_id="0a1b2c3d", to=TO, sender="ACME", reason=reason)
    return event._replace(**changes)


@pytest.mark.parametrize(
    ("kind", "reason", "stat", "state", "err"),
    [
        (EventKind.DELIVERED, "delivered", "DELIVRD", MessageState.DELIVERED, "000"),
        (EventKind.FAILED, "expired", "EXPIRED", MessageState.EXPIRED, "000"),
        (EventKind.FAILED, "no_receipt", "EXPIRED", MessageState.EXPIRED, "000"),
        (EventKind.FAILED, "cancelled", "DELETED", MessageState.DELETED, "000"),
        (EventKind.FAILED, "undeliverable:011", "UNDELIV", MessageState.UNDELIVERABLE, "011"),
        (EventKind.FAILED, "carrier_rejected:0x45", "REJECTD", MessageState.REJECTED, "000"),
        (EventKind.FAILED, "opted_out", "REJECTD", MessageState.REJECTED, "000"),
        (EventKind.FAILED, "unknown_after_timeout", "UNKNOWN", MessageState.UNKNOWN, "000"),
        (EventKind.FAILED, None, "UNDELIV", MessageState.UNDELIVERABLE, "000"),
    ],
)
def test_receipt_text_parses_with_the_gateways_own_receipt_parser(
    kind: EventKind, reason: str | None, stat: str, state: MessageState, err: str
) -> None:
    pdu = receipt_pdu(final(kind, reason), SUBMITTED)
    receipt = parse_receipt(pdu.short_message, pdu.tlvs)
    assert (receipt.message_id, receipt.text_id, receipt.stat, receipt.err, receipt.state) == (
        "0a1b2c3d", "0a1b2c3d", stat, err, state
    )  # fmt: skip
    # One receipt per message, however many parts it took.
    assert (receipt.sub, receipt.dlvrd) == (1, 1 if stat == "DELIVRD" else 0)
    assert receipt.submit_date == datetime.fromtimestamp(SUBMITTED, UTC).replace(tzinfo=None, second=0)
    assert receipt.done_date == datetime.fromtimestamp(NOW, UTC).replace(tzinfo=None, second=0)
    assert pdu.esm_class == EsmClass.DELIVERY_RECEIPT
    assert pdu.tlv(Tag.RECEIPTED_MESSAGE_ID) == "0a1b2c3d"
    assert pdu.tlv(Tag.MESSAGE_STATE) == state


def test_receipt_has_network_error_code_when_the_carrier_gave_one() -> None:
    pdu = receipt_pdu(final(EventKind.FAILED, "undeliverable:011"), SUBMITTED)
    assert pdu.tlv(Tag.NETWORK_ERROR_CODE) == b"\x03\x00\x0b"  # GSM, error 11
    assert parse_receipt(pdu.short_message, pdu.tlvs).network_error == (3, 11)
    assert receipt_pdu(final(EventKind.DELIVERED, "delivered"), SUBMITTED).tlv(Tag.NETWORK_ERROR_CODE) is None


def test_receipt_goes_from_the_recipient_to_the_sender() -> None:
    pdu = receipt_pdu(final(EventKind.DELIVERED, "delivered"), SUBMITTED)
    assert (pdu.source_addr, pdu.source_addr_ton, pdu.source_addr_npi) == (TO, Ton.INTERNATIONAL, Npi.ISDN)
    assert (pdu.destination_addr, pdu.dest_addr_ton, pdu.dest_addr_npi) == ("ACME", Ton.ALPHANUMERIC, Npi.UNKNOWN)
    numeric = receipt_pdu(final(EventKind.DELIVERED, "delivered", sender="447700900999"), SUBMITTED)
    assert (numeric.dest_addr_ton, numeric.dest_addr_npi) == (Ton.INTERNATIONAL, Npi.ISDN)
    short_code = receipt_pdu(final(EventKind.DELIVERED, "delivered", sender="84433"), SUBMITTED)
    assert (short_code.dest_addr_ton, short_code.dest_addr_npi) == (Ton.NATIONAL, Npi.ISDN)


@pytest.mark.parametrize("reason", ["delivered", "undeliverable:011", "expired"])
def test_receipt_encodes_and_decodes_back(reason: str) -> None:
    kind = EventKind.DELIVERED if reason == "delivered" else EventKind.FAILED
    pdu = receipt_pdu(final(kind, reason), SUBMITTED)
    assert codec.decode(codec.encode(pdu, 77)) == replace(pdu, sequence_number=77)


# --- MO -------------------------------------------------------------------------------------------------


def mo(text: str) -> Event:
    return Event(seq=7, kind=EventKind.MO, at=NOW, to="ACME", sender="447700900123", text=text)


def mo_text(pdu: P.DeliverSm, alphabet: str) -> str:
    data = pdu.short_message or pdu.tlv(Tag.MESSAGE_PAYLOAD, b"")
    assert isinstance(data, bytes)
    return decode_text(data, pdu.data_coding, default_is_gsm=alphabet == "gsm7").text


def test_mo_in_gsm_is_data_coding_0_with_escapes() -> None:
    pdu = mo_pdu(mo("€5 {ok} @"), "gsm7")
    assert pdu.data_coding == DataCoding.DEFAULT
    assert pdu.short_message == b"\x1b\x655 \x1b\x28ok\x1b\x29 \x00"
    assert (pdu.source_addr, pdu.destination_addr, pdu.esm_class) == ("447700900123", "ACME", 0)
    assert pdu.tlvs == ()


def test_mo_outside_gsm_is_ucs2() -> None:
    pdu = mo_pdu(mo("Привет 😀"), "gsm7")
    assert pdu.data_coding == DataCoding.UCS2
    assert pdu.short_message == "Привет 😀".encode("utf-16-be")


def test_mo_for_a_latin1_esme_is_latin1_when_it_fits() -> None:
    pdu = mo_pdu(mo("café"), "latin1")
    assert (pdu.data_coding, pdu.short_message) == (DataCoding.DEFAULT, b"caf\xe9")
    # The euro sign is in GSM but not in Latin-1.
    pdu = mo_pdu(mo("5€"), "latin1")
    assert (pdu.data_coding, pdu.short_message) == (DataCoding.UCS2, "5€".encode("utf-16-be"))


def test_long_mo_goes_in_message_payload() -> None:
    for text, alphabet in (("x" * 254, "gsm7"), ("я" * 127, "gsm7"), ("é" * 254, "latin1")):
        pdu = mo_pdu(mo(text), alphabet)
        assert pdu.tlvs == ()
        assert mo_text(pdu, alphabet) == text
    for text, alphabet in (("x" * 255, "gsm7"), ("я" * 128, "gsm7"), ("€" * 200, "gsm7"), ("y" * 2000, "latin1")):
        pdu = mo_pdu(mo(text), alphabet)
        assert pdu.short_message == b""
        assert mo_text(pdu, alphabet) == text
        assert codec.decode(codec.encode(pdu, 3)) == replace(pdu, sequence_number=3)


@given(st.text(max_size=300), st.sampled_from(["gsm7", "latin1"]))
def test_any_mo_text_reads_back_as_sent(text: str, alphabet: str) -> None:
    pdu = mo_pdu(mo(text), alphabet)
    assert pdu.data_coding in (DataCoding.DEFAULT, DataCoding.UCS2)
    assert mo_text(pdu, alphabet) == text


# --- query_sm ---------------------------------------------------------------------------------------------


def message(state: str, reason: str | None = None) -> MessageStatus:
    return MessageStatus(message_id="0a1b", to=TO, state=state, reason=reason, updated_at=NOW)


@pytest.mark.parametrize("state", ["accepted", "scheduled", "queued", "submitted"])
def test_query_answer_of_a_message_on_its_way_is_enroute_without_a_final_date(state: str) -> None:
    assert query_answer(message(state)) == ("", MessageState.ENROUTE, 0)


@pytest.mark.parametrize(
    ("state", "reason", "answer"),
    [
        ("delivered", "delivered", MessageState.DELIVERED),
        ("expired", "expired", MessageState.EXPIRED),
        ("cancelled", "cancelled", MessageState.DELETED),
        ("failed", "opted_out", MessageState.REJECTED),
        ("failed", "undeliverable", MessageState.UNDELIVERABLE),
    ],
)
def test_query_answer_of_a_final_message_has_its_final_date(state: str, reason: str, answer: MessageState) -> None:
    assert query_answer(message(state, reason)) == (smpp_time(NOW), answer, 0)


def test_query_answer_carries_the_carriers_error_code() -> None:
    assert query_answer(message("failed", "undeliverable:011")) == (smpp_time(NOW), MessageState.UNDELIVERABLE, 11)


def test_query_answer_of_an_unknown_state() -> None:
    assert query_answer(message("unknown")) == ("", MessageState.UNKNOWN, 0)
    assert query_answer(message("some_new_state")) == ("", MessageState.UNKNOWN, 0)
