"""Carrier message-id normalisation: submit_sm_resp ids and receipt ids meet on one key."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.smpp.msgid import CarrierIdFormats, IdBase, IdFormat, normalize_id

HEX = IdFormat(base=IdBase.HEX)
DECIMAL = IdFormat(base=IdBase.DECIMAL)


def test_hex_response_matches_decimal_receipt() -> None:
    # The classic mismatch: submit_sm_resp "0A1B2C" in hex, the receipt's id:0000662316 in decimal.
    carrier = CarrierIdFormats(response=HEX, receipt=DECIMAL)
    assert carrier.response_key("0A1B2C") == carrier.receipt_key("0000662316") == "662316"


def test_decimal_response_matches_hex_receipt_in_any_case() -> None:
    carrier = CarrierIdFormats(response=DECIMAL, receipt=HEX)
    assert carrier.response_key("255") == carrier.receipt_key("00ff") == carrier.receipt_key("FF")


def test_different_numbers_do_not_match() -> None:
    carrier = CarrierIdFormats(response=HEX, receipt=DECIMAL)
    assert carrier.response_key("0A1B2C") != carrier.receipt_key("660268")


def test_default_format_without_forms_is_exact_match() -> None:
    # Case-sensitive ids (base64-like): a carrier that lists no receipt_id_forms matches them exactly.
    carrier = CarrierIdFormats(forms=())
    assert carrier.response_key("aB9") == "aB9"
    assert carrier.response_key("aB9") not in carrier.receipt_keys("ab9")
    assert carrier.receipt_keys("007") == ("007",)


def test_default_forms_match_any_case_and_padding() -> None:
    carrier = CarrierIdFormats()
    assert carrier.response_key("aB9") in carrier.receipt_keys("00AB9")
    assert carrier.receipt_key("007") == carrier.response_key("7")


def test_as_is_cleanups_apply_in_order() -> None:
    fmt = IdFormat(fold_case=True, strip_zeros=True, strip_dashes=True)
    assert normalize_id("0-0A1B-2C", fmt) == "a1b2c"
    assert normalize_id("000", fmt) == "0"
    assert normalize_id("", fmt) == ""


def test_uuid_with_and_without_dashes_match_when_dashes_are_stripped() -> None:
    # Jasmin writes UUIDs with dashes; some carriers echo them without and upper-cased.
    fmt = IdFormat(fold_case=True, strip_dashes=True)
    assert normalize_id("5d2c1f6e-6b1a-4f0e-9c2d-0a1b2c3d4e5f", fmt) == normalize_id(
        "5D2C1F6E6B1A4F0E9C2D0A1B2C3D4E5F", fmt
    )


def test_padding_nuls_and_blanks_never_count() -> None:
    assert normalize_id(" 42\x00", DECIMAL) == normalize_id("042", DECIMAL) == "42"
    assert normalize_id("abc\x00", IdFormat()) == "abc"


@pytest.mark.parametrize(
    ("raw", "fmt", "key"),
    [
        ("12G4", HEX, "12G4"),  # G is not a hex digit: the as-is fallback
        ("0x1F", HEX, "0x1F"),  # int() would take the prefix; an id may not
        ("1_000", DECIMAL, "1_000"),  # int() would take the underscore; an id may not
        ("+5", DECIMAL, "+5"),
        ("\u00b2", DECIMAL, "\u00b2"),  # superscript two: isdigit() but not a decimal id
        ("ab-cd", HEX, "ab-cd"),  # dashes without strip_dashes are not hex
        ("ab-cd", IdFormat(base=IdBase.HEX, strip_dashes=True), str(0xABCD)),
        ("00AB", IdFormat(base=IdBase.DECIMAL, fold_case=True, strip_zeros=True), "ab"),
        ("1" * 65, DECIMAL, "1" * 65),  # longer than SMPP 3.4 5.2.23 allows: not read as a number
        ("0" * 10 + "1" * 64, DECIMAL, "1" * 64),  # zero padding beyond 64 characters is still a number
        ("", HEX, ""),
    ],
)
def test_ids_invalid_for_their_base_fall_back_to_the_as_is_key(raw: str, fmt: IdFormat, key: str) -> None:
    assert normalize_id(raw, fmt) == key


def test_id_base_reads_config_words() -> None:
    assert [IdBase(word) for word in ("hex", "decimal", "as-is")] == [
        IdBase.HEX,
        IdBase.DECIMAL,
        IdBase.AS_IS,
    ]


@given(
    value=st.integers(min_value=0, max_value=2**200),
    hex_pad=st.integers(0, 6),
    dec_pad=st.integers(0, 6),
    upper=st.booleans(),
)
def test_hex_and_decimal_of_one_number_share_a_key(value: int, hex_pad: int, dec_pad: int, upper: bool) -> None:
    hex_id = "0" * hex_pad + (f"{value:X}" if upper else f"{value:x}")
    dec_id = "0" * dec_pad + str(value)
    assert normalize_id(hex_id, HEX) == normalize_id(dec_id, DECIMAL) == str(value)


@given(a=st.integers(min_value=0, max_value=2**64), b=st.integers(min_value=0, max_value=2**64))
def test_different_numbers_never_share_a_key(a: int, b: int) -> None:
    assert (normalize_id(f"{a:x}", HEX) == normalize_id(str(b), DECIMAL)) == (a == b)


@given(
    raw=st.text(max_size=80),
    base=st.sampled_from(IdBase),
    fold_case=st.booleans(),
    strip_zeros=st.booleans(),
    strip_dashes=st.booleans(),
)
def test_any_text_gives_a_key_and_fallbacks_never_look_numeric(
    raw: str, base: IdBase, fold_case: bool, strip_zeros: bool, strip_dashes: bool
) -> None:
    fmt = IdFormat(base, fold_case, strip_zeros, strip_dashes)
    key = normalize_id(raw, fmt)
    cleaned = raw.strip(" \t\r\n\x00")
    if strip_dashes:
        cleaned = cleaned.replace("-", "")
    digits = {IdBase.HEX: "0123456789abcdefABCDEF", IdBase.DECIMAL: "0123456789", IdBase.AS_IS: ""}[base]
    if cleaned and len(cleaned.lstrip("0")) <= 64 and all(c in digits for c in cleaned):
        assert key == str(int(cleaned, 16 if base is IdBase.HEX else 10))
    elif base is not IdBase.AS_IS and key and len(key) <= 64:
        # A fallback key keeps a character that no numeric key has, so it cannot match a real number.
        assert not all(c in "0123456789" for c in key)
    assert normalize_id(raw, fmt) == key  # deterministic
