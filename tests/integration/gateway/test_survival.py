"""The gateway keeps going and every message ends, with two carriers on one route (issue 11): failover that
follows the carrier's error, no half messages, the payload split, accept checks against the routed carrier,
validity and receipt deadlines whatever the carriers do, duplicates shown, a poison message failed alone."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from gateway.app import CarrierSection, Gateway, GatewayConfig, Running, ServerSection
from gateway.carriers.config import BindConfig, BindMode
from gateway.engine import AccountSettings, EncodingSettings, EngineSettings, RouteSettings
from gateway.routing.router import Connection, Router, RouteRule, Routing
from gateway.segmenting import Encoding, SplitMethod
from gateway.sim.concat import part_info
from gateway.sim.config import IdFormat as SimIdFormat
from gateway.sim.config import SimConfig
from gateway.sim.server import Simulator
from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandStatus
from gateway.smpp.msgid import IdBase, IdFormat
from gateway.store import StoreConfig
from gateway.upstream import MessageClass, SubmitRequest, UpstreamClient, open_unix_client
from gateway.upstream.schema import Event

from .harness import SECRET, SIM_PASSWORD, TEST_PREFIXES, collect_final_events, running_gateway

LIMIT = 40
LONG = "Sale! Everything must go, up to 70% off today only, in every store and online. " * 3  # 3 GSM-7 parts


def sim_config(**kw: Any) -> SimConfig:
    return SimConfig(credentials=(("gw", SIM_PASSWORD),), id_format=SimIdFormat.HEX, seed=7, **kw)


def carrier(name: str, port: int, tmp: Path, **kw: Any) -> CarrierSection:
    bind = BindConfig(
        name=f"{name}-trx", host="127.0.0.1", port=port, system_id="gw", password_file=str(tmp / "sim.secret"),
        mode=BindMode.TRANSCEIVER, window=50, response_timeout_seconds=10.0,
        reconnect_min_seconds=0.2, reconnect_max_seconds=0.5,
    )  # fmt: skip
    hex_ids = IdFormat(base=IdBase.HEX, fold_case=True)
    return CarrierSection(name=name, binds=(bind,), response_ids=hex_ids, receipt_ids=hex_ids, **kw)


@dataclasses.dataclass
class Two:
    running: Running
    sims: dict[str, Simulator]
    tmp: Path
    config: GatewayConfig

    @asynccontextmanager
    async def client(self) -> AsyncIterator[UpstreamClient]:
        async with open_unix_client(self.running.socket_path, account="acme", secret=SECRET) as client:
            yield client


@asynccontextmanager
async def two_carriers(
    tmp: Path,
    sims: dict[str, SimConfig],
    *,
    carriers: Callable[[dict[str, int]], Sequence[CarrierSection]] | None = None,
    engine: EngineSettings | None = None,
    routes: Sequence[RouteSettings] | None = None,
    **config: Any,
) -> AsyncIterator[Two]:
    """One route ("" -> a, b) over two simulators; `carriers` may replace the carrier sections, `routes` the
    route, `config` sets more of GatewayConfig (networks, word_lists)."""
    (tmp / "acme.secret").write_text(SECRET)
    (tmp / "sim.secret").write_text(SIM_PASSWORD)
    simulators = {name: Simulator(cfg) for name, cfg in sims.items()}
    async with trio.open_nursery() as nursery:
        ports = {name: await nursery.start(sim.serve, "127.0.0.1", 0) for name, sim in simulators.items()}
        sections = tuple(carriers(ports)) if carriers else tuple(carrier(n, p, tmp) for n, p in ports.items())
        cfg = GatewayConfig(
            store=StoreConfig(path=str(tmp / "store"), sync=False, map_size_bytes=1 << 28),
            server=ServerSection(socket_path=str(tmp / "gw.sock"), log_level="warning", shutdown_grace_seconds=2.0),
            engine=engine
            or EngineSettings(
                default_region="GB", test_prefixes=TEST_PREFIXES, retry_backoff_min_seconds=0.05,
                scheduler_poll_seconds=0.1,
            ),
            accounts=(AccountSettings("acme", secret_file=str(tmp / "acme.secret")),),
            carriers=sections,
            routes=tuple(routes) if routes else (RouteSettings("", tuple(c.name for c in sections)),),
            **config,
        )
        gateway = Gateway(cfg)
        running: Running = await nursery.start(gateway.run)
        for name, pool in running.pools.items():
            if name in simulators:
                await pool.wait_bound()
        try:
            yield Two(running, simulators, tmp, cfg)
        finally:
            gateway.shutdown()
            with trio.move_on_after(10):
                await gateway.stopped.wait()
            nursery.cancel_scope.cancel()


async def send(client: UpstreamClient, numbers: Sequence[str], text: str = "Your code is 482913", **kw: Any) -> (
    list[str]
):
    result = await client.submit(
        SubmitRequest(to=tuple(numbers), text=text, message_class=MessageClass.NOTIFICATION, sender="ACME", **kw)
    )
    return [m.message_id for m in result.messages]


async def poll_until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    with trio.fail_after(seconds):
        for _ in range(100_000):
            if condition():
                return
            await trio.sleep(0.01)


def numbers(n: int, start: int = 0) -> list[str]:
    return [f"4477009{i:05d}" for i in range(start, start + n)]


async def finals(client: UpstreamClient, ids: list[str]) -> dict[str, Event]:
    found, _ = await collect_final_events(client, set(ids))
    return found


async def test_carrier_that_answers_rsyserr_to_everything_fails_over_to_the_next(tmp_path: Path) -> None:
    sims = {
        "a": sim_config(error_rate=1.0, error_status=int(CommandStatus.ESME_RSYSERR)),
        "b": sim_config(),
    }
    with trio.fail_after(LIMIT):
        async with two_carriers(tmp_path, sims) as two, two.client() as client:
            ids = await send(client, numbers(200))
            done = await finals(client, ids)
            assert {e.kind for e in done.values()} == {"delivered"}
            assert {e.carrier for e in done.values()} == {"b"}
            assert two.sims["b"].stats()["submits_ok"] == 200
            (status,) = await client.status(message_id=ids[0])
            assert status.trail == (("a", "carrier_rejected:ESME_RSYSERR"),)


async def test_permanent_error_stays_permanent_and_does_not_fail_over(tmp_path: Path) -> None:
    sims = {"a": sim_config(error_rate=1.0, error_status=int(CommandStatus.ESME_RINVDSTADR)), "b": sim_config()}
    with trio.fail_after(LIMIT):
        async with two_carriers(tmp_path, sims) as two, two.client() as client:
            ids = await send(client, numbers(20))
            done = await finals(client, ids)
            assert {(e.kind, e.reason) for e in done.values()} == {("failed", "carrier_rejected:ESME_RINVDSTADR")}
            assert two.sims["b"].stats()["submits"] == 0


async def test_a_part_refused_for_good_stops_the_parts_after_it(tmp_path: Path) -> None:
    # One submit in three refused with a permanent error: no part may leave after an earlier part of its
    # message was refused (190 of 2,000 two-part messages reached handsets as half a text before).
    sims = {"a": sim_config(error_rate=0.3, error_status=int(CommandStatus.ESME_RINVDSTADR))}
    seen: list[tuple[str, int, bool]] = []  # (destination, part, refused)

    with trio.fail_after(LIMIT):
        async with two_carriers(tmp_path, sims) as two, two.client() as client:
            sim = two.sims["a"]
            real = sim._on_submit

            def watch(conn: Any, pdu: P.SubmitSm) -> None:
                before = sim.counters.errors_injected
                real(conn, pdu)
                info = part_info(pdu)
                seen.append((pdu.destination_addr, info.seq if info else 1, sim.counters.errors_injected > before))

            sim._on_submit = watch  # type: ignore[method-assign]
            ids = await send(client, numbers(300), LONG)
            done = await finals(client, ids)
    refused_at: dict[str, int] = {}
    for dest, part, refused in seen:
        assert dest not in refused_at, f"part {part} to {dest} left after part {refused_at.get(dest)} was refused"
        if refused:
            refused_at[dest] = part
    assert refused_at  # the test did refuse parts
    failed = {e.to for e in done.values() if e.kind == "failed"}
    assert failed == set(refused_at)


async def test_payload_carrier_sends_a_long_text_in_one_pdu(tmp_path: Path) -> None:
    def payload(ports: dict[str, int]) -> list[CarrierSection]:
        return [carrier("a", ports["a"], tmp_path, encoding=EncodingSettings(split=SplitMethod.PAYLOAD))]

    with trio.fail_after(LIMIT):
        async with two_carriers(tmp_path, {"a": sim_config()}, carriers=payload) as two, two.client() as client:
            ids = await send(client, numbers(5), LONG)
            done = await finals(client, ids)
            assert {e.kind for e in done.values()} == {"delivered"}
            assert two.sims["a"].stats()["submits_ok"] == 5  # one PDU each, the text in message_payload
            (status,) = await client.status(message_id=ids[0])
            assert status.segments == 1


async def test_accept_checks_the_text_against_the_carrier_the_number_routes_to(tmp_path: Path) -> None:
    # "a" (first configured) takes GSM-7 only, one part; "44" numbers route to "b", which takes UCS-2.
    def configured(ports: dict[str, int]) -> list[CarrierSection]:
        narrow = EncodingSettings(encodings=(Encoding.GSM7,), max_parts=1)
        return [carrier("a", ports["a"], tmp_path, encoding=narrow), carrier("b", ports["b"], tmp_path)]

    with trio.fail_after(LIMIT):
        async with two_carriers(tmp_path, {"a": sim_config(), "b": sim_config()}, carriers=configured) as two:
            engine = two.running.engine
            engine.set_routing(_routes(engine.routing, {"44": ("b",), "": ("a",)}))
            async with two.client() as client:
                ids = await send(client, ["447700900001"], "您的验证码是 482913")
                done = await finals(client, ids)
                assert [(e.kind, e.carrier) for e in done.values()] == [("delivered", "b")]
                # The same text to a number only "a" takes: refused for that recipient, with a reason.
                result = await client.submit(
                    SubmitRequest(
                        to=("447700900002", "33612345678"), text="您的验证码是 482913",
                        message_class=MessageClass.NOTIFICATION, sender="ACME",
                    )
                )  # fmt: skip
                assert [(m.state, m.reason) for m in result.messages] == [
                    ("accepted", None), ("rejected", "not_encodable"),
                ]  # fmt: skip


def _routes(routing: Routing, table: dict[str, tuple[str, ...]]) -> Routing:
    """`routing` with prefix routes instead of its own: the longest prefix first (the table takes the first
    rule that matches)."""
    rules = [
        RouteRule(prefix or "default", tuple(Connection(c, i + 1) for i, c in enumerate(carriers)),
                  prefixes=(prefix,) if prefix else ())
        for prefix, carriers in sorted(table.items(), key=lambda item: -len(item[0]))
    ]  # fmt: skip
    router = Router(rules, routing.router.carriers, networks=routing.router.networks)
    return dataclasses.replace(routing, router=router)


async def test_message_whose_carriers_are_all_down_still_expires_at_its_validity(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with two_carriers(tmp_path, {"a": sim_config()}) as two, two.client() as client:
            two.sims["a"].config = dataclasses.replace(two.sims["a"].config, credentials=())  # no rebind
            two.sims["a"].drop_all()
            await poll_until(lambda: not two.running.pools["a"].binds[0].is_bound)
            ids = await send(client, ["447700900001"], validity_seconds=1)
            done = await finals(client, ids)
            assert [(e.kind, e.reason) for e in done.values()] == [("failed", "expired")]
            (status,) = await client.status(message_id=ids[0])
            assert status.state == "expired"


async def test_submitted_message_without_a_receipt_ends_no_receipt(tmp_path: Path) -> None:
    def short_timeout(ports: dict[str, int]) -> list[CarrierSection]:
        return [carrier("a", ports["a"], tmp_path, receipt_timeout_seconds=1.0)]

    sims = {"a": sim_config(receipt_delay_seconds=3600.0)}  # the receipt never comes in time
    with trio.fail_after(LIMIT):
        async with two_carriers(tmp_path, sims, carriers=short_timeout) as two, two.client() as client:
            ids = await send(client, ["447700900001"])
            done = await finals(client, ids)
            assert [(e.kind, e.reason) for e in done.values()] == [("failed", "no_receipt")]


async def test_carrier_down_hands_its_queued_messages_to_the_next_carrier(tmp_path: Path) -> None:
    def quick(ports: dict[str, int]) -> list[CarrierSection]:
        return [carrier("a", ports["a"], tmp_path, handback_seconds=0.5), carrier("b", ports["b"], tmp_path)]

    sims = {"a": sim_config(response_delay_seconds=30.0), "b": sim_config()}
    with trio.fail_after(LIMIT):
        async with two_carriers(tmp_path, sims, carriers=quick) as two, two.client() as client:
            ids = await send(client, numbers(150))  # 50 in a's window, the rest queued for it
            await trio.sleep(0.3)
            two.sims["a"].config = dataclasses.replace(two.sims["a"].config, credentials=())
            two.sims["a"].drop_all()
            done = await finals(client, ids)
            by_carrier = {e.carrier for e in done.values() if e.kind == "delivered"}
            assert "b" in by_carrier
            # Nothing waits for "a": what it may have had ended one way or another; the rest went to "b".
            assert len(done) == 150


@pytest.mark.parametrize("poison", ["split"])
async def test_a_message_that_hits_a_bug_fails_alone_and_the_gateway_keeps_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, poison: str
) -> None:
    from gateway.engine import dispatch

    real = dispatch.rereference  # type: ignore[attr-defined]

    def buggy(parts: Any, ref: int) -> Any:
        if any("poison" in p.text for p in parts):
            raise IndexError("tuple index out of range")
        return real(parts, ref)

    monkeypatch.setattr(dispatch, "rereference", buggy)
    with trio.fail_after(LIMIT):
        async with two_carriers(tmp_path, {"a": sim_config()}) as two, two.client() as client:
            bad = await send(client, ["447700900001"], "poison " + LONG)
            good = await send(client, numbers(10, 100), LONG)
            done = await finals(client, bad + good)
            assert (done[bad[0]].kind, done[bad[0]].reason) == ("failed", "internal_error")
            assert {done[i].kind for i in good} == {"delivered"}
            assert two.running.engine.counters["internal_errors"] == 1


async def test_a_message_resent_after_a_lost_link_says_possible_duplicate(tmp_path: Path) -> None:
    sims = {"a": sim_config(response_delay_seconds=0.5)}
    with trio.fail_after(LIMIT):
        async with two_carriers(tmp_path, sims) as two, two.client() as client:
            ids = await send(client, ["447700900001"])  # notification: at-least-once
            await poll_until(lambda: two.sims["a"].counters.submits > 0)
            two.sims["a"].drop_all()  # written, never answered: the carrier may have it
            done = await finals(client, ids)
            assert (done[ids[0]].kind, done[ids[0]].possible_duplicate) == ("delivered", True)
            (status,) = await client.status(message_id=ids[0])
            assert status.possible_duplicate
            assert two.sims["a"].counters.submits == 2


async def test_an_ordinary_message_is_not_flagged(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with two_carriers(tmp_path, {"a": sim_config()}) as two, two.client() as client:
            ids = await send(client, ["447700900001"])
            done = await finals(client, ids)
            assert done[ids[0]].possible_duplicate is False
            (status,) = await client.status(message_id=ids[0])
            assert not status.possible_duplicate


async def test_a_message_that_lands_behind_the_schedulers_cursor_still_goes_under_steady_traffic(
    tmp_path: Path,
) -> None:
    # A soak found messages accepted and left for 5-13 minutes: a submit's due time is taken when its write
    # goes to the store, and a scheduled message that fell due while that write committed moved the
    # scheduler's cursor past it. Only a round without any wake-up started over, and every submit wakes the
    # scheduler. Here the store's clock stands a few milliseconds back for one submit, as that commit lag.
    t0 = 1_900_000_000_000
    clock = [t0]
    with trio.fail_after(LIMIT):
        async with running_gateway(tmp_path, wall_ms=lambda: clock[0]) as gw, gw.client() as client:
            await send(client, ["447700900001"], schedule_at=(t0 + 10) / 1000)
            clock[0] = t0 + 20  # the scheduled one falls due and goes: the cursor is past t0 + 10
            await poll_until(lambda: gw.sim.stats()["submits_ok"] == 1)
            clock[0] = t0 + 5
            (late,) = await send(client, ["447700900002"])  # due at t0 + 5: behind the cursor
            clock[0] = t0 + 30
            state = "accepted"
            for i in range(3000):  # steady traffic: every submit wakes the scheduler before its poll period
                await send(client, [f"4477{i:08d}"])
                if i % 10 == 0:
                    (status,) = await client.status(message_id=late)
                    state = status.state
                    if state != "accepted":
                        break
            assert state in ("queued", "submitted", "delivered")  # taken by the scheduler; "queued" is in flight
