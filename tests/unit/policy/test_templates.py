# ruff: noqa: RUF001 - the templates use the full-width punctuation and brackets Chinese texts are written in
"""Message templates: named variables only, enough fixed text outside them, no refused symbol outside the
signature; rendering fills every variable with a value that cannot forge a signature or a variable."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.policy.templates import (
    DEFAULT_SYMBOLS,
    Compiled,
    TemplateError,
    TemplateProblem,
    TemplateRules,
    check,
    compile_template,
    render,
    skeleton,
    variables,
)

RULES = TemplateRules()


def reason(text: str, rules: TemplateRules = RULES) -> str | None:
    problem = check(text, rules)
    return None if problem is None else problem.reason


# --- variables ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("no variables here", ()),
        ("Hi {name}, your code is {code}", ("name", "code")),
        ("{a}{b}{a}{c}{b}", ("a", "b", "c")),
        ("尊敬的{_user1}，您的订单{order_id}已发货", ("_user1", "order_id")),
        ("{" + "x" * 32 + "}", ("x" * 32,)),
    ],
)
def test_variables_are_named_in_order_of_first_appearance(text: str, names: tuple[str, ...]) -> None:
    assert variables(text) == names


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Your code is {0}", "'{0}' is not a variable"),
        ("Your code is {}", "'{}' is not a variable"),
        ("Your code is {1code}", "'{1code}' is not a variable"),
        ("Your code is {co de}", "'{co de}' is not a variable"),
        ("Your code is {" + "x" * 33 + "}", "is not a variable"),
        ("Your code is {名字}", "'{名字}' is not a variable"),
        ("Your code is {{code}}", "'{{code}' is not a variable"),
        ("Your code is {code", "'{code' has no closing '}'"),
        ("Your code is code}", "a '}' that closes no variable"),
        ("Your code is {code}}", "a '}' that closes no variable"),
        ("Your {code {x}} is", "'{code {x}' is not a variable"),
    ],
)
def test_a_malformed_brace_is_a_bad_variable_that_names_it(text: str, shown: str) -> None:
    with pytest.raises(TemplateError) as caught:
        variables(text)
    assert caught.value.problem.reason == "template_bad_variable"
    assert shown in caught.value.problem.detail
    assert "variables are named like {name}" in caught.value.problem.detail
    assert check(text, RULES) == caught.value.problem


def test_skeleton_removes_each_variable_and_keeps_the_fixed_text() -> None:
    assert skeleton("【京东】尊敬的{name}，您的验证码是{code}。{name}") == "【京东】尊敬的，您的验证码是。"


def test_skeleton_of_a_malformed_template_raises() -> None:
    with pytest.raises(TemplateError):
        skeleton("code {0}")


# --- check: length ----------------------------------------------------------------------------------------


def test_a_template_of_exactly_max_chars_passes_and_one_more_is_too_long() -> None:
    rules = TemplateRules(max_chars=20)
    assert reason("a" * 20, rules) is None
    problem = check("a" * 21, rules)
    assert problem == TemplateProblem("template_too_long", "the template has 21 characters, at most 20")


def test_length_is_checked_before_the_braces() -> None:
    assert reason("{0}" * 400) == "template_too_long"


# --- check: fixed text ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("你好{name}", "template_only_variable"),
        ("Hi {name}", "template_only_variable"),
        ("{a}{b}{c}", "template_only_variable"),
        ("【京东东东东】{code}", "template_only_variable"),  # the signature is not fixed text
        ("{name}：{code}！！！", "template_only_variable"),  # punctuation says nothing
        ("abcd{x}", "template_only_variable"),  # four, one short
        ("abcde{x}", None),  # exactly min_fixed_chars
        ("您的验证码{x}", None),  # five CJK characters
        ("你的验证码是{code}，5分钟内有效", None),
        ("【京东】你的验证码是{code}", None),
        ("Hello {name}, your order {order} has shipped", None),
        ("Hello there", None),  # no variable at all is fine with enough fixed text
        ("Hey!", "template_only_variable"),
    ],
)
def test_a_template_needs_min_fixed_chars_outside_its_variables(text: str, expected: str | None) -> None:
    assert reason(text) == expected


def test_min_fixed_chars_is_the_accounts() -> None:
    assert reason("Hi {name}", TemplateRules(min_fixed_chars=2)) is None
    assert reason("Hi {name}", TemplateRules(min_fixed_chars=3)) == "template_only_variable"


# --- check: symbols and the signature ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "【京东】您的订单{order}已发货",
        "  【京东】您的订单{order}已发货",
        "您的订单{order}已发货【京东】",
        "您的订单{order}已发货【京东】  ",
        "【京东】您的订单{order}已发货【京东】",
    ],
)
def test_the_signature_brackets_are_allowed_at_the_start_or_end(text: str) -> None:
    assert check(text, RULES) is None


@pytest.mark.parametrize(
    ("text", "symbol"),
    [
        ("您的订单【{order}】已发货", "【"),
        ("您的订单{order}已发货【京东", "【"),
        ("【京东】【淘宝】您的订单{order}已发货", "【"),
        ("【京东您的订单{order}已发货", "【"),
        ("您的订单{order}已发货】", "】"),
        ("您的订单{order}已发货★", "★"),
        ("Order {order} has shipped ^_^", "^"),
        ("『Order』 {order} has shipped", "『"),
        ("●Order {order} has shipped", "●"),
        ("【京东】▽您的订单{order}已发货", "▽"),
    ],
)
def test_a_symbol_in_the_body_is_refused_and_named(text: str, symbol: str) -> None:
    problem = check(text, RULES)
    assert problem is not None
    assert problem.reason == "template_symbol"
    assert repr(symbol) in problem.detail


def test_symbols_are_checked_before_the_fixed_text() -> None:
    assert reason("Hi★{name}") == "template_symbol"


def test_the_symbols_are_the_accounts() -> None:
    assert reason("Order {order} has shipped #1", TemplateRules(symbols="#")) == "template_symbol"
    assert reason("Order {order} has shipped ★", TemplateRules(symbols="#")) is None


@pytest.mark.parametrize("text", ["【{brand}】您的订单{order}已发货", "您的订单{order}已发货【京{x}东】"])
def test_a_variable_inside_the_signature_is_a_bad_variable(text: str) -> None:
    problem = check(text, RULES)
    assert problem is not None
    assert problem.reason == "template_bad_variable"
    assert "signature" in problem.detail


@pytest.mark.parametrize(
    ("min_fixed_chars", "max_chars", "max_value_chars"), [(-1, 1000, 160), (5, 1000, -1), (0, 0, 160), (5, 4, 160)]
)
def test_rules_no_template_can_meet_raise(min_fixed_chars: int, max_chars: int, max_value_chars: int) -> None:
    with pytest.raises(ValueError, match="template rules"):
        TemplateRules(min_fixed_chars=min_fixed_chars, max_chars=max_chars, max_value_chars=max_value_chars)


# --- render -----------------------------------------------------------------------------------------------


def test_render_fills_every_occurrence_and_ignores_extra_values() -> None:
    text = "【京东】尊敬的{name}，您的验证码是{code}。{name}请勿泄露"
    values = {"name": "张三", "code": "123456", "unused": "【x】"}
    assert render(text, values, RULES) == "【京东】尊敬的张三，您的验证码是123456。张三请勿泄露"


def test_render_with_latin_text_and_an_empty_value() -> None:
    assert render("Hi {name}, order {order} shipped", {"name": "", "order": "A-1"}, RULES) == "Hi , order A-1 shipped"


def test_a_template_without_variables_renders_as_itself() -> None:
    assert render("Hello there", {}, RULES) == "Hello there"


def test_a_missing_value_names_the_variable() -> None:
    with pytest.raises(TemplateError) as caught:
        render("Hi {name}, code {code}", {"name": "Ann"}, RULES)
    assert caught.value.problem == TemplateProblem("template_variable_missing", "no value for the variable {code}")


@pytest.mark.parametrize("value", ["【京东】", "x】", "{code}", "{", "★", "a^b", "『x』"])
def test_a_value_with_a_symbol_is_a_bad_value(value: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render("Hi {name}, welcome", {"name": value}, RULES)
    assert caught.value.problem.reason == "template_bad_value"
    assert "{name}" in caught.value.problem.detail


def test_a_value_of_exactly_max_value_chars_passes_and_one_more_is_bad() -> None:
    rules = TemplateRules(max_value_chars=6)
    assert render("code {code}", {"code": "123456"}, rules) == "code 123456"
    with pytest.raises(TemplateError) as caught:
        render("code {code}", {"code": "1234567"}, rules)
    assert caught.value.problem == TemplateProblem(
        "template_bad_value", "the value of {code} has 7 characters, at most 6"
    )


def test_render_of_a_malformed_template_raises_a_bad_variable() -> None:
    with pytest.raises(TemplateError) as caught:
        render("code {0}", {"0": "1"}, RULES)
    assert caught.value.problem.reason == "template_bad_variable"


def test_a_compiled_template_holds_its_pieces_and_renders_many_times() -> None:
    compiled = compile_template("{name}，您的验证码是{code}")
    assert compiled.literals == ("", "，您的验证码是", "")
    assert compiled.names == ("name", "code")
    assert compiled.variables == ("name", "code")
    rows = [{"name": f"n{i}", "code": str(i)} for i in range(3)]
    rendered = [compiled.render(row, RULES) for row in rows]
    assert rendered == ["n0，您的验证码是0", "n1，您的验证码是1", "n2，您的验证码是2"]


def test_compiled_needs_one_more_literal_than_names() -> None:
    with pytest.raises(ValueError, match="one more literal"):
        Compiled(("a",), ("x",))


def test_template_error_says_reason_and_detail() -> None:
    error = TemplateError(TemplateProblem("template_bad_value", "the value of {x} holds '★'"))
    assert str(error) == "template_bad_value: the value of {x} holds '★'"


_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,31}", fullmatch=True)
_LITERALS = st.text(st.characters(exclude_characters="{}", exclude_categories=["Cs"]), max_size=12)
_VALUES = st.text(st.characters(exclude_characters=DEFAULT_SYMBOLS, exclude_categories=["Cs"]), max_size=20)


@given(st.lists(st.tuples(_LITERALS, _NAMES), max_size=6), _LITERALS, st.data())
def test_render_leaves_no_brace_of_the_template(
    pieces: list[tuple[str, str]], last: str, data: st.DataObject
) -> None:
    text = "".join(f"{literal}{{{name}}}" for literal, name in pieces) + last
    values = {name: data.draw(_VALUES) for _, name in pieces}
    rendered = compile_template(text).render(values, RULES)
    assert "{" not in rendered
    assert "}" not in rendered
    assert rendered == "".join(literal + values[name] for literal, name in pieces) + last
