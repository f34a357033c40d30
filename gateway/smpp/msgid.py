"""Carrier message ids: one matching key for the id in submit_sm_resp and the id in the receipt.

SMPP 3.4 5.2.23 makes message_id an opaque C-octet string of up to 65 octets, and Appendix B only says the
receipt's `id:` is "the message ID allocated to the message by the SMSC when originally submitted". In
practice carriers write the same id differently on the two sides: hex in submit_sm_resp and decimal in the
receipt (or the reverse), upper case on one side and lower on the other, zero padded to ten digits, with or
without UUID dashes. Each carrier therefore declares, per side, how it writes ids (an `IdFormat`), and
`normalize_id` maps both sides to one key.

The key:
- numeric bases (HEX, DECIMAL): the id's value in decimal without leading zeros ("0" for zero), so hex
  "0A1B2C" and decimal "660268" both become "660268". Leading zeros and case never matter for a number;
  `strip_dashes` removes dashes before the digits are read.
- AS_IS, and the fallback for an id that is not a number in its declared base (empty, a character outside
  the base, or more significant digits than the 64 characters SMPP 3.4 5.2.23 allows a message_id): the id
  itself with the format's optional clean-ups applied (dashes removed, case folded, leading zeros stripped,
  in that order). Never an exception. A fallback key holds a non-digit unless it is empty or over 64
  digits long, so it cannot be mistaken for the key of a real numeric id.

Surrounding whitespace and NULs are always removed: they are framing left behind, never part of an id.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["CarrierIdFormats", "IdBase", "IdFormat", "normalize_id"]

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
# SMPP 3.4 5.2.23: message_id is a C-octet string of at most 65 octets, the NUL included. Receipt texts
# pad ids with zeros beyond that, so the limit counts significant digits only.
_MAX_NUMERIC_ID_LEN = 64
_PADDING = " \t\r\n\x00"


class IdBase(StrEnum):
    """How a carrier writes an id; the values are what carrier config files say."""

    AS_IS = "as-is"
    HEX = "hex"
    DECIMAL = "decimal"


@dataclass(frozen=True, slots=True)
class IdFormat:
    """How one side (submit_sm_resp or receipt) of one carrier writes message ids.

    The default is the identity: the id is matched exactly as written, which is right for carriers that
    echo the submit_sm_resp id unchanged (and the only safe choice for case-sensitive base64-like ids).
    """

    base: IdBase = IdBase.AS_IS
    fold_case: bool = False
    strip_zeros: bool = False
    strip_dashes: bool = False


@dataclass(frozen=True, slots=True)
class CarrierIdFormats:
    """A carrier's id formats on both sides; `response_key` and `receipt_key` meet when the ids match."""

    response: IdFormat = IdFormat()
    receipt: IdFormat = IdFormat()

    def response_key(self, raw: str) -> str:
        """Key of the message_id in a submit_sm_resp (SMPP 3.4 4.4.2)."""
        return normalize_id(raw, self.response)

    def receipt_key(self, raw: str) -> str:
        """Key of the id in a delivery receipt (receipted_message_id TLV or the text's `id:`)."""
        return normalize_id(raw, self.receipt)


def normalize_id(raw: str, fmt: IdFormat) -> str:
    """The matching key of `raw` written in format `fmt` (see the module docstring for the key's form)."""
    text = raw.strip(_PADDING)
    if fmt.strip_dashes:
        text = text.replace("-", "")
    if fmt.base is IdBase.HEX:
        value = _hex_value(text)
    elif fmt.base is IdBase.DECIMAL:
        value = _decimal_value(text)
    else:
        value = None
    if value is not None:
        return str(value)
    return _as_is(text, fmt)


def _hex_value(text: str) -> int | None:
    # Checked by hand: int(text, 16) also takes "0x", "_", signs and spaces, none of which an id may hold.
    if text and len(text.lstrip("0")) <= _MAX_NUMERIC_ID_LEN and _HEX_DIGITS.issuperset(text):
        return int(text, 16)
    return None


def _decimal_value(text: str) -> int | None:
    # isascii() too: str.isdigit() accepts superscripts and other scripts' digits.
    if text and len(text.lstrip("0")) <= _MAX_NUMERIC_ID_LEN and text.isascii() and text.isdigit():
        return int(text)
    return None


def _as_is(text: str, fmt: IdFormat) -> str:
    if fmt.fold_case:
        text = text.casefold()
    if fmt.strip_zeros:
        stripped = text.lstrip("0")
        # "000" is the id zero, not the empty id.
        text = stripped if stripped or not text else "0"
    return text
