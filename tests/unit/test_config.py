"""The config loader reports every problem at once, each with file, key and reason."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.config import build, load_toml, read_secret
from gateway.errors import ConfigError


class Mode(enum.Enum):
    TX = "transmitter"
    TRX = "transceiver"


@dataclass(frozen=True, slots=True)
class Bind:
    host: str
    port: int
    mode: Mode = Mode.TRX
    window: int = 100


@dataclass(frozen=True, slots=True)
class Carrier:
    name: str
    binds: tuple[Bind, ...]
    tps: float | None = None
    prefixes: tuple[str, ...] = ()


def test_valid_table_builds_frozen_dataclasses() -> None:
    carrier = build(
        Carrier,
        {"name": "acme", "tps": 50, "binds": [{"host": "127.0.0.1", "port": 2775, "mode": "transmitter"}]},
        file="c.toml",
    )
    assert carrier == Carrier("acme", (Bind("127.0.0.1", 2775, Mode.TX),), tps=50.0)


def test_every_problem_is_reported_with_file_key_and_reason() -> None:
    with pytest.raises(ConfigError) as info:
        build(
            Carrier,
            {
                "binds": [{"host": "h", "port": "2775", "mode": "sideways"}, {"port": 1, "colour": "red"}],
                "tps": "fast",
                "extra": 1,
            },
            file="carriers.toml",
            key="carrier",
        )
    found = {(key, reason.split(" ")[0]) for _, key, reason in info.value.problems}
    assert ("carrier.name", "required") in found
    assert ("carrier.binds[0].port", "expected") in found
    assert ("carrier.binds[0].mode", "'sideways'") in found
    assert ("carrier.binds[1].host", "required") in found
    assert ("carrier.binds[1].colour", "unknown") in found
    assert ("carrier.extra", "unknown") in found
    assert any(key == "carrier.tps" for _, key, _ in info.value.problems)
    assert all(file == "carriers.toml" for file, _, _ in info.value.problems)
    assert "carriers.toml: carrier.binds[0].port" in str(info.value)


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text("[server\nport = 1")
    with pytest.raises(ConfigError) as info:
        load_toml(path)
    assert info.value.problems[0][0] == str(path)


def test_secrets_come_from_env_or_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_PW", "s3cret")
    assert read_secret(env="ACME_PW", file=None, what="password") == "s3cret"
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    assert read_secret(env=None, file=secret, what="password") == "from-file"
    with pytest.raises(ConfigError):
        read_secret(env="NOPE_NOT_SET", file=None, what="password")
