"""Recipient numbers to international E.164 digits (ITU-T E.164: at most 15 digits, no leading zero)."""

from __future__ import annotations

_SEPARATORS = str.maketrans("", "", " -().\t")


def normalise(number: str, *, default_country_code: str = "") -> str | None:
    """`+44 7700 900123`, `0044 7700900123` and (with default_country_code "44") `07700 900123` all give
    `447700900123`; anything that cannot be an E.164 number gives None."""
    digits = number.translate(_SEPARATORS)
    if digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00"):
        digits = digits[2:]  # international call prefix used across most of the world
    elif digits.startswith("0") and default_country_code:
        digits = default_country_code + digits[1:]  # national trunk prefix
    if not digits.isascii() or not digits.isdigit():
        return None
    if not 7 <= len(digits) <= 15 or digits[0] == "0":
        return None
    return digits
