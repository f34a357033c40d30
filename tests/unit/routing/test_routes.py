"""Number normalisation and longest-prefix routes."""

from __future__ import annotations

import pytest

from gateway.routing import Route, RouteTable, normalise


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+44 7700 900123", "447700900123"),
        ("0044-7700-900123", "447700900123"),
        ("(0)7700 900123", None),
        ("07700900123", None),
        ("447700900123", "447700900123"),
        ("+1 (555) 010-9999", "15550109999"),
        ("12345", None),
        ("+4477009001231234", None),
        ("44770090012x", None),
        ("+٤٤٧٧٠٠٩٠٠١٢٣", None),
    ],
)
def test_normalise(raw: str, expected: str | None) -> None:
    assert normalise(raw) == expected


def test_national_numbers_take_the_default_country_code() -> None:
    assert normalise("07700 900123", default_country_code="44") == "447700900123"


def test_longest_prefix_wins_and_default_route_catches_the_rest() -> None:
    table = RouteTable([Route("", ("intl",)), Route("44", ("uk-a", "uk-b")), Route("447700", ("uk-b",))])
    assert table.carriers_for("447700900123") == ("uk-b",)
    assert table.carriers_for("447800900123") == ("uk-a", "uk-b")
    assert table.carriers_for("15550109999") == ("intl",)


def test_no_route() -> None:
    assert RouteTable([Route("44", ("uk",))]).carriers_for("15550109999") == ()


def test_duplicate_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        RouteTable([Route("44", ("a",)), Route("44", ("b",))])
