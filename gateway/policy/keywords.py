# ruff: noqa: RUF002 - the docstrings show the full-width and CJK forms replies are typed in
"""Opt-out and opt-in keywords in replies (MO) [pure]: which keyword a reply starts with, however it is typed.

A recipient who replies "TD" or "STOP" must get no more texts from the sender (China's MIIT rules for
commercial texts, the US TCPA and CTIA's guidelines); one who replies "START" may get them again. People
type these loosely, so a reply is folded with `gateway.routing.content.normalise` (NFKC, casefold, letters
and digits only) and its accents dropped (`fold`: "Arrêt" and "ARRET" are one keyword); the keywords are
folded the same way, and:

1. Whatever comes before the first letter or digit is skipped: whitespace, punctuation (CJK too), symbols,
   emoji, quotes: "  TD!", "【TD】", "TD。", "\"STOP\"", "ＴＤ" and "ｓｔｏｐ" all match.
2. Only the start of the reply counts: "please STOP" matches nothing. A reply that merely mentions a keyword
   is ambiguous ("我不想退订" is "I do NOT want to unsubscribe", "don't stop the deals"); a keyword read
   anywhere would unsubscribe people who asked to stay, and re-subscribe people who asked to leave.
3. A keyword may be followed by more text: "TD 谢谢", "STOP please", "TD,thanks". But a keyword must end a
   word: it matches when the reply ends after it, a separator follows it, or a CJK character is on either
   side of the end (Chinese has no spaces between words: "退订谢谢", "TD退订"). So "Tomorrow", "Thanks",
   "Stopped", "ending" and "TDK" match nothing, though "T", "STOP", "END" and "TD" are keywords. A
   one-letter keyword needs the end of the reply or a separator: "T恤" (a T-shirt) and "N次" are no replies.
4. Separators inside a keyword are ignored, as in the word lists: "S T O P" is "STOP", and the keyword
   "OPT OUT" matches "opt-out" and "OPTOUT".
5. The longest keyword that matches wins ("TD" before "T", "STOPALL" before "STOP"); its list says whether
   the reply opts out or in.

Speed (one call per MO): only the start of the reply is folded, then one dict lookup for each distinct
length of the folded keywords (a dozen at most), longest first; never a loop over the keywords.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from gateway.policy.content import is_cjk
from gateway.routing.content import normalise

Kind = Literal["optout", "optin"]

# China: 退订 ("unsubscribe"), 取消订阅 ("cancel the subscription"), and TD, T and N, the short replies that
# Chinese opt-out wordings ask for ("回T退订": "reply T to unsubscribe"). US: CTIA's STOP, STOPALL,
# UNSUBSCRIBE, CANCEL, END and QUIT, and REVOKE and OPT OUT, which the FCC's 2024 revocation rule
# (47 CFR 64.1200(a)(10)) adds.
DEFAULT_OPTOUT: Final = (
    "TD", "T", "N", "退订", "取消订阅",
    "STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPT OUT",
)  # fmt: skip
# No "YES": it is the everyday answer to every question a sender or a person asks ("Reply YES to confirm
# your appointment"), and reading it as opt-in would re-subscribe someone who opted out by answering
# something else. Opting back in takes a word that means nothing else. The lists are not symmetric on
# purpose: a wrong opt-out costs a sender one recipient, a wrong opt-in sends to someone who said stop.
DEFAULT_OPTIN: Final = ("START", "UNSTOP", "订阅")


@dataclass(frozen=True, slots=True)
class KeywordMatch:
    """The keyword a reply starts with, as configured, and whether it opts out or in."""

    kind: Kind
    keyword: str


@functools.lru_cache(maxsize=4096)
def _base(ch: str) -> str:
    """A letter without its accents ("ê" -> "e", "ñ" -> "n"): the base of its canonical decomposition when
    the rest of it is combining marks. Hangul syllables also decompose, into jamo that are no marks: they
    stay whole, as does every character without marks."""
    parts = unicodedata.normalize("NFD", ch)
    if len(parts) > 1 and all(unicodedata.combining(mark) for mark in parts[1:]):
        return parts[0]
    return ch


def fold(text: str) -> tuple[str, list[int]]:
    """`normalise`, then accents dropped character by character (so `origin` still maps each folded
    character to the reply's): a reply typed without its accents on a phone ("arret") matches the keyword
    written with them ("ARRÊT"), and the other way round."""
    folded, origin = normalise(text)
    if not folded.isascii():
        folded = "".join(map(_base, folded))
    return folded, origin


def _key(keyword: str) -> str:
    """The folded form a reply is compared with; ValueError when the keyword could match no reply or all."""
    if not keyword or keyword.isspace():
        raise ValueError(f"keyword {keyword!r} is empty or blank")
    key = fold(keyword)[0]
    if not key:
        raise ValueError(f"keyword {keyword!r} has no letter or digit once normalised")
    return key


def _ends_word(folded: str, origin: list[int], size: int, text: str) -> bool:
    """Whether a keyword of `size` folded characters at the start of `folded` ends a word (module docstring,
    rule 3). `origin` maps folded characters to the reply's; a gap in it is a separator the folding dropped."""
    if size == 1 and not is_cjk(folded[0]) and size < len(folded) and text[origin[0] + 1] in _JOINERS:
        return False  # "t-shirt", "T's": a letter joined to the next word is no reply
    if size == len(folded) or origin[size] - origin[size - 1] > 1:
        return True
    if size == 1 and not is_cjk(folded[0]):
        # A one-letter keyword (T, N) before CJK is an abbreviation more often than a reply: "T恤有货吗" asks
        # about T-shirts, "N次了" says "N times already". Only "T" alone, or "T" and a separator, opts out.
        return False
    return is_cjk(folded[size - 1]) or is_cjk(folded[size])


# Characters that join a letter to the word after it rather than end a reply.
_JOINERS: Final = frozenset("-'\u2019\u2010\u2011_&/")  # hyphens, apostrophes (typographic too), joiners


class Keywords:
    """The opt-out and opt-in keywords of a sender (or of the gateway), compiled for `match`.

    Raises ValueError for a keyword that is empty or blank, that folds to nothing ("!!!"), or that is in
    both lists (after folding: "td" opting in and "TD" opting out). A keyword listed twice in one list keeps
    its first spelling.
    """

    __slots__ = ("_by_key", "_sizes")

    def __init__(self, optout: Iterable[str] = DEFAULT_OPTOUT, optin: Iterable[str] = DEFAULT_OPTIN) -> None:
        lists: tuple[tuple[Kind, Iterable[str]], ...] = (("optout", optout), ("optin", optin))
        by_key: dict[str, KeywordMatch] = {}
        for kind, keywords in lists:
            for keyword in keywords:
                known = by_key.setdefault(_key(keyword), KeywordMatch(kind, keyword))
                if known.kind != kind:
                    raise ValueError(f"keyword {keyword!r} is opt-in and opt-out (as {known.keyword!r})")
        self._by_key = by_key
        self._sizes = sorted({len(key) for key in by_key}, reverse=True)

    def match(self, text: str) -> KeywordMatch | None:
        """The longest keyword the reply starts with (module docstring), or None."""
        if not self._sizes:
            return None
        folded, origin = self._head(text)
        for size in self._sizes:
            if size <= len(folded):
                found = self._by_key.get(folded[:size])
                if found is not None and _ends_word(folded, origin, size, text):
                    return found
        return None

    def _head(self, text: str) -> tuple[str, list[int]]:
        """`normalise` of as much of the reply as decides the match: one folded character past the longest
        keyword, or all of it, trying a longer prefix while separators leave too few. Folding is per
        character, so a prefix folds to a prefix; folding costs about 0.25 µs a character, 30 µs for a
        120-character reply folded whole."""
        length = self._sizes[0] + 1
        while True:
            folded, origin = fold(text[:length])
            if len(folded) > self._sizes[0] or length >= len(text):
                return folded, origin
            length *= 2
