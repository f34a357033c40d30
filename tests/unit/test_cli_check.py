"""`gateway check -c FILE`: the config as `gateway serve` loads it, without the store or a socket."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from gateway.cli import main
from tests.unit.test_config_checks import write_config

ROOT = Path(__file__).resolve().parents[2]


def test_a_good_config_prints_ok_and_exits_0_opening_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, '[server.upstream]\nunix_mode = 0o660\n[[simulators]]\nname = "sim"\nport = 28720')
    with socket.socket() as busy:  # serve would fail to listen here; check never tries
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", 28720))
        busy.listen()
        assert main(["check", "-c", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: ok\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.secret", "bind.secret", "gateway.toml"]


def test_the_shipped_config_checks_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-c", str(ROOT / "conf" / "gateway.toml")]) == 0
    assert capsys.readouterr().out.endswith("gateway.toml: ok\n")


def test_every_problem_is_printed_one_a_line_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(
        tmp_path,
        '[carriers.encoding]\ndefault_alphabet = "latin1"\n[server.upstream]\nunix_mode = 0o666',
        top="retry_backoff_min_seconds = 10.0\nretry_backoff_max_seconds = 1.0",
    )
    assert main(["check", "-c", str(path)]) == 2
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[:2] for line in lines] == [
        [str(path), "server.upstream.unix_mode"],
        [str(path), "engine.retry_backoff_min_seconds"],
        [str(path), "carriers[0].encoding.default_alphabet"],
    ]
    assert not (tmp_path / "store").exists()


def test_routing_and_policy_problems_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    extra = '[compliance]\nwindow = "25:00-26:00"\n[[routes]]\ncountries = ["XX"]\ncarriers = ["c"]'
    path = write_config(tmp_path, extra)
    assert main(["check", "-c", str(path)]) == 2
    keys = {line.split(": ")[1] for line in capsys.readouterr().out.splitlines()}
    assert keys == {"compliance.window", "routes[1].countries"}


def test_a_missing_file_is_a_problem_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-c", str(tmp_path / "none.toml")]) == 2
    assert capsys.readouterr().out == f"{tmp_path / 'none.toml'}: -: file not found\n"
