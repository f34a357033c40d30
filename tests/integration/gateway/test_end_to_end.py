"""The whole gateway over real sockets: upstream Unix socket -> engine -> LMDB -> SMPP bind -> simulator, and
receipts all the way back as events."""

from __future__ import annotations

import dataclasses
import gc
from collections import Counter
from pathlib import Path

import trio

from gateway.errors import ClientRefReused
from gateway.lifecycle import State
from gateway.sim.config import IdFormat as SimIdFormat
from gateway.sim.config import ReceiptOutcome, SimConfig
from gateway.store import Store, StoreConfig
from gateway.upstream import MessageClass, SubmitRequest, UpstreamClient
from gateway.upstream.errors import ClientRefConflict, NotCancellable

from .harness import SIM_PASSWORD, Harness, collect_final_events, running_gateway

TEXTS = (
    "Your code is 482913. It expires in 10 minutes.",  # GSM-7, one part
    "Sale! " + "Everything must go, up to 70% off {today} only. " * 5,  # GSM-7 with escapes, 2 parts
    "您的验证码是 482913，十分钟内有效。请勿泄露给他人。" * 3,  # noqa: RUF001 - UCS-2, 2 parts
    "Party tonight 🎉👨‍👩‍👧‍👦 bring friends 🇬🇧 " * 3,  # emoji, ZWJ sequences, flags: UCS-2, 2 parts
)


async def submit_all(client: UpstreamClient, total: int, *, per_request: int = 100, tag: str = "") -> list[str]:
    """`total` messages in requests of `per_request` recipients, several requests in flight at once."""
    ids: list[str] = []

    async def one(start: int) -> None:
        to = tuple(f"4477009{n:05d}" for n in range(start, min(start + per_request, total)))
        result = await client.submit(
            SubmitRequest(
                to=to,
                text=TEXTS[(start // per_request) % len(TEXTS)] + tag,
                message_class=MessageClass.NOTIFICATION,
                sender="ACME",
            )
        )
        assert [m.state for m in result.messages] == ["accepted"] * len(to)
        ids.extend(m.message_id for m in result.messages)

    async with trio.open_nursery() as nursery:
        limit = trio.CapacityLimiter(8)
        for start in range(0, total, per_request):

            async def bounded(start: int = start) -> None:
                async with limit:
                    await one(start)

            nursery.start_soon(bounded)
    return ids


def _sim(**kw: object) -> SimConfig:
    return SimConfig(credentials=(("gw", SIM_PASSWORD),), id_format=SimIdFormat.HEX, seed=7, **kw)  # type: ignore[arg-type]


async def _check_all_final(h: Harness, client: UpstreamClient, ids: list[str]) -> None:
    finals, seen = await collect_final_events(client, set(ids))
    assert set(finals) == set(ids)
    assert all(e.kind == "delivered" for e in finals.values())
    # Events stream in order with no gap: one account, so every sequence number is ours.
    seqs = [e.seq for e in seen]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    submitted = {e.message_id for e in seen if e.kind == "submitted"}
    assert submitted == set(ids)
    # The simulator saw every concatenated message complete and consistent.
    stats = h.sim.stats()
    assert stats.get("concat_incomplete", 0) == 0
    assert stats.get("concat_inconsistent", 0) == 0


async def test_ten_thousand_mixed_messages_all_reach_delivered(tmp_path: Path) -> None:
    with trio.fail_after(240):
        async with running_gateway(tmp_path, sim_config=_sim()) as h, h.client() as client:
            ids = await submit_all(client, 10_000)
            await _check_all_final(h, client, ids)
            engine = h.running.engine
            assert engine.counters["receipts_unparseable"] == 0
            assert h.running.engine.store.check() == []
            # 2 of the 4 texts are single-part for half... every multipart part reached the SMSC.
            assert h.sim.counters.submits_ok >= 10_000


async def test_receipts_before_their_submit_sm_resp_are_all_matched(tmp_path: Path) -> None:
    with trio.fail_after(120):
        # Each receipt goes out 50 ms before its submit_sm_resp: in another read, another store group.
        sim = _sim(receipt_before_response_rate=1.0, response_delay_seconds=0.05)
        async with running_gateway(tmp_path, sim_config=sim) as h:
            async with h.client() as client:
                ids = await submit_all(client, 2_000)
                await _check_all_final(h, client, ids)
            assert h.running.engine.counters["receipts_early"] > 0


async def test_failed_receipts_carry_their_reason(tmp_path: Path) -> None:
    sim = _sim(receipt_mix=(ReceiptOutcome(stat="UNDELIV", err=11),))
    with trio.fail_after(60):
        async with running_gateway(tmp_path, sim_config=sim) as h, h.client() as client:
            ids = await submit_all(client, 50, per_request=50)
            finals, _ = await collect_final_events(client, set(ids))
            assert {e.kind for e in finals.values()} == {"failed"}
            assert {e.reason for e in finals.values()} == {"undeliverable:011"}
            (status,) = await client.status(message_id=ids[0])
            assert (status.state, status.reason) == ("failed", "undeliverable:011")


async def test_same_client_ref_twice_returns_the_same_ids_and_sends_once(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with running_gateway(tmp_path, sim_config=_sim()) as h, h.client() as client:
            req = SubmitRequest(
                to=("447700900001", "447700900002"),
                text="Order 123 shipped",
                message_class=MessageClass.NOTIFICATION,
                sender="ACME",
                client_ref="order-123",
            )
            first = await client.submit(req)
            again = await client.submit(req)
            assert not first.duplicate
            assert again.duplicate
            assert [m.message_id for m in again.messages] == [m.message_id for m in first.messages]
            ids = [m.message_id for m in first.messages]
            await collect_final_events(client, set(ids))
            assert h.sim.counters.submits_ok == 2
            by_ref = await client.status(client_ref="order-123")
            assert sorted(s.message_id for s in by_ref) == sorted(ids)


async def test_scheduled_message_waits_for_its_time_and_can_be_cancelled(tmp_path: Path) -> None:
    # A virtual wall clock: the schedule is an hour ahead, and the test moves time instead of sleeping.
    now_ms = [1_800_000_000_000]
    with trio.fail_after(60):
        async with (
            running_gateway(tmp_path, sim_config=_sim(), wall_ms=lambda: now_ms[0]) as h,
            h.client() as client,
        ):
            later = now_ms[0] / 1000 + 3600
            keep = await client.submit(
                SubmitRequest(("447700900010",), "See you at 9", MessageClass.MARKETING, "ACME", schedule_at=later)
            )
            drop = await client.submit(
                SubmitRequest(("447700900011",), "Old offer", MessageClass.MARKETING, "ACME", schedule_at=later)
            )
            assert keep.messages[0].state == "scheduled"
            for _ in range(20):  # a few scheduler rounds: nothing may go out before its time
                h.running.engine.wake()
                await trio.sleep(0.01)
            assert h.sim.counters.submits == 0
            cancelled = await client.cancel(message_id=drop.messages[0].message_id)
            assert cancelled.cancelled == (drop.messages[0].message_id,)
            now_ms[0] += 3_600_000
            h.running.engine.wake()
            keep_id = keep.messages[0].message_id
            finals, _ = await collect_final_events(client, {keep_id})
            assert finals[keep_id].kind == "delivered"
            assert h.sim.counters.submits == 1
            try:
                await client.cancel(message_id=keep_id)
            except NotCancellable:
                pass
            else:
                raise AssertionError("a delivered message was cancelled")
            (dropped,) = await client.status(message_id=drop.messages[0].message_id)
            assert dropped.state == "cancelled"


async def test_subscriber_that_disconnects_resumes_from_its_cursor(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with running_gateway(tmp_path, sim_config=_sim()) as h:
            async with h.client() as client:
                ids = await submit_all(client, 200, per_request=50)
                sub = await client.subscribe(after=0, window=1000)
                got = []
                async for event in sub:
                    got.append(event)
                    if len(got) == 150:
                        await sub.ack(event.seq)
                        break
            # Away for a while: more happens meanwhile.
            async with h.client() as client:
                more = await submit_all(client, 100, per_request=50, tag=" (2)")
            already = {e.message_id for e in got if e.kind == "delivered"}
            async with h.client() as client:
                _, seen = await collect_final_events(client, set(ids + more) - already, after=None)
            assert seen[0].seq == got[-1].seq + 1  # resumed right after the acknowledged cursor
            assert not already & {e.message_id for e in seen if e.kind == "delivered"}  # nothing twice


async def test_subscriber_for_final_outcomes_gets_one_event_per_message_and_resumes(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with running_gateway(tmp_path, sim_config=_sim()) as h:
            async with h.client() as client:
                ids = await submit_all(client, 100, per_request=50)
                sub = await client.subscribe(after=0, kinds=("delivered", "failed"))
                first = [await sub.__anext__() for _ in range(60)]
                await sub.ack(first[-1].seq)
            async with h.client() as client:
                sub = await client.subscribe(kinds=("delivered", "failed"))  # from the acknowledged cursor
                rest = [await sub.__anext__() for _ in range(40)]
    events = first + rest
    # No "submitted" events, none twice, every message once, in log order across the reconnect.
    assert {e.kind for e in events} == {"delivered"}
    assert sorted(str(e.message_id) for e in events) == sorted(ids)
    assert [e.seq for e in events] == sorted(e.seq for e in events)


async def test_graceful_stop_queues_again_what_never_left_the_gateway(tmp_path: Path) -> None:
    # The carrier throttles hard: the bind holds a window of 100 and the other 200 dispatched submits wait
    # in the carrier pool's queue when the stop comes.
    with trio.fail_after(60):
        async with running_gateway(tmp_path, sim_config=_sim(throttle_tps=2.0)) as h:
            async with h.client() as client:
                to = tuple(f"4477009{n:05d}" for n in range(300))
                await client.submit(SubmitRequest(to, "Flash sale", MessageClass.MARKETING, "ACME"))
            store = h.running.engine.store
            for _ in range(500):
                live = [m.state for m in store.iter_messages()]
                # Every message dispatched ("submitting" in the store), and the carrier has started refusing:
                # the refusals may come a moment after the last dispatch.
                if State.ACCEPTED not in live and State.QUEUED not in live and h.sim.counters.throttled:
                    break
                await trio.sleep(0.01)
            assert h.sim.counters.throttled > 0
    reopened = Store.open(StoreConfig(path=str(tmp_path / "store"), sync=False))
    try:
        states = Counter(m.state for m in reopened.iter_messages())
    finally:
        reopened.close()
    # Marketing is at-most-once: anything left "submitting" would have been settled as unknown. What never
    # reached the carrier is queued again instead; what did is submitted or delivered.
    assert State.UNKNOWN not in states
    assert State.SUBMITTING not in states
    assert states[State.QUEUED] > 0
    assert sum(states.values()) == 300


async def test_refused_requests_leave_no_garbage_cycles_in_the_gateway(tmp_path: Path) -> None:
    # A soak's resident memory crept: each refused request (a client_ref reused for another text) left its
    # error, its traceback and the request's frames in a cycle that the tuned collector (gctune.py) freed
    # only every half hour. Answered, a refusal must go with its request, by reference counting alone.
    with trio.fail_after(60):
        async with running_gateway(tmp_path, sim_config=_sim()) as h, h.client() as client:
            request = SubmitRequest(to=("447700900001",), text="first", message_class=MessageClass.NOTIFICATION,
                                    sender="ACME", client_ref="ref-1")  # fmt: skip
            await client.submit(request)
            gc.collect()
            gc.disable()
            try:
                for _ in range(20):
                    try:
                        await client.submit(dataclasses.replace(request, text="another text"))
                    except ClientRefConflict:
                        pass
                    else:
                        raise AssertionError("a reused client_ref was accepted")
                held = [o for o in gc.get_objects() if isinstance(o, ClientRefReused)]
                assert len(held) <= 1  # the last one may still be in the writer loop's latest reply
            finally:
                gc.enable()
