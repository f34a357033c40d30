"""The ops endpoints' pure parts: readiness (gateway/ops/health.py), the fixed-bucket histogram, and the HTTP
request reader and endpoints (gateway/ops/http.py) without a socket."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.registry import CollectorRegistry

from gateway.carriers.bind import BindStatus
from gateway.ops.health import Readiness, readiness
from gateway.ops.histogram import Histogram
from gateway.ops.http import BadRequest, OpsEndpoints, Request, RequestReader, parse_head

ROOT = Path(__file__).resolve().parents[2]


def bind(carrier: str, name: str, state: str, last_error: str | None = None) -> BindStatus:
    return BindStatus(
        carrier=carrier, bind=name, mode="transceiver", state=state, since=0.0, window_in_use=0, window=10,
        current_tps=0.0, throttled=state == "throttled", reconnects=0, last_error=last_error, unacked_inbound=0,
        submitted=0, accepted=0,
    )  # fmt: skip


# --- readiness ----------------------------------------------------------------------------------------


def test_ready_when_the_store_is_open_and_every_carrier_has_a_bind_up() -> None:
    binds = {
        "uk": [bind("uk", "a", "bound"), bind("uk", "b", "backing_off", "connect failed")],
        "intl": [bind("intl", "trx", "throttled")],  # a pause is the carrier's request, not a bind down
    }
    assert readiness(binds, store_open=True) == Readiness(True, ())


def test_a_carrier_with_no_bind_up_is_named_with_each_binds_state_and_last_error() -> None:
    binds = {
        "uk": [bind("uk", "a", "bound")],
        "intl": [bind("intl", "tx", "backing_off", "connect failed: ConnectionRefusedError"),
                 bind("intl", "rx", "refused", "bind refused with ESME_RINVPASWD")],
    }  # fmt: skip
    result = readiness(binds, store_open=True)
    assert not result.ready
    assert result.problems == (
        "carrier intl: no bind up (tx backing_off: connect failed: ConnectionRefusedError; "
        "rx refused: bind refused with ESME_RINVPASWD)",
    )
    assert result.describe() == result.problems[0] + "\n"


def test_a_closed_store_a_carrier_without_binds_and_a_shutdown_are_each_a_problem() -> None:
    result = readiness({"idle": []}, store_open=False, stopping=True)
    assert result == Readiness(False, ("gateway: stopping", "store: not open", "carrier idle: no binds configured"))


def test_a_bind_still_connecting_is_not_up() -> None:
    states = ("idle", "connecting", "binding", "unbinding", "backing_off", "refused", "stopped")
    for state in states:
        assert not readiness({"c": [bind("c", "x", state)]}, store_open=True).ready, state


def test_health_and_histogram_import_nothing_of_trio() -> None:
    """The admin socket and the bind core import them: they are pure (ARCHITECTURE.md), checked as
    tests/unit/test_pure_boundary.py checks the listed pure modules."""
    code = (
        "import sys, gateway.ops.health, gateway.ops.histogram\n"
        "bad = sorted(m for m in ('trio', 'lmdb', 'socket', 'structlog', 'prometheus_client') if m in sys.modules)\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# --- histogram ----------------------------------------------------------------------------------------


def test_a_value_on_a_bound_counts_in_that_bounds_bucket_and_the_rest_above_them_all() -> None:
    h = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        h.observe(value)
    snap = h.snapshot()
    assert snap.counts == (2, 2, 1)
    assert snap.cumulative() == [(0.1, 2), (1.0, 4), (float("inf"), 5)]
    assert snap.count == 5
    assert snap.sum == pytest.approx(8.65)


def test_bounds_must_ascend() -> None:
    with pytest.raises(ValueError, match="ascend"):
        Histogram((1.0, 0.5))


# --- HTTP requests -------------------------------------------------------------------------------------


def test_a_request_split_anywhere_is_read_once_whole() -> None:
    raw = b"GET /metrics?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\naccept: */*\r\n\r\n"
    for cut in range(1, len(raw)):
        reader = RequestReader()
        first = reader.receive_data(raw[:cut])
        got = first or reader.receive_data(raw[cut:])
        assert got == Request("GET", "/metrics", {"host": "127.0.0.1", "accept": "text/plain, */*"}), cut


def test_bare_line_feeds_and_http_1_0_without_host_are_read() -> None:
    assert RequestReader().receive_data(b"GET /live HTTP/1.0\n\n") == Request("GET", "/live", {})


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /live\r\n", 400),  # no version
        (b"GET  /live HTTP/1.1\r\nHost: x\r\n", 400),  # two spaces
        (b"GET /live HTTP/1.1\r\n", 400),  # HTTP/1.1 without Host
        (b"GET /live HTTP/2.0\r\nHost: x\r\n", 505),
        (b"GET http://x/live HTTP/1.1\r\nHost: x\r\n", 400),  # absolute form
        (b"GET /live HTTP/1.1\r\nHost : x\r\n", 400),  # space before the colon (RFC 9112 5.1)
        (b"GET /live HTTP/1.1\r\nno colon\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),  # a TLS hello
    ],
)
def test_a_malformed_head_is_refused_with_its_status(head: bytes, status: int) -> None:
    with pytest.raises(BadRequest) as info:
        parse_head(head.rstrip(b"\r\n"))
    assert info.value.status == status


def test_a_head_over_the_limit_is_refused_431_without_waiting_for_its_end() -> None:
    reader = RequestReader(limit=100)
    assert reader.receive_data(b"GET / HTTP/1.1\r\n") is None
    with pytest.raises(BadRequest) as info:
        reader.receive_data(b"X-Filler: " + b"a" * 200)
    assert info.value.status == 431


def test_a_connection_ending_inside_the_request_is_a_bad_request() -> None:
    reader = RequestReader()
    reader.receive_data(b"GET / HT")
    with pytest.raises(BadRequest):
        reader.receive_data(b"")


# --- the endpoints --------------------------------------------------------------------------------------


def endpoints(ready: Readiness) -> OpsEndpoints:
    return OpsEndpoints(CollectorRegistry(), lambda: ready)


def test_live_ready_and_unknown_paths() -> None:
    ok = endpoints(Readiness(True, ()))
    assert (ok(Request("GET", "/live", {})).status, ok(Request("GET", "/ready", {})).body) == (200, b"ready\n")
    assert ok(Request("GET", "/nope", {})).status == 404
    down = endpoints(Readiness(False, ("carrier x: no bind up (trx backing_off)",)))(Request("GET", "/ready", {}))
    assert (down.status, down.body) == (503, b"carrier x: no bind up (trx backing_off)\n")


def test_only_get_and_head_are_allowed_and_head_has_no_body() -> None:
    ok = endpoints(Readiness(True, ()))
    refused = ok(Request("POST", "/metrics", {}))
    assert refused.status == 405
    assert ("Allow", "GET, HEAD") in refused.headers
    head = ok(Request("HEAD", "/live", {})).encode(head_only=True)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Length: 5\r\n" in head
    assert head.endswith(b"\r\n\r\n")


def test_metrics_speaks_openmetrics_when_asked() -> None:
    ok = endpoints(Readiness(True, ()))
    plain = ok(Request("GET", "/metrics", {}))
    assert plain.content_type.startswith("text/plain; version=0.0.4")
    om = ok(Request("GET", "/metrics", {"accept": "application/openmetrics-text; version=1.0.0"}))
    assert om.content_type.startswith("application/openmetrics-text")
    assert om.body.endswith(b"# EOF\n")
