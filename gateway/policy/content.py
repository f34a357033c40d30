# ruff: noqa: RUF002, RUF003 - the docstrings and comments show the full-width forms these rules are about
"""Content rules [pure]: the signature a text carries, and the opt-out wording it must contain.

Signatures. Chinese carriers take an application-to-person text only when it names its sender in a
signature: the brand between full-width lenticular brackets, "【Brand】", at the start of the text or at its
end, registered with the carrier beforehand. `signature` finds it (a leading one first, after leading
whitespace; else a trailing one) and `check_signature` applies an account's `SignatureRules`: whether one is
required, its length in units (a CJK character counts 2, any other character 1, so the usual limit of 18
units is "at most 9 CJK or 18 Latin characters"), the neutral or reserved names a sender may not use (a
carrier's, an authority's, or a bare "notice" that hides who sends), the symbols carriers refuse inside one,
and, when the account registered some, the signatures it may use. One signature a text: carriers read any
【】 as one, so a second pair anywhere makes the text invalid. The ASCII form "[Brand]" is deliberately not a
signature: the carriers' platforms recognise only 【】, so a text signed "[Brand]" is refused there as
unsigned, and accepting it here would pass a text the carrier refuses.

Opt-out wording. Marketing texts must tell the recipient how to stop them ("回T退订", "Reply STOP to opt
out"). `has_optout_wording` compares the text and each wording folded with `gateway.routing.content`'s
normalisation (NFKC, casefold, letters and digits only), so "回 T 退订", "回Ｔ退订" and "reply stop to opt-out"
count; `with_optout` appends a wording where a reader expects it: before a trailing signature, with a space
only between two words of a spaced script.

Rule breaches are values (`Violation`), not exceptions (STYLE.md: business refusals are return values);
ValueError is for configuration that cannot work, such as a reserved name with no letter in it.
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from gateway.routing.content import normalise

# What "CJK" means here (signature units, where a space goes, where a keyword ends): the scripts written
# without spaces between words and drawn full width, with their punctuation. Sorted, inclusive code points.
_CJK_RANGES: Final = (
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x2E80, 0x2FFF),  # CJK and Kangxi radicals, ideographic description characters
    (0x3000, 0x9FFF),  # CJK punctuation, kana, Bopomofo, Hangul compatibility jamo, enclosed CJK, ideographs
    (0xA960, 0xA97F),  # Hangul Jamo Extended-A
    (0xAC00, 0xD7FF),  # Hangul syllables, Hangul Jamo Extended-B
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFE30, 0xFE4F),  # CJK compatibility forms (vertical punctuation)
    (0xFF01, 0xFF60),  # full-width ASCII and brackets: "，", "！", "Ａ"
    (0xFFE0, 0xFFE6),  # full-width signs: "￥"
    (0x20000, 0x3FFFF),  # ideographs of planes 2 and 3 (extensions B and later)
)
_CJK_STARTS: Final = tuple(start for start, _ in _CJK_RANGES)

_OPEN: Final = "【"
_CLOSE: Final = "】"

DEFAULT_RESERVED: Final = frozenset(
    {"验证码", "政务通知", "短信通知", "通知", "系统消息", "中国移动", "中国联通", "中国电信", "公安", "法院"}
)
"""Signatures no sender may use: neutral notices that hide who sends, carriers, authorities."""

DEFAULT_SYMBOLS: Final = "【】{}▽^●★『』<>[]#@&*~$%"
"""Symbols carriers refuse inside a signature (their full-width forms are refused too)."""


def is_cjk(char: str) -> bool:
    """Whether `char` is a CJK character or CJK punctuation (`_CJK_RANGES`): it counts 2 signature units,
    and needs no space before or after it."""
    code = ord(char)
    i = bisect_right(_CJK_STARTS, code) - 1
    return i >= 0 and code <= _CJK_RANGES[i][1]


def _folded(value: str, what: str) -> str:
    """`value` folded like the text it is compared with; ValueError when nothing is left of it (it would be
    found in every text)."""
    folded = normalise(value)[0]
    if not folded:
        raise ValueError(f"{what} {value!r} has no letter or digit once normalised")
    return folded


def _trailing_signature(text: str) -> int | None:
    """Where a 【...】 that ends `text` (but for whitespace) starts, if some other text comes before it."""
    body = text.rstrip()
    start = body.rfind(_OPEN)
    if body.endswith(_CLOSE) and start > 0 and not body[:start].isspace():
        return start
    return None


def signature(text: str) -> str | None:
    """The brand of the text's signature: a leading 【...】 (after whitespace), else a trailing one; "" for an
    empty 【】, None when the text has no signature, or brackets that are not one pair ("【【】", two
    signatures: `check_signature` refuses those)."""
    if text.count(_OPEN) != 1 or text.count(_CLOSE) != 1:
        return None
    start = len(text) - len(text.lstrip())
    if text.startswith(_OPEN, start) and (close := text.find(_CLOSE, start)) >= 0:
        return text[start + 1 : close]
    trailing = _trailing_signature(text)
    return None if trailing is None else text.rstrip()[trailing + 1 : -1]


def units(brand: str) -> int:
    """A signature's length as carriers count it: 2 for each CJK character, 1 for any other."""
    return sum(2 if is_cjk(char) else 1 for char in brand)


@dataclass(frozen=True, slots=True)
class Violation:
    """A rule the text breaks: `reason` a code for the submitter ("signature_missing"), `detail` for a
    person (which rule, and what the text has)."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class SignatureRules:
    """An account's signature rules. `reserved` and `allowed` are compared with the brand after folding
    (so "【ＡＢＣ】" is "abc"); `allowed`, when not empty, lists the only signatures the account may use.
    Raises ValueError for limits that no signature could meet, or a name with no letter or digit."""

    required: bool = False
    max_units: int = 18
    min_units: int = 2
    reserved: frozenset[str] = DEFAULT_RESERVED
    symbols: str = DEFAULT_SYMBOLS
    allowed: frozenset[str] = frozenset()
    # Folded once here rather than on every check.
    _reserved: frozenset[str] = field(init=False, repr=False, compare=False)
    _allowed: frozenset[str] = field(init=False, repr=False, compare=False)
    _symbols: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= self.min_units <= self.max_units:
            limits = f"min_units {self.min_units}, max_units {self.max_units}"
            raise ValueError(f"signature units: need 1 <= min_units <= max_units, not {limits}")
        object.__setattr__(self, "_reserved", _fold_all(self.reserved, "reserved signature"))
        object.__setattr__(self, "_allowed", _fold_all(self.allowed, "allowed signature"))
        object.__setattr__(self, "_symbols", frozenset(self.symbols))


def _fold_all(names: Iterable[str], what: str) -> frozenset[str]:
    return frozenset(_folded(name, what) for name in names)


_MORE_THAN_ONE = "more than one 【】 in the text: a text carries one signature, and carriers read any 【】 as one"


def check_signature(text: str, rules: SignatureRules) -> Violation | None:
    """The first rule the text's signature breaks, or None. Reason "signature_missing" when one is required
    and the text has none; "signature_invalid" for every other breach, the detail saying which."""
    if text.count(_OPEN) > 1 or text.count(_CLOSE) > 1:
        return Violation("signature_invalid", _MORE_THAN_ONE)
    brand = signature(text)
    if brand is None:
        if rules.required:
            return Violation("signature_missing", "the text has no signature 【...】 at its start or end")
        return None
    problem = _signature_problem(brand, rules)
    return None if problem is None else Violation("signature_invalid", problem)


def _signature_problem(brand: str, rules: SignatureRules) -> str | None:
    """What is wrong with the signature `brand` under `rules`, for a person; None if nothing."""
    if not brand:
        return "empty signature 【】"
    shown = f"signature {_OPEN}{brand}{_CLOSE}"
    # A symbol's full-width form ("＃") is refused like the symbol itself.
    symbol = next((c for c in brand if not rules._symbols.isdisjoint(unicodedata.normalize("NFKC", c))), None)
    if symbol is not None:
        return f"{shown} contains {symbol!r}, which carriers refuse in a signature"
    size = units(brand)
    if size > rules.max_units:
        return f"{shown} is {_units(size)}, at most {_limit(rules.max_units, rules.max_units // 2)}"
    if size < rules.min_units:
        return f"{shown} is {_units(size)}, at least {_limit(rules.min_units, (rules.min_units + 1) // 2)}"
    key = normalise(brand)[0]
    if key in rules._reserved:
        return f"{shown} is reserved: it names a carrier or an authority, or hides the sender behind a notice"
    if rules._allowed and key not in rules._allowed:
        return f"{shown} is not one of the account's registered signatures"
    return None


def _units(size: int) -> str:
    return f"{size} unit" if size == 1 else f"{size} units"


def _limit(size: int, cjk: int) -> str:
    return f"{size} ({cjk} CJK or {size} Latin characters)"


def has_optout_wording(text: str, wordings: Sequence[str]) -> bool:
    """Whether the text contains one of `wordings`, both folded (module docstring), so "回 T 退订" contains
    "回T退订". Raises ValueError for a wording with no letter or digit (it would be found in every text)."""
    folded = normalise(text)[0]
    return any(_folded(wording, "opt-out wording") in folded for wording in wordings)


def with_optout(text: str, wording: str) -> str:
    """The text with `wording` appended, before a trailing signature ("你好回T退订【Brand】"); unchanged when
    it already contains the wording. Trailing whitespace gives way to the wording; the separator is one
    space, or none when the text ends or the wording starts with CJK (Chinese is written without spaces)."""
    if has_optout_wording(text, (wording,)):
        return text
    wording = wording.strip()
    body, tail = text.rstrip(), ""
    # Only a text with one signature has a trailing one to keep last; brackets that do not pair ("【【】") are
    # text (check_signature refuses them), and the wording goes at the end.
    start = _trailing_signature(body) if signature(body) is not None else None
    if start is not None:
        core = body[:start].rstrip()
        body, tail = core, body[len(core) :]  # the tail keeps any space the sender put before the signature
    joint = "" if not body or is_cjk(body[-1]) or is_cjk(wording[0]) else " "
    return f"{body}{joint}{wording}{tail}"
