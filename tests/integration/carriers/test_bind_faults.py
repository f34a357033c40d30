"""Binds under faults, over real sockets on 127.0.0.1 with trio's virtual clock: a throttling SMSC (order and
slow restart), an impossible command_length (generic_nack before close), refused credentials (their own
retry schedule, logged once), an SMSC that accepts TCP and hangs up (back-off resets), and what the engine
reads to fail over (transmitter_down_since, take_unsent while running)."""

from __future__ import annotations

import struct
from dataclasses import replace

import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from gateway.carriers import BindConfig, BindState, CarrierConfig, CarrierPool, OutcomeKind, SubmitJob, SubmitOutcome
from gateway.sim.config import IdFormat
from gateway.smpp.constants import CommandId, CommandStatus
from tests.integration.carriers.carrier_harness import (
    PASSWORD,
    SIM_CONFIG,
    ScriptedSmsc,
    bind_config,
    running_pool,
    running_sim,
    submit,
)

_HEADER = struct.Struct(">IIII")


async def _submit_concurrently(pool: CarrierPool, n: int) -> list[SubmitOutcome]:
    """Feed n jobs (context = index) while collecting the n outcomes: the channels stay bounded."""
    assert pool.results is not None
    results = pool.results
    outcomes: list[SubmitOutcome] = []

    async def feed() -> None:
        for i in range(n):
            await pool.jobs.send(SubmitJob(submit(i, receipt=False), i))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed)
        for _ in range(n):
            outcomes.append(await results.receive())
    return outcomes


def _displacement(outcomes: list[SubmitOutcome]) -> int:
    """How far any message reached the SMSC from its place in the order given: the simulator numbers the
    messages it accepts (decimal ids from 1), so the accepted ones sorted by id are its arrival order."""
    arrival: list[tuple[int, int]] = sorted(
        (int(o.message_id), o.context) for o in outcomes if o.kind is OutcomeKind.ACCEPTED
    )
    return max(abs(place - given) for place, (_, given) in enumerate(arrival))


async def _throttled_run(binds: int, window: int, n: int) -> tuple[list[SubmitOutcome], dict[str, int]]:
    config = replace(SIM_CONFIG, throttle_tps=500, id_format=IdFormat.DECIMAL, id_start=1)
    async with running_sim(config) as sim:
        assert sim.port is not None
        cfgs = tuple(
            bind_config(sim.port, name=f"b{i}", window=window, throttle_backoff_min_seconds=0.1) for i in range(binds)
        )
        pool = CarrierPool(CarrierConfig(name="sim", binds=cfgs))
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
            await pool.wait_bound()
            outcomes = await _submit_concurrently(pool, n)
            nursery.cancel_scope.cancel()
        return outcomes, sim.stats()


async def test_throttling_keeps_every_message_within_a_window_of_its_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Defect 6: throttled submits went after newer ones. Two binds share the jobs; the SMSC takes 500/s.
    with trio.fail_after(600):
        outcomes, stats = await _throttled_run(binds=2, window=20, n=2000)
    assert {o.kind for o in outcomes} == {OutcomeKind.ACCEPTED}
    assert sorted(o.context for o in outcomes) == list(range(2000))
    assert stats["throttled"] > 0
    assert _displacement(outcomes) <= 20


async def test_a_throttled_bind_restarts_slowly_instead_of_refilling_its_window(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # After each pause the window restarts small and grows per acceptance: with a window of 100 refilled at
    # once, nearly every submit was refused once (2,900 refusals for 3,000 messages); now a tenth.
    with trio.fail_after(600):
        outcomes, stats = await _throttled_run(binds=1, window=100, n=2000)
    assert {o.kind for o in outcomes} == {OutcomeKind.ACCEPTED}
    assert 0 < stats["throttled"] <= 2000 // 5
    assert _displacement(outcomes) <= 100


async def test_bad_command_length_gets_generic_nack_before_the_link_closes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Defect 11: a raw-socket SMSC binds us, then sends a header whose command_length (8) is impossible.
    received = bytearray()
    done = trio.Event()

    async def smsc(stream: trio.SocketStream) -> None:
        buf = b""
        while len(buf) < 16 or len(buf) < _HEADER.unpack_from(buf)[0]:
            buf += await stream.receive_some(4096)
        _, command_id, _, seq = _HEADER.unpack_from(buf)
        assert command_id == CommandId.BIND_TRANSCEIVER
        body = b"raw\x00"
        await stream.send_all(_HEADER.pack(16 + len(body), CommandId.BIND_TRANSCEIVER_RESP, 0, seq) + body)
        await stream.send_all(_HEADER.pack(8, CommandId.SUBMIT_SM, 0, 0x1234))
        while data := await stream.receive_some(4096):
            received.extend(data)
        done.set()

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            port = listeners[0].socket.getsockname()[1]
            nursery.start_soon(trio.serve_listeners, smsc, listeners)
            async with running_pool(port, enquire_link_interval_seconds=0) as pool:
                await done.wait()  # the bind closed the link after writing
                assert pool.status()[0].last_error == "link dead: command_length 8 outside 16..65536"
            nursery.cancel_scope.cancel()
    nack = _HEADER.pack(16, CommandId.GENERIC_NACK, CommandStatus.ESME_RINVCMDLEN, 0x1234)
    assert bytes(received) == nack


async def test_refused_credentials_are_logged_once_and_retried_on_their_own_schedule(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_TEST_FIXED_PW", "nope")
    with trio.fail_after(600), capture_logs() as logs:
        async with running_sim() as sim:
            assert sim.port is not None
            async with running_pool(
                sim.port, wait_bound=False, password_env="GATEWAY_TEST_FIXED_PW", bind_refused_retry_seconds=60
            ) as pool:
                await trio.sleep(150)  # attempts at 0, 60 +- 6, 120 +- 12; the next is after 160
                assert sim.stats()["binds_refused"] == 3
                (status,) = pool.status()
                assert status.state == BindState.REFUSED
                assert status.last_error == "bind refused with ESME_RINVPASWD"
                monkeypatch.setenv("GATEWAY_TEST_FIXED_PW", PASSWORD)  # the operator fixes it
                with trio.fail_after(80):
                    await pool.wait_bound()
    refused = [e for e in logs if e["event"] == "bind_refused"]
    assert [(e["log_level"], e["status"]) for e in refused] == [("error", "ESME_RINVPASWD")]
    assert not [e for e in logs if e["event"] in ("bind_failed", "bind_backing_off")]


class _HangsUpFirst(ScriptedSmsc):
    """Accepts TCP and hangs up at once on the first `hangups` connections (an SMSC still starting), then
    binds like ScriptedSmsc. `times` holds when each connection came."""

    def __init__(self, hangups: int) -> None:
        super().__init__()
        self.hangups = hangups
        self.times: list[float] = []

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.times.append(trio.current_time())
        if len(self.times) <= self.hangups:
            await stream.aclose()
            return
        await super()._handle(stream)


async def test_network_back_off_resets_once_a_tcp_connection_succeeds(autojump_clock: trio.testing.MockClock) -> None:
    # Each hang-up follows a working TCP connect, so each retry comes after reconnect_min at most; growing
    # the back-off per failure (up to reconnect_max, 60 s here) would take minutes over six hang-ups.
    smsc = _HangsUpFirst(hangups=6)
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(smsc.serve)
            start = trio.current_time()
            async with running_pool(port, reconnect_min_seconds=0.5, reconnect_max_seconds=60) as pool:
                bound_at = trio.current_time()
                assert pool.status()[0].reconnects == 6
            nursery.cancel_scope.cancel()
    gaps = [b - a for a, b in zip(smsc.times, smsc.times[1:], strict=False)]
    assert all(gap <= 0.5 + 0.01 for gap in gaps)
    assert bound_at - start <= 6 * 0.5 + 0.1


async def test_transmitter_down_since_and_take_unsent_while_the_pool_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    smsc = ScriptedSmsc()
    smsc_scope = trio.CancelScope()

    async def serve(*, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        with smsc_scope:
            await smsc.serve(task_status=task_status)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve)
            await trio.sleep(5)
            pool = CarrierPool(CarrierConfig(name="sim", binds=(bind_config(port, reconnect_min_seconds=2),)))
            async with trio.open_nursery() as pool_nursery:
                await pool_nursery.start(pool.run)
                started = trio.current_time()
                assert pool.transmitter_down_since() == started  # never bound yet: from the pool's start
                await pool.wait_bound()
                assert pool.transmitter_down_since() is None
                await trio.sleep(10)
                smsc_scope.cancel()  # the SMSC goes away
                lost = trio.current_time()
                await trio.sleep(1)
                down = pool.transmitter_down_since()
                assert down is not None
                assert lost <= down <= lost + 0.1
                # Nothing is bound, so nothing takes jobs: the engine takes them back to fail over.
                for i in range(3):
                    await pool.jobs.send(SubmitJob(submit(i), i))
                await trio.sleep(5)
                assert [job.context for job in pool.take_unsent()] == [0, 1, 2]
                assert pool.take_unsent() == []
                assert pool.transmitter_down_since() == down
                pool_nursery.cancel_scope.cancel()
            nursery.cancel_scope.cancel()


async def test_a_receiver_only_pool_has_no_transmitter(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(30):
        async with running_sim() as sim:
            assert sim.port is not None
            pool = CarrierPool(
                CarrierConfig(name="sim", binds=(replace(bind_config(sim.port), mode=BindConfig().mode.RECEIVER),))
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(pool.run)
                started = trio.current_time()
                await pool.wait_bound()
                assert pool.transmitter_down_since() == started
                nursery.cancel_scope.cancel()
