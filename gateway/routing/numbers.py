"""Recipient numbers: parsed and validated with libphonenumber's data (the `phonenumbers` package) [pure].

`NumberBook.parse` turns what an application sends (`+44 7911 123456`, `0044 7911123456`, `07911 123456` with
default region GB, `13800138000` with default region CN, `447911123456`) into a `Number`: E.164 digits, the
region, the number's type (mobile, fixed line, ...) and its time zones; or a `BadNumber` with the cause.

Why not `phonenumbers.parse` and `is_valid_number` per recipient: on this project's machine they cost
400-500 µs per number together (parse 80, validity 130, type 125, time zones 95), two seconds of CPU for a
second of traffic at 5,000 messages/s. The book reads the same metadata once (each region's number patterns,
possible lengths, time-zone prefixes) and matches E.164 digits against it directly: a few µs. Only inputs it
cannot read plainly (letters, an extension, a national number whose trunk prefix needs the region's parsing
rule) go to `phonenumbers.parse`. tests/unit/routing/test_numbers.py proves both paths give what
phonenumbers itself says, number by number.

How a string of digits without `+` or `00` is read, with a default region: first as that region's number
with its country code written out (`8613800138000` in CN), then as a national number (`13800138000`,
`07911123456`), then as an international number without its `+` (`447911123456` anywhere): the first
reading that is a valid number wins; when none is, the cause reported is the first reading's.

`test_prefixes` accepts numbers that are possible (the right length) but not valid, under E.164 prefixes an
operator names: reserved drama and test ranges such as Ofcom's 447700900 (07700 900000-900999), which
libphonenumber rightly calls invalid and which simulators and test suites use.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberType
from phonenumbers.phonenumberutil import _GEO_MOBILE_COUNTRIES
from phonenumbers.tzdata import TIMEZONE_DATA, TIMEZONE_LONGEST_PREFIX

from gateway.fastinit import fast_init

# Number kinds, as phonenumbers.PhoneNumberType names them (lower case).
KINDS: dict[int, str] = {
    PhoneNumberType.FIXED_LINE: "fixed_line",
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.PREMIUM_RATE: "premium_rate",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.VOIP: "voip",
    PhoneNumberType.PERSONAL_NUMBER: "personal_number",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "uan",
    PhoneNumberType.VOICEMAIL: "voicemail",
    PhoneNumberType.UNKNOWN: "unknown",
}
# Kinds a handset can receive an SMS on ("not_mobile" refuses the others where a route wants mobiles).
MOBILE_KINDS = frozenset({"mobile", "fixed_line_or_mobile", "pager"})

# Causes of a BadNumber.
NOT_A_NUMBER = "not_a_number"
TOO_SHORT = "too_short"
TOO_LONG = "too_long"
INVALID_COUNTRY_CODE = "invalid_country_code"
INVALID_FOR_REGION = "invalid_for_region"
NOT_MOBILE = "not_mobile"
NATIONAL_WITHOUT_REGION = "national_without_region"
CAUSES = (NOT_A_NUMBER, TOO_SHORT, TOO_LONG, INVALID_COUNTRY_CODE, INVALID_FOR_REGION, NOT_MOBILE,
          NATIONAL_WITHOUT_REGION)  # fmt: skip

_SEPARATORS = str.maketrans("", "", " -().\t/\u00a0\u2009\u200b\u2010\u2011\u2012\u2013\u2014")
_MAX_INPUT = 64  # characters: beyond this it is not a phone number, whatever it holds


@dataclass(frozen=True, slots=True)
class Number:
    e164: str  # digits, no "+": 447911123456
    country_code: int
    region: str  # ISO 3166-1 alpha-2 ("GB"); "001" for non-geographic numbers (+800 ...)
    kind: str  # a value of KINDS; "unknown" only for a number accepted under a test prefix
    # Its time zones: NumberBook.time_zones(e164, geographic=...), asked for where a send window needs them.

    @property
    def geographic(self) -> bool:
        """Whether its prefix says where it is (libphonenumber's is_number_type_geographical): a fixed line,
        or a mobile in the few countries whose mobile ranges are regional. Any other number may be anywhere
        in its country: its time zones are all the country's."""
        if self.kind in ("fixed_line", "fixed_line_or_mobile", "unknown"):
            return True
        return self.kind == "mobile" and self.country_code in _GEO_MOBILE_COUNTRIES


fast_init(Number)  # one per recipient


@dataclass(frozen=True, slots=True)
class BadNumber:
    cause: str  # one of CAUSES
    detail: str  # for a person: what was wrong with which input

    def __str__(self) -> str:
        return f"{self.cause}: {self.detail}"


@dataclass(frozen=True, slots=True)
class _Desc:
    pattern: re.Pattern[str] | None
    lengths: frozenset[int]

    def matches(self, national: str) -> bool:
        if self.pattern is None:
            return False
        if self.lengths and len(national) not in self.lengths:
            return False
        return self.pattern.fullmatch(national) is not None


def _desc(d: Any) -> _Desc:
    if d is None or not d.national_number_pattern:
        return _Desc(None, frozenset())
    return _Desc(re.compile(d.national_number_pattern), frozenset(d.possible_length or ()))


# The special kinds in the order of phonenumbers' _number_type_helper (metadata attribute, kind).
_KIND_ATTRS = (
    ("premium_rate", "premium_rate"), ("toll_free", "toll_free"), ("shared_cost", "shared_cost"), ("voip", "voip"),
    ("personal_number", "personal_number"), ("pager", "pager"), ("uan", "uan"), ("voicemail", "voicemail"),
)


def _alternative(name: str, d: Any) -> str | None:
    """One kind's pattern as a named alternative of a region's combined pattern, its possible lengths as a
    lookahead (phonenumbers checks the lengths first, then the pattern)."""
    if d is None or not d.national_number_pattern:
        return None
    lengths = "|".join(rf"\d{{{n}}}" for n in sorted(d.possible_length or ()))
    ahead = rf"(?=(?:{lengths})\Z)" if lengths else ""
    return f"(?P<{name}>{ahead}(?:{d.national_number_pattern}))"


class _Region:
    """One region's patterns, compiled once. The kinds are one combined pattern, its alternatives in the
    order of phonenumbers' _number_type_helper (special kinds, fixed line, mobile): a full match takes the
    first alternative that matches, so one regex call gives the kind phonenumbers would."""

    __slots__ = ("code", "general", "kinds", "leading", "lengths", "max_length", "min_length", "mobile",
                 "transform", "trunk", "trunk_rule")  # fmt: skip

    def __init__(self, code: str, m: Any) -> None:
        self.code = code
        self.general = _desc(m.general_desc)
        self.leading = re.compile(m.leading_digits) if m.leading_digits else None
        self.lengths = lengths = frozenset(m.general_desc.possible_length or ())
        self.min_length = min(lengths, default=0)
        self.max_length = max(lengths, default=99)
        same = bool(m.same_mobile_and_fixed_line_pattern)
        parts = [_alternative(name, getattr(m, attr)) for attr, name in _KIND_ATTRS]
        parts.append(_alternative("fixed_line_or_mobile" if same else "fixed_line", m.fixed_line))
        if not same:  # phonenumbers never calls a number mobile where the two patterns are the same
            parts.append(_alternative("mobile", m.mobile))
        alternatives = [p for p in parts if p is not None]
        self.kinds = re.compile("|".join(alternatives)) if alternatives else None
        # A fixed-line match is "fixed_line_or_mobile" when the mobile pattern matches too.
        self.mobile = _desc(m.mobile) if not same else None
        self.trunk = m.national_prefix or ""
        # How a national number's trunk prefix (and a carrier selection code) is recognised when parsing.
        rule = m.national_prefix_for_parsing or self.trunk
        self.trunk_rule = re.compile(rule) if rule else None
        self.transform = m.national_prefix_transform_rule

    def strip_trunk(self, digits: str) -> str | None:
        """`digits` without the trunk prefix the region's parsing rule finds (phonenumbers'
        _maybe_strip_national_prefix_carrier_code, then parse's length check); None: phonenumbers' own parser
        must decide (a transform rule rewrites the number)."""
        found = self.trunk_rule.match(digits) if self.trunk_rule is not None else None
        if found is None:
            return digits
        groups = found.groups()
        if self.transform and groups and groups[-1] is not None:
            return None
        rest = digits[found.end():]
        pattern = self.general.pattern
        if pattern is not None and pattern.fullmatch(digits) and not pattern.fullmatch(rest):
            return digits  # the whole was a number and the rest is not: nothing was a prefix
        if len(rest) < self.min_length or (self.lengths and len(rest) not in self.lengths):
            return digits  # phonenumbers keeps the digits as they were when the rest is not a possible length
        return rest

    def kind(self, national: str) -> str | None:
        """The number's kind in this region (phonenumbers' _number_type_helper), None when it is not valid."""
        if self.kinds is None or not self.general.matches(national):
            return None
        found = self.kinds.fullmatch(national)
        if found is None:
            return None
        kind = found.lastgroup
        if kind == "fixed_line" and self.mobile is not None and self.mobile.matches(national):
            return "fixed_line_or_mobile"
        return kind


class NumberBook:
    """libphonenumber's metadata, compiled for fast E.164 checks. Build once (about a second: every region's
    patterns are compiled at first use of its country code, so the first numbers of a country cost more)."""

    def __init__(self, test_prefixes: Iterable[str] = ()) -> None:
        self._countries: dict[int, tuple[_Region, ...]] = {}
        self._code_prefixes = {str(cc): cc for cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}
        self._region_codes: dict[str, int] = {}
        for cc, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items():
            for r in regions:
                self._region_codes.setdefault(r, cc)
        self.test_prefixes = tuple(sorted(set(test_prefixes), key=len, reverse=True))
        for p in self.test_prefixes:
            if not p.isascii() or not p.isdigit():
                raise ValueError(f"test prefix {p!r} must be digits")

    def is_region(self, region: str) -> bool:
        return region.upper() in self._region_codes

    def country_code_of(self, region: str) -> str:
        """"44" for "GB"; "" for no region."""
        cc = self._region_codes.get(region.upper()) if region else None
        return str(cc) if cc is not None else ""

    def _regions(self, cc: int) -> tuple[_Region, ...]:
        found = self._countries.get(cc)
        if found is None:
            codes = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(cc, ())
            regions = []
            for code in codes:
                m = (PhoneMetadata.metadata_for_nongeo_region(cc) if code == "001"
                     else PhoneMetadata.metadata_for_region(code))  # fmt: skip
                if m is not None:
                    regions.append(_Region(code, m))
            found = self._countries[cc] = tuple(regions)
        return found

    def _split(self, digits: str) -> tuple[int, str] | None:
        """(country code, national number) of international digits, None when no country code starts them."""
        codes = self._code_prefixes
        for n in (1, 2, 3):
            cc = codes.get(digits[:n])
            if cc is not None:
                return cc, digits[n:]
        return None

    def check_e164(self, digits: str) -> Number | BadNumber:
        """International digits (no `+`), validated."""
        if len(digits) > 17:
            return BadNumber(TOO_LONG, f"{len(digits)} digits: E.164 numbers have at most 15")
        split = self._split(digits)
        if split is None:
            return BadNumber(INVALID_COUNTRY_CODE, f"+{digits} starts with no country code")
        cc, national = split
        regions = self._regions(cc)
        for region in regions:
            if region.leading is not None and region.leading.match(national) is None:
                continue  # another region of the same country code (NANP, +44 GG/JE/IM) has this number
            kind = region.kind(national)
            if kind is not None:
                return Number(digits, cc, region.code, kind)
        main = regions[0] if regions else None
        if main is not None and main.trunk and national.startswith(main.trunk):
            # "+44 (0)7911 123456": a trunk prefix written after the country code, as phonenumbers reads it
            # (the region's own parsing rule finds it: GB's is "0|180020", not the bare "0")
            stripped = main.strip_trunk(national)
            if stripped is not None and stripped != national and main.general.pattern is not None and (
                not main.general.pattern.fullmatch(national) and main.general.pattern.fullmatch(stripped)
            ):
                return self.check_e164(f"{cc}{stripped}")
        test = next((p for p in self.test_prefixes if digits.startswith(p)), None)
        if main is None:
            return BadNumber(INVALID_COUNTRY_CODE, f"+{digits}: no numbering plan for country code {cc}")
        if len(national) < main.min_length:
            return BadNumber(TOO_SHORT, f"+{digits}: {len(national)} digits after +{cc}, at least {main.min_length}")
        if len(national) > main.max_length:
            return BadNumber(TOO_LONG, f"+{digits}: {len(national)} digits after +{cc}, at most {main.max_length}")
        if test is not None:
            return Number(digits, cc, main.code, "unknown")
        return BadNumber(INVALID_FOR_REGION, f"+{digits} is no number in {main.code}'s numbering plan")

    def time_zones(self, digits: str, *, geographic: bool = True) -> tuple[str, ...]:
        """The IANA time zones of the E.164 number `digits` (libphonenumber's prefix data); () when unknown.
        A number that is not `geographic` (Number.geographic: most mobiles) may be anywhere in its country:
        it gets every zone of its country code, as libphonenumber's time_zones_for_number answers."""
        if not geographic and (split := self._split(digits)) is not None:
            zones = TIMEZONE_DATA.get(str(split[0]))
            if zones is not None:
                return () if zones == ("Etc/Unknown",) else tuple(zones)
        for n in range(min(len(digits), TIMEZONE_LONGEST_PREFIX), 0, -1):
            zones = TIMEZONE_DATA.get(digits[:n])
            if zones is not None:
                return () if zones == ("Etc/Unknown",) else tuple(zones)
        return ()

    def parse(self, raw: str, region: str = "", *, require_mobile: bool = False) -> Number | BadNumber:
        """A recipient as an application wrote it, read with `region` as the default for national numbers."""
        found = self._parse(raw, region.upper())
        if require_mobile and isinstance(found, Number) and found.kind not in MOBILE_KINDS | {"unknown"}:
            return BadNumber(NOT_MOBILE, f"+{found.e164} is a {found.kind.replace('_', ' ')} number")
        return found

    def _parse(self, raw: str, region: str) -> Number | BadNumber:
        if len(raw) > _MAX_INPUT:
            return BadNumber(NOT_A_NUMBER, f"{len(raw)} characters")
        text = raw.strip().translate(_SEPARATORS)
        if not text.isascii():
            text = unicodedata.normalize("NFKC", text).translate(_SEPARATORS)  # full-width digits, +
        plus = text.startswith("+")
        digits = text[1:] if plus else text
        if not digits.isascii() or not digits.isdigit():
            return self._slow(raw, region)  # letters, an extension, ...: phonenumbers' own parser decides
        if plus:
            return self.check_e164(digits)
        if digits.startswith("00"):  # the international call prefix of most of the world
            return self.check_e164(digits[2:])
        cc = self._region_codes.get(region) if region else None
        if cc is None:
            if digits.startswith("0"):
                return BadNumber(NATIONAL_WITHOUT_REGION, f"{raw!r} is a national number and no region is set")
            return self.check_e164(digits)
        readings: list[Number | BadNumber] = []
        for reading in self._readings(raw, digits, cc, region):
            if isinstance(reading, Number) and reading.kind != "unknown":
                return reading
            readings.append(reading)
        for r in readings:  # a test range
            if isinstance(r, Number):
                return r
        return readings[0]

    def _readings(self, raw: str, digits: str, cc: int, region: str) -> Iterator[Number | BadNumber]:
        if digits.startswith(str(cc)):  # the country code written out, without + (8613800138000 in CN)
            yield self.check_e164(digits)
        yield self._national(raw, digits, cc, region)
        if not digits.startswith("0"):
            yield self.check_e164(digits)  # international without + (447911123456 in CN)

    def _national(self, raw: str, digits: str, cc: int, region: str) -> Number | BadNumber:
        meta = next((r for r in self._regions(cc) if r.code == region), None)
        if meta is None:
            return self._slow(raw, region)
        national = meta.strip_trunk(digits)
        if national is None:
            return self._slow(raw, region)
        return self.check_e164(f"{cc}{national}")

    def _slow(self, raw: str, region: str) -> Number | BadNumber:
        try:
            n = phonenumbers.parse(raw, region or None)
        except phonenumbers.NumberParseException as err:
            cause = {
                phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: INVALID_COUNTRY_CODE,
                phonenumbers.NumberParseException.TOO_SHORT_NSN: TOO_SHORT,
                phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: TOO_SHORT,
                phonenumbers.NumberParseException.TOO_LONG: TOO_LONG,
            }.get(err.error_type, NOT_A_NUMBER)
            return BadNumber(cause, f"{raw!r}: {err._msg}")
        if n.extension:
            return BadNumber(NOT_A_NUMBER, f"{raw!r} has an extension: an SMS cannot reach one")
        return self.check_e164(phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164)[1:])


def normalise(number: str, *, default_country_code: str = "") -> str | None:
    """Lenient E.164 digits for numbers carriers send us (MO sources, receipt addresses), where a refusal
    helps no one: `+44 7700 900123`, `0044 7700900123` and (with default_country_code "44") `07700 900123`
    all give `447700900123`; anything that cannot be an E.164 number gives None."""
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
