"""The cluster shell (gateway/cluster/shared.py) against a real Valkey, without a whole gateway: each node is a
`Shared` over its own LMDB store and group-commit writer, as the engine runs it. The accept check counts a cap
of one once across nodes and refuses what the shared lists hold; while Valkey is killed, held classes wait and
the others go, and what waited (list changes, receipt map entries) is written when it returns; receipts one
node receives for another's parts are handed over and matched in the owner's store."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import coredis
import msgpack
import pytest
import trio
from coredis.retry import NoRetryPolicy
from structlog.testing import capture_logs

from gateway.carriers.bucket import AccountBudget
from gateway.cluster import core
from gateway.cluster.core import ClusterConfig
from gateway.cluster.shared import (
    HANDOVER_CURSOR,
    LISTS_CURSOR,
    ORPHANS_CURSOR,
    PUBLISHED_UNTIL,
    UNPUBLISHED_FROM,
    Shared,
)
from gateway.errors import GatewayError
from gateway.lifecycle import Ev, Event, State
from gateway.store import (
    Advance,
    CapCheck,
    Mo,
    Op,
    Prepare,
    Receipt,
    ReceiptResult,
    Recipient,
    SetBlacklist,
    SetOptOut,
    Store,
    StoreConfig,
    Submit,
    SubmitResult,
    Writer,
)
from gateway.upstream.errors import Overloaded
from tests.valkey import ValkeyServer

CARRIER = "carA"


def _wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Node:
    shared: Shared
    store: Store
    writer: Writer

    def stats(self) -> Any:
        return self.shared.statistics()


def _open_store(tmp: Path, name: str) -> Store:
    return Store.open(StoreConfig(path=str(tmp / name / "db"), sync=False))


@asynccontextmanager
async def running_node(
    tmp: Path,
    valkey: ValkeyServer,
    name: str,
    *,
    budgets: Callable[[], dict[str, AccountBudget]] = dict,
    **cluster: Any,
) -> AsyncIterator[Node]:
    """One node's shell over its own store (opened again when this name ran before), started."""
    store = _open_store(tmp, name)
    writer = Writer(store)
    cfg = ClusterConfig(node=name, valkey_port=valkey.port, timeout_seconds=cluster.pop("timeout_seconds", 1.0),
                        retry_seconds=cluster.pop("retry_seconds", 0.1), **cluster)  # fmt: skip
    shared = Shared(cfg, store=store, budgets=budgets, receipt_seconds={CARRIER: 60.0}, wall_ms=_wall_ms)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            with trio.fail_after(5):
                await nursery.start(shared.run, writer.apply)
            try:
                yield Node(shared, store, writer)
            finally:
                nursery.cancel_scope.cancel()
    finally:
        store.close()


@asynccontextmanager
async def valkey_client(valkey: ValkeyServer) -> AsyncIterator[coredis.Redis[bytes]]:
    client: coredis.Redis[bytes] = coredis.Redis(
        host="127.0.0.1", port=valkey.port, decode_responses=False, retry_policy=NoRetryPolicy(),
        verify_version=False,
    )  # fmt: skip
    async with client:
        yield client


async def until(condition: Callable[[], bool], poll: float = 0.01) -> None:
    """Until `condition()` holds (the caller's trio.fail_after bounds it)."""
    while not condition():  # noqa: ASYNC110 - state of the shell's tasks and of Valkey: no event to wait on
        await trio.sleep(poll)


def submit(*numbers: str, cls: str = "marketing", optout: bool = True, caps: tuple[CapCheck, ...] = ()) -> Submit:
    return Submit(
        account="acme", message_class=cls, sender="ACME", text="hi", recipients=tuple(Recipient(n) for n in numbers),
        check_optout=optout, caps=caps,
    )  # fmt: skip


async def sent_message(node: Node, number: str, carrier_id: str) -> int:
    """A message in `node`'s store, sent on CARRIER and answered with `carrier_id`: it waits for its receipt."""
    msg_id = await answered(node, number, carrier_id)
    msg = node.store.get(msg_id)
    assert msg is not None
    assert msg.state is State.SUBMITTED
    return msg_id


async def sent_and_mapped(node: Node, numbers: str, carrier_ids: str, n: int) -> list[int]:
    """`n` messages sent from `node` (to `numbers` + 00.., answered `carrier_ids` + 0..) with their parts in the
    receipt map: their ids in `node`'s store."""
    before = node.stats().map_written
    ids = [await sent_message(node, f"{numbers}{i:02d}", f"{carrier_ids}{i}") for i in range(n)]
    for i in range(n):
        node.shared.mapped(CARRIER, f"{carrier_ids}{i}")
    await until(lambda: node.stats().map_written == before + n)
    return ids


async def answered(node: Node, number: str, carrier_id: str) -> int:
    """A message in `node`'s store, sent on CARRIER and answered with `carrier_id` (which claims a receipt
    kept early for it)."""
    result = await node.writer.do(submit(number, cls="notification"))
    (msg_id,) = result.message_ids
    ops: list[Op] = [
        Prepare(msg_id, CARRIER, 1),
        Advance(msg_id, 0, Event(Ev.DISPATCH, bind="trx", sequence=1)),
        Advance(msg_id, 0, Event(Ev.SUBMIT_OK, carrier_id=carrier_id)),
    ]
    for op in ops:
        outcome = (await node.writer.apply([op]))[0]
        assert not isinstance(outcome, GatewayError), outcome
    return msg_id


def state_of(node: Node, msg_id: int) -> State | None:
    msg = node.store.get(msg_id)
    return None if msg is None else msg.state


def delivered(carrier_id: str) -> Receipt:
    return Receipt(CARRIER, carrier_id, Ev.RECEIPT_DELIVERED, text=f"id:{carrier_id} stat:DELIVRD".encode())


DAILY = CapCheck("daily", "*", 86400, 1)

# coredis leaves the anyio memory streams of a connection unclosed when its connect fails (the six of each
# attempt to reach a killed Valkey, or one cut short by timeout_seconds, warn when collected; as in
# tests/integration/cluster/test_two_nodes.py). That warning alone is ignored, and each test collects before
# it ends, while the filter applies.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Unclosed <MemoryObject(Send|Receive)Stream:ResourceWarning"),
    pytest.mark.usefixtures("collected"),
]


@pytest.fixture
def collected() -> Iterator[None]:
    yield
    gc.collect()


# --- the check at accept ------------------------------------------------------------------------------------


async def test_a_cap_of_one_passes_exactly_once_under_concurrent_checks_on_two_nodes(
    tmp_path: Path, valkey: ValkeyServer
) -> None:
    numbers = [f"44770000{i:04d}" for i in range(30)]
    passed: dict[str, int] = dict.fromkeys(numbers, 0)
    capped: dict[str, int] = dict.fromkeys(numbers, 0)

    async def check(node: Node, number: str) -> None:
        (verdicts,) = await node.shared.check([submit(number, caps=(DAILY,))])
        assert not isinstance(verdicts, Overloaded)
        ((reason, detail),) = verdicts
        if reason:
            assert reason == "frequency_capped", detail
            assert "rule daily: at most 1 in 86400 s" in detail
            capped[number] += 1
        else:
            passed[number] += 1

    with trio.fail_after(10):
        async with running_node(tmp_path, valkey, "a") as a, running_node(tmp_path, valkey, "b") as b:
            async with trio.open_nursery() as nursery:
                for number in numbers:
                    for node in (a, b, a, b):
                        nursery.start_soon(check, node, number)
            assert passed == dict.fromkeys(numbers, 1)
            assert capped == dict.fromkeys(numbers, 3)
            sa, sb = a.stats(), b.stats()
            assert sa.checks + sb.checks == 4 * len(numbers)
            assert sa.refused.get("frequency_capped", 0) + sb.refused.get("frequency_capped", 0) == 3 * len(numbers)
            # The same number twice in one submit: the first counts, the second is capped.
            (twice,) = await a.shared.check([submit("447700009999", "447700009999", caps=(DAILY,))])
            assert not isinstance(twice, Overloaded)
            assert [reason for reason, _ in twice] == ["", "frequency_capped"]


async def test_a_recipient_is_counted_by_none_of_its_caps_unless_all_have_room(
    tmp_path: Path, valkey: ValkeyServer
) -> None:
    number = "447700001111"
    wide = CapCheck("wide", "*", 3600, 1)
    narrow = CapCheck("narrow", "acme", 3600, 1)
    with trio.fail_after(10):
        async with running_node(tmp_path, valkey, "a") as a, valkey_client(valkey) as client:
            assert await a.shared.check([submit(number, caps=(narrow,))]) == [[("", "")]]
            (both,) = await a.shared.check([submit(number, caps=(wide, narrow))])
            assert not isinstance(both, Overloaded)
            ((reason, detail),) = both
            assert reason == "frequency_capped"
            assert "rule narrow" in detail  # the second cap (code 11) was the full one
            # `wide` had room but was not counted: it still has room now.
            assert await client.zcard(f"gw:cap:wide\0*\0{number}") == 0
            assert await a.shared.check([submit(number, caps=(wide,))]) == [[("", "")]]
            ttl = await client.pttl(f"gw:cap:wide\0*\0{number}")
            assert 0 < ttl <= 3600 * 1000


async def test_a_caps_window_slides_sends_older_than_it_give_room_again(tmp_path: Path, valkey: ValkeyServer) -> None:
    number = "447700001211"
    hourly = CapCheck("hourly", "*", 3600, 2)
    key = f"gw:cap:hourly\0*\0{number}"
    with trio.fail_after(10):
        async with running_node(tmp_path, valkey, "a") as a, valkey_client(valkey) as client:
            # Two sends counted: one 2 hours ago (out of the window), one 10 minutes ago (in it).
            now_ms = _wall_ms()
            await client.zadd(key, {"old": now_ms - 7_200_000, "recent": now_ms - 600_000})
            # The set is full by count, but only one is in the window: one more may go, then none.
            (first,) = await a.shared.check([submit(number, caps=(hourly,))])
            assert first == [("", "")]
            members = set(await client.zrange(key, 0, -1))
            assert b"old" not in members  # trimmed
            assert len(members) == 2
            assert b"recent" in members
            (second,) = await a.shared.check([submit(number, caps=(hourly,))])
            assert not isinstance(second, Overloaded)
            assert [reason for reason, _ in second] == ["frequency_capped"]
            assert await client.zcard(key) == 2


async def test_the_shared_lists_refuse_with_their_reason(tmp_path: Path, valkey: ValkeyServer) -> None:
    everyone, account_optout, blacklisted, account_black, clean, rejected = (f"4477000020{i:02d}" for i in range(6))
    with trio.fail_after(10):
        async with running_node(tmp_path, valkey, "a") as a, running_node(tmp_path, valkey, "b") as b:
            # Node a's changes, published to every node; node b checks.
            await a.shared.publish([
                SetOptOut(everyone, source="mo:carA", note="STOP"),
                SetOptOut(account_optout, scope="acme", source="api"),
                SetBlacklist(blacklisted, source="api"),
                SetBlacklist(account_black, scope="account:acme"),
                Mo("acme", CARRIER, everyone, "ACME", "STOP"),  # not a list change: not published
            ])  # fmt: skip
            assert a.stats().lists_published == 4
            numbers = (everyone, account_optout, blacklisted, account_black, clean)
            marketing = submit(*numbers)
            marketing = replace(marketing, recipients=(*marketing.recipients, Recipient(rejected, reject="x")))
            verification = submit(*numbers, cls="verification", optout=False)
            out = await b.shared.check([marketing, verification])
            assert not any(isinstance(v, Overloaded) for v in out)
            m, v = out
            assert not isinstance(m, Overloaded)
            assert not isinstance(v, Overloaded)
            assert [reason for reason, _ in m] == [
                "opted_out", "opted_out", "blacklisted", "blacklisted", "", "",  # a rejected recipient: not asked
            ]  # fmt: skip
            assert "every account's marketing" in m[0][1]
            assert "account acme's marketing" in m[1][1]
            assert m[2][1] == "on the gateway's blacklist"
            assert m[3][1] == "on account acme's blacklist"
            # Verification does not check opt-outs; blacklists hold for every class.
            assert [reason for reason, _ in v] == ["", "", "blacklisted", "blacklisted", ""]
            assert b.stats().checks == 10  # the rejected recipient was not sent to Valkey
            assert b.stats().refused == {"opted_out": 2, "blacklisted": 4}
            # Another account is refused by the global lists only.
            (o,) = await b.shared.check([replace(submit(*numbers), account="beta")])
            assert not isinstance(o, Overloaded)
            assert [reason for reason, _ in o] == ["opted_out", "", "blacklisted", "", ""]
            # And b copies a's changes into its own store (its checks go on without Valkey).
            # (Read from the stream, or copied whole when b's first look came after them: either way.)
            await until(lambda: b.store.blacklisted(account_black, "account:acme") is not None
                        and b.store.stored_cursor(LISTS_CURSOR) is not None)  # fmt: skip
            assert b.store.is_opted_out(everyone)
            assert b.store.opt_out(account_optout, "acme") is not None
            assert b.store.blacklisted(blacklisted) is not None
            assert b.store.blacklisted(account_black, "account:acme") is not None
            assert b.store.stored_cursor(LISTS_CURSOR) is not None  # 0 when b copied before a wrote the stream
            assert a.stats().lists_applied == 0  # a node does not copy its own changes back
            # Opting back in is published too.
            await b.shared.publish([SetOptOut(everyone, opted_out=False)])
            assert await a.shared.check([submit(everyone)]) == [[("", "")]]
            await until(lambda: not a.store.is_opted_out(everyone))


async def test_a_node_that_joins_copies_the_shared_lists_whole(tmp_path: Path, valkey: ValkeyServer) -> None:
    with trio.fail_after(10):
        async with running_node(tmp_path, valkey, "a") as a:
            await a.shared.publish([SetOptOut(f"4477000030{i:02d}", note=f"n{i}") for i in range(20)])
            await a.shared.publish([SetOptOut("447700003000", opted_out=False)])
        async with running_node(tmp_path, valkey, "c") as c:
            await until(lambda: c.store.stored_cursor(LISTS_CURSOR) is not None)
            assert not c.store.is_opted_out("447700003000")
            assert all(c.store.is_opted_out(f"4477000030{i:02d}") for i in range(1, 20))
            assert c.store.opt_out("447700003005") is not None
            entry = c.store.opt_out("447700003005")
            assert entry is not None
            assert entry[2] == "n5"


# --- Valkey away ------------------------------------------------------------------------------------------


async def test_a_node_away_longer_than_the_stream_keeps_copies_the_lists_whole(
    tmp_path: Path, valkey: ValkeyServer
) -> None:
    with trio.fail_after(10):
        async with running_node(tmp_path, valkey, "c") as c:  # copied an empty stream: its cursor is 0
            await until(lambda: c.store.stored_cursor(LISTS_CURSOR) == 0)
        async with running_node(tmp_path, valkey, "a") as a:
            await a.shared.publish([SetOptOut(f"4477000031{i:02d}") for i in range(20)])
        async with valkey_client(valkey) as client:
            await client.xtrim("gw:lists", coredis.PureToken.MAXLEN, 2)  # what lists_stream_length does, later
        async with running_node(tmp_path, valkey, "c") as c:
            await until(lambda: (c.store.stored_cursor(LISTS_CURSOR) or 0) > 0)
            assert all(c.store.is_opted_out(f"4477000031{i:02d}") for i in range(20))


async def test_while_valkey_is_killed_held_classes_wait_and_what_waited_is_written_when_it_returns(
    tmp_path: Path, valkey: ValkeyServer
) -> None:
    optout, black, fine = "447700004001", "447700004002", "447700004003"
    with trio.fail_after(15):
        async with running_node(tmp_path, valkey, "a") as a, valkey_client(valkey) as client:
            assert a.stats().reachable
            assert a.stats().outages == 0
            await trio.to_thread.run_sync(valkey.kill)

            out = await a.shared.check([submit(fine), submit(fine, cls="notification"),
                                        submit(fine, fine, cls="verification", optout=False)])  # fmt: skip
            assert isinstance(out[0], Overloaded)
            assert isinstance(out[1], Overloaded)
            assert "shared_state_unavailable" in str(out[0])
            assert out[2] == [("", ""), ("", "")]
            s = a.stats()
            assert not s.reachable
            assert s.unreachable_since_ms > 0
            assert s.outages == 1
            assert (s.held, s.local_only) == (2, 2)

            # Changes and map entries made meanwhile wait in memory.
            await a.shared.publish([SetOptOut(optout, source="api"), SetBlacklist(black, scope="account:acme")])
            unpublished = a.store.stored_cursor(UNPUBLISHED_FROM)
            assert unpublished
            for i in range(5):
                a.shared.mapped(CARRIER, f"away-{i}")
            assert a.stats().map_waiting == 5
            await trio.sleep(0.5)  # several retries, still away: one outage
            s = a.stats()
            assert (s.reachable, s.outages, s.map_waiting, s.lists_published) == (False, 1, 5, 0)

            await trio.to_thread.run_sync(valkey.start)
            await until(lambda: a.stats().reachable)
            await until(lambda: a.stats().map_waiting == 0 and a.stats().lists_published == 2)
            s = a.stats()
            assert (s.outages, s.unreachable_since_ms, s.map_written) == (1, 0, 5)
            for i in range(5):
                key = core.Keys("gw").receipt(CARRIER, f"away-{i}")
                assert await client.get(key) == b"a"
                assert 0 < await client.pttl(key) <= 60_000  # the carrier's receipt timeout
            assert await client.hexists("gw:optout", f"\0{optout}")
            assert await client.hexists("gw:blacklist", f"account:acme\0{black}")
            assert await client.xlen("gw:lists") == 2
            await until(lambda: (a.store.stored_cursor(PUBLISHED_UNTIL) or 0) >= unpublished)
            # And the checks are the cluster's again.
            (verdicts,) = await a.shared.check([submit(optout, black, fine)])
            assert not isinstance(verdicts, Overloaded)
            assert [reason for reason, _ in verdicts] == ["opted_out", "blacklisted", ""]


async def test_a_node_started_while_valkey_is_away_connects_when_it_comes(tmp_path: Path, valkey: ValkeyServer) -> None:
    await trio.to_thread.run_sync(valkey.kill)
    with trio.fail_after(10):
        async with running_node(tmp_path, valkey, "a") as a:
            s = a.stats()
            assert (s.reachable, s.outages) == (False, 1)
            (held,) = await a.shared.check([submit("447700005001")])
            assert isinstance(held, Overloaded)
            await trio.sleep(0.3)
            assert a.stats().outages == 1
            await trio.to_thread.run_sync(valkey.start)
            with trio.fail_after(2):
                await a.shared.until_reachable()
            assert a.stats().outages == 1
            assert await a.shared.check([submit("447700005001")]) == [[("", "")]]


async def test_list_changes_a_node_stopped_with_are_published_at_its_next_start(
    tmp_path: Path, valkey: ValkeyServer
) -> None:
    number = "447700006001"
    with trio.fail_after(15):
        async with running_node(tmp_path, valkey, "a") as a:
            await trio.to_thread.run_sync(valkey.kill)
            await until(lambda: not a.stats().reachable)
            # As the engine does: published (waits in memory), then committed to the node's store.
            change = SetOptOut(number, source="api", note="by phone")
            await a.shared.publish([change])
            await a.writer.do(change)
        # The node stopped before Valkey returned: the change was only in its memory and its store.
        await trio.to_thread.run_sync(valkey.start)
        async with valkey_client(valkey) as client:
            assert not await client.hexists("gw:optout", f"\0{number}")
            async with running_node(tmp_path, valkey, "a") as a, running_node(tmp_path, valkey, "b") as b:
                await until(lambda: b.store.is_opted_out(number))
                assert await client.hexists("gw:optout", f"\0{number}")
                listing = core.unpack_listing(await client.hget("gw:optout", f"\0{number}") or b"")
                assert listing[1:] == ("api", "by phone")
                assert (a.store.stored_cursor(PUBLISHED_UNTIL) or 0) >= (a.store.stored_cursor(UNPUBLISHED_FROM) or 0)
                (verdicts,) = await b.shared.check([submit(number)])
                assert not isinstance(verdicts, Overloaded)
                assert verdicts[0][0] == "opted_out"


# --- receipts ---------------------------------------------------------------------------------------------


async def test_a_receipt_for_another_nodes_part_is_handed_over_and_matched_there(
    tmp_path: Path, valkey: ValkeyServer
) -> None:
    with trio.fail_after(10):
        async with (
            running_node(tmp_path, valkey, "a") as a,
            running_node(tmp_path, valkey, "b") as b,
            valkey_client(valkey) as client,
        ):
            msg_id = await sent_message(a, "447700007001", "c-1")
            own_id = await sent_message(b, "447700007002", "c-2")
            a.shared.mapped(CARRIER, "c-1")
            b.shared.mapped(CARRIER, "c-2")
            await until(lambda: a.stats().map_written == 1 and b.stats().map_written == 1)

            away, own, unknown = delivered("c-1"), delivered("c-2"), delivered("nobody")
            other: Op = Mo("acme", CARRIER, "447700007003", "ACME", "hi")
            rest = await b.shared.route_receipts([other, own, away, unknown])
            assert rest == [other, own, unknown]  # in their order, without the one handed over
            assert b.stats().handed_over == 1
            assert await b.shared.route_receipts([other]) == [other]

            await until(lambda: state_of(a, msg_id) is State.DELIVERED)
            await until(lambda: a.stats().taken_over == 1)  # counted once its commit returns
            assert a.store.stored_cursor(HANDOVER_CURSOR)
            assert b.stats().taken_over == 0  # nothing came back to b
            assert state_of(b, own_id) is State.SUBMITTED  # b applies its own; the test does not here
            # The handover stream is emptied once applied.
            with trio.fail_after(2):
                while await client.xlen("gw:handover:a"):  # noqa: ASYNC110 - Valkey's state
                    await trio.sleep(0.01)

            # The receipt found by one of its other candidate ids.
            msg_id2 = await sent_message(a, "447700007004", "00ff")
            a.shared.mapped(CARRIER, "00ff")
            await until(lambda: a.stats().map_written == 2)
            candidates = Receipt(
                CARRIER, "ff", Ev.RECEIPT_UNDELIVERABLE, reason="undeliverable:UNDELIV", alternatives=("00ff",)
            )
            assert await b.shared.route_receipts([candidates]) == []
            await until(lambda: state_of(a, msg_id2) is State.UNDELIVERABLE)
            await until(lambda: a.stats().taken_over == 2)


async def test_receipts_stay_on_the_node_that_got_them_while_valkey_is_away(
    tmp_path: Path, valkey: ValkeyServer
) -> None:
    with trio.fail_after(10):
        async with running_node(tmp_path, valkey, "a") as a, running_node(tmp_path, valkey, "b") as b:
            await sent_message(a, "447700008001", "d-1")
            a.shared.mapped(CARRIER, "d-1")
            await until(lambda: a.stats().map_written == 1)
            await trio.to_thread.run_sync(valkey.kill)
            receipt = delivered("d-1")
            # Reachable or not when asked: on any failure every receipt stays (kept early, looked up later).
            assert await b.shared.route_receipts([receipt]) == [receipt]
            assert await b.shared.route_receipts([receipt]) == [receipt]
            assert b.stats().handed_over == 0


async def test_an_early_receipt_is_handed_over_once_its_part_is_mapped_and_forgotten_here(
    tmp_path: Path, valkey: ValkeyServer
) -> None:
    with trio.fail_after(10):
        async with running_node(tmp_path, valkey, "a") as a, running_node(tmp_path, valkey, "b") as b:
            receipt = delivered("e-1")
            assert await b.shared.route_receipts([receipt]) == [receipt]  # no node mapped it yet
            kept = await b.writer.do(receipt)
            assert isinstance(kept, ReceiptResult)
            assert kept.early
            b.shared.late(receipt)
            assert b.stats().late_waiting == 1
            assert len(b.store.early_receipts(0, 10)) == 1

            msg_id = await sent_message(a, "447700009001", "e-1")
            a.shared.mapped(CARRIER, "e-1")
            await until(lambda: state_of(a, msg_id) is State.DELIVERED)
            await until(lambda: b.store.early_receipts(0, 10) == [])
            s = b.stats()
            assert (s.late_waiting, s.handed_over) == (0, 1)
            await until(lambda: a.stats().taken_over == 1)  # counted once its commit returns


async def test_early_receipts_a_stopped_node_kept_are_looked_up_again_at_its_start(
    tmp_path: Path, valkey: ValkeyServer
) -> None:
    store = _open_store(tmp_path, "b")
    try:
        (kept,) = store.apply([delivered("f-1")])
        assert isinstance(kept, ReceiptResult)
        assert kept.early
    finally:
        store.close()
    with trio.fail_after(10):
        async with running_node(tmp_path, valkey, "a") as a:
            msg_id = await sent_message(a, "447700009101", "f-1")
            a.shared.mapped(CARRIER, "f-1")
            await until(lambda: a.stats().map_written == 1)
            async with running_node(tmp_path, valkey, "b") as b:
                await until(lambda: state_of(a, msg_id) is State.DELIVERED)
                await until(lambda: b.store.early_receipts(0, 10) == [])
                assert b.stats().handed_over == 1


async def test_a_receipt_whose_map_entry_was_lost_is_offered_and_taken_by_the_node_that_sent_its_part(
    tmp_path: Path, valkey: ValkeyServer
) -> None:
    with trio.fail_after(10):
        async with (
            running_node(tmp_path, valkey, "a", orphan_seconds=0.2) as a,
            running_node(tmp_path, valkey, "b", orphan_seconds=0.2) as b,
        ):
            # a sent the part but its map entry never reached Valkey (a kill while it waited in memory).
            msg_id = await sent_message(a, "447700009201", "o-1")
            receipt = delivered("o-1")
            assert await b.shared.route_receipts([receipt]) == [receipt]
            kept = await b.writer.do(receipt)
            assert isinstance(kept, ReceiptResult)
            assert kept.early
            b.shared.late(receipt)
            await until(lambda: state_of(a, msg_id) is State.DELIVERED)
            assert b.stats().offered == 1
            await until(lambda: a.stats().taken_over == 1)
            # a told b to forget its early copy.
            await until(lambda: b.store.early_receipts(0, 10) == [] and b.stats().late_waiting == 0)


async def test_an_early_receipt_its_own_submit_sm_resp_claimed_is_never_offered(
    tmp_path: Path, valkey: ValkeyServer
) -> None:
    with trio.fail_after(10):
        async with running_node(tmp_path, valkey, "a", orphan_seconds=0.2) as a:
            # The receipt came on a's bind before a's own submit_sm_resp: kept early, looked up again.
            receipt = delivered("s-1")
            assert await a.shared.route_receipts([receipt]) == [receipt]
            kept = await a.writer.do(receipt)
            assert isinstance(kept, ReceiptResult)
            assert kept.early
            a.shared.late(receipt)
            msg_id = await answered(a, "447700009251", "s-1")
            assert state_of(a, msg_id) is State.DELIVERED
            await until(lambda: a.stats().late_waiting == 0)
            await trio.sleep(0.6)  # past orphan_seconds, with the late loop running
            assert a.stats().offered == 0
        async with valkey_client(valkey) as client:
            assert await client.xlen("gw:orphans") == 0


async def test_a_receipt_offered_while_its_node_was_down_is_taken_at_its_restart(
    tmp_path: Path, valkey: ValkeyServer
) -> None:
    with trio.fail_after(10):
        async with running_node(tmp_path, valkey, "a", orphan_seconds=0.2) as a:
            # a's first life: it reached Valkey and read the offers, none yet.
            await until(lambda: a.store.stored_cursor(ORPHANS_CURSOR) is not None)
        store = _open_store(tmp_path, "a")
        try:
            # a sent a part whose map entry never reached Valkey, and died (here: stopped).
            (result,) = store.apply([submit("447700009301", cls="notification")])
            assert isinstance(result, SubmitResult)
            (msg_id,) = result.message_ids
            for op in (
                Prepare(msg_id, CARRIER, 1),
                Advance(msg_id, 0, Event(Ev.DISPATCH, bind="trx", sequence=1)),
                Advance(msg_id, 0, Event(Ev.SUBMIT_OK, carrier_id="o-2")),
            ):
                (done,) = store.apply([op])
                assert not isinstance(done, GatewayError), done
        finally:
            store.close()
        async with running_node(tmp_path, valkey, "b", orphan_seconds=0.2) as b:
            receipt = delivered("o-2")
            assert await b.shared.route_receipts([receipt]) == [receipt]
            await b.writer.do(receipt)
            b.shared.late(receipt)
            await until(lambda: b.stats().offered == 1)  # offered while a is down
            async with running_node(tmp_path, valkey, "a", orphan_seconds=0.2) as a:
                with trio.move_on_after(1.5):
                    await until(lambda: state_of(a, msg_id) is State.DELIVERED)
                state = state_of(a, msg_id)
    assert state is State.DELIVERED


# --- carrier TPS ------------------------------------------------------------------------------------------


async def test_an_account_tps_is_leased_across_nodes_and_split_while_valkey_is_away(
    tmp_path: Path, valkey: ValkeyServer
) -> None:
    rate = 100.0
    budgets = {name: AccountBudget(rate, trio.current_time()) for name in ("a", "b")}
    taken = dict.fromkeys(budgets, 0)

    async def busy(name: str) -> None:
        """A bind that always has work: takes what the budget has, then waits for more."""
        budget = budgets[name]
        while True:
            now = trio.current_time()
            n = budget.available(now)
            budget.take(n, now)
            taken[name] += n
            await trio.sleep_until(max(budget.next_token_at(now), now + 0.002))

    with trio.fail_after(10):
        async with (
            running_node(tmp_path, valkey, "a", budgets=lambda: {CARRIER: budgets["a"]}) as a,
            running_node(tmp_path, valkey, "b", budgets=lambda: {CARRIER: budgets["b"]}) as b,
            valkey_client(valkey) as client,
            trio.open_nursery() as nursery,
        ):
            for name in budgets:
                nursery.start_soon(busy, name)
            await until(lambda: budgets["a"].leased and budgets["b"].leased)

            def granted() -> int:
                return sum(n.stats().tps_granted.get(CARRIER, 0) for n in (a, b))

            # Until the first lease each pool spends on its own: count from there.
            taken_before, granted_before = sum(taken.values()), granted()
            await trio.sleep(1.5)
            assert budgets["a"].leased
            assert budgets["b"].leased
            assert a.stats().tps_granted.get(CARRIER, 0) > 0
            assert b.stats().tps_granted.get(CARRIER, 0) > 0
            used = sum(taken.values()) - taken_before
            # What the binds took is what was granted (give or take a tick's grant at either end) ...
            assert used <= granted() - granted_before + 2 * rate / 10
            # ... at the account's rate: together they neither exceed it nor starve.
            assert 0.6 * rate * 1.5 <= used <= rate * 1.5 + 2 * rate / 10
            seconds = [k async for k in client.scan_iter(match=f"gw:tps:{CARRIER}:*")]
            counts = [int(await client.get(k) or 0) for k in seconds]
            assert counts
            assert max(counts) <= rate  # both nodes together, every second on Valkey's clock

            await trio.to_thread.run_sync(valkey.kill)
            await until(lambda: not budgets["a"].leased and not budgets["b"].leased)
            # Each node on its own share (nodes = 2): a bucket at 50/s, saving up at most 5.
            before = dict(taken)
            await trio.sleep(1.0)
            for name in budgets:
                assert 35 <= taken[name] - before[name] <= 60, (name, taken[name] - before[name])
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("fsync", [True, False])
async def test_handover_with_and_without_waiting_for_valkeys_disk(
    tmp_path: Path, valkey: ValkeyServer, fsync: bool
) -> None:
    with trio.fail_after(10):
        async with (
            running_node(tmp_path, valkey, "a", handover_fsync=fsync) as a,
            running_node(tmp_path, valkey, "b", handover_fsync=fsync) as b,
        ):
            ids = await sent_and_mapped(a, "4477000100", "g-", 20)
            assert await b.shared.route_receipts([delivered(f"g-{i}") for i in range(20)]) == []
            await until(lambda: all(state_of(a, m) is State.DELIVERED for m in ids))
            await until(lambda: a.stats().taken_over == 20)


# --- the Valkey the operator runs ----------------------------------------------------------------------------


async def test_a_valkey_that_refuses_config_is_used_all_the_same(tmp_path: Path, valkey: ValkeyServer) -> None:
    """Managed Valkey and Redis services rename or forbid CONFIG, and an ACL user may lack it: the nodes cannot
    read appendonly or the eviction policy, say so once, and work (checks, handover with WAITAOF) regardless."""
    (tmp_path / "valkey.secret").write_text("pw\n")
    with trio.fail_after(10), capture_logs() as logs:
        async with valkey_client(valkey) as client:
            assert await client.acl_setuser("gw", "on", ">pw", "~*", "&*", "+@all", "-config")
        login: dict[str, Any] = {"valkey_username": "gw", "valkey_password_file": str(tmp_path / "valkey.secret")}
        async with running_node(tmp_path, valkey, "a", **login) as a, running_node(tmp_path, valkey, "b", **login) as b:
            assert a.shared.reachable
            assert b.shared.reachable
            await a.shared.publish([SetOptOut("447700013001")])
            (verdicts,) = await b.shared.check([submit("447700013001")])
            assert not isinstance(verdicts, Overloaded)
            assert [reason for reason, _ in verdicts] == ["opted_out"]
            ids = await sent_and_mapped(a, "4477000130", "acl-", 5)
            assert await b.shared.route_receipts([delivered(f"acl-{i}") for i in range(5)]) == []
            await until(lambda: all(state_of(a, m) is State.DELIVERED for m in ids))
            assert a.stats().outages == b.stats().outages == 0
    refused = [e for e in logs if e["event"] == "cluster_settings_unreadable"]
    assert len(refused) == 2  # once a node
    assert "appendonly yes" in refused[0]["reason"]
    assert not [e for e in logs if e["event"] in ("cluster_unreachable", "cluster_not_durable")]


@pytest.mark.parametrize(("maxmemory", "policy", "warned"), [
    ("1gb", "allkeys-lru", True),  # the usual cache setting: every key may go
    ("1gb", "volatile-lru", True),  # the caps and the receipt map have TTLs: they go first
    ("0", "allkeys-lru", False),  # no limit: nothing is evicted
    ("1gb", "noeviction", False),  # writes fail when full (the nodes hold), nothing vanishes
])  # fmt: skip
async def test_a_valkey_that_may_evict_keys_is_warned_of(
    tmp_path: Path, valkey: ValkeyServer, maxmemory: str, policy: str, warned: bool
) -> None:
    with trio.fail_after(10), capture_logs() as logs:
        async with valkey_client(valkey) as client:
            await client.config_set({"maxmemory": maxmemory, "maxmemory-policy": policy})
        async with running_node(tmp_path, valkey, "a") as a:
            assert a.shared.reachable
    evicting = [e for e in logs if e["event"] == "cluster_evicting"]
    assert len(evicting) == int(warned)
    if warned:
        assert evicting[0]["policy"] == policy
        assert "noeviction" in evicting[0]["reason"]


async def test_a_full_valkey_is_away_until_it_has_room_again(tmp_path: Path, valkey: ValkeyServer) -> None:
    """maxmemory reached under noeviction: Valkey answers PING but refuses every write (here a cap's count). The
    node counts it away once (held classes wait), not back and away again at every retry, and back once it has
    room."""
    with trio.fail_after(10), capture_logs() as logs:
        async with valkey_client(valkey) as client, running_node(tmp_path, valkey, "a") as a:
            assert await a.shared.check([submit("447700015001", caps=(DAILY,))]) == [[("", "")]]
            await client.config_set({"maxmemory": "1", "maxmemory-policy": "noeviction"})
            (held,) = await a.shared.check([submit("447700015002", caps=(DAILY,))])
            assert isinstance(held, Overloaded)
            await trio.sleep(1.0)  # ten retries (retry_seconds 0.1), each refused a write
            (held,) = await a.shared.check([submit("447700015003", caps=(DAILY,))])
            assert isinstance(held, Overloaded)
            assert not a.shared.reachable
            assert a.stats().outages == 1
            await client.config_set({"maxmemory": "0"})
            await until(lambda: a.shared.reachable)
            assert await a.shared.check([submit("447700015004", caps=(DAILY,))]) == [[("", "")]]
            assert a.stats().outages == 1
    (away,) = [e for e in logs if e["event"] == "cluster_unreachable"]
    assert "OOM" in away["error"]


async def test_handover_to_a_valkey_without_an_append_only_file_it_could_not_read_is_written_and_warned(
    tmp_path: Path, valkey: ValkeyServer
) -> None:
    """CONFIG refused and appendonly off: the first WAITAOF says so. The receipts are in the stream (no retry,
    no outage), and the node warns that they die with Valkey."""
    (tmp_path / "valkey.secret").write_text("pw\n")
    with trio.fail_after(10), capture_logs() as logs:
        async with valkey_client(valkey) as client:
            await client.config_set({"appendonly": "no"})
            assert await client.acl_setuser("gw", "on", ">pw", "~*", "&*", "+@all", "-config")
        login: dict[str, Any] = {"valkey_username": "gw", "valkey_password_file": str(tmp_path / "valkey.secret")}
        async with running_node(tmp_path, valkey, "a", **login) as a, running_node(tmp_path, valkey, "b", **login) as b:
            ids = await sent_and_mapped(a, "4477000140", "naof-", 6)
            assert await b.shared.route_receipts([delivered(f"naof-{i}") for i in range(3)]) == []
            assert await b.shared.route_receipts([delivered(f"naof-{i}") for i in range(3, 6)]) == []
            await until(lambda: all(state_of(a, m) is State.DELIVERED for m in ids))
            assert a.stats().taken_over == 6  # each once: the first batch was not written again
            assert b.stats().outages == 0
    assert len([e for e in logs if e["event"] == "cluster_not_durable"]) == 1


# --- what a node cannot read ---------------------------------------------------------------------------------


async def test_an_unreadable_handed_over_receipt_does_not_stop_the_ones_after_it(
    tmp_path: Path, valkey: ValkeyServer
) -> None:
    async with valkey_client(valkey) as client:
        bad = [core.VERSION, CARRIER, "x-1", int(Ev.RECEIPT_DELIVERED), "", 5, "", b"", "b"]  # alternatives: 5
        await client.xadd("gw:handover:a", {"0": msgpack.packb(bad)})
    with trio.fail_after(10):
        async with running_node(tmp_path, valkey, "a") as a, running_node(tmp_path, valkey, "b") as b:
            msg_id = await sent_message(a, "447700011001", "h-1")
            a.shared.mapped(CARRIER, "h-1")
            await until(lambda: a.stats().map_written == 1)
            assert await b.shared.route_receipts([delivered("h-1")]) == []
            with trio.move_on_after(1.5):
                await until(lambda: state_of(a, msg_id) is State.DELIVERED)
            state = state_of(a, msg_id)
    assert state is State.DELIVERED


async def test_an_unreadable_listing_does_not_stop_a_node_copying_the_lists(
    tmp_path: Path, valkey: ValkeyServer
) -> None:
    async with valkey_client(valkey) as client:
        await client.hset("gw:optout", {"\0" + "447700012001": b"\xc1 not a listing"})
        await client.hset("gw:optout", {"\0" + "447700012002": core.pack_listing(1, "api", "")})
    with trio.fail_after(10):
        async with running_node(tmp_path, valkey, "a") as a:
            with trio.move_on_after(1.5):
                await until(lambda: a.store.stored_cursor(LISTS_CURSOR) is not None)
            copied = a.store.is_opted_out("447700012002"), a.store.stored_cursor(LISTS_CURSOR) is not None
    assert copied == (True, True)


# --- one running node a name ---------------------------------------------------------------------------------


async def test_a_name_a_killed_node_still_holds_is_waited_out_and_let_go_at_a_clean_stop(
    tmp_path: Path, valkey: ValkeyServer
) -> None:
    """A node SIGKILLed moments ago leaves its claim on the name in Valkey: the node started again on that name
    waits it out (at most one TTL), then runs; at a clean stop it lets the name go at once."""
    with trio.fail_after(15):
        async with valkey_client(valkey) as client:
            await client.set("gw:node:a", "host pid 1 dead", px=1500)
            async with running_node(tmp_path, valkey, "a") as a:
                mine = f"pid {os.getpid()} ".encode()
                # (Claimed at its start; by its renewal a second later when a slow start found Valkey away.)
                while mine not in (await client.get("gw:node:a") or b""):  # noqa: ASYNC110 - a key in Valkey
                    await trio.sleep(0.05)
                assert a.stats().name_taken_by == ""
            assert await client.get("gw:node:a") is None
