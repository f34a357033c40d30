# ruff: noqa: RUF001 - the texts use the full-width forms and CJK punctuation senders write
"""Content rules: the signature a text carries and whether an account's rules allow it; opt-out wording
found whatever its spacing or width, and appended where a reader expects it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.policy.content import (
    DEFAULT_RESERVED,
    SignatureRules,
    Violation,
    check_signature,
    has_optout_wording,
    is_cjk,
    signature,
    units,
    with_optout,
)

REQUIRED = SignatureRules(required=True)


@pytest.mark.parametrize(
    ("text", "brand"),
    [
        ("【Acme】Your order has shipped", "Acme"),
        ("  【阿里云】您的验证码是1234", "阿里云"),
        ("您的验证码是1234【阿里云】", "阿里云"),
        ("您的验证码是1234【阿里云】 \n", "阿里云"),
        ("【Acme】hello【Other】", None),  # two: no one signature (check_signature refuses the text)
        ("【【】", None),  # brackets that are not one pair
        ("【】hello", ""),
        ("[Acme] Your order has shipped", None),  # only 【】 is a signature
        ("Your order has shipped [Acme]", None),
        ("Your order has shipped", None),
        ("【Acme Your order has shipped", None),
        ("Your 【Acme】 order has shipped", None),  # neither at the start nor at the end
        ("", None),
    ],
)
def test_the_signature_is_a_leading_or_else_a_trailing_bracketed_brand(text: str, brand: str | None) -> None:
    assert signature(text) == brand


def test_a_missing_signature_is_refused_only_when_required() -> None:
    assert check_signature("Your order has shipped", REQUIRED) == Violation(
        "signature_missing", "the text has no signature 【...】 at its start or end"
    )
    assert check_signature("Your order has shipped", SignatureRules()) is None
    assert check_signature("[Acme] Your order has shipped", REQUIRED) is not None


@pytest.mark.parametrize(
    ("brand", "ok"),
    [
        ("一二三四五六七八九", True),  # 9 CJK: 18 units
        ("一二三四五六七八九十", False),  # 10 CJK: 20 units
        ("A" * 18, True),
        ("A" * 19, False),
        ("ABCD一二三四五六七", True),  # 4 + 14 = 18
        ("ABCDE一二三四五六七", False),  # 5 + 14 = 19
        ("Ａ" * 9, True),  # full-width Latin is drawn, and counted, like CJK
        ("Ａ" * 10, False),
        ("AB", True),
        ("中", True),
        ("A", False),
    ],
)
def test_a_signature_is_at_most_9_cjk_or_18_latin_characters_and_at_least_2_units(brand: str, ok: bool) -> None:
    violation = check_signature(f"【{brand}】您好", REQUIRED)
    assert (violation is None) is ok
    if not ok:
        assert violation is not None
        assert violation.reason == "signature_invalid"


def test_the_detail_says_how_long_the_signature_is_and_the_limit() -> None:
    too_long = check_signature("【一二三四五六七八九十】您好", REQUIRED)
    assert too_long == Violation(
        "signature_invalid", "signature 【一二三四五六七八九十】 is 20 units, at most 18 (9 CJK or 18 Latin characters)"
    )
    too_short = check_signature("【A】hello", REQUIRED)
    assert too_short == Violation(
        "signature_invalid", "signature 【A】 is 1 unit, at least 2 (1 CJK or 2 Latin characters)"
    )


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("【验证码】您的验证码是1234", "signature 【验证码】 is reserved"),
        ("【中国移动】话费提醒", "signature 【中国移动】 is reserved"),
        ("【 通知 】明天停水", "signature 【 通知 】 is reserved"),  # compared after folding
        ("【Acme#1】hello", "signature 【Acme#1】 contains '#'"),
        ("【Acme＃1】hello", "signature 【Acme＃1】 contains '＃'"),  # the full-width form too
        ("【Acme★】hello", "signature 【Acme★】 contains '★'"),
        ("【】hello", "empty signature 【】"),
        ("【Acme】hello【Other】", "more than one 【】 in the text"),
        ("【Acme】【Other】hello", "more than one 【】 in the text"),
        ("【Acme】see 【this】 offer", "more than one 【】 in the text"),
    ],
)
def test_an_invalid_signature_is_refused_with_the_reason(text: str, detail: str) -> None:
    violation = check_signature(text, SignatureRules())
    assert violation is not None
    assert violation.reason == "signature_invalid"
    assert violation.detail.startswith(detail)


def test_only_the_allowed_signatures_pass_when_an_account_lists_them() -> None:
    rules = SignatureRules(allowed=frozenset({"Acme", "阿里云"}))
    assert check_signature("【ACME】hello", rules) is None
    assert check_signature("【ａｃｍｅ】hello", rules) is None
    assert check_signature("您好【阿里云】", rules) is None
    assert check_signature("【Other】hello", rules) == Violation(
        "signature_invalid", "signature 【Other】 is not one of the account's registered signatures"
    )


def test_the_rules_take_their_own_reserved_names_and_symbols() -> None:
    rules = SignatureRules(reserved=frozenset({"SYS"}), symbols="!")
    assert check_signature("【ｓｙｓ】hello", rules) is not None
    assert check_signature("【Hi!】hello", rules) is not None
    assert check_signature("【验证码#】hello", rules) is None
    assert "验证码" in DEFAULT_RESERVED


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_units": 0}, "need 1 <= min_units <= max_units"),
        ({"min_units": 5, "max_units": 4}, "need 1 <= min_units <= max_units"),
        ({"reserved": frozenset({"!!"})}, "reserved signature '!!' has no letter or digit"),
        ({"allowed": frozenset({" "})}, "allowed signature ' ' has no letter or digit"),
    ],
)
def test_rules_no_signature_could_meet_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SignatureRules(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    ["特价！回T退订【Acme】", "特价！回 T 退订", "特价！回Ｔ退订", "特价！回t退订。", "特价，回「T」退订"],
)
def test_chinese_opt_out_wording_is_found_whatever_its_spacing_or_width(text: str) -> None:
    assert has_optout_wording(text, ["回T退订"])


@pytest.mark.parametrize(
    "text", ["Sale! Reply STOP to opt out", "Sale! reply stop to opt-out.", "Sale! REPLY STOP TO OPTOUT"]
)
def test_english_opt_out_wording_is_found_whatever_its_case_or_punctuation(text: str) -> None:
    assert has_optout_wording(text, ["回T退订", "Reply STOP to opt out"])


def test_text_without_the_wording_has_none() -> None:
    assert not has_optout_wording("特价！回复T", ["回T退订"])
    assert not has_optout_wording("Reply STOP", ["Reply STOP to opt out"])
    assert not has_optout_wording("anything", [])


def test_a_wording_that_would_be_found_in_every_text_is_refused() -> None:
    with pytest.raises(ValueError, match="opt-out wording '!!' has no letter or digit"):
        has_optout_wording("text", ["!!"])


@pytest.mark.parametrize(
    ("text", "wording", "expected"),
    [
        ("Sale today", "Reply STOP to opt out", "Sale today Reply STOP to opt out"),
        ("Sale today!", "Reply STOP to opt out", "Sale today! Reply STOP to opt out"),
        ("Sale today \n", "Reply STOP to opt out", "Sale today Reply STOP to opt out"),
        ("今天特价", "回T退订", "今天特价回T退订"),
        ("今天特价。", "回T退订", "今天特价。回T退订"),
        ("今天特价！", "Reply STOP", "今天特价！Reply STOP"),  # ends with CJK punctuation
        ("Sale today", "回T退订", "Sale today回T退订"),  # the wording starts with CJK
        ("今天特价【Acme】", "回T退订", "今天特价回T退订【Acme】"),
        ("Sale today 【Acme】", "Reply STOP", "Sale today Reply STOP 【Acme】"),
        ("Sale today【Acme】 ", "Reply STOP", "Sale today Reply STOP【Acme】"),
        ("【Acme】今天特价", "回T退订", "【Acme】今天特价回T退订"),
        ("【Acme】", "回T退订", "【Acme】回T退订"),  # a signature alone is a leading one
        ("", "回T退订", "回T退订"),
        ("今天特价，回 T 退订", "回T退订", "今天特价，回 T 退订"),  # already there: unchanged
        ("Sale! reply stop to opt-out 【Acme】", "Reply STOP to opt out", "Sale! reply stop to opt-out 【Acme】"),
    ],
)
def test_the_wording_is_appended_before_a_trailing_signature(text: str, wording: str, expected: str) -> None:
    assert with_optout(text, wording) == expected


WORDINGS = st.sampled_from(["回T退订", "Reply STOP to opt out", "拒收请回复R"])
TEXTS = st.text(alphabet=st.sampled_from("ab 中文，。!【】\n"), max_size=20) | st.text(max_size=20)


@given(text=TEXTS, wording=WORDINGS)
def test_with_optout_adds_the_wording_once_and_keeps_the_signature(text: str, wording: str) -> None:
    once = with_optout(text, wording)
    assert has_optout_wording(once, [wording])
    assert with_optout(once, wording) == once
    assert signature(once) == signature(text)


def test_cjk_characters_and_punctuation_count_two_units() -> None:
    assert [is_cjk(c) for c in "中。，ＡアA!🎉"] == [True, True, True, True, True, False, False, False]
    assert units("阿里云Cloud") == 11
