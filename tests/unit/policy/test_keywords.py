# ruff: noqa: RUF001 - the replies are typed in full-width and CJK forms
"""Opt-out and opt-in keywords: found at the start of a reply however it is typed, never inside a longer word
or later in the reply."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.policy.keywords import DEFAULT_OPTIN, DEFAULT_OPTOUT, KeywordMatch, Keywords

DEFAULTS = Keywords()


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("TD", "TD"),
        ("td", "TD"),
        ("  TD!", "TD"),
        ("【TD】", "TD"),
        ("TD。", "TD"),
        ("ＴＤ", "TD"),
        ("ｓｔｏｐ", "STOP"),
        ('"STOP"', "STOP"),
        ("😀 TD", "TD"),
        ("TD 谢谢", "TD"),
        ("STOP please", "STOP"),
        ("Stop.", "STOP"),
        ("TD,thanks", "TD"),
        ("TD退订", "TD"),
        ("退订", "退订"),
        ("退订谢谢", "退订"),
        ("退订TD", "退订"),
        ("取消订阅", "取消订阅"),
        ("T", "T"),
        ("t 谢谢", "T"),
        ("N", "N"),
        ("unsubscribe me", "UNSUBSCRIBE"),
        ("STOPALL", "STOPALL"),
        ("stop all", "STOPALL"),
        ("S T O P", "STOP"),
        ("opt-out", "OPT OUT"),
        ("OptOut", "OPT OUT"),
        ("End", "END"),
        ("QUIT!!!", "QUIT"),
    ],
)
def test_an_opt_out_keyword_at_the_start_matches_however_it_is_typed(text: str, keyword: str) -> None:
    assert DEFAULTS.match(text) == KeywordMatch("optout", keyword)


@pytest.mark.parametrize(("text", "keyword"), [("START", "START"), ("unstop", "UNSTOP"), ("订阅", "订阅"),
                                               ("Start again please", "START"), ("【订阅】", "订阅")])  # fmt: skip
def test_an_opt_in_keyword_at_the_start_matches(text: str, keyword: str) -> None:
    assert DEFAULTS.match(text) == KeywordMatch("optin", keyword)


@pytest.mark.parametrize(
    "text",
    ["Tomorrow", "Thanks", "Stopped", "ending", "TDK", "TD1", "Nope", "Quite", "Startup", "cancelled",
     "please STOP", "I said stop", "我不想退订", "好的，退订", "", "   ", "🎉!", "YES", "yes please", "Y",
     # A one-letter keyword joined to what follows is an abbreviation, not a reply (T-shirts, "N times").
     "T恤有货吗", "T恤", "t-shirt", "T's fine", "N次了"],
)  # fmt: skip
def test_a_keyword_inside_a_longer_word_or_later_in_the_reply_does_not_match(text: str) -> None:
    assert DEFAULTS.match(text) is None


def test_the_longest_keyword_wins() -> None:
    assert DEFAULTS.match("TD") == KeywordMatch("optout", "TD")  # not "T"
    assert DEFAULTS.match("STOPALL now") == KeywordMatch("optout", "STOPALL")  # not "STOP"
    keywords = Keywords(optout=["STOP"], optin=["STOP AGAIN"])
    assert keywords.match("stop again") == KeywordMatch("optin", "STOP AGAIN")
    assert keywords.match("stop, again") == KeywordMatch("optin", "STOP AGAIN")
    assert keywords.match("stop again2") == KeywordMatch("optout", "STOP")


def test_a_match_names_the_keyword_as_configured() -> None:
    keywords = Keywords(optout=["Stop", "ｔｄ"], optin=["Go On"])
    assert keywords.match("STOP") == KeywordMatch("optout", "Stop")
    assert keywords.match("td") == KeywordMatch("optout", "ｔｄ")
    assert keywords.match("go on!") == KeywordMatch("optin", "Go On")


def test_a_keyword_listed_twice_in_one_list_keeps_its_first_spelling() -> None:
    assert Keywords(optout=["STOP", "stop"], optin=[]).match("Stop") == KeywordMatch("optout", "STOP")


def test_yes_is_not_an_opt_in_keyword_by_default() -> None:
    assert "YES" not in DEFAULT_OPTIN
    assert {"TD", "T", "N", "退订", "STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"} <= set(DEFAULT_OPTOUT)
    assert {"START", "UNSTOP", "订阅"} <= set(DEFAULT_OPTIN)


@pytest.mark.parametrize(
    ("optout", "optin", "message"),
    [
        ([""], [], "empty or blank"),
        (["STOP", "  "], [], "empty or blank"),
        (["!!!"], [], "no letter or digit"),
        ([], ["🎉"], "no letter or digit"),
        (["TD"], ["ｔｄ"], "is opt-in and opt-out"),
        (["S-T-O-P"], ["stop"], "is opt-in and opt-out"),
    ],
)
def test_a_keyword_that_cannot_work_is_refused(optout: list[str], optin: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Keywords(optout=optout, optin=optin)


def test_a_long_reply_or_long_padding_is_read_as_far_as_needed() -> None:
    assert DEFAULTS.match("🎉" * 100 + " STOP now") == KeywordMatch("optout", "STOP")
    assert DEFAULTS.match("S T O P A L L") == KeywordMatch("optout", "STOPALL")
    assert DEFAULTS.match("!" * 30 + "Tomorrow " * 20) is None
    assert DEFAULTS.match("退订" + "谢谢" * 100) == KeywordMatch("optout", "退订")


def test_no_keywords_match_nothing() -> None:
    assert Keywords(optout=[], optin=[]).match("STOP") is None


SEPARATORS = st.text(alphabet=" \t\n!?.,;:。，！？、【】「」『』\"'()🎉😀★-_~", max_size=5)


@given(padding=SEPARATORS, text=st.text(max_size=30))
def test_leading_separators_never_change_the_answer(padding: str, text: str) -> None:
    assert DEFAULTS.match(padding + text) == DEFAULTS.match(text)


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz ,.!", max_size=20))
def test_case_and_full_width_never_change_the_answer(text: str) -> None:
    full_width = "".join(chr(ord(c) + 0xFEE0) if c != " " else "\u3000" for c in text.upper())
    assert DEFAULTS.match(text.upper()) == DEFAULTS.match(text) == DEFAULTS.match(full_width)


@given(keyword=st.sampled_from(DEFAULT_OPTOUT), rest=st.text(alphabet="abcdefghijklmnopqrstuvwxyz", max_size=8))
def test_an_opt_out_keyword_followed_by_a_separator_always_opts_out(keyword: str, rest: str) -> None:
    found = DEFAULTS.match(f"{keyword} {rest}")
    assert found is not None
    assert found.kind == "optout"


@pytest.mark.parametrize("text", ["arret", "ARRÊT", "Arrêt svp", "arrêt!", "ÁRRET"])
def test_accents_are_dropped_on_both_sides(text: str) -> None:
    """A phone keyboard often drops the accent, and a sender's list may carry it (or not)."""
    with_accent = Keywords(optout=("ARRÊT",), optin=())
    without = Keywords(optout=("ARRET",), optin=())
    assert with_accent.match(text) == KeywordMatch("optout", "ARRÊT")
    assert without.match(text) == KeywordMatch("optout", "ARRET")


def test_hangul_and_cjk_keep_their_characters() -> None:
    """Hangul syllables decompose into jamo, which are no accents: a Korean keyword matches itself only."""
    korean = Keywords(optout=("거부",), optin=())
    assert korean.match("거부") == KeywordMatch("optout", "거부")
    assert korean.match("거") is None
    assert korean.match("ᄀ") is None
