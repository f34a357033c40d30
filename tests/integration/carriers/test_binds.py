"""Our binds against the simulator and a scripted SMSC, over real sockets on 127.0.0.1.

Timers (enquire_link, deadlines, back-off, throttle pauses) run on trio's virtual clock (autojump_clock).
"""

from __future__ import annotations

import ssl
from dataclasses import replace
from pathlib import Path

import trio
import trio.testing

from gateway.carriers import BindMode, BindState, OutcomeKind, SubmitJob
from gateway.sim import SimConfig, Simulator
from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandStatus, Tag
from tests.certs import self_signed
from tests.integration.carriers.carrier_harness import (
    SIM_CONFIG,
    ScriptedSmsc,
    running_pool,
    running_sim,
    submit,
    submit_all,
    take_inbound,
)


async def test_bind_submit_receipt_unbind(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(30):
        async with running_sim() as sim:
            assert sim.port is not None
            async with running_pool(sim.port) as pool:
                outcomes = await submit_all(pool, [submit(i) for i in range(3)])
                assert [o.kind for o in outcomes] == [OutcomeKind.ACCEPTED] * 3
                assert sorted(o.context for o in outcomes) == [0, 1, 2]
                ids = {o.message_id for o in outcomes}
                assert len(ids) == 3
                receipts = await take_inbound(pool, 3)
                assert all(r.is_receipt for r in receipts)
                assert {r.pdu.tlv(Tag.RECEIPTED_MESSAGE_ID) for r in receipts} == ids
                assert all(b"stat:DELIVRD" in r.message for r in receipts)
                pool.stop()
                await pool.wait_stopped()
                assert [s.state for s in pool.status()] == [BindState.STOPPED]
            assert sim.stats()["receipts_acked"] == 3
            assert sim.stats()["unbinds"] == 1


async def test_a_submit_after_a_long_idle_spell_gets_a_whole_response_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The sender waits for work for longer than the response timeout; the submit that ends the wait must
    # be timed from when it is sent, not from when the wait began (it would expire before its answer).
    with trio.fail_after(300):
        async with running_sim() as sim:
            assert sim.port is not None
            async with running_pool(sim.port, response_timeout_seconds=10) as pool:
                assert [o.kind for o in await submit_all(pool, [submit(1)])] == [OutcomeKind.ACCEPTED]
                await trio.sleep(100)
                assert [o.kind for o in await submit_all(pool, [submit(2)])] == [OutcomeKind.ACCEPTED]


async def test_wrong_password_is_refused_with_rinvpaswd(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(30):
        async with running_sim() as sim:
            assert sim.port is not None
            async with running_pool(sim.port, wait_bound=False, password_env="GATEWAY_TEST_WRONG_PW") as pool:
                import os

                os.environ["GATEWAY_TEST_WRONG_PW"] = "nope"
                await trio.sleep(3)
                (status,) = pool.status()
                assert status.state != BindState.BOUND
                assert status.last_error is not None
                assert "ESME_RINVPASWD" in status.last_error
            assert sim.stats()["binds_refused"] >= 1
            assert sim.stats()["binds"] == 0


async def test_unknown_system_id_is_refused_with_rinvsysid(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(30):
        async with running_sim() as sim:
            assert sim.port is not None
            async with running_pool(sim.port, wait_bound=False, system_id="stranger") as pool:
                await trio.sleep(1)
                (status,) = pool.status()
                assert status.last_error is not None
                assert "ESME_RINVSYSID" in status.last_error


async def test_enquire_link_keeps_an_idle_bind_alive(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(600):
        async with running_sim() as sim:
            assert sim.port is not None
            async with running_pool(sim.port, enquire_link_interval_seconds=5, response_timeout_seconds=3) as pool:
                await trio.sleep(300)
                (status,) = pool.status()
                assert status.state == BindState.BOUND
                assert status.reconnects == 0
                assert pool.binds[0].is_bound


async def test_silent_peer_is_detected_and_the_bind_reconnects(autojump_clock: trio.testing.MockClock) -> None:
    smsc = ScriptedSmsc(silent=True)
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(smsc.serve)
            async with running_pool(port, enquire_link_interval_seconds=5, response_timeout_seconds=3) as pool:
                await trio.sleep(9)  # bound at ~0, probe at 5, dead at 8
                (status,) = pool.status()
                assert status.last_error is not None
                assert "link dead" in status.last_error
                await trio.sleep(5)
                assert smsc.connections >= 2  # it came back
            nursery.cancel_scope.cancel()


async def test_reconnect_after_the_simulator_drops_the_link(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(60):
        async with running_sim() as sim:
            assert sim.port is not None
            async with running_pool(sim.port) as pool:
                sim.drop_all()
                await trio.sleep(0.1)
                await pool.wait_bound()
                await trio.sleep(10)
                (status,) = pool.status()
                assert status.state == BindState.BOUND
                assert status.reconnects == 1
                (outcome,) = await submit_all(pool, [submit(1)])
                assert outcome.kind is OutcomeKind.ACCEPTED
            assert sim.stats()["binds"] == 2


async def test_throttling_pauses_and_recovers_in_order(autojump_clock: trio.testing.MockClock) -> None:
    # window 1: a refused PDU must be retried before anything after it, so outcomes arrive in order.
    config = replace(SIM_CONFIG, throttle_tps=20)
    with trio.fail_after(600):
        async with running_sim(config) as sim:
            assert sim.port is not None
            async with running_pool(sim.port, window=1, throttle_backoff_min_seconds=0.2) as pool:
                outcomes = await submit_all(pool, [submit(i, receipt=False) for i in range(100)])
                assert [o.context for o in outcomes] == list(range(100))
                assert {o.kind for o in outcomes} == {OutcomeKind.ACCEPTED}
                assert pool.binds[0].throttles > 0
            stats = sim.stats()
            assert stats["throttled"] > 0
            assert stats["submits_ok"] == 100


async def test_throttling_with_a_wide_window_loses_nothing(autojump_clock: trio.testing.MockClock) -> None:
    config = replace(SIM_CONFIG, throttle_tps=30)
    with trio.fail_after(600):
        async with running_sim(config) as sim:
            assert sim.port is not None
            async with running_pool(sim.port, window=20, throttle_backoff_min_seconds=0.1) as pool:
                outcomes = await submit_all(pool, [submit(i, receipt=False) for i in range(300)])
                assert sorted(o.context for o in outcomes) == list(range(300))
                assert {o.kind for o in outcomes} == {OutcomeKind.ACCEPTED}
                assert len({o.message_id for o in outcomes}) == 300
            stats = sim.stats()
            assert stats["throttled"] > 0
            assert stats["submits_ok"] == 300


async def test_response_deadline_hands_submits_back_as_unknown(autojump_clock: trio.testing.MockClock) -> None:
    smsc = ScriptedSmsc(answer_submits=False)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(smsc.serve)
            async with running_pool(port, response_timeout_seconds=5, enquire_link_interval_seconds=0) as pool:
                start = trio.current_time()
                outcomes = await submit_all(pool, [submit(i) for i in range(3)])
                assert trio.current_time() - start >= 5
                assert {o.kind for o in outcomes} == {OutcomeKind.UNKNOWN}
                assert all(o.sent and o.sequence_number is not None for o in outcomes)
                assert all(o.reason == "response timeout" for o in outcomes)
                # Nothing was resent: the SMSC saw each submit once.
                assert sum(isinstance(p, P.SubmitSm) for p in smsc.received) == 3
            nursery.cancel_scope.cancel()


async def test_dropped_link_hands_written_submits_back_as_unknown(autojump_clock: trio.testing.MockClock) -> None:
    # The simulator drops the link on its 3rd PDU: the bind is 1, the first submit 2 (answered).
    config = replace(SIM_CONFIG, drop_every_pdus=3)
    with trio.fail_after(60):
        async with running_sim(config) as sim:
            assert sim.port is not None
            async with running_pool(sim.port, window=5) as pool:
                (first,) = await submit_all(pool, [submit(0, receipt=False)])
                assert first.kind is OutcomeKind.ACCEPTED
                outcomes = await submit_all(pool, [submit(i, receipt=False) for i in range(1, 5)])
                assert sorted(o.context for o in outcomes) == [0, 1, 2, 3]
                assert {o.kind for o in outcomes} == {OutcomeKind.UNKNOWN}
                assert all(o.sent for o in outcomes)
            assert sim.stats()["drops"] >= 1


async def test_graceful_stop_waits_for_outstanding_responses(autojump_clock: trio.testing.MockClock) -> None:
    smsc = ScriptedSmsc(submit_delay=2.0)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(smsc.serve)
            async with running_pool(port, stop_grace_seconds=5) as pool:
                assert pool.results is not None
                for i in range(3):
                    await pool.jobs.send(SubmitJob(submit(i), i))
                await trio.sleep(0.5)
                pool.stop()
                outcomes = [await pool.results.receive() for _ in range(3)]
                assert {o.kind for o in outcomes} == {OutcomeKind.ACCEPTED}
                await pool.wait_stopped()
                # The unbind came after the answers, and the pool took no job after stop().
                await pool.jobs.send(SubmitJob(submit(9), 9))
                assert [job.context for job in pool.take_unsent()] == [9]
                assert isinstance(smsc.received[-1], P.Unbind)
                assert sum(isinstance(p, P.SubmitSm) for p in smsc.received) == 3
            nursery.cancel_scope.cancel()


async def test_unacknowledged_inbound_is_bounded(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(60):
        async with running_sim() as sim:
            assert sim.port is not None
            async with running_pool(sim.port, max_unacked_inbound=5) as pool:
                for i in range(20):
                    sim.inject_mo(f"hello {i}")
                await trio.sleep(5)
                assert pool.status()[0].unacked_inbound == 5
                assert sim.stats()["mo_acked"] == 0
                items = await take_inbound(pool, 20)
                assert [item.message for item in items] == [b"hello %d" % i for i in range(20)]
                await trio.sleep(1)
                assert sim.stats()["mo_acked"] == 20


async def test_tx_rx_pair_gets_receipts_on_the_receiver(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(30):
        async with running_sim() as sim:
            assert sim.port is not None
            async with running_pool(sim.port, mode=BindMode.TX_RX_PAIR) as pool:
                assert [b.name for b in pool.binds] == ["b1-tx", "b1-rx"]
                (outcome,) = await submit_all(pool, [submit(1)])
                assert outcome.bind == "b1-tx"
                (receipt,) = await take_inbound(pool, 1)
                assert receipt.bind == "b1-rx"
                assert receipt.pdu.tlv(Tag.RECEIPTED_MESSAGE_ID) == outcome.message_id


async def test_rejected_submit_carries_the_smsc_status(autojump_clock: trio.testing.MockClock) -> None:
    config = SimConfig(credentials=SIM_CONFIG.credentials, error_rate=1.0, error_status=CommandStatus.ESME_RINVDSTADR)
    with trio.fail_after(30):
        async with running_sim(config) as sim:
            assert sim.port is not None
            async with running_pool(sim.port) as pool:
                outcomes = await submit_all(pool, [submit(i) for i in range(4)])
                assert {(o.kind, o.status) for o in outcomes} == {(OutcomeKind.REJECTED, CommandStatus.ESME_RINVDSTADR)}
            assert sim.stats()["errors_injected"] == 4
            assert sim.stats()["receipts_sent"] == 0


async def test_throttle_refused_jobs_come_back_not_sent_on_stop(autojump_clock: trio.testing.MockClock) -> None:
    # One submit a second at the SMSC and a long pause here: four refused jobs wait for their retry.
    config = replace(SIM_CONFIG, throttle_tps=1)
    with trio.fail_after(60):
        async with running_sim(config) as sim:
            assert sim.port is not None
            async with running_pool(sim.port, window=5, throttle_backoff_min_seconds=30) as pool:
                assert pool.results is not None
                for i in range(5):
                    await pool.jobs.send(SubmitJob(submit(i, receipt=False), i))
                first = await pool.results.receive()
                assert (first.kind, first.context) == (OutcomeKind.ACCEPTED, 0)
                await trio.sleep(1)
                assert pool.status()[0].throttled
                pool.stop()
                rest = [await pool.results.receive() for _ in range(4)]
                assert [(o.kind, o.context, o.sent) for o in rest] == [
                    (OutcomeKind.NOT_SENT, i, False) for i in range(1, 5)
                ]
            assert sim.stats()["submits_ok"] == 1


async def test_tps_limit_spaces_submits(autojump_clock: trio.testing.MockClock) -> None:
    config = replace(SIM_CONFIG, throttle_tps=12)  # the SMSC would refuse anything faster than 12/s
    with trio.fail_after(60):
        async with running_sim(config) as sim:
            assert sim.port is not None
            async with running_pool(sim.port, window=50, tps=10) as pool:
                start = trio.current_time()
                outcomes = await submit_all(pool, [submit(i, receipt=False) for i in range(51)])
                elapsed = trio.current_time() - start
                assert {o.kind for o in outcomes} == {OutcomeKind.ACCEPTED}
                assert 4.9 <= elapsed < 5.5  # one token at start, then 10 a second
            assert sim.stats()["throttled"] == 0


async def test_unbind_from_the_smsc_is_answered_and_the_bind_returns(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(60):
        async with running_sim() as sim:
            assert sim.port is not None
            async with running_pool(sim.port) as pool:
                sim.unbind_all()
                await trio.sleep(10)
                (status,) = pool.status()
                assert status.state == BindState.BOUND
                assert status.reconnects == 1
                assert status.last_error == "unbound by the SMSC"
                (outcome,) = await submit_all(pool, [submit(1, receipt=False)])
                assert outcome.kind is OutcomeKind.ACCEPTED
            stats = sim.stats()
            assert (stats["unbinds"], stats["binds"]) == (1, 2)


async def test_unacked_receipts_are_redelivered_after_a_reconnect(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(60):
        async with running_sim() as sim:
            assert sim.port is not None
            async with running_pool(sim.port) as pool:
                outcomes = await submit_all(pool, [submit(i) for i in range(3)])
                first = await take_inbound(pool, 3, ack=False)  # stored nowhere: never acked
                sim.drop_all()
                again = await take_inbound(pool, 3)
                ids = {o.message_id for o in outcomes}
                assert {r.pdu.tlv(Tag.RECEIPTED_MESSAGE_ID) for r in first} == ids
                assert {r.pdu.tlv(Tag.RECEIPTED_MESSAGE_ID) for r in again} == ids
                assert pool.status()[0].reconnects == 1
                await trio.sleep(1)
            stats = sim.stats()
            assert (stats["receipts_sent"], stats["receipts_acked"]) == (6, 3)


async def test_tls_bind_verifies_the_smsc_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    sim = Simulator(SIM_CONFIG)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(sim.serve, "127.0.0.1", 0, server_ctx)
            async with running_pool(port, tls=True, tls_ca_file=str(cert)) as pool:
                (outcome,) = await submit_all(pool, [submit(1)])
                assert outcome.kind is OutcomeKind.ACCEPTED
                (receipt,) = await take_inbound(pool, 1)
                assert receipt.pdu.tlv(Tag.RECEIPTED_MESSAGE_ID) == outcome.message_id
            # Without the CA the handshake fails and the bind never comes up.
            async with running_pool(port, tls=True, wait_bound=False) as untrusting:
                await trio.sleep(0.5)
                (status,) = untrusting.status()
                assert status.state != BindState.BOUND
                assert status.last_error is not None
                assert "CERTIFICATE_VERIFY_FAILED" in status.last_error
            nursery.cancel_scope.cancel()
    assert sim.stats()["binds"] == 1
