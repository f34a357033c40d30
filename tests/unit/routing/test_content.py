# ruff: noqa: RUF001 - the texts are the full-width and look-alike spellings senders use to dodge word lists
"""Per-carrier content policy: blocked words are found whatever the case, width or padding a sender adds,
and a hit names the span of the original text."""

from __future__ import annotations

import subprocess
import sys
import unicodedata

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.routing import content
from gateway.routing.content import Scan, WordHit, WordLists, normalise

SPAM = WordLists({"spam": ["viagra", "贷款", "代开发票", "casino", "𠀀书"]})


@pytest.mark.parametrize(
    ("text", "word", "span"),
    [
        ("Buy VIAGRA now", "viagra", "VIAGRA"),
        ("Buy ＶＩＡＧＲＡ now", "viagra", "ＶＩＡＧＲＡ"),
        ("buy v-i-a-g-r-a now", "viagra", "v-i-a-g-r-a"),
        ("buy V I A G R A now", "viagra", "V I A G R A"),
        ("buy v.i.a.g.r.a!", "viagra", "v.i.a.g.r.a"),
        ("v\u200bi\u200ca\u200dg\ufeffr\u00ada", "viagra", "v\u200bi\u200ca\u200dg\ufeffr\u00ada"),
        ("v\u0336i\u0336a\u0336g\u0336r\u0336a\u0336", "viagra", "v\u0336i\u0336a\u0336g\u0336r\u0336a"),
        ("ⓥⓘⓐⓖⓡⓐ", "viagra", "ⓥⓘⓐⓖⓡⓐ"),
        ("vi🍆ag💊ra", "viagra", "vi🍆ag💊ra"),
        ("CASINO🎰 tonight", "casino", "CASINO"),
        ("低息贷款，当天放款", "贷款", "贷款"),
        ("低息贷 款", "贷款", "贷 款"),
        ("低息贷*款", "贷款", "贷*款"),
        ("低息贷★款", "贷款", "贷★款"),
        ("低息贷\u3000款", "贷款", "贷\u3000款"),
        ("专业代.开.发.票", "代开发票", "代.开.发.票"),
        ("专业代，开，发，票！", "代开发票", "代，开，发，票"),
        ("𠀀 书", "𠀀书", "𠀀 书"),
    ],
)
def test_evasions_are_caught_and_the_span_is_the_original_text(text: str, word: str, span: str) -> None:
    hit = SPAM.first_hit(text, {"spam"})
    assert hit is not None
    assert (hit.word, hit.list_name, text[hit.start : hit.end]) == (word, "spam", span)


@pytest.mark.parametrize(
    "text",
    ["", "   ", "🎉🎉", "Your code is 4711", "您的验证码是482913，十分钟内有效。", "贷", "款贷", "viagr"],
)
def test_clean_texts_have_no_hit(text: str) -> None:
    assert SPAM.hits(text) == []
    assert SPAM.first_hit(text, {"spam"}) is None
    assert SPAM.scan(text) == Scan(())


@pytest.mark.parametrize(
    "text",
    [
        "v1agra",  # digits for letters: no homoglyph mapping
        "vi\u0430gra",  # Cyrillic a: NFKC keeps scripts apart
        "低息貸款",  # traditional 貸: no variant mapping
    ],
)
def test_known_limit_no_homoglyph_or_variant_mapping(text: str) -> None:
    assert SPAM.hits(text) == []


@pytest.mark.parametrize(
    ("text", "word", "span"),
    [
        ("ask the therapist", "rapist", "rapist"),
        ("Essex", "sex", "sex"),
        ("go ld rush", "gold", "go ld"),
    ],
)
def test_a_word_matches_across_word_boundaries(text: str, word: str, span: str) -> None:
    """The documented price of dropping separators: operators choose their words with it in mind."""
    hit = WordLists({"a": [word]}).first_hit(text, {"a"})
    assert hit is not None
    assert text[hit.start : hit.end] == span


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("ﬁ① viagra", "viagra"),
        ("㎏㎏ ＶＩＡＧＲＡ", "ＶＩＡＧＲＡ"),
        ("😀👨‍👩‍👧‍👦🇫🇷 v-i-a-g-r-a", "v-i-a-g-r-a"),
        ("Straße İ viagra", "viagra"),
        ("\ud800 viagra", "viagra"),  # a lone surrogate from a broken UCS-2 text is dropped, not fatal
        ("𠀀𠀀 viagra", "viagra"),
    ],
)
def test_span_is_right_after_expansions_and_astral_characters(text: str, span: str) -> None:
    hit = SPAM.first_hit(text, {"spam"})
    assert hit is not None
    assert text[hit.start : hit.end] == span
    assert hit.end == len(text)


def test_a_hit_inside_an_expansion_covers_the_whole_original_character() -> None:
    assert WordLists({"a": ["i"]}).hits("ﬁ", None) == [WordHit("i", "a", 0, 1)]
    assert WordLists({"a": ["kg1"]}).hits("x㎏①", None) == [WordHit("kg1", "a", 1, 3)]


def test_a_word_in_two_lists_is_a_hit_for_each_and_counts_once() -> None:
    lists = WordLists({"a": ["贷款", "casino"], "b": ["贷 款"]})
    assert len(lists) == 2
    assert lists.hits("低息贷款") == [WordHit("贷款", "a", 2, 4), WordHit("贷 款", "b", 2, 4)]
    assert lists.first_hit("低息贷款", {"b"}) == WordHit("贷 款", "b", 2, 4)
    assert lists.first_hit("低息贷款", {"a", "b"}) == WordHit("贷款", "a", 2, 4)


def test_two_spellings_in_one_list_are_one_word_with_the_first_spelling() -> None:
    lists = WordLists({"a": ["Viagra", "VIAGRA", "ｖｉａｇｒａ"]})
    assert len(lists) == 1
    assert lists.hits("viagra") == [WordHit("Viagra", "a", 0, 6)]


def test_first_hit_is_the_earliest_then_the_longest() -> None:
    lists = WordLists({"a": ["bc", "abc", "abcd", "cd"]})
    assert lists.first_hit("xabcd", {"a"}) == WordHit("abcd", "a", 1, 5)
    assert lists.first_hit("bc abcd", {"a"}) == WordHit("bc", "a", 0, 2)
    assert [(h.word, h.start, h.end) for h in lists.hits("xabcd")] == [
        ("abcd", 1, 5),
        ("abc", 1, 4),
        ("bc", 2, 4),
        ("cd", 3, 5),
    ]


def test_a_carrier_is_only_blocked_by_its_own_lists() -> None:
    lists = WordLists({"a": ["casino"], "b": ["贷款"]})
    scan = lists.scan("低息贷款")
    assert not scan.blocked_by({"a"})
    assert scan.first_hit({"a"}) is None
    assert scan.blocked_by({"b"})
    assert scan.blocked_by({"a", "b"})
    assert lists.hits("低息贷款 casino", ["a"]) == [WordHit("casino", "a", 5, 11)]
    assert lists.first_hit("低息贷款", ()) is None
    assert lists.first_hit("低息贷款", {"unknown"}) is None


@pytest.mark.parametrize(
    "text", ["", "clean text", "低息贷款 casino", "casino 低息贷款", "CASINO v.i.a.g.r.a 贷★款", "xabcd"]
)
@pytest.mark.parametrize("carrier", [(), ("a",), ("b",), ("a", "b"), ("a", "b", "c")])
def test_scan_answers_as_calling_first_hit_directly(text: str, carrier: tuple[str, ...]) -> None:
    lists = WordLists({"a": ["casino", "abc"], "b": ["贷款", "viagra", "bcd"], "c": ["casino"]})
    scan = lists.scan(text)
    assert scan.first_hit(carrier) == lists.first_hit(text, carrier)
    assert scan.blocked_by(carrier) == (lists.first_hit(text, carrier) is not None)
    assert [h for h in scan.hits if h.list_name in carrier] == lists.hits(text, carrier)


def test_no_words_at_all() -> None:
    for lists in (WordLists({}), WordLists({"a": [], "b": ()})):
        assert len(lists) == 0
        assert lists.scan("anything 贷款") == Scan(())
        assert lists.first_hit("anything", {"a"}) is None
    assert WordLists({"a": [], "b": ["x"]}).names == frozenset({"a", "b"})


@pytest.mark.parametrize(
    ("word", "reason"),
    [
        ("", "empty or blank"),
        ("   ", "empty or blank"),
        ("\u3000", "empty or blank"),
        ("★★", "no letter or digit"),
        ("\u200b", "no letter or digit"),
        ("🎉", "no letter or digit"),
        ("-.-", "no letter or digit"),
    ],
)
def test_bad_words_are_refused_naming_the_list_and_the_word_index(word: str, reason: str) -> None:
    with pytest.raises(ValueError, match=rf"^list cn_mobile: word 2: .*{reason}"):
        WordLists({"other": ["fine"], "cn_mobile": ["viagra", "贷款", word]})


@pytest.mark.parametrize(
    ("text", "folded", "index"),
    [
        ("", "", []),
        ("ＡＢＣ０１２", "abc012", [0, 1, 2, 3, 4, 5]),
        ("a ﬁ", "afi", [0, 2, 2]),
        ("①㎏", "1kg", [0, 1, 1]),
        ("Straße", "strasse", [0, 1, 2, 3, 4, 4, 5]),
        ("İx", "ix", [0, 1]),  # casefold adds U+0307, a mark, dropped
        ("ΐ", "ΐ", [0]),  # casefold decomposes it, NFKC recomposes it
        ("a\u200bb\u00adc", "abc", [0, 2, 4]),
        ("贷 款", "贷款", [0, 2]),
        ("😀a🇫🇷b", "ab", [1, 4]),
        ("™", "tm", [0, 0]),
        ("e\u0301", "e", [0]),  # known limit: decomposed accents fold to the bare letter
    ],
)
def test_normalise(text: str, folded: str, index: list[int]) -> None:
    assert normalise(text) == (folded, index)


def test_fold_caches_stop_growing_at_their_limit_and_stay_correct(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(content, "_CACHE_LIMIT", 0)  # as if full
    fresh = "".join(chr(c) for c in range(0x2F800, 0x2F810))  # CJK compatibility ideographs, unlikely seen
    sizes = len(content._FOLD), len(content._WIDTHS)
    folded = unicodedata.normalize("NFKC", fresh)
    assert normalise(fresh) == (folded, list(range(16)))
    assert WordLists({"a": [folded[3:5]]}).hits(fresh) == [WordHit(folded[3:5], "a", 3, 5)]
    assert (len(content._FOLD), len(content._WIDTHS)) == sizes


def _reference_fold(text: str) -> tuple[str, list[int]]:
    """The module docstring's rules, one character at a time, with no cache and no translate."""
    folded, index = [], []
    for i, char in enumerate(text):
        for c in unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", char).casefold()):
            if unicodedata.category(c)[0] in "LN":
                folded.append(c)
                index.append(i)
    return "".join(folded), index


@given(st.text())
def test_normalise_is_the_documented_rules(text: str) -> None:
    assert normalise(text) == _reference_fold(text)


def _drops_out(char: str) -> bool:
    return _reference_fold(char)[0] == ""


LETTERS = st.characters(categories=["L"])
PADDING = st.characters(categories=["Z", "P", "S", "Cf", "Cc", "M"]).filter(_drops_out)


@given(
    prefix=st.text(max_size=12),
    word=st.text(LETTERS, min_size=1, max_size=8),
    padding=st.lists(st.text(PADDING, max_size=3), min_size=8, max_size=8),
    suffix=st.text(max_size=12),
)
def test_padding_inside_a_word_still_hits_it_with_the_right_span(
    prefix: str, word: str, padding: list[str], suffix: str
) -> None:
    assume(normalise(word)[0] != "")
    pieces, positions, at = [prefix], [], len(prefix)
    for char, pad in zip(word, padding, strict=False):  # a pad after each character; the last is dropped
        pieces += [char, pad]
        if normalise(char)[0]:
            positions.append(at)
        at += 1 + len(pad)
    text = "".join(pieces[:-1]) + suffix
    start, end = positions[0], positions[-1] + 1
    assert WordHit(word, "spam", start, end) in WordLists({"spam": [word]}).hits(text)
    assert normalise(text[start:end])[0] == normalise(word)[0]


SMALL = "aAbBéÉ贷款𠀀ﬁ①-★ \u200b"


@given(
    words=st.lists(st.text(SMALL, min_size=1, max_size=4), min_size=1, max_size=5),
    text=st.text(SMALL, max_size=30),
)
def test_hits_are_every_occurrence_of_every_folded_word(words: list[str], text: str) -> None:
    """Brute force over the folded text agrees with the automaton (which runs over UTF-8 bytes)."""
    _check_hits(words, text)


# Every ASCII character but a few: letters, digits, blanks, punctuation and controls.
ASCII = "".join(chr(c) for c in range(128) if not chr(c).isalnum()) + "aAbBzZ019"


@given(
    words=st.lists(st.text(ASCII + "é贷", min_size=1, max_size=4), min_size=1, max_size=5),
    text=st.text(ASCII, max_size=40),
)
def test_ascii_texts_fold_in_bytes_as_the_documented_rules_say(words: list[str], text: str) -> None:
    """An ASCII text takes the bytes path (bytes.translate), any other str.translate: the same hits."""
    _check_hits(words, text)


def test_ascii_fold_tables_are_the_character_folds() -> None:
    every = "".join(chr(c) for c in range(128))
    assert every.encode().translate(content._ASCII_TABLE, content._ASCII_DROP).decode() == normalise(every)[0]


def _check_hits(words: list[str], text: str) -> None:
    words = [w for w in words if normalise(w)[0]]
    assume(words)
    first_spelling: dict[str, str] = {}
    for w in words:
        first_spelling.setdefault(normalise(w)[0], w)
    folded, index = normalise(text)
    expected = {
        WordHit(w, "l", index[i], index[i + len(key) - 1] + 1)
        for key, w in first_spelling.items()
        for i in range(len(folded))
        if folded.startswith(key, i)
    }
    got = WordLists({"l": words}).hits(text)
    assert len(got) == len(expected)
    assert set(got) == expected
    assert [(h.start, -h.end) for h in got] == sorted((h.start, -h.end) for h in got)


def test_module_is_pure() -> None:
    banned = ("trio", "lmdb", "socket", "structlog")
    code = f"import sys, gateway.routing.content\nprint(','.join(m for m in {banned!r} if m in sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == ""
