# ruff: noqa: RUF002 - the docstrings show the full-width and look-alike forms this module folds
"""Content policy: which of a carrier's blocked words a text contains, whatever its case, width or padding.

Carriers (China's above all) each refuse texts that contain words from their own lists, and senders dodge
such lists with "VIAGRA", "ｖｉａｇｒａ", "v-i-a-g-r-a", "贷 款", "贷★款" or "代.开.发.票". So the text and every
listed word are folded to one form before they are compared, and all named lists are compiled into ONE
Aho-Corasick automaton (pyahocorasick), run once per text; each hit carries the lists its word is in, so
the router asks each carrier (a subset of the lists) about the same scan.

Normalisation, applied character by character to the text and to every listed word alike:

1. Unicode NFKC: full-width ASCII and digits become ASCII ("ＡＢＣ０１２" -> "ABC012"), compatibility forms
   unfold ("ﬁ" -> "fi", "①" -> "1", "㎏" -> "kg", "Ⓐ" -> "A", "™" -> "TM").
2. casefold (stronger than lower: "ß" -> "ss", "İ" -> "i" + U+0307), then NFKC again, because casefold can
   leave a decomposed sequence ("ΐ") that NFKC recomposes (NFKC_Casefold does the same).
3. Every resulting character that is not a letter or a digit (Unicode general category L* or N*; CJK
   ideographs are letters, Lo) is dropped: spaces, punctuation, symbols, emoji, controls, format characters
   (zero-width space, joiners U+200B..U+200D, U+FEFF, soft hyphen) and combining marks (so strike-through
   "v̶i̶a̶g̶r̶a̶" is caught too).

So "v-i-a-g-r-a", "V I A G R A", "ｖｉａｇｒａ" and "viagra" all fold to "viagra"; "贷 款" and "贷*款" to "贷款".
A symbol whose compatibility form is letters counts as those letters ("™" is "tm", "Ⓥ" is "v"): it cannot
pad a word, and a word can be spelt with it.

Consequences, accepted and known:

- Dropping separators means a word also matches across word boundaries and inside longer words:
  "therapist" contains "rapist", "Essex" contains "sex", "go ld" contains "gold". That is the price of
  catching inserted symbols, and carriers' own filters pay it too; operators choose the words accordingly.
- No stemming and no homoglyph mapping beyond NFKC: Cyrillic "а" is not Latin "a", "v1agra" is not
  "viagra", traditional 貸 is not simplified 贷. List such variants as words of their own.
- Folding is per character (NFKC of one character), not per combining sequence, so every listed word and
  every text position folds independently (which is what makes the index map exact and padding with any
  symbol or mark harmless). The rare difference from NFKC of the whole text: a letter written decomposed
  ("e" + U+0301) folds to the bare letter, the accent dropped, while the precomposed "é" keeps it, so
  "café" listed precomposed misses a decomposed "café"; conjoining Hangul jamo likewise stay jamo and miss
  a word written in syllables. Handsets send composed (NFC) text.

`normalise` returns, with the folded text, the index of the original character each folded character
came from, so a hit names the span of the original text ("ﬁ" folds to two characters that both point at
it); a hit that starts or ends inside such an expansion covers the whole original character.

Speed: folding is `str.translate` over a per-code-point cache (C speed, no Python call per character;
ASCII text, most GSM texts, is folded as bytes by `bytes.translate`, faster still), the automaton runs once
over the folded text, and the index map is only built when something matched, which most texts never do.
The automaton runs over the folded text's UTF-8 bytes (spelt as latin-1 characters, as pyahocorasick takes
str): pyahocorasick keeps each node's children in an array it searches linearly, and a CJK list puts
thousands of first characters under the root, which made a scan of 70 Chinese characters take over 300 µs;
in UTF-8 no node has more than about a hundred children (64 continuation bytes, or the ASCII letters and
digits and the lead bytes). UTF-8 is self-synchronising, so a word's bytes only match on character boundaries.
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_right
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from itertools import accumulate
from typing import Final

import ahocorasick  # type: ignore[import-not-found]  # C extension without stubs

# A hostile sender can send any of the 1.1M code points; past this many the cache stops growing and new
# characters are folded on each sight instead (correct, only slower). Real traffic uses a few thousand.
_CACHE_LIMIT: Final = 32_768


def _fold_char(char: str) -> str:
    """The rules of the module docstring for one character: what it contributes to the folded text."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", char).casefold())
    return "".join(c for c in folded if unicodedata.category(c)[0] in "LN")


class _FoldTable(dict[int, str | None]):
    """A `str.translate` table that folds each code point on first sight and keeps the answer (bounded),
    so a text is folded in C without a Python call per character. A dropped character maps to None, not "",
    which keeps ASCII text on translate's fast path (about eight times faster)."""

    __slots__ = ()

    def __missing__(self, code: int) -> str | None:
        folded = _fold_char(chr(code)) or None
        if len(self) < _CACHE_LIMIT:
            self[code] = folded
        return folded


_FOLD: Final = _FoldTable()


def _ascii_tables() -> tuple[bytes, bytes]:
    """`bytes.translate` arguments that fold ASCII text as _FOLD does (each ASCII character folds to one
    ASCII character or to nothing), worked out from _fold_char itself: ASCII text, the usual GSM text,
    folds in one C pass over bytes, several times faster than str.translate's ASCII path."""
    table = bytearray(range(256))
    drop = bytearray()
    for code in range(128):
        folded = _fold_char(chr(code))
        if not folded:
            drop.append(code)
        elif len(folded) == 1 and folded.isascii():
            table[code] = ord(folded)
        else:  # not so in any Unicode version so far; scan() relies on it
            raise AssertionError(f"ASCII {code} folds to {folded!r}")
    return bytes(table), bytes(drop)


_ASCII_TABLE, _ASCII_DROP = _ascii_tables()


class _WidthTable(dict[str, int]):
    """How many folded characters each character gives, keyed by the character itself so that
    `map(_WIDTHS.__getitem__, text)` runs in C; bounded like `_FOLD`."""

    __slots__ = ()

    def __missing__(self, char: str) -> int:
        width = len(_FOLD[ord(char)] or "")
        if len(self) < _CACHE_LIMIT:
            self[char] = width
        return width


_WIDTHS: Final = _WidthTable()


def _folded_ends(text: str) -> list[int]:
    """For each character of `text`, how many folded characters it and those before it give; so folded
    character k came from `text[bisect_right(ends, k)]` (a C loop, four times faster than building the map)."""
    return list(accumulate(map(_WIDTHS.__getitem__, text)))


def normalise(text: str) -> tuple[str, list[int]]:
    """The text the automaton runs on (module docstring: NFKC, casefold, letters and digits only), and for
    each of its characters the index of the original character it came from."""
    widths = map(_WIDTHS.__getitem__, text)
    return text.translate(_FOLD), [i for i, width in enumerate(widths) for _ in range(width)]


@dataclass(frozen=True, slots=True)
class WordHit:
    """A listed word found in a text: the word as configured, its list, and its span in the original text
    (`text[start:end]` folds to the folded word; it may include the padding a sender put in it)."""

    word: str
    list_name: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Scan:
    """One text's matches against every list, computed once (the router checks several carriers against one
    text). `hits` holds every match of every list, by start, longest first; a word in two lists is two hits
    with the same span, in the order the lists were configured."""

    hits: tuple[WordHit, ...]

    def first_hit(self, lists: Collection[str]) -> WordHit | None:
        """The earliest (then longest) hit of a word from any of `lists`; None if the text is clean for them."""
        for hit in self.hits:
            if hit.list_name in lists:
                return hit
        return None

    def blocked_by(self, lists: Collection[str]) -> bool:
        """Whether a carrier that uses `lists` would refuse this text."""
        return any(hit.list_name in lists for hit in self.hits)


_CLEAN: Final = Scan(())


def _bytewise(folded: str) -> str:
    """The UTF-8 bytes of a folded text spelt one latin-1 character per byte: what the automaton runs on
    (module docstring: it keeps pyahocorasick's nodes small)."""
    return folded.encode().decode("latin-1")


# The automaton's value for each folded word: the folded word (its length locates the start of a match)
# and each list it is in, with the word as that list spells it (first spelling wins within one list).
_Entry = tuple[str, tuple[tuple[str, str], ...]]


class WordLists:
    """Named word lists compiled into ONE Aho-Corasick automaton; each carrier uses a subset of the lists.

    Immutable once built: a reload builds a new one (15,000 words take about a tenth of a second), so scans
    never see a half-built automaton. A list name a carrier refers to but that is not in `names` matches
    nothing; the config loader checks carriers' list names against `names`.
    """

    __slots__ = ("_automaton", "_names", "_size")

    def __init__(self, lists: Mapping[str, Iterable[str]]) -> None:
        """Raises ValueError("list NAME: word N: reason"), N counted from 0, for an empty or blank word or
        one with no letter or digit left after folding (it would match every text, or none)."""
        spellings: dict[str, list[tuple[str, str]]] = {}
        for name, words in lists.items():
            for n, word in enumerate(words):
                if not word or word.isspace():
                    raise ValueError(f"list {name}: word {n}: empty or blank")
                key = word.translate(_FOLD)
                if not key:
                    raise ValueError(f"list {name}: word {n}: {word!r} has no letter or digit once normalised")
                found = spellings.setdefault(key, [])
                if all(listed != name for listed, _ in found):
                    found.append((name, word))
        self._names = frozenset(lists)
        self._size = len(spellings)
        self._automaton: ahocorasick.Automaton | None = None
        if spellings:  # pyahocorasick refuses to search with an automaton that has no words
            automaton = ahocorasick.Automaton()
            for key, found in spellings.items():
                automaton.add_word(_bytewise(key), (key, tuple(found)))
            automaton.make_automaton()
            self._automaton = automaton

    @property
    def names(self) -> frozenset[str]:
        return self._names

    def __len__(self) -> int:
        """The number of distinct folded words (a word in two lists, or spelt two ways, counts once)."""
        return self._size

    def scan(self, text: str) -> Scan:
        """Fold `text` and run the automaton over it once; ask the result about each carrier's lists."""
        if self._automaton is None:
            return _CLEAN
        if text.isascii():  # (a flag of the str: free)
            utf8 = text.encode().translate(_ASCII_TABLE, _ASCII_DROP)
        else:
            utf8 = text.translate(_FOLD).encode()
        found: list[tuple[int, _Entry]] = list(self._automaton.iter(utf8.decode("latin-1")))
        if not found:
            return _CLEAN
        ends = _folded_ends(text)
        hits: list[WordHit] = []
        for last_byte, (key, spellings) in found:
            stop = len(utf8[: last_byte + 1].decode())  # in folded characters: a match ends on a boundary
            start, end = bisect_right(ends, stop - len(key)), bisect_right(ends, stop - 1) + 1
            hits.extend(WordHit(word, name, start, end) for name, word in spellings)
        hits.sort(key=lambda hit: (hit.start, -hit.end))  # stable: same span keeps the configured list order
        return Scan(tuple(hits))

    def first_hit(self, text: str, lists: Collection[str]) -> WordHit | None:
        """The earliest match (by start in the original text, then longest) of a word from any of `lists`."""
        return self.scan(text).first_hit(lists)

    def hits(self, text: str, lists: Collection[str] | None = None) -> list[WordHit]:
        """Every match of a word from `lists` (None: every list), by start, longest first; overlapping
        matches are all reported ("therapist" gives "therapist" and "rapist" if both are listed)."""
        found = self.scan(text).hits
        if lists is None:
            return list(found)
        return [hit for hit in found if hit.list_name in lists]
