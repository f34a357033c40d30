"""Candidate keys of a receipt id (gateway.smpp.msgid.CarrierIdFormats.receipt_keys): the order, the forms a
carrier lists, and that one number in any form meets its response's key."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.smpp.msgid import ALL_FORMS, CarrierIdFormats, IdBase, IdForm, IdFormat

HEX = IdFormat(IdBase.HEX)
DECIMAL = IdFormat(IdBase.DECIMAL)


def test_same_digits_come_first_then_decimal_then_hex_readings() -> None:
    ids = CarrierIdFormats()
    # "123": as given, as the decimal 123 a hex response wrote "7b", as the hex 0x123 a decimal one wrote "291".
    assert ids.receipt_keys("123") == ("123", "7b", "291")


def test_tlv_id_is_tried_in_the_response_form_before_the_declared_receipt_base() -> None:
    ids = CarrierIdFormats(response=HEX, receipt=DECIMAL)
    assert ids.receipt_keys("100")[0] == "100"  # text id: read as declared (decimal)
    assert ids.receipt_keys("100", from_tlv=True)[0] == "256"  # TLV: read as the response's hex


def test_declared_formats_still_meet_on_their_own_key() -> None:
    ids = CarrierIdFormats(response=HEX, receipt=DECIMAL)
    assert ids.receipt_key("0000662316") == ids.response_key("0A1B2C") == "662316"


def test_listed_forms_limit_the_readings() -> None:
    hex_response = "a1b2c"
    only_case = CarrierIdFormats(forms=(IdForm.CASE,))
    assert only_case.response_key(hex_response) in only_case.receipt_keys("A1B2C")
    assert only_case.response_key(hex_response) not in only_case.receipt_keys("662316")  # decimal not listed
    assert only_case.response_key("0a1b2c") not in only_case.receipt_keys("a1b2c")  # padding not listed
    with_decimal = CarrierIdFormats(forms=(IdForm.DECIMAL,))
    assert with_decimal.response_key("A1B2C") in with_decimal.receipt_keys("662316")  # both cases rendered


def test_ids_indexed_under_the_old_exact_key_are_still_found() -> None:
    # Before the forms existed, a carrier that declared nothing was indexed by the exact id.
    assert "00aB9" in CarrierIdFormats().receipt_keys("00aB9")


@given(
    value=st.integers(min_value=0, max_value=2**200),
    response_hex=st.booleans(),
    response_upper=st.booleans(),
    response_pad=st.integers(0, 5),
    receipt_form=st.sampled_from(["same", "upper", "lower", "padded", "decimal", "decimal_padded", "hex"]),
    declared=st.sampled_from(["none", "hex", "decimal"]),
    from_tlv=st.booleans(),
)
def test_one_number_in_any_form_meets_its_response(
    value: int, response_hex: bool, response_upper: bool, response_pad: int, receipt_form: str, declared: str,
    from_tlv: bool,
) -> None:  # fmt: skip
    digits = f"{value:X}" if response_upper else f"{value:x}"
    response = "0" * response_pad + (digits if response_hex else str(value))
    receipt = {
        "same": response,
        "upper": response.upper(),
        "lower": response.lower(),
        "padded": response.rjust(12, "0"),
        "decimal": str(value),
        "decimal_padded": f"{value:010d}",
        "hex": f"{value:x}",
    }[receipt_form]
    fmt = {"none": IdFormat(), "hex": HEX, "decimal": DECIMAL}[declared]
    if declared != "none" and (declared == "hex") != response_hex:
        return  # a carrier that declares a response base writes its responses in it
    ids = CarrierIdFormats(response=fmt, receipt=fmt)
    keys = ids.receipt_keys(receipt, from_tlv=from_tlv)
    assert len(set(keys)) == len(keys)
    assert ids.response_key(response) in keys


@given(raw=st.text(max_size=70), forms=st.lists(st.sampled_from(ALL_FORMS), unique=True), tlv=st.booleans())
def test_any_text_gives_candidates_without_duplicates(raw: str, forms: list[IdForm], tlv: bool) -> None:
    ids = CarrierIdFormats(forms=tuple(forms))
    keys = ids.receipt_keys(raw, from_tlv=tlv)
    assert keys
    assert len(set(keys)) == len(keys)
    assert keys[0] == ids.response_key(raw)  # the same digits first when no receipt base is declared
