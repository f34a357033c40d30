"""Carrier message ids: the key of the id in submit_sm_resp, and the candidate keys of the id in a receipt.

SMPP 3.4 5.2.23 makes message_id an opaque C-octet string of up to 65 octets, and Appendix B only says the
receipt's `id:` is "the message ID allocated to the message by the SMSC when originally submitted". In
practice carriers write the same id differently on the two sides: hex in submit_sm_resp and decimal in the
receipt (or the reverse), upper case on one side and lower on the other, zero padded to ten digits, with or
without UUID dashes, and some carriers mix styles from one receipt to the next. So a submit_sm_resp id gets
one key (`response_key`, what the store indexes) and a receipt id an ordered tuple of candidate keys
(`receipt_keys`): each a way the receipt may have written the response's id, turned into the response's key.
The store tries them in order (store.Store._receipt).

The response key (`key_format`): the carrier's declared response format (`IdFormat`), with the clean-ups
its id forms imply: letters folded to lower case when receipts may change case (`IdForm.CASE`), leading
zeros stripped when they may add or drop them (`IdForm.ZERO_PADDED`).
- numeric bases (HEX, DECIMAL): the id's value in decimal without leading zeros ("0" for zero), so hex
  "0A1B2C" and decimal "660268" both become "660268". Leading zeros and case never matter for a number;
  `strip_dashes` removes dashes before the digits are read.
- AS_IS (the default: a carrier that declares nothing), and the fallback for an id that is not a number in
  its declared base (empty, a character outside the base, or more significant digits than the 64
  characters SMPP 3.4 5.2.23 allows a message_id): the id itself with the clean-ups applied (dashes
  removed, case folded, leading zeros stripped, in that order). Never an exception. A fallback key of a
  numeric base holds a non-digit unless it is empty or over 64 digits long, so it cannot be mistaken for
  the key of a real numeric id.

The candidates of a receipt id, in this order, duplicates dropped:
1. the receipted_message_id TLV (SMPP 3.4 5.3.2.12: the same id as the submit_sm_resp's) in the response's
   own form; for the text's `id:`, the carrier's declared receipt base first when it declared one;
2. the same digits as the response would key them (the same form, or only case or padding changed);
3. the id read as a decimal number written by a response in hex (`IdForm.DECIMAL`), then read as a hex
   number written by a response in decimal (`IdForm.HEX`): for a response declared hex or decimal, the
   value; for an undeclared one, the number rendered in the other base (lower case, and upper case too
   when case is not folded; without leading zeros, so a response that pads its ids needs ZERO_PADDED)
   under the response's key;
4. the key the declared formats alone give (the exact id for a carrier that declared nothing): ids indexed
   before the forms existed.

False matches. "123" read as decimal and "123" read as hex are different numbers; a carrier whose ids may
come in either base has both readings tried. The rule: the first candidate whose segment still waits for a
receipt (submitted or unknown) wins, so the same-digits reading beats a cross-base one when both find a
live segment; a receipt whose cross-base readings only find segments that already have their outcome waits
as an early receipt instead (it may be for a message whose response has not come yet), and ends in the
store's unmatched table if nothing claims it. Carrier ids are long and handed out in sequence, so a number
read in the wrong base lands far outside the live range and finds nothing: the default (every form) is
safe for them. A carrier with short or random ids lists only the forms it uses (`receipt_id_forms`);
with none listed, only the same digits and the declared formats are tried, as before the forms existed.

Surrounding whitespace and NULs are always removed: they are framing left behind, never part of an id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["ALL_FORMS", "CarrierIdFormats", "IdBase", "IdForm", "IdFormat", "normalize_id"]

# SMPP 3.4 5.2.23: message_id is a C-octet string of at most 65 octets, the NUL included. Receipt texts
# pad ids with zeros beyond that, so the limit counts significant digits only.
_MAX_NUMERIC_ID_LEN = 64
_PADDING = " \t\r\n\x00"


class IdBase(StrEnum):
    """How a carrier writes an id; the values are what carrier config files say."""

    AS_IS = "as-is"
    HEX = "hex"
    DECIMAL = "decimal"


class IdForm(StrEnum):
    """A way a carrier's receipts may write the id its submit_sm_resp gave; the values are config words."""

    CASE = "case"  # letters in upper or lower case, whichever the response used
    ZERO_PADDED = "zero-padded"  # leading zeros added or dropped
    HEX = "hex"  # the number in hex where the response wrote it in decimal
    DECIMAL = "decimal"  # the number in decimal where the response wrote it in hex


ALL_FORMS: tuple[IdForm, ...] = tuple(IdForm)


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


_IDENTITY = IdFormat()


@dataclass(frozen=True, slots=True)
class CarrierIdFormats:
    """A carrier's declared id formats on both sides and the forms its receipts may use (default: all).

    `response_key` is what the store indexes a segment by; `receipt_keys` the keys a receipt's id may
    match, best first (see the module docstring for the rule). One call per receipt: the readings are
    decided once here, and each is one compiled-regex match."""

    response: IdFormat = IdFormat()
    receipt: IdFormat = IdFormat()
    forms: tuple[IdForm, ...] = ALL_FORMS
    # The response key's format (the declared response format with the forms' clean-ups).
    key_format: IdFormat = field(init=False, repr=False, compare=False)
    # Plain values decided once (enum lookups cost more than the work they decide): the key's base as
    # 0 (as-is), 10 or 16; the declared receipt base when it differs (0: none); the readings to try.
    _plan: tuple[int, int, bool, bool, bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        forms = frozenset(self.forms)
        r = self.response
        key = IdFormat(
            r.base,
            fold_case=r.fold_case or IdForm.CASE in forms,
            strip_zeros=r.strip_zeros or IdForm.ZERO_PADDED in forms,
            strip_dashes=r.strip_dashes or self.receipt.strip_dashes,
        )
        object.__setattr__(self, "key_format", key)
        declared = _RADIX[self.receipt.base]
        plan = (
            _RADIX[r.base],
            0 if declared == _RADIX[r.base] else declared,
            IdForm.DECIMAL in forms and r.base is not IdBase.DECIMAL,
            IdForm.HEX in forms and r.base is not IdBase.HEX,
            key != r,  # the declared formats alone key some ids differently: try that key last
        )
        object.__setattr__(self, "_plan", plan)

    def response_key(self, raw: str) -> str:
        """Key of the message_id in a submit_sm_resp (SMPP 3.4 4.4.2)."""
        return normalize_id(raw, self.key_format)

    def receipt_key(self, raw: str) -> str:
        """The first candidate key of a receipt's text id (see receipt_keys)."""
        return self.receipt_keys(raw)[0]

    def receipt_keys(self, raw: str, *, from_tlv: bool = False) -> tuple[str, ...]:
        """The keys a receipt's id may match, best first, without duplicates. `from_tlv`: the id is the
        receipted_message_id TLV, the response's own id (SMPP 3.4 5.3.2.12), so its own form comes first."""
        key_format = self.key_format
        text = raw.strip(_PADDING)
        if key_format.strip_dashes:
            text = text.replace("-", "")
        first = normalize_id(text, key_format)
        keys: tuple[str, ...] = (first,)
        radix, declared, read_decimal, read_hex, legacy = self._plan
        if declared and not from_tlv:
            match = (_HEX_ID if declared == _HEX else _DECIMAL_ID)(text)
            if match is not None:
                keys = (*self._renderings(int(match[1], declared), declared), first)
        if read_decimal:
            match = _DECIMAL_ID(text)
            if match is not None:
                for key in self._renderings(int(match[1]), _DECIMAL):
                    if key not in keys:
                        keys = (*keys, key)
        if read_hex:
            match = _HEX_ID(text)
            if match is not None:
                key = str(int(match[1], 16))
                if key not in keys:
                    keys = (*keys, key)
        # Only an id the key's clean-ups changed, and that is not a number (whose key is its value), can
        # have another key under the declared formats alone.
        if legacy and first != text and not (radix and first.isdigit()):
            key = normalize_id(raw, self.response)
            if key not in keys:
                keys = (*keys, key)
        return keys

    def _renderings(self, value: int, read_as: int) -> tuple[str, ...]:
        """Keys of the response that wrote `value`, which the receipt wrote in base `read_as`. Neither
        rendering has a leading zero or a letter to fold unless it is upper-case hex, so none needs the
        key's clean-ups."""
        if self._plan[0] or read_as == _HEX:
            return (str(value),)  # a number's key is its value; the other base of hex is decimal
        lower = f"{value:x}"
        if self.key_format.fold_case or lower.isdigit():
            return (lower,)
        return (lower, lower.upper())


_HEX = 16
_DECIMAL = 10
_RADIX = {IdBase.AS_IS: 0, IdBase.DECIMAL: _DECIMAL, IdBase.HEX: _HEX}
# An id that reads as a number: at most 64 significant digits (SMPP 3.4 5.2.23) after any zero padding.
# Spelled out: int(text, 16) also takes "0x", "_", signs and spaces, none of which an id may hold, and
# str.isdigit() takes other scripts' digits.
_HEX_ID = re.compile(r"0*([0-9a-fA-F]{1,64})").fullmatch
_DECIMAL_ID = re.compile(r"0*([0-9]{1,64})").fullmatch


def normalize_id(raw: str, fmt: IdFormat) -> str:
    """The matching key of `raw` written in format `fmt` (see the module docstring for the key's form)."""
    text = raw.strip(_PADDING)
    if fmt.strip_dashes:
        text = text.replace("-", "")
    value = _value(text, fmt.base)
    if value is not None:
        return str(value)
    return _as_is(text, fmt)


def _value(text: str, base: IdBase) -> int | None:
    radix = _RADIX[base]
    if radix:
        match = (_HEX_ID if radix == _HEX else _DECIMAL_ID)(text)
        if match is not None:
            return int(match[1], radix)
    return None


def _as_is(text: str, fmt: IdFormat) -> str:
    if fmt.fold_case:
        text = text.casefold()
    if fmt.strip_zeros:
        stripped = text.lstrip("0")
        # "000" is the id zero, not the empty id.
        text = stripped if stripped or not text else "0"
    return text
