"""Failure categories: a stored reason shown as a report category, from the carrier's own table first (the
whole reason, then its code), else by the gateway's defaults; codes compared as numbers, not spellings."""

from __future__ import annotations

import pytest

from gateway.policy.categories import FailureTable, check_table, default_category

TABLE = FailureTable(
    {
        "cmcc": {
            "001": "absent_subscriber",
            "undeliverable:006": "carrier_blacklisted",
            "006": "absent_subscriber",
            "0x00000045": "carrier_content_blocked",
            "carrier_rejected:0X58": "carrier_blacklisted",
            "ESME_RINVSRCADR": "rejected",
            "expired": "absent_subscriber",
        },
        "unicom": {"undeliverable:1": "invalid_number"},
    }
)


@pytest.mark.parametrize(
    ("reason", "category"),
    [
        ("expired", "expired"),
        ("no_receipt", "no_receipt"),
        ("cancelled", "cancelled"),
        ("unknown_after_timeout", "gateway_error"),
        ("retries_exhausted", "gateway_error"),
        ("internal_error", "gateway_error"),
        ("carrier_rejected:ESME_RINVDSTADR", "invalid_number"),
        ("carrier_rejected:0x0000000B", "invalid_number"),
        ("carrier_rejected:0x0000000b", "invalid_number"),
        ("carrier_rejected:0xB", "invalid_number"),
        ("carrier_rejected:ESME_RTHROTTLED", "rejected"),
        ("carrier_rejected:0x00000458", "rejected"),
        ("undeliverable:001", "no_reason"),
        ("undeliverable:unknown", "no_reason"),
        ("opted_out", "no_reason"),
        ("delivered", "no_reason"),
        ("", "no_reason"),
        ("something:new", "no_reason"),
    ],
)
def test_default_category_of_each_stored_reason(reason: str, category: str) -> None:
    assert default_category(reason) == category


@pytest.mark.parametrize(
    ("reason", "category"),
    [
        ("undeliverable:001", "absent_subscriber"),  # by its code
        ("undeliverable:1", "absent_subscriber"),  # decimal: 1 is 001
        ("undeliverable:0001", "absent_subscriber"),
        ("undeliverable:006", "carrier_blacklisted"),  # the whole reason wins over its code
        ("undeliverable:6", "carrier_blacklisted"),
        ("carrier_rejected:0x00000045", "carrier_content_blocked"),
        ("carrier_rejected:0x45", "carrier_content_blocked"),  # hex: 0x45 is 0x00000045
        ("carrier_rejected:0X00000045", "carrier_content_blocked"),
        ("carrier_rejected:ESME_RTHROTTLED", "carrier_blacklisted"),  # the name is its status 0x58
        ("carrier_rejected:0x0000000A", "rejected"),  # the status is the name ESME_RINVSRCADR
        ("expired", "absent_subscriber"),  # a key without a colon matches a reason without one
        ("undeliverable:002", "no_reason"),  # unmapped: the default
        ("carrier_rejected:ESME_RINVDSTADR", "invalid_number"),
        ("no_receipt", "no_receipt"),
    ],
)
def test_the_carriers_table_maps_whole_reasons_then_codes(reason: str, category: str) -> None:
    assert TABLE.category("cmcc", reason) == category


def test_another_carrier_or_none_uses_its_own_table_or_the_defaults() -> None:
    assert TABLE.category("unicom", "undeliverable:001") == "invalid_number"
    assert TABLE.category("unicom", "carrier_rejected:0x45") == "rejected"
    assert TABLE.category("telecom", "undeliverable:001") == "no_reason"
    assert TABLE.category("CMCC", "undeliverable:001") == "no_reason"  # carrier names are exact


def test_a_non_decimal_err_code_is_compared_case_insensitively() -> None:
    table = FailureTable({"x": {"0A1": "absent_subscriber"}})
    assert table.category("x", "undeliverable:0a1") == "absent_subscriber"


def test_an_empty_table_is_fine() -> None:
    assert check_table({}) == []
    assert FailureTable({}).category("cmcc", "expired") == "expired"


@pytest.mark.parametrize(
    ("mapping", "problem"),
    [
        ([], "-: expected a table of carriers, got list"),
        ({"cmcc": ["001"]}, "cmcc: expected a table of reason = category, got list"),
        ({"": {}}, '"": a carrier name must be text, not empty'),
        ({1: {}}, "1: a carrier name must be text, not empty"),
        ({"cmcc": {"001": "absent"}}, "cmcc.001: 'absent' is not a category (one of absent_subscriber, "),
        ({"cmcc": {"001": 3}}, "cmcc.001: 3 is not a category"),
        ({"cmcc": {"": "expired"}}, 'cmcc."": a key must be a stored reason or its code, not empty'),
        ({"cmcc": {" ": "expired"}}, 'cmcc." ": a key must be a stored reason or its code, not empty'),
        ({"cmcc": {7: "expired"}}, "cmcc.7: a key must be a stored reason or its code"),
        ({"cmcc": {"undeliverabel:001": "expired"}}, "cmcc.\"undeliverabel:001\": 'undeliverabel' is not a reason"),
        ({"cmcc": {"undeliverable:": "expired"}}, 'cmcc."undeliverable:": the code after the colon is missing'),
        (
            {"china mobile": {"1": "expired", "001": "cancelled"}},
            '"china mobile".001: the same code as 1, which maps to expired',
        ),
    ],
)
def test_check_table_names_each_problem_by_its_key(mapping: object, problem: str) -> None:
    problems = check_table(mapping)
    assert len(problems) == 1
    assert problems[0].startswith(problem)


def test_check_table_reports_every_problem_at_once() -> None:
    mapping = {"cmcc": {"001": "nope", "": "expired", "002": "absent_subscriber"}, "unicom": 5}
    assert len(check_table(mapping)) == 3


def test_two_spellings_of_one_code_with_the_same_category_are_fine() -> None:
    assert check_table({"cmcc": {"0x45": "rejected", "0x00000045": "rejected"}}) == []


def test_a_bad_table_is_a_value_error_listing_its_problems() -> None:
    with pytest.raises(ValueError, match=r"cmcc\.001: 'absent' is not a category"):
        FailureTable({"cmcc": {"001": "absent"}})
