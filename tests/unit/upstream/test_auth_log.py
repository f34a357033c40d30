"""Failed hellos are logged with their peer, under a bound: a client guessing secrets cannot fill the log."""

from __future__ import annotations

from structlog.testing import capture_logs

from gateway.upstream.faults import AuthLog


def test_failed_hellos_past_the_burst_are_counted_not_logged() -> None:
    auth = AuthLog(burst=20, period_seconds=60.0)
    with capture_logs() as logs:
        for i in range(300):
            auth.failed(i * 0.01, "upstream_auth_failed", account="demo", peer="127.0.0.1:5000")
        assert len(logs) == 20
        assert {e["peer"] for e in logs} == {"127.0.0.1:5000"}
        auth.failed(61.0, "upstream_auth_failed", account="demo", peer="127.0.0.1:5001")
    assert [e["event"] for e in logs[20:]] == ["upstream_auth_failed_more", "upstream_auth_failed"]
    assert logs[20]["times"] == 280
    assert auth.failures == 301
