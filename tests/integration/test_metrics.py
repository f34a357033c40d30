"""The ops endpoints of a running gateway over real sockets: /metrics counts what the test sent, /ready names
the carrier that has no bind up, a bad request is answered 400 and the server goes on; and the [metrics]
section's config and port checks."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import CannotStart, CarrierSection, Gateway, GatewayConfig, MetricsSection, load_config, prepare
from gateway.carriers.config import BindConfig, BindMode
from gateway.errors import ConfigError
from gateway.ops import http
from gateway.ops.http import Request, Response, serve_http, text
from gateway.sim.config import IdFormat as SimIdFormat
from gateway.sim.config import SimConfig
from gateway.sim.server import Simulator
from gateway.upstream import MessageClass, SubmitRequest

from .gateway.harness import SIM_PASSWORD, collect_final_events, gateway_config, running_gateway

ONE_PART = "Your code is 482913. It expires in 10 minutes."
TWO_PARTS = "您的验证码是 482913，十分钟内有效。请勿泄露给他人。" * 3  # noqa: RUF001 - UCS-2, 2 parts


def with_metrics(cfg: GatewayConfig) -> GatewayConfig:
    return dataclasses.replace(cfg, metrics=MetricsSection(enabled=True, port=0))  # port 0: any free one


async def get(address: tuple[str, int], raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request as bytes; the answer's status, headers (lower-case names) and body, read to the close."""
    stream = await trio.open_tcp_stream(*address)
    async with stream:
        await stream.send_all(raw)
        data = bytearray()
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ")[1]), headers, body


def request(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test\r\n\r\n".encode()


async def scrape(address: tuple[str, int]) -> Callable[..., float]:
    status, headers, body = await get(address, request("/metrics"))
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    return value


async def test_metrics_count_what_the_client_sent(tmp_path: Path) -> None:
    n, long = 40, 5
    with trio.fail_after(60):
        async with running_gateway(tmp_path, configure=with_metrics) as h, h.client() as client:
            address = h.running.metrics
            assert address is not None
            assert address[0] == "127.0.0.1"
            ids: list[str] = []
            for text_, to in ((ONE_PART, range(n)), (TWO_PARTS, range(n, n + long))):
                result = await client.submit(SubmitRequest(
                    to=tuple(f"4477009{i:05d}" for i in to), text=text_, message_class=MessageClass.NOTIFICATION,
                    sender="ACME",
                ))  # fmt: skip
                ids.extend(m.message_id for m in result.messages)
            refused = await client.submit(
                SubmitRequest(to=("12",), text=ONE_PART, message_class=MessageClass.NOTIFICATION, sender="ACME")
            )
            assert refused.messages[0].reason == "invalid_number"
            finals, _ = await collect_final_events(client, set(ids))
            assert {e.kind for e in finals.values()} == {"delivered"}
            m = await scrape(address)

    parts = n + 2 * long
    assert m("gateway_messages_accepted_total") == n + long
    # Each message once, a two-part one when its last part's receipt ends it.
    assert m("gateway_messages_total", state="delivered", reason="delivered") == n + long
    assert m("gateway_messages_total", state="rejected", reason="invalid_number") == 1
    assert m("gateway_policy_refusals_total", reason="invalid_number") == 1
    assert m("gateway_submit_requests_total") == 3
    assert m("gateway_messages_dispatched_total") == n + long
    assert m("gateway_parts_total", carrier="sim") == parts
    # On arrival or when their submit_sm_resp came (early): every receipt found its message.
    matched = m("gateway_receipts_total", result="matched") + m("gateway_receipts_claimed_total")
    assert matched == parts
    assert m("gateway_receipts_total", result="ignored") == m("gateway_receipts_total", result="unparseable") == 0
    assert m("gateway_receipts_unmatched") == 0
    bind = {"carrier": "sim", "bind": "trx"}
    assert m("gateway_bind_up", **bind) == 1
    assert m("gateway_bind_state", **bind, state="bound") == 1
    assert m("gateway_bind_state", **bind, state="backing_off") == 0
    assert m("gateway_bind_window_size", **bind) == 100
    assert m("gateway_bind_submits_total", **bind) == m("gateway_bind_submits_accepted_total", **bind) == parts
    assert m("gateway_submit_response_seconds_count", **bind) == parts
    assert m("gateway_submit_response_seconds_bucket", **bind, le="+Inf") == parts
    assert 0 < m("gateway_submit_response_seconds_sum", **bind) < parts * 10
    assert m("gateway_bind_throttle_pauses_total", **bind) == m("gateway_bind_reconnects_total", **bind) == 0
    groups = m("gateway_store_groups_total")
    assert groups > 0
    assert m("gateway_store_commit_seconds_count") == m("gateway_store_group_ops_count") == groups
    assert m("gateway_store_group_ops_sum") == m("gateway_store_ops_total")
    assert m("gateway_store_entries", table="messages") == n + long + 1
    assert m("gateway_store_entries", table="due") == m("gateway_store_entries", table="in_flight_parts") == 0
    assert 0 < m("gateway_store_used_bytes") <= m("gateway_store_map_size_bytes")
    assert m("gateway_ready_queue_messages", carrier="sim") == m("gateway_job_queue_parts", carrier="sim") == 0
    assert m("gateway_ready") == m("gateway_store_open") == 1


def closed_port() -> int:
    """A port in the range this suite may use (28500-28599) on which nothing listens."""
    for port in range(28599, 28499, -1):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port in 28500-28599")


async def test_ready_names_the_carrier_without_a_bind_until_it_binds(tmp_path: Path) -> None:
    sim_config = SimConfig(credentials=(("gw", SIM_PASSWORD),), id_format=SimIdFormat.HEX, seed=7)
    dead_port = closed_port()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(Simulator(sim_config).serve, "127.0.0.1", 0)
            cfg = with_metrics(gateway_config(tmp_path, port))
            bind = BindConfig(
                name="far", host="127.0.0.1", port=dead_port, system_id="gw", mode=BindMode.TRANSCEIVER,
                password_file=str(tmp_path / "sim.secret"), reconnect_min_seconds=0.05, reconnect_max_seconds=0.2,
            )  # fmt: skip
            cfg = dataclasses.replace(cfg, carriers=(*cfg.carriers, CarrierSection(name="far", binds=(bind,))))
            gateway = Gateway(cfg)
            running = await nursery.start(gateway.run)
            await running.pools["sim"].wait_bound()
            address = running.metrics
            assert address is not None

            assert (await get(address, request("/live")))[:1] == (200,)
            status, headers, body = await get(address, request("/ready"))
            assert status == 503
            assert headers["content-type"] == "text/plain; charset=utf-8"
            assert body.decode().startswith("carrier far: no bind up (far ")
            assert "sim" not in body.decode()
            m = await scrape(address)
            assert (m("gateway_ready"), m("gateway_bind_up", carrier="far", bind="far")) == (0, 0)
            assert m("gateway_bind_up", carrier="sim", bind="trx") == 1

            # A bad request is answered 400 and the server goes on serving.
            for raw in (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", b"GET /ready HTTP/1.1\r\n\r\n"):
                assert (await get(address, raw))[0] == 400
            assert (await get(address, request("/ready", "POST")))[0] == 405
            assert (await get(address, request("/nope")))[0] == 404
            status, headers, body = await get(address, request("/live", "HEAD"))
            assert (status, headers["content-length"], body) == (200, "5", b"")

            # The carrier's SMSC comes up: the bind connects on its next attempt and /ready says so.
            await nursery.start(Simulator(sim_config).serve, "127.0.0.1", dead_port)
            await running.pools["far"].wait_bound()
            status, _, body = await get(address, request("/ready"))
            assert (status, body) == (200, b"ready\n")

            gateway.shutdown()
            await gateway.stopped.wait()
            nursery.cancel_scope.cancel()


async def test_a_slow_or_endless_request_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "READ_TIMEOUT_SECONDS", 0.2)
    monkeypatch.setattr(http, "MAX_HEAD_BYTES", 1024)
    calls: list[Request] = []

    def handler(req: Request) -> Response:
        calls.append(req)
        if req.path == "/boom":
            raise RuntimeError("a bug in an endpoint")
        return text(200, "ok\n")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            address = await nursery.start(serve_http, handler, "127.0.0.1", 0)
            assert (await get(address, b"GET /live HTTP/1.1\r\nHost: x\r\n"))[0] == 408  # never ends its head
            endless = b"GET /live HTTP/1.1\r\n" + b"X-A: " + b"a" * 100_000 + b"\r\n\r\n"
            stream = await trio.open_tcp_stream(*address)
            async with stream:
                try:
                    await stream.send_all(endless)
                except trio.BrokenResourceError:
                    pass  # answered and closed before it was all sent
                assert (await stream.receive_some(100)).startswith(b"HTTP/1.1 431 ")
            assert (await get(address, request("/boom")))[0] == 500
            assert (await get(address, request("/live")))[2] == b"ok\n"
            assert [r.path for r in calls] == ["/boom", "/live"]
            nursery.cancel_scope.cancel()


async def test_idle_connections_never_keep_a_probe_out() -> None:
    """More idle sockets than the server serves at once: the oldest are closed, and /live still answers."""

    def handler(req: Request) -> Response:
        return text(200, "ok\n")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            address = await nursery.start(serve_http, handler, "127.0.0.1", 0)
            idle = [await trio.open_tcp_stream(*address) for _ in range(http.MAX_CONNECTIONS + 10)]
            await trio.testing.wait_all_tasks_blocked()  # the server accepted them all and waits on each
            status, _, body = await get(address, request("/live"))
            assert (status, body) == (200, b"ok\n")
            assert await idle[0].receive_some(100) == b""  # the oldest was closed to make room
            for stream in idle:
                await stream.aclose()
            nursery.cancel_scope.cancel()


def config_file(tmp_path: Path, metrics: str) -> Path:
    (tmp_path / "app.secret").write_text("s\n")
    (tmp_path / "sim.secret").write_text("s\n")
    path = tmp_path / "gateway.toml"
    path.write_text(f"""
[server]
socket_path = "{tmp_path / "gw.sock"}"
[store]
path = "{tmp_path / "store"}"
[metrics]
{metrics}
[[accounts]]
name = "app"
secret_file = "{tmp_path / "app.secret"}"
[[carriers]]
name = "sim"
[[carriers.binds]]
name = "b"
host = "127.0.0.1"
port = 2775
system_id = "gw"
password_file = "{tmp_path / "sim.secret"}"
[[routes]]
prefix = ""
carriers = ["sim"]
""")
    return path


def test_the_metrics_section_is_checked_like_every_other(tmp_path: Path) -> None:
    cfg = load_config(config_file(tmp_path, 'enabled = true\nport = 28555'))
    assert cfg.metrics == MetricsSection(enabled=True, host="127.0.0.1", port=28555)
    assert load_config(config_file(tmp_path, "")).metrics == MetricsSection()
    path = config_file(tmp_path, 'enabled = "yes"\nport = 0\npath = "/m"')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert {(key, reason.split(" (")[0]) for _, key, reason in info.value.problems} == {
        ("metrics.enabled", "expected bool, got str 'yes'"),
        ("metrics.port", "must be between 1 and 65535, got 0"),
        ("metrics.path", "unknown key"),
    }


def test_a_taken_metrics_port_stops_the_start_naming_the_key(tmp_path: Path) -> None:
    path = config_file(tmp_path, "enabled = true\nport = 28500")
    with socket.socket() as holder:
        try:
            holder.bind(("127.0.0.1", 28500))
        except OSError:
            pytest.skip("28500 is held by someone else")  # the point stands: it is taken
        holder.listen()
        cfg = load_config(path)
        with pytest.raises(CannotStart) as info:
            prepare(cfg, str(path))
    assert info.value.problems == [f"{path}: metrics.port: 127.0.0.1:28500 is in use (another process listens there)"]
