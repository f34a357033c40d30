"""TOML into frozen dataclasses, reporting every problem at once.

`build(cls, table, file=..., key=...)` reads a TOML table into the dataclass `cls` by its type hints: str, int,
float, bool, enums (by value), tuples, nested dataclasses and tuples of them, `X | None`. Unknown keys, missing
required keys and wrong types are all collected as (file, key, reason) and raised together as one
`ConfigError`, so an operator fixes a file in one pass instead of one error per restart.

Values are checked as well as types. A float must be finite (TOML allows `nan` and `inf`; no setting means
either). A field may declare its allowed values in its metadata, and the loader reports a value outside them
with what is allowed:

    tcp_port: int | None = field(default=None, metadata=limits(1, 65535))
    log_format: str = field(default="console", metadata=choices("console", "json"))

`limits` bounds a number (each item of a tuple, each value of a table); `choices` lists the strings allowed
(each item of a tuple, each key of a table). Enums do the same for values the code branches on.

A tuple of fixed length (`tuple[str, int]`) is a TOML list of that many items, each of its own type; a tuple of
such pairs (`tuple[tuple[str, int], ...]`) may also be written as a table, `{ "4479" = 8 }`, one pair a key.

What no one field can say (a minimum above its maximum, two settings that exclude each other) a dataclass says
in a `mistakes()` method: after building it, the loader reports each (key, reason) it returns under the table's
own key, `carriers[0].encoding.default_alphabet`, with every other problem.

Conventions (STYLE.md): durations end in `_seconds`, sizes in `_bytes`; secrets never live in TOML, only the
name of the environment variable or file holding them (`*_env`, `*_file`).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from gateway.errors import ConfigError

T = TypeVar("T")
Problems = list[tuple[str, str, str]]

_MISSING = object()


def limits(low: float | None = None, high: float | None = None) -> dict[str, Any]:
    """Field metadata: the number (each item, for a tuple) lies in [low, high]; None leaves a side open."""
    return {"limits": (low, high)}


def loaded() -> dict[str, Any]:
    """Field metadata: filled by the loader from elsewhere (the words of a file the table names), never a
    key of the TOML; a reload compares it like any key, so a changed file is a changed config."""
    return {"loaded": True}


def choices(*allowed: str) -> dict[str, Any]:
    """Field metadata: the string (each item, for a tuple) is one of `allowed`."""
    return {"choices": allowed}


def load_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; a syntax error becomes a ConfigError naming the file."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([(str(path), "-", "file not found")]) from None
    except UnicodeDecodeError as err:  # a comment saved in GBK or Latin-1: TOML is UTF-8
        bad = err.object[err.start : err.start + 4]
        raise ConfigError([(str(path), "-", f"not UTF-8 at byte {err.start} ({bad!r})")]) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError([(str(path), "-", f"not valid TOML: {err}")]) from None
    except OSError as err:  # a directory, no permission
        raise ConfigError([(str(path), "-", err.strerror or str(err))]) from None


def build(cls: type[T], table: Mapping[str, Any], *, file: str, key: str = "") -> T:
    """One dataclass from one table; raises ConfigError with every problem found."""
    problems: Problems = []
    value = _build(cls, table, file, key, problems)
    if problems:
        raise ConfigError(problems)
    return typing.cast(T, value)


def build_into(
    cls: type[T], table: Mapping[str, Any], *, file: str, key: str, problems: Problems
) -> T | None:
    """Like `build`, but appends problems to a caller's list so several sections report together."""
    before = len(problems)
    value = _build(cls, table, file, key, problems)
    return None if len(problems) > before else typing.cast(T, value)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _build(cls: type[Any], table: Any, file: str, prefix: str, problems: Problems) -> Any:
    if not isinstance(table, Mapping):
        problems.append((file, prefix or "-", f"expected a table, got {type(table).__name__}"))
        return None
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    names = set()
    for f in dataclasses.fields(cls):
        if not f.init or f.metadata.get("loaded"):
            continue
        names.add(f.name)
        key = _join(prefix, f.name)
        if f.name not in table:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                problems.append((file, key, "required key is missing"))
            continue
        value = _coerce(hints[f.name], table[f.name], file, key, problems)
        if value is not _MISSING and _allowed(f.metadata, value, file, key, problems):
            kwargs[f.name] = value
    for extra in sorted(set(table) - names):
        problems.append((file, _join(prefix, extra), f"unknown key (allowed: {', '.join(sorted(names))})"))
    if any(p[0] == file and p[1].startswith(prefix) for p in problems):
        return None
    try:
        value = cls(**kwargs)
    except (ValueError, TypeError) as err:  # a dataclass __post_init__ that validates
        problems.append((file, prefix or "-", str(err)))
        return None
    check = getattr(value, "mistakes", None)
    found = list(check()) if callable(check) else []
    problems.extend((file, _join(prefix, key), reason) for key, reason in found)
    return None if found else value


def _coerce(hint: Any, value: Any, file: str, key: str, problems: Problems) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _coerce(inner[0], value, file, key, problems)
        for a in inner:
            trial: Problems = []
            got = _coerce(a, value, file, key, trial)
            if not trial:
                return got
        problems.append((file, key, f"{value!r} matches none of {hint}"))
        return _MISSING
    if origin is tuple:
        if isinstance(value, Mapping) and _is_pair(args[0] if args else Any):
            value = list(value.items())  # { "4479" = 8 } for [["4479", 8]]
        if not isinstance(value, list | tuple):
            problems.append((file, key, f"expected a list, got {type(value).__name__}"))
            return _MISSING
        if args and args[-1] is not Ellipsis:  # tuple[str, int]: so many items, each of its own type
            return _fixed(args, value, file, key, problems)
        item_type = args[0] if args else Any
        items = [_coerce(item_type, v, file, f"{key}[{i}]", problems) for i, v in enumerate(value)]
        return tuple(items)
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            problems.append((file, key, f"expected a table, got {type(value).__name__}"))
            return _MISSING
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(vt, v, file, _join(key, str(k)), problems) for k, v in value.items()}
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        got = _build(hint, value, file, key, problems)
        return _MISSING if got is None else got
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in hint)
            problems.append((file, key, f"{value!r} is not one of {allowed}"))
            return _MISSING
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                problems.append((file, key, f"must be a finite number, got {value!r}"))
                return _MISSING
            return float(value)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is Path:
        if isinstance(value, str):
            return Path(value)
    elif isinstance(hint, type) and isinstance(value, hint):
        return value
    name = getattr(hint, "__name__", str(hint))
    problems.append((file, key, f"expected {name}, got {type(value).__name__} {value!r}"))
    return _MISSING


def _is_pair(hint: Any) -> bool:
    args = typing.get_args(hint)
    return typing.get_origin(hint) is tuple and len(args) == 2 and args[-1] is not Ellipsis


def _fixed(args: tuple[Any, ...], value: list[Any] | tuple[Any, ...], file: str, key: str, problems: Problems) -> Any:
    """A tuple of fixed length (`tuple[str, int]`): as many items as types, each read as its own."""
    if len(value) != len(args):
        names = ", ".join(getattr(a, "__name__", str(a)) for a in args)
        problems.append((file, key, f"expected a list of {len(args)} items [{names}], got {len(value)}"))
        return _MISSING
    before = len(problems)
    pairs = enumerate(zip(args, value, strict=True))
    items = tuple(_coerce(hint, v, file, f"{key}[{i}]", problems) for i, (hint, v) in pairs)
    return _MISSING if len(problems) > before else items


def _allowed(metadata: Mapping[str, Any], value: Any, file: str, key: str, problems: Problems) -> bool:
    """The field's declared limits and choices (see `limits`, `choices`); False after reporting a problem.
    A table's keys are checked against the choices and its values against the limits."""
    before = len(problems)
    if isinstance(value, Mapping):
        for name, item in value.items():
            where = _join(key, str(name))
            _check_item(metadata, "choices", name, file, where, problems)
            _check_item(metadata, "limits", item, file, where, problems)
        return len(problems) == before
    items = value if isinstance(value, tuple) else (value,)
    for i, item in enumerate(items):
        where = f"{key}[{i}]" if isinstance(value, tuple) else key
        _check_item(metadata, "limits", item, file, where, problems)
        _check_item(metadata, "choices", item, file, where, problems)
    return len(problems) == before


def _check_item(metadata: Mapping[str, Any], kind: str, item: Any, file: str, where: str, problems: Problems) -> None:
    if item is None or kind not in metadata:
        return
    if kind == "limits":
        reason = _outside(metadata["limits"], item)
        if reason:
            problems.append((file, where, reason))
    elif item not in metadata["choices"]:
        allowed = ", ".join(repr(c) for c in metadata["choices"])
        problems.append((file, where, f"{item!r} is not one of {allowed}"))


def _outside(bounds: tuple[float | None, float | None], value: float) -> str | None:
    low, high = bounds
    if (low is None or value >= low) and (high is None or value <= high):
        return None
    if low is not None and high is not None:
        return f"must be between {low!r} and {high!r}, got {value!r}"
    return f"must be at least {low!r}, got {value!r}" if low is not None else f"must be at most {high!r}, got {value!r}"


def read_secret(*, env: str | None, file: Path | None, what: str) -> str:
    """A secret from the environment or a file; TOML only ever names where it is."""
    if env:
        value = os.environ.get(env)
        if value is None:
            raise ConfigError([("environment", env, f"{what}: variable is not set")])
        return value
    if file is not None:
        try:
            return file.read_text().strip()
        except OSError as err:
            raise ConfigError([(str(file), "-", f"{what}: cannot read: {err.strerror}")]) from None
    return ""


def changed_keys(old: Any, new: Any) -> list[str]:
    """The keys (as `load_config` names them: `carriers[0].binds[1].port`) whose values differ between two
    configs built by this module; a table present on one side only is named once, not key by key."""
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    _flatten(old, "", before)
    _flatten(new, "", after)
    changed: set[str] = set()
    for key in before.keys() | after.keys():
        if before.get(key, _MISSING) != after.get(key, _MISSING):
            other = after if key in before else before
            changed.add(_first_absent_table(key, other))
    # An empty table list flattens to its own key (`word_lists` = ()); once it has tables, their keys name
    # the change (`word_lists[0]`), not the list as well.
    return sorted(k for k in changed if not any(c.startswith(k + "[") for c in changed))


def _flatten(value: Any, key: str, out: dict[str, Any]) -> None:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            _flatten(getattr(value, f.name), _join(key, f.name), out)
    elif isinstance(value, tuple) and any(dataclasses.is_dataclass(v) for v in value):
        for i, item in enumerate(value):
            _flatten(item, f"{key}[{i}]", out)
    else:
        out[key] = value


def _first_absent_table(key: str, other: Mapping[str, Any]) -> str:
    """`carriers[2]` for `carriers[2].binds[0].port` when the other side has no `carriers[2]` at all."""
    if key not in other:
        for end, char in enumerate(key):
            if char == "]" and not any(k.startswith(key[: end + 1]) for k in other):
                return key[: end + 1]
    return key
