"""Failure categories [pure]: why a message failed, in the words a platform's delivery report uses.

The gateway stores a precise reason for every failure (gateway/lifecycle.py lists them): a receipt's error
code (`undeliverable:001`), a submit_sm_resp status (`carrier_rejected:ESME_RINVDSTADR`, or
`carrier_rejected:0x00000045` for a vendor's own), or the gateway's own (`expired`, `no_receipt`). A customer
reading a report wants to know what to do about it: try the number later, remove it, change the text. Each
carrier means something else by the same error code, so the operator maps codes to categories per carrier
(`FailureTable`), and `default_category` answers where the table says nothing:

    absent_subscriber        the handset is absent or switched off
    carrier_blacklisted      on the carrier's own blacklist, or the subscriber blocked the sender
    carrier_content_blocked  the carrier blocked the content
    invalid_number           the carrier says the number does not exist
    expired                  the validity period passed before delivery
    rejected                 the carrier refused the submit
    no_receipt               no receipt came within the carrier's receipt timeout
    cancelled                cancelled by the upstream application
    gateway_error            the gateway gave up: submit timeouts, exhausted retries, internal errors
    no_reason                the carrier gave no reason, or one that is not mapped

Codes are compared as the carriers mean them, not as they are spelled: a status is a 32-bit number whether a
receipt writes it `0x45`, `0x00000045` or `0X00000045`, or the gateway names it (`ESME_RINVDSTADR` is
`0x0000000b`), so statuses compare as 8 lower-case hex digits; a receipt's err: field is a decimal number
(SMPP 3.4 Appendix B), so `1` and `001` are the same; any other code compares case-insensitively.

A table key is a whole stored reason ("undeliverable:001") or only the code after its colon ("001"); the
whole reason wins. A key without a colon matches a reason or a code equal to it, so "expired" maps the
gateway's own `expired` too. Policy refusals (opted_out, no_route...) are not carrier failures: they fall to
no_reason unless a table maps them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from gateway.smpp.constants import CommandStatus

CATEGORIES: Final = (
    "absent_subscriber",
    "carrier_blacklisted",
    "carrier_content_blocked",
    "invalid_number",
    "expired",
    "rejected",
    "no_receipt",
    "cancelled",
    "gateway_error",
    "no_reason",
)
"""Every category, in the order a report lists them (module docstring)."""

# The parameterised reasons of gateway/lifecycle.py: the only stored reasons with a colon.
PREFIXES: Final = ("carrier_rejected", "undeliverable")

_HEX: Final = re.compile(r"0x([0-9a-f]{1,8})", re.IGNORECASE)
_STATUSES: Final = {status.name: f"0x{status.value:08x}" for status in CommandStatus}
_INVALID_NUMBER: Final = _STATUSES["ESME_RINVDSTADR"]
_PLAIN: Final = {
    "expired": "expired",
    "no_receipt": "no_receipt",
    "cancelled": "cancelled",
    "unknown_after_timeout": "gateway_error",
    "retries_exhausted": "gateway_error",
    "internal_error": "gateway_error",
}


def _code(code: str) -> str:
    """`code` as it is compared (module docstring): a status as 8 lower-case hex digits, a decimal number
    without leading zeros, any other code case-folded."""
    code = code.strip()
    if (hex_digits := _HEX.fullmatch(code)) is not None:
        return f"0x{int(hex_digits.group(1), 16):08x}"
    if (status := _STATUSES.get(code.upper())) is not None:
        return status
    if code.isascii() and code.isdigit():
        return str(int(code))
    return code.casefold()


def _key(reason: str) -> tuple[str, str | None]:
    """A reason as compared: the whole of it, and its code (None for a reason without a parameter)."""
    prefix, colon, code = reason.partition(":")
    if not colon:
        return _code(reason), None
    canonical = _code(code)
    return f"{prefix.strip().casefold()}:{canonical}", canonical


def default_category(reason: str) -> str:
    """The category of a stored reason when no carrier's table maps it: the gateway's own reasons by their
    meaning, a rejected submit as rejected (an invalid destination as invalid_number), an undelivered one
    as no_reason (its err: code means something only to its carrier)."""
    whole, code = _key(reason)
    if code is None:
        return _PLAIN.get(whole, "no_reason")
    if whole.startswith("carrier_rejected:"):
        return "invalid_number" if code == _INVALID_NUMBER else "rejected"
    return "no_reason"


def _toml(key: object) -> str:
    """A key as TOML writes it, so a problem points at what the operator typed."""
    if isinstance(key, str) and re.fullmatch(r"[A-Za-z0-9_-]+", key):
        return key
    return f'"{key}"' if isinstance(key, str) else repr(key)


def _key_problem(key: object) -> str | None:
    if not isinstance(key, str) or not key.strip():
        return "a key must be a stored reason or its code, not empty"
    prefix, colon, code = key.partition(":")
    if colon and prefix.strip().casefold() not in PREFIXES:
        return f"{prefix!r} is not a reason with a code (one of {', '.join(PREFIXES)})"
    if colon and not code.strip():
        return "the code after the colon is missing"
    return None


def _entry_problems(carrier: str, table: Mapping[object, object]) -> list[str]:
    """The problems of one carrier's table: bad keys, values that are no category, and two spellings of one
    code mapped to different categories (which one wins would depend on the order of the file)."""
    problems: list[str] = []
    seen: dict[str, tuple[object, object]] = {}
    for key, value in table.items():
        where = f"{carrier}.{_toml(key)}"
        if (problem := _key_problem(key)) is not None:
            problems.append(f"{where}: {problem}")
        elif not isinstance(value, str) or value not in CATEGORIES:
            problems.append(f"{where}: {value!r} is not a category (one of {', '.join(CATEGORIES)})")
        elif (other := seen.setdefault(_key(str(key))[0], (key, value)))[1] != value:
            problems.append(f"{where}: the same code as {_toml(other[0])}, which maps to {other[1]}")
    return problems


def check_table(mapping: object) -> list[str]:
    """Every problem of a carrier name -> {reason or code: category} mapping as read from a config file, as
    "KEY: reason" strings (KEY dotted like the file's: `carrier."undeliverable:001"`, "-" for the whole);
    empty when `FailureTable(mapping)` will accept it."""
    if not isinstance(mapping, Mapping):
        return [f"-: expected a table of carriers, got {type(mapping).__name__}"]
    problems: list[str] = []
    for carrier, table in mapping.items():
        if not isinstance(carrier, str) or not carrier:
            problems.append(f"{_toml(carrier)}: a carrier name must be text, not empty")
        elif not isinstance(table, Mapping):
            problems.append(f"{_toml(carrier)}: expected a table of reason = category, got {type(table).__name__}")
        else:
            problems += _entry_problems(_toml(carrier), table)
    return problems


@dataclass(frozen=True, slots=True)
class FailureTable:
    """Each carrier's own categories for stored failure reasons (module docstring): `carriers` maps a
    carrier's name to {reason or code: category}. ValueError listing `check_table`'s problems."""

    carriers: Mapping[str, Mapping[str, str]]
    # Keys as compared, built once: a report asks for every failed message.
    _index: Mapping[str, Mapping[str, str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problems = check_table(self.carriers)
        if problems:
            raise ValueError("failure categories: " + "; ".join(problems))
        index = {name: {_key(key)[0]: value for key, value in table.items()} for name, table in self.carriers.items()}
        object.__setattr__(self, "_index", index)

    def category(self, carrier: str, reason: str) -> str:
        """The category of `reason` from `carrier`: the carrier's entry for the whole reason, else for its
        code, else `default_category`."""
        table = self._index.get(carrier)
        if table:
            whole, code = _key(reason)
            found = table.get(whole)
            if found is None and code is not None:
                found = table.get(code)
            if found is not None:
                return found
        return default_category(reason)
