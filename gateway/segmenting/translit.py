"""Optional transliteration of typographic characters to GSM equivalents, so a message stays GSM-7.

Only characters whose GSM replacement a reader takes for the same thing; never letters (that would change
words), so an account that turns this on loses no meaning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

_REPLACEMENTS: Final[dict[str, str]] = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",  # single quotes, prime
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',  # double quotes
    "\u00ab": '"', "\u00bb": '"',  # guillemets
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-",
    "\u2212": "-",  # minus sign
    "\u2026": "...",
    "\u00a0": " ", "\u2002": " ", "\u2003": " ", "\u2009": " ", "\u200a": " ", "\u202f": " ",
}  # fmt: skip
_TABLE: Final = str.maketrans(_REPLACEMENTS)
_FIND: Final = re.compile("[" + "".join(_REPLACEMENTS) + "]")


@dataclass(frozen=True, slots=True)
class Replacement:
    """One replaced character: its index in the original text, what it was, what it became."""

    position: int
    original: str
    replacement: str


def transliterate(text: str) -> tuple[str, tuple[Replacement, ...]]:
    """The text with typographic characters replaced, and what was replaced (empty: unchanged)."""
    found = tuple(Replacement(m.start(), m[0], _REPLACEMENTS[m[0]]) for m in _FIND.finditer(text))
    if not found:
        return text, ()
    return text.translate(_TABLE), found
