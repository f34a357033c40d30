"""Bind and carrier numbers are checked when the config is loaded: a bad one is `file: key: reason`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from gateway.app import load_config
from gateway.carriers.config import BindConfig, CarrierConfig
from gateway.config import build
from gateway.errors import ConfigError


def _problems(table: dict[str, Any]) -> list[tuple[str, str, str]]:
    with pytest.raises(ConfigError) as info:
        build(BindConfig, table, file="gateway.toml", key="carriers[0].binds[0]")
    return info.value.problems


def test_a_negative_window_is_refused_with_file_key_and_reason() -> None:
    with pytest.raises(ConfigError) as info:
        build(BindConfig, {"name": "trx", "window": -1}, file="gateway.toml", key="carriers[0].binds[0]")
    assert info.value.problems == [("gateway.toml", "carriers[0].binds[0]", "window: must be 1..65535, got -1")]
    assert "gateway.toml: carriers[0].binds[0]: window: must be 1..65535, got -1" in str(info.value)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("window", 0, "window: must be 1..65535, got 0"),
        ("window", 70000, "window: must be 1..65535, got 70000"),
        ("port", 0, "port: must be 1..65535, got 0"),
        ("port", 65536, "port: must be 1..65535, got 65536"),
        ("tps", -5.0, "tps: must be a finite number, at least 0, got -5.0"),
        ("response_timeout_seconds", 0.0, "response_timeout_seconds: must be a finite number above 0, got 0.0"),
        ("bind_timeout_seconds", -1.0, "bind_timeout_seconds: must be a finite number above 0, got -1.0"),
        ("enquire_link_interval_seconds", -1.0, "enquire_link_interval_seconds: must be a finite number, at least 0"),
        ("bind_refused_retry_seconds", 0.0, "bind_refused_retry_seconds: must be a finite number above 0, got 0.0"),
        ("max_unacked_inbound", 0, "max_unacked_inbound: must be a finite number, at least 1, got 0"),
        ("addr_ton", 256, "addr_ton: must be 0..255, got 256"),
    ],
)
def test_each_number_out_of_range_is_named(key: str, value: float, reason: str) -> None:
    ((file, where, got),) = _problems({key: value})
    assert (file, where) == ("gateway.toml", "carriers[0].binds[0]")
    assert got.startswith(reason)


def test_reconnect_min_above_max_is_refused_and_every_problem_is_listed() -> None:
    ((_, _, reason),) = _problems({"reconnect_min_seconds": 90.0, "reconnect_max_seconds": 60.0, "window": 0})
    assert reason == (
        "window: must be 1..65535, got 0; "
        "reconnect_min_seconds: must be at most reconnect_max_seconds (60.0), got 90.0"
    )


def test_the_constructor_refuses_what_toml_cannot_say() -> None:
    with pytest.raises(ValueError, match=r"tps: must be a finite number, at least 0, got inf"):
        BindConfig(tps=math.inf)
    with pytest.raises(ValueError, match=r"throttle_backoff_min_seconds: must be at most"):
        BindConfig(throttle_backoff_min_seconds=10.0, throttle_backoff_max_seconds=1.0)
    with pytest.raises(ValueError, match=r"job_queue_size: must be a finite number, at least 1, got 0"):
        CarrierConfig(name="c", job_queue_size=0)


def test_the_defaults_and_the_shipped_config_are_valid() -> None:
    BindConfig()
    CarrierConfig(name="c", binds=(BindConfig(),))
    root = Path(__file__).resolve().parents[3]
    cfg = load_config(root / "conf" / "gateway.toml")
    assert all(b.window >= 1 for c in cfg.carriers for b in c.binds)


def test_load_config_reports_a_bad_bind_as_file_key_reason(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[3]
    head, binds, tail = (root / "conf" / "gateway.toml").read_text().partition("[[carriers.binds]]")
    text = head + binds + tail.replace("window = 100", "window = -1", 1)
    text = text.replace('password_file = "conf/sim.secret"', f'password_file = "{root}/conf/sim.secret"')
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"{path}: carriers[0].binds[0]: window: must be 1..65535, got -1" in str(info.value)
