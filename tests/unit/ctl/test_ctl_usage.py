"""gatewayctl refuses a bad command line with its usage and exit code 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.ctl.main import main

PROJECT_CONFIG = str(Path(__file__).resolve().parents[3] / "conf" / "gateway.toml")


@pytest.mark.parametrize(
    "argv",
    [
        ["events", "--timeout", "nan"],
        ["events", "--timeout", "-1"],
        ["events", "--timeout", "0"],
        ["events", "--after", "99999999999999999999"],
        ["events", "--after", "-1"],
        ["receipts", "--unmatched", "--after", "garbage"],
        ["receipts", "--unmatched", "--limit", "0"],
        ["send", "447700900123", "hi", "--schedule-in", "inf"],
        ["-a", "nobody", "status", "1"],
    ],
)
def test_a_bad_command_line_is_a_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(["-c", PROJECT_CONFIG, *argv])
    except SystemExit as exit_:  # argparse's own refusal
        code = exit_.code  # type: ignore[assignment]
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip()


def test_it_finds_the_project_config_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    # No gateway runs on the project's socket here: the config was found, the socket was not.
    code = main(["status", "1"])
    err = capsys.readouterr().err
    assert "file not found" not in err
    assert code in (1, 2)
