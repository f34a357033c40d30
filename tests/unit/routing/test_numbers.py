# ruff: noqa: RUF001 - full-width digits and punctuation, as handsets and platforms send them
"""Recipient numbers: the fast book agrees with phonenumbers itself, and refusals name their cause."""

from __future__ import annotations

import re

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneMetadata

from gateway.routing.numbers import KINDS, BadNumber, Number, NumberBook, normalise

BOOK = NumberBook(test_prefixes=["447700900"])


def _examples() -> list[str]:
    """An example number of every kind of every region, as E.164 digits (libphonenumber ships them)."""
    out = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        m = PhoneMetadata.metadata_for_region(region)
        assert m is not None
        for attr in ("fixed_line", "mobile", "toll_free", "premium_rate", "voip", "pager", "uan", "personal_number"):
            desc = getattr(m, attr)
            if desc is not None and desc.example_number:
                out.append(f"{m.country_code}{desc.example_number}")
    return out


EXAMPLES = _examples()


def _truth(digits: str) -> tuple[bool, str | None, str]:
    try:
        n = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        return False, None, "unknown"
    valid = phonenumbers.is_valid_number(n)
    return valid, phonenumbers.region_code_for_number(n) if valid else None, KINDS[phonenumbers.number_type(n)]


def _complex_trunk_after_country_code(digits: str) -> bool:
    """A trunk prefix after the country code, in a region whose trunk rule is a pattern (CN, AR, ...): the
    book leaves those to phonenumbers' parser only for national input, and reads E.164 digits as written."""
    for n in (1, 2, 3):
        regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(int(digits[:n]))
        if regions:
            m = PhoneMetadata.metadata_for_region(regions[0]) or PhoneMetadata.metadata_for_nongeo_region(
                int(digits[:n])
            )
            assert m is not None
            rule = m.national_prefix_for_parsing
            simple = rule in (None, m.national_prefix) and m.national_prefix_transform_rule is None
            return not simple and rule is not None and re.match(rule, digits[n:]) is not None
    return False


def _ours(digits: str) -> tuple[bool, str | None, str]:
    found = NumberBook().check_e164(digits)
    if isinstance(found, BadNumber):
        return False, None, "unknown"
    return True, found.region, found.kind


def test_every_example_number_of_every_region_reads_as_phonenumbers_reads_it() -> None:
    assert len(EXAMPLES) > 500
    wrong = [(d, _ours(d), _truth(d)) for d in EXAMPLES if _ours(d) != _truth(d)]
    assert wrong == []


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(EXAMPLES), st.integers(0, 20), st.integers(0, 9), st.sampled_from(["keep", "cut", "add"]))
def test_mutated_numbers_read_as_phonenumbers_reads_them(example: str, at: int, digit: int, how: str) -> None:
    i = at % len(example)
    if how == "keep":
        digits = example[:i] + str(digit) + example[i + 1:]
    elif how == "cut":
        digits = example[:i] + example[i + 1:]
    else:
        digits = example[:i] + str(digit) + example[i:]
    if not digits or digits[0] == "0" or _complex_trunk_after_country_code(digits):
        return
    assert _ours(digits) == _truth(digits)


@pytest.mark.parametrize(
    ("raw", "region", "e164", "kind"),
    [
        ("+44 7911 123456", "", "447911123456", "mobile"),
        ("0044 7911-123456", "", "447911123456", "mobile"),
        ("07911 123456", "GB", "447911123456", "mobile"),
        ("447911123456", "GB", "447911123456", "mobile"),  # international without +, as most platforms send
        ("447911123456", "CN", "447911123456", "mobile"),
        ("13800138000", "CN", "8613800138000", "mobile"),  # a Chinese platform's national mobile number
        ("8613800138000", "CN", "8613800138000", "mobile"),
        ("+86 138-0013-8000", "", "8613800138000", "mobile"),
        ("(201) 555-0123", "US", "12015550123", "fixed_line_or_mobile"),
        ("+33 6 12 34 56 78", "", "33612345678", "mobile"),
        ("＋４４７９１１１２３４５６", "", "447911123456", "mobile"),  # full-width, as some phones type
        ("020 7946 0018", "GB", "442079460018", "fixed_line"),
        ("+447700900123", "", "447700900123", "unknown"),  # Ofcom's drama range, a test prefix here
        ("07700900123", "GB", "447700900123", "unknown"),
        # The trunk prefix written after the country code, where the region's parsing rule is more than it
        # (GB's is "0|180020"): phonenumbers reads these as the numbers without it.
        ("+44 (0)7911 123456", "", "447911123456", "mobile"),
        ("+4407911123456", "GB", "447911123456", "mobile"),
        ("+61 (0)2 9876 5432", "", "61298765432", "fixed_line"),
    ],
)
def test_numbers_in_the_forms_platforms_send(raw: str, region: str, e164: str, kind: str) -> None:
    found = BOOK.parse(raw, region)
    assert isinstance(found, Number), found
    assert (found.e164, found.kind) == (e164, kind)


@pytest.mark.parametrize(
    ("raw", "region", "cause"),
    [
        ("999999999999999", "", "invalid_country_code"),
        ("999999999999999", "GB", "too_long"),  # read first as a national number of the default region
        ("+999 12345678", "", "invalid_country_code"),
        ("+44 79", "", "too_short"),
        ("+44 7911 1234567890", "", "too_long"),
        ("+44 1111 111111", "", "invalid_for_region"),
        ("+447700900123", "GB", "invalid_for_region"),  # a book without the test prefix
        ("07911 123456", "", "national_without_region"),
        ("call me", "GB", "not_a_number"),
        ("+44 7911 123456 ext. 12", "", "not_a_number"),
        ("1" * 80, "GB", "not_a_number"),
    ],
)
def test_refusals_name_their_cause(raw: str, region: str, cause: str) -> None:
    found = NumberBook().parse(raw, region)
    assert isinstance(found, BadNumber)
    assert found.cause == cause
    assert found.detail


def test_a_route_that_wants_mobiles_refuses_a_fixed_line() -> None:
    found = BOOK.parse("+44 20 7946 0018", require_mobile=True)
    assert isinstance(found, BadNumber)
    assert found.cause == "not_mobile"
    assert isinstance(BOOK.parse("+44 7911 123456", require_mobile=True), Number)


def test_a_numbers_time_zones_and_region() -> None:
    cn = BOOK.parse("+8613800138000")
    assert isinstance(cn, Number)
    assert BOOK.time_zones(cn.e164) == ("Asia/Shanghai",)
    ny = BOOK.parse("+1 201 555 0123")
    assert isinstance(ny, Number)
    assert BOOK.time_zones(ny.e164) == ("America/New_York",)
    assert ny.region == "US"
    ca = BOOK.parse("+1 604 555 0123")  # another region of the same country code
    assert isinstance(ca, Number)
    assert ca.region == "CA"


def test_a_bad_test_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="digits"):
        NumberBook(test_prefixes=["44x"])


def test_lenient_normalise_for_numbers_carriers_send() -> None:
    assert normalise("+44 7700 900123") == "447700900123"
    assert normalise("07700 900123", default_country_code="44") == "447700900123"
    assert normalise("abc") is None
