"""docs/operations.md, conf/examples/ and conf/gateway.service against the code they describe.

Every key the loader reads (gateway.app.load_config walks GatewayConfig's dataclasses, tuples of them and
optional ones included) must have a row in docs/operations.md: a table under a heading that names its TOML
table in backticks (`[server]`, `[[carriers.binds]]`; one heading may name several), one row per key with the
key in backticks in the first cell. A new key without a row fails here, as does a row for a key that is gone.
Where a row's default cell is one backticked TOML value (`10.0`, `"info"`, `[]`), it must equal the code's
default; a default written in prose (unset, required, a long list) is not compared.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

import pytest

from gateway.app import GatewayConfig, ServerSection, load_config
from gateway.upstream import ServerConfig

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "operations.md"
UNIT = ROOT / "conf" / "gateway.service"
SHIPPED = ROOT / "conf" / "gateway.toml"
EXAMPLES = sorted((ROOT / "conf" / "examples").glob("*.toml"))

# Dataclass fields that are no TOML key (the loader skips them: `init=False`, or `gateway.config.loaded()`),
# each with why; a new one must be added here, so that nothing is left out of the docs unnoticed.
NOT_KEYS = {
    "word_lists.file_words": "the words of the list's `file`, read by the loader",
}

_MISSING = object()


def _dataclass_in(hint: Any) -> tuple[type | None, bool]:
    """The dataclass a field holds (directly, optionally, or as a tuple of them) and whether it is a tuple."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _dataclass_in(inner[0]) if len(inner) == 1 else (None, False)
    if origin is tuple and args and dataclasses.is_dataclass(args[0]):
        return typing.cast(type, args[0]), True
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return hint, False
    return None, False


def _walk(cls: type, section: str, keys: dict[str, dict[str, Any]], skipped: set[str]) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{section}.{f.name}" if section else f.name
        if not f.init or f.metadata.get("loaded"):
            skipped.add(path)
            continue
        inner, _ = _dataclass_in(hints[f.name])
        if inner is not None:
            keys.setdefault(path, {})
            _walk(inner, path, keys, skipped)
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = _MISSING
        keys.setdefault(section, {})[f.name] = default


def config_keys() -> tuple[dict[str, dict[str, Any]], set[str]]:
    """{TOML table (`carriers.binds`): {key: default}}, and the fields that are no key."""
    keys: dict[str, dict[str, Any]] = {}
    skipped: set[str] = set()
    _walk(GatewayConfig, "", keys, skipped)
    return keys, skipped


_HEADING = re.compile(r"^#{2,6}\s")
_TABLE_NAME = re.compile(r"`\[\[?([A-Za-z0-9_.]+)\]\]?`")
_ROW = re.compile(r"^\|\s*`([A-Za-z0-9_]+)`\s*\|")


def documented() -> dict[str, dict[str, list[str]]]:
    """{TOML table: {key: the row's cells}} from docs/operations.md."""
    found: dict[str, dict[str, list[str]]] = {}
    current: list[str] = []
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        if _HEADING.match(line):
            current = _TABLE_NAME.findall(line)
            for name in current:
                found.setdefault(name, {})
        elif (row := _ROW.match(line)) and current:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            for name in current:
                found[name][row[1]] = cells
    return found


def test_every_config_key_is_documented() -> None:
    keys, _ = config_keys()
    docs = documented()
    missing = [
        f"{section}.{key}" if section else key
        for section, fields in keys.items()
        for key in fields
        if key not in docs.get(section, {})
    ]
    assert not missing, f"docs/operations.md has no row for: {', '.join(missing)}"


def test_the_docs_name_no_key_the_config_lacks() -> None:
    keys, _ = config_keys()
    stale = [
        f"{section}.{key}"
        for section, rows in documented().items()
        for key in rows
        # A row may name a sub-table too (`connections` of `[[routes]]`), which has its own heading.
        if key not in keys.get(section, {}) and f"{section}.{key}" not in keys
    ]
    assert not stale, f"docs/operations.md documents keys the config does not have: {', '.join(stale)}"


def _plain(value: Any) -> Any:
    """A default as TOML would write it: enums by value, tuples as lists."""
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


_ONE_LITERAL = re.compile(r"^`([^`]+)`$")


def test_documented_defaults_are_the_code_defaults() -> None:
    keys, _ = config_keys()
    wrong = []
    compared = 0
    for section, rows in documented().items():
        for key, cells in rows.items():
            default = keys.get(section, {}).get(key, _MISSING)
            literal = _ONE_LITERAL.match(cells[2]) if len(cells) > 2 else None
            if default is _MISSING or literal is None:
                continue
            try:
                said = tomllib.loads(f"v = {literal[1]}")["v"]
            except tomllib.TOMLDecodeError:
                continue  # a default shown as text (the signature symbols), not as a TOML value
            compared += 1
            if said != _plain(default):
                wrong.append(f"{section}.{key}: docs say {literal[1]}, the code {_plain(default)!r}")
    assert not wrong, "\n".join(wrong)
    assert compared > 100  # the table format is still the one this test reads


def test_fields_that_are_no_key_are_listed_with_a_reason() -> None:
    _, skipped = config_keys()
    assert skipped == set(NOT_KEYS)


def test_the_examples_are_there() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {"one-carrier", "failover", "international", "china"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_loads(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.carriers
    assert cfg.routes
    assert cfg.accounts
    # Relative paths resolve against the project directory (the parent of conf/), not the working directory.
    assert Path(cfg.store.path).is_relative_to(ROOT / "var")
    assert Path(cfg.server.socket_path).is_relative_to(ROOT / "var")
    for carrier in cfg.carriers:
        for bind in carrier.binds:
            assert bind.password_file or bind.password_env, f"{carrier.name}: a carrier secret from a file or env"
            assert bind.host == "127.0.0.1"


def test_examples_run_beside_the_shipped_config() -> None:
    """Each example's store, sockets and ports are its own: any of them can run next to bin/gateway."""
    seen: dict[object, str] = {}
    clashes = []
    for path in [SHIPPED, *EXAMPLES]:
        cfg = load_config(path)
        owned: list[object] = [cfg.store.path, cfg.server.socket_path, cfg.server.admin_path]
        owned += [("tcp", s.port) for s in cfg.simulators]
        if cfg.server.tcp_port is not None:
            owned.append(("tcp", cfg.server.tcp_port))
        if cfg.metrics.enabled:
            owned.append(("tcp", cfg.metrics.port))
        for item in owned:
            if item is not None and seen.setdefault(item, path.name) != path.name:
                clashes.append(f"{item} in {path.name} and {seen[item]}")
    assert not clashes


def _unit() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            name, _, value = line.partition("=")
            settings.setdefault(name.strip(), []).append(value.strip())
    return settings


def _seconds(value: str) -> float:
    """systemd's time spans as this unit writes them: `60`, `90s`, `2min`, `1min 30s`."""
    units = {"": 1.0, "s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    assert parts, value
    return sum(float(n) * units[u] for n, u in parts)


def test_the_unit_reloads_with_sighup_and_outlasts_the_graceful_stop() -> None:
    unit = _unit()
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["KillSignal"] == ["SIGTERM"]
    assert unit["ExecStart"][0].endswith("gateway serve -c /etc/gateway/gateway.toml")
    stop = _seconds(unit["TimeoutStopSec"][0])
    grace = ServerSection().shutdown_grace_seconds
    assert stop > grace
    # The whole sequence with the defaults (gateway/app.py): connections close, binds drain, engine commits.
    sequence = ServerConfig().close_timeout_seconds + 1 + (grace + 2) + grace
    assert stop > sequence


def test_the_unit_type_matches_what_the_gateway_tells_systemd() -> None:
    speaks_notify = any("NOTIFY_SOCKET" in p.read_text(encoding="utf-8") for p in (ROOT / "gateway").rglob("*.py"))
    assert _unit()["Type"] == ["notify" if speaks_notify else "simple"]
