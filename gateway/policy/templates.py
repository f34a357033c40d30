# ruff: noqa: RUF002 - the docstrings show the full-width forms Chinese texts are written in
"""Message templates [pure]: a text with named variables, checked once when an account submits it for approval
and rendered once per recipient of a batch.

Chinese carriers and the platforms that sell their routes approve a template's fixed text, not each message:
"【京东】您的验证码是{code}，5分钟内有效" is reviewed once, then sent to a hundred thousand recipients with their
own `code`. So the fixed text must say what the message is, and a value must not be able to change that: the
rules below refuse a template that is mostly variable, and a value that could forge a signature, a variable or
a symbol the carriers refuse.

A variable is `{name}`: a letter or "_", then at most 31 letters, digits or "_" (ASCII), as a platform's
upload sheet names its columns. No other brace may appear: positional "{0}" and empty "{}" name no column,
and "{{name}}" is not an escape here (no platform has one, and carriers refuse braces in the sent text).

The body is what the reviewer reads: the text without one leading signature 【...】 (after whitespace) and one
trailing one (before whitespace), as a Chinese SMS opens or ends with its bracketed brand ("【京东】"; the
signature itself is content.py's to check), and without the variables. The fixed text is the body's letters,
digits and CJK characters (`str.isalnum`): punctuation and spaces say nothing.

Reason codes (`TemplateProblem.reason`; the last two are also lifecycle reasons of a refused recipient):

    template_too_long          the template has more than `TemplateRules.max_chars` characters
    template_bad_variable      a "{" or "}" that is not part of a well-formed variable ("{0}", "{}", "{{a}}",
                               "{name" unclosed, a stray "}"), or a variable inside the signature, which is
                               registered with the carrier and cannot vary by recipient
    template_symbol            the body holds a character of `TemplateRules.symbols` ("★", or "【" that is
                               not a signature: carriers read any 【】 as one, so it would be a second)
    template_only_variable     fewer than `min_fixed_chars` letters, digits or CJK characters in the body
                               ("你好{name}", "Hi {name}"): each value would be the message, unreviewed
    template_variable_missing  rendering: the recipient has no value for a variable of the template
    template_bad_value         rendering: a value holds a character of `symbols` or has more than
                               `max_value_chars` characters

Symbols are matched as written: list a full-width form ("｛") in `symbols` to refuse it too. Structural
problems are values (`check` returns one); `variables`, `skeleton` and `render` raise `TemplateError`, as
they cannot return what they were asked for. `render` compiles the template each call; a batch calls
`compile_template` once and `Compiled.render` per recipient, which joins precomputed pieces and runs no
regular expression.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from gateway.errors import GatewayError

_OPEN: Final = "【"
_CLOSE: Final = "】"
# A well-formed variable, or any other brace (which is then malformed): one pass finds both.
_TOKEN: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,31})\}|[{}]")
_NAMING: Final = "variables are named like {name}: a letter or _, then at most 31 letters, digits or _"

DEFAULT_SYMBOLS: Final = "【】{}▽^●★『』"
"""Characters carriers refuse in a template's body (【】 are allowed only as the signature, braces only as
variables), and in any value."""


@dataclass(frozen=True, slots=True)
class TemplateProblem:
    """What is wrong: `reason` a code of the module docstring, `detail` for a person (what, and where)."""

    reason: str
    detail: str


class TemplateError(GatewayError):
    """A template or a value that cannot be used; `problem` says why."""

    def __init__(self, problem: TemplateProblem) -> None:
        super().__init__(f"{problem.reason}: {problem.detail}")
        self.problem = problem


@dataclass(frozen=True, slots=True)
class TemplateRules:
    """An account's template rules. ValueError for limits no template could meet."""

    symbols: str = DEFAULT_SYMBOLS
    min_fixed_chars: int = 5
    max_chars: int = 1000
    max_value_chars: int = 160
    # A set once here rather than a string scan per value.
    _symbols: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.min_fixed_chars < 0 or self.max_value_chars < 0:
            limits = f"min_fixed_chars {self.min_fixed_chars}, max_value_chars {self.max_value_chars}"
            raise ValueError(f"template rules: limits must not be negative, not {limits}")
        if self.max_chars < max(1, self.min_fixed_chars):
            limits = f"max_chars {self.max_chars}, min_fixed_chars {self.min_fixed_chars}"
            raise ValueError(f"template rules: need 1 <= max_chars >= min_fixed_chars, not {limits}")
        object.__setattr__(self, "_symbols", frozenset(self.symbols))


@dataclass(frozen=True, slots=True)
class Compiled:
    """A template split once: `literals[i]` comes before `names[i]`, and `literals[-1]` ends the text (so
    there is one more literal than names). `variables` are the names without repeats, in order."""

    literals: tuple[str, ...]
    names: tuple[str, ...]
    variables: tuple[str, ...] = field(init=False)
    # (name, literal after it) pairs: the loop of `render` without slicing per call.
    _holes: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.literals) != len(self.names) + 1:
            raise ValueError(f"{len(self.literals)} literals for {len(self.names)} names: need one more literal")
        object.__setattr__(self, "variables", tuple(dict.fromkeys(self.names)))
        object.__setattr__(self, "_holes", tuple(zip(self.names, self.literals[1:], strict=True)))

    def render(self, values: Mapping[str, str], rules: TemplateRules) -> str:
        """The text with each variable replaced by its value; values the template does not use are ignored.
        TemplateError (template_variable_missing, template_bad_value) for the first variable that has no
        usable value."""
        for name in self.variables:
            _check_value(name, values.get(name), rules)
        parts = [self.literals[0]]
        for name, literal in self._holes:
            parts += (values[name], literal)
        return "".join(parts)


def _check_value(name: str, value: str | None, rules: TemplateRules) -> None:
    """Raise TemplateError unless `value` may fill the variable `name`: a symbol in it could forge a
    signature or put a refused character into an approved text."""
    if value is None:
        raise TemplateError(TemplateProblem("template_variable_missing", f"no value for the variable {{{name}}}"))
    if len(value) > rules.max_value_chars:
        detail = f"the value of {{{name}}} has {len(value)} characters, at most {rules.max_value_chars}"
        raise TemplateError(TemplateProblem("template_bad_value", detail))
    if not rules._symbols.isdisjoint(value):
        symbol = next(char for char in value if char in rules._symbols)
        detail = f"the value of {{{name}}} holds {symbol!r}, which a template may not carry"
        raise TemplateError(TemplateProblem("template_bad_value", detail))


def _bad_brace(text: str, at: int) -> TemplateProblem:
    """The problem of the malformed brace at `text[at]`, showing it with what follows or precedes it."""
    if text[at] == "}":
        shown = f"a '}}' that closes no variable (after {text[max(0, at - 12) : at]!r})"
    elif (close := text.find("}", at, at + 40)) >= 0:
        shown = f"{text[at : close + 1]!r} is not a variable"
    else:
        shown = f"{text[at : at + 12]!r} has no closing '}}'"
    return TemplateProblem("template_bad_variable", f"{shown}: {_NAMING}")


def compile_template(text: str) -> Compiled:
    """`text` split into literal pieces and variable names, for `Compiled.render`. TemplateError
    (template_bad_variable) for a malformed brace; the other rules are `check`'s."""
    literals: list[str] = []
    names: list[str] = []
    at = 0
    for token in _TOKEN.finditer(text):
        if token.group(1) is None:
            raise TemplateError(_bad_brace(text, token.start()))
        literals.append(text[at : token.start()])
        names.append(token.group(1))
        at = token.end()
    literals.append(text[at:])
    return Compiled(tuple(literals), tuple(names))


def variables(text: str) -> tuple[str, ...]:
    """The variables' names in order of first appearance, without repeats. TemplateError for a malformed
    brace."""
    return compile_template(text).variables


def skeleton(text: str) -> str:
    """The text with every variable removed: the fixed text the caller scans for banned words, which a value
    cannot add to (a value is checked on its own). TemplateError for a malformed brace."""
    return "".join(compile_template(text).literals)


def render(text: str, values: Mapping[str, str], rules: TemplateRules) -> str:
    """`compile_template(text).render(values, rules)`: for one text; a batch compiles once."""
    return compile_template(text).render(values, rules)


def _body(text: str) -> tuple[int, int]:
    """Where the body starts and ends: after one leading 【...】 and before one trailing 【...】 (module
    docstring), each a single pair with no bracket inside it."""
    start = len(text) - len(text.lstrip())
    close = text.find(_CLOSE, start)
    if text.startswith(_OPEN, start) and close >= 0 and _OPEN not in text[start + 1 : close]:
        start = close + 1
    end = len(text.rstrip())
    opening = text.rfind(_OPEN, start, end)
    if text.endswith(_CLOSE, start, end) and opening >= 0 and _CLOSE not in text[opening + 1 : end - 1]:
        end = opening
    return start, max(start, end)


def check(text: str, rules: TemplateRules) -> TemplateProblem | None:
    """The first structural rule `text` breaks, or None; in order: length, braces and variables, symbols,
    fixed text (module docstring)."""
    if len(text) > rules.max_chars:
        detail = f"the template has {len(text)} characters, at most {rules.max_chars}"
        return TemplateProblem("template_too_long", detail)
    try:
        compile_template(text)
    except TemplateError as err:
        return err.problem
    start, end = _body(text)
    if (name := _TOKEN.search(text[:start] + text[end:])) is not None:
        detail = f"the variable {name.group()} is inside the signature, which is fixed: registered with the carrier"
        return TemplateProblem("template_bad_variable", detail)
    fixed = skeleton(text[start:end])
    if (symbol := next((char for char in fixed if char in rules._symbols), None)) is not None:
        where = " outside the signature at its start or end" if symbol in _OPEN + _CLOSE else ""
        return TemplateProblem("template_symbol", f"the template holds {symbol!r}{where}, which carriers refuse")
    count = sum(char.isalnum() for char in fixed)
    if count < rules.min_fixed_chars:
        least = rules.min_fixed_chars
        detail = f"{count} letters, digits or CJK characters besides the variables and signature, at least {least}"
        return TemplateProblem("template_only_variable", detail)
    return None
