"""gatewayctl refuses a bad command line with its usage and exit code 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.ctl.main import _parser, _run, main
from gateway.upstream import SubmitRequest, SubmitResult, SubmittedMessage

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
    assert code == 3  # cannot reach the gateway
    assert "cannot reach the gateway" in err


class _Submitting:
    """What `gatewayctl send` needs of a client: one submit, answered as given."""

    def __init__(self, states: list[tuple[str, str | None]]) -> None:
        self.states = states

    def submit(self, request: SubmitRequest) -> SubmitResult:
        return SubmitResult(
            tuple(SubmittedMessage(to, str(i), state, reason) for i, (to, (state, reason)) in
                  enumerate(zip(request.to, self.states, strict=True)))
        )  # fmt: skip


@pytest.mark.parametrize(
    ("states", "code"),
    [
        ([("accepted", None), ("accepted", None)], 0),
        ([("accepted", None), ("rejected", "invalid_number")], 1),
        ([("rejected", "opted_out"), ("rejected", "no_route")], 1),
        ([("scheduled", None), ("accepted", None)], 0),
    ],
)
def test_send_exits_1_when_a_recipient_is_refused(
    states: list[tuple[str, str | None]], code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _parser().parse_args(["send", "447700900123", "447700900124", "hi"])
    assert _run(args, _Submitting(states)) == code  # type: ignore[arg-type]
    assert len(capsys.readouterr().out.splitlines()) == 2
