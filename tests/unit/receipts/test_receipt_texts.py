"""Delivery receipts in the forms carriers really send them (SMPP 3.4 Appendix B and its many dialects)."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from datetime import datetime

import pytest

from gateway.smpp.constants import CommandStatus, MessageState, Tag
from gateway.smpp.errors import DecodeError
from gateway.smpp.receipt import Receipt, ReceiptError, parse_receipt, stat_to_state

DELIVERED = MessageState.DELIVERED
UNDELIVERABLE = MessageState.UNDELIVERABLE


def test_logica_appendix_b_receipt_reads_every_field() -> None:
    # Logica/CMG form, verbatim from Appendix B: capitalised "Text:", 10-digit dates.
    r = parse_receipt(
        b"id:0123456789 sub:001 dlvrd:001 submit date:0610191018 done date:0610191019 "
        b"stat:DELIVRD err:000 Text:Hello world"
    )
    assert r == Receipt(
        message_id="0123456789",
        state=DELIVERED,
        stat="DELIVRD",
        err="000",
        sub=1,
        dlvrd=1,
        submit_date=datetime(2006, 10, 19, 10, 18),
        done_date=datetime(2006, 10, 19, 10, 19),
        text="Hello world",
        text_id="0123456789",
    )
    assert r.final


# (variant, short_message, expected message_id, expected state, expected stat word)
VARIANTS = [
    (
        "Kannel-style: lowercase text:, zero-padded decimal id",
        b"id:0000012345 sub:001 dlvrd:001 submit date:2311221000 done date:2311221001 "
        b"stat:DELIVRD err:000 text:Your code is 1234",
        "0000012345",
        DELIVERED,
        "DELIVRD",
    ),
    (
        "Jasmin-style: UUID message id with dashes",
        b"id:5d2c1f6e-6b1a-4f0e-9c2d-0a1b2c3d4e5f sub:001 dlvrd:001 submit date:2311221000 "
        b"done date:2311221000 stat:DELIVRD err:000 text:",
        "5d2c1f6e-6b1a-4f0e-9c2d-0a1b2c3d4e5f",
        DELIVERED,
        "DELIVRD",
    ),
    (
        "lowercase keys and lowercase stat word",
        b"id:77 sub:001 dlvrd:000 submit date:2311221000 done date:2311221005 stat:undeliv err:001 text:x",
        "77",
        UNDELIVERABLE,
        "undeliv",
    ),
    (
        "uppercase keys (some Chinese SMSCs)",
        b"ID:77 SUB:001 DLVRD:001 SUBMIT DATE:2311221000 DONE DATE:2311221005 STAT:DELIVRD ERR:000 TEXT:x",
        "77",
        DELIVERED,
        "DELIVRD",
    ),
    (
        "reordered fields: stat and err first",
        b"stat:EXPIRED err:000 id:abc123 done date:2311231000 submit date:2311221000 sub:001 dlvrd:000",
        "abc123",
        MessageState.EXPIRED,
        "EXPIRED",
    ),
    (
        "missing text field",
        b"id:42 sub:001 dlvrd:001 submit date:2311221000 done date:2311221000 stat:DELIVRD err:000",
        "42",
        DELIVERED,
        "DELIVRD",
    ),
    (
        "hex id with leading zeros (Logica hex ids)",
        b"id:00000A1B2C sub:001 dlvrd:001 submit date:2311221000 done date:2311221000 stat:DELIVRD err:000",
        "00000A1B2C",
        DELIVERED,
        "DELIVRD",
    ),
    (
        "FAILED, a common non-Appendix-B word",
        b"id:9 sub:001 dlvrd:000 submit date:2311221000 done date:2311221000 stat:FAILED err:069 text:",
        "9",
        UNDELIVERABLE,
        "FAILED",
    ),
    (
        "REJECTD with a long vendor error code",
        b"id:9 sub:001 dlvrd:000 submit date:2311221000 done date:2311221000 stat:REJECTD err:0000000411",
        "9",
        MessageState.REJECTED,
        "REJECTD",
    ),
    (
        "numeric stat: message_state number instead of a word",
        b"id:9 sub:001 dlvrd:001 submit date:2311221000 done date:2311221000 stat:2 err:0",
        "9",
        DELIVERED,
        "2",
    ),
    (
        "comma-separated fields (some aggregators)",
        b"id:31337,sub:001,dlvrd:001,submit date:2311221000,done date:2311221001,stat:DELIVRD,err:000",
        "31337",
        DELIVERED,
        "DELIVRD",
    ),
    (
        "spaces around the colon",
        b"id : 31337 sub : 001 dlvrd : 001 stat : DELIVRD err : 000",
        "31337",
        DELIVERED,
        "DELIVRD",
    ),
    (
        "extra vendor fields (mcc/mnc) between standard ones",
        b"id:555 sub:001 dlvrd:001 submit date:2311221000 done date:2311221000 stat:DELIVRD err:000 "
        b"mccmnc:310260 price:0.01 text:hi",
        "555",
        DELIVERED,
        "DELIVRD",
    ),
    (
        "NUL-terminated short_message (C-octet string habit)",
        b"id:555 sub:001 dlvrd:001 submit date:2311221000 done date:2311221000 stat:DELIVRD err:000\x00",
        "555",
        DELIVERED,
        "DELIVRD",
    ),
    (
        "DELETED by the operator",
        b"id:1 sub:001 dlvrd:000 submit date:2311221000 done date:2311221000 stat:DELETED err:000",
        "1",
        MessageState.DELETED,
        "DELETED",
    ),
    (
        "ACCEPTD (read by customer service)",
        b"id:1 sub:001 dlvrd:000 submit date:2311221000 done date:2311221000 stat:ACCEPTD err:000",
        "1",
        MessageState.ACCEPTED,
        "ACCEPTD",
    ),
]


@pytest.mark.parametrize(
    ("short_message", "message_id", "state", "stat"),
    [pytest.param(*v[1:], id=v[0]) for v in VARIANTS],
)
def test_carrier_variant_gives_id_state_and_stat(
    short_message: bytes, message_id: str, state: MessageState, stat: str
) -> None:
    r = parse_receipt(short_message)
    assert (r.message_id, r.state, r.stat) == (message_id, state, stat)


def test_dates_with_seconds_are_read_to_the_second() -> None:
    # Dates with seconds: 12-digit YYMMDDhhmmss, as Kannel and most modern SMSCs write them.
    r = parse_receipt(
        b"id:1 sub:001 dlvrd:001 submit date:231122100007 done date:231122100159 stat:DELIVRD err:000"
    )
    assert r.submit_date == datetime(2023, 11, 22, 10, 0, 7)
    assert r.done_date == datetime(2023, 11, 22, 10, 1, 59)


@pytest.mark.parametrize(
    ("key", "done_key"),
    [
        ("submit date", "done date"),  # Appendix B
        ("submitdate", "donedate"),  # run together (several Asian SMSCs)
        ("submit_date", "done_date"),  # underscore (aggregator APIs mirrored into SMPP)
        ("Submit_Date", "Done_Date"),
        ("SUBMITDATE", "DONEDATE"),
    ],
)
def test_submit_date_key_spellings_are_all_read(key: str, done_key: str) -> None:
    text = f"id:1 {key}:2311221000 {done_key}:2311231100 stat:DELIVRD".encode()
    r = parse_receipt(text)
    assert r.submit_date == datetime(2023, 11, 22, 10, 0)
    assert r.done_date == datetime(2023, 11, 23, 11, 0)


def test_impossible_date_is_dropped_but_the_rest_is_kept() -> None:
    # Broken SMSC clock: month 13. The receipt still matters, only the date is lost.
    r = parse_receipt(b"id:1 sub:001 dlvrd:001 submit date:2313221000 done date:2311221000 stat:DELIVRD")
    assert r.submit_date is None
    assert r.done_date == datetime(2023, 11, 22, 10, 0)
    assert r.state is DELIVERED


def test_tlv_only_receipt_with_empty_short_message() -> None:
    # TLV-only receipt (SMPP 3.4 5.3.2.12/.31/.35), empty short_message, as many SMPP 5-era SMSCs send.
    r = parse_receipt(
        b"",
        [
            (Tag.RECEIPTED_MESSAGE_ID, "A1B2C3"),
            (Tag.MESSAGE_STATE, int(UNDELIVERABLE)),
            (Tag.NETWORK_ERROR_CODE, b"\x03\x00\x22"),
        ],
    )
    assert (r.message_id, r.state, r.stat, r.text_id) == ("A1B2C3", UNDELIVERABLE, "", None)
    # 5.3.2.31: network type 3 is GSM, code 0x0022 (34, "system failure" in GSM MAP).
    assert r.network_error == (3, 34)
    assert r.final


def test_tlvs_override_the_text() -> None:
    # TLV overriding text: hex id in receipted_message_id, decimal in the text, and the TLV state wins.
    r = parse_receipt(
        b"id:662316 sub:001 dlvrd:001 submit date:2311221000 done date:2311221000 stat:DELIVRD err:000",
        [(Tag.RECEIPTED_MESSAGE_ID, "0A1B2C"), (Tag.MESSAGE_STATE, int(MessageState.EXPIRED))],
    )
    assert r.message_id == "0A1B2C"
    assert r.text_id == "662316"
    assert r.state is MessageState.EXPIRED
    assert r.stat == "DELIVRD"


def test_empty_receipted_message_id_tlv_falls_back_to_the_text_id() -> None:
    # Some SMSCs send the TLV with an empty value (a lone NUL).
    r = parse_receipt(b"id:77 stat:DELIVRD", [(Tag.RECEIPTED_MESSAGE_ID, "")])
    assert r.message_id == "77"


def test_receipt_text_in_message_payload_when_short_message_is_empty() -> None:
    # SMPP 3.4 5.3.2.32: message_payload carries the text instead of short_message.
    r = parse_receipt(b"", [(Tag.MESSAGE_PAYLOAD, b"id:88 sub:001 dlvrd:001 stat:DELIVRD err:000 text:long")])
    assert (r.message_id, r.state, r.text) == ("88", DELIVERED, "long")


def test_latin1_text_is_decoded_not_rejected() -> None:
    # Latin-1 echo of the original text (not valid UTF-8): decoded as Latin-1.
    r = parse_receipt(b"id:5 stat:DELIVRD err:000 text:Caf\xe9 cr\xe8me")
    assert r.text == "Café crème"


def test_utf8_text_is_decoded_as_utf8() -> None:
    r = parse_receipt("id:5 stat:DELIVRD err:000 text:Grüße".encode())
    assert r.text == "Grüße"


def test_message_text_cannot_forge_fields() -> None:
    # Text after "text:" is user content: a user who types "stat:DELIVRD" must not change the state.
    r = parse_receipt(b"id:5 sub:001 dlvrd:000 stat:UNDELIV err:001 text:stat:DELIVRD id:666")
    assert (r.message_id, r.state, r.text) == ("5", UNDELIVERABLE, "stat:DELIVRD id:666")


def test_text_before_the_other_fields_hides_them() -> None:
    # A text field placed first swallows the rest: the id after it is user content, so there is none.
    with pytest.raises(ReceiptError):
        parse_receipt(b"text:hello id:5 stat:DELIVRD")


@pytest.mark.parametrize(
    ("stat", "state", "final"),
    [
        ("ENROUTE", MessageState.ENROUTE, False),
        ("BUFFRED", MessageState.ENROUTE, False),  # BUFFRED: held in the SMSC, retrying
        ("ACKED", MessageState.ENROUTE, False),  # ACKED: accepted by the next hop, not yet delivered
        ("EXPIRED", MessageState.EXPIRED, True),
        ("UNKNOWN", MessageState.UNKNOWN, True),
        ("SOMEWORD", MessageState.UNKNOWN, True),  # a stat word nobody taught us
    ],
)
def test_stat_word_state_and_finality(stat: str, state: MessageState, final: bool) -> None:
    r = parse_receipt(f"id:1 sub:001 dlvrd:000 stat:{stat} err:000".encode())
    assert (r.state, r.final, r.stat) == (state, final, stat)
    assert stat_to_state(stat.lower()) is state


def test_unknown_message_state_tlv_maps_to_unknown() -> None:
    # SMPP 5.0 SKIPPED (9) arriving on a 3.4 bind is not a 3.4 state.
    r = parse_receipt(b"", [(Tag.RECEIPTED_MESSAGE_ID, "1"), (Tag.MESSAGE_STATE, 9)])
    assert r.state is MessageState.UNKNOWN


def test_missing_stat_means_unknown_state() -> None:
    assert parse_receipt(b"id:1 sub:001 dlvrd:001").state is MessageState.UNKNOWN


def test_counts_and_err_are_read_as_written() -> None:
    r = parse_receipt(b"id:1 sub:003 dlvrd:002 stat:DELIVRD err:EC_ABSENT_SUBSCRIBER")
    assert (r.sub, r.dlvrd, r.err) == (3, 2, "EC_ABSENT_SUBSCRIBER")


def test_malformed_network_error_code_is_ignored() -> None:
    # 5.3.2.31 fixes the length at 3 octets; a 2-octet value is dropped, not fatal.
    r = parse_receipt(b"id:1 stat:UNDELIV", [(Tag.NETWORK_ERROR_CODE, b"\x00\x22")])
    assert r.network_error is None


@pytest.mark.parametrize(
    "short_message",
    [
        b"",  # empty deliver_sm that claimed to be a receipt
        b"sub:001 dlvrd:001 stat:DELIVRD err:000",  # no id key
        b"id: sub:001 stat:DELIVRD",  # empty id value
        b"hello, this is an ordinary MO text",
    ],
)
def test_receipt_without_any_id_raises_receipt_error(short_message: bytes) -> None:
    with pytest.raises(ReceiptError) as info:
        parse_receipt(short_message)
    assert isinstance(info.value, DecodeError)
    assert info.value.command_status == CommandStatus.ESME_RINVOPTPARAMVAL


def test_receipt_is_frozen() -> None:
    r = parse_receipt(b"id:1 stat:DELIVRD")
    with pytest.raises(FrozenInstanceError):
        r.message_id = "2"  # type: ignore[misc]
