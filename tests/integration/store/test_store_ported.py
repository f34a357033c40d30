"""Number portability in the store: an import written chunk by chunk under a new generation is invisible
until one switch makes it current, an update edits the current one, the old and abandoned generations are
purged in bounded chunks, a bad row refuses its op alone, and the writer process behaves as Store.apply
does, a SIGKILL in the middle of an import included."""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio

from gateway.errors import GatewayError
from gateway.store import Done, Op, Result, Store, SubmitResult, Writer
from gateway.store.keys import MAX_GENERATION
from gateway.store.ops import PortedPurge, PortedPurged, PortedRows, PortedSwitch
from gateway.store.remote import WriterProcess
from gateway.store.store import InvalidField
from tests.integration.store.conftest import StoreFactory
from tests.integration.store.support import FakeClock, ok, submit
from tests.integration.store.test_writer_process import config, started

Rows = tuple[tuple[str, str], ...]
LIMIT_SECONDS = 25


def numbers(start: int, count: int, network: str = "cmcc", block: str = "86138") -> Rows:
    return tuple((f"{block}{i:08d}", network) for i in range(start, start + count))


def write(store: Store, generation: int, rows: Rows, chunk: int = 100) -> None:
    for k in range(0, len(rows), chunk):
        assert store.apply([PortedRows(generation, rows[k : k + chunk])]) == [Done()]


def purge(store: Store, keep: int, limit: int) -> tuple[int, int]:
    """(rows purged, ops it took) with ops of `limit` rows until none of another generation is left."""
    purged = steps = 0
    while True:
        (result,) = ok(store, [PortedPurge(keep, limit)])
        assert isinstance(result, PortedPurged)
        assert result.rows <= limit
        purged, steps = purged + result.rows, steps + 1
        if not result.more:
            return purged, steps


def test_a_fresh_store_has_no_table(open_store: StoreFactory) -> None:
    store = open_store()
    assert store.ported_generation() == 0
    assert store.ported_network("8613800138000") is None
    assert store.ported_count() == 0
    assert store.ported_generations() == ()
    assert store.ported_next_generation() == 1
    assert store.apply([PortedPurge(0, 10)]) == [PortedPurged(0, False)]


def test_an_import_is_invisible_until_its_switch_then_whole(open_store: StoreFactory) -> None:
    store = open_store()
    table = numbers(0, 1000) + numbers(1000, 500, "unicom")
    for k in range(0, len(table), 200):
        assert store.apply([PortedRows(1, table[k : k + 200])]) == [Done()]
        assert store.ported_network(table[0][0]) is None  # lookups keep reading "no table"
        assert store.ported_generation() == 0
    assert store.ported_count(1) == 1500
    ok(store, [PortedSwitch(1)])
    assert store.ported_generation() == 1
    assert store.ported_network("8613800000000") == "cmcc"
    assert store.ported_network("8613800001499") == "unicom"
    assert store.ported_network("8613800001500") is None
    assert store.ported_count() == 1500


def test_a_replace_keeps_the_old_table_readable_until_the_switch_then_purges_it(open_store: StoreFactory) -> None:
    store = open_store()
    write(store, 1, numbers(0, 1000))
    ok(store, [PortedSwitch(1)])
    assert store.ported_next_generation() == 2
    # The new table: numbers 500-1499, now on unicom. Numbers 0-499 are not ported any more.
    new = numbers(500, 1000, "unicom")
    for k in range(0, len(new), 300):
        ok(store, [PortedRows(2, new[k : k + 300])])
        assert store.ported_network("8613800000000") == "cmcc"
        assert store.ported_network("8613800000700") == "cmcc"
        assert store.ported_network("8613800001200") is None
    assert store.ported_generations() == (1, 2)
    assert store.ported_count(1) == store.ported_count() == 1000
    assert store.ported_count(2) == 1000
    ok(store, [PortedSwitch(2)])
    assert store.ported_network("8613800000000") is None
    assert store.ported_network("8613800000700") == "unicom"
    assert store.ported_network("8613800001200") == "unicom"
    assert purge(store, keep=2, limit=300) == (1000, 4)
    assert store.ported_generations() == (2,)
    assert store.ported_count(1) == 0
    assert store.ported_count() == 1000
    assert store.ported_next_generation() == 3


def test_an_update_writes_the_current_generation_and_can_unport(open_store: StoreFactory) -> None:
    store = open_store()
    write(store, 1, numbers(0, 10))
    ok(store, [PortedSwitch(1)])
    ok(store, [PortedRows(1, (("8613800000001", ""), ("8613800000002", "telecom"), ("8613900000000", "unicom")))])
    assert store.ported_network("8613800000001") is None
    assert store.ported_network("8613800000002") == "telecom"
    assert store.ported_network("8613900000000") == "unicom"
    assert store.ported_network("8613800000003") == "cmcc"
    assert store.ported_count() == 10
    # Un-porting a number that is not in the table is no error.
    assert store.apply([PortedRows(1, (("8613700000000", ""),))]) == [Done()]


def test_a_numbers_last_row_in_one_op_wins(open_store: StoreFactory) -> None:
    store = open_store()
    rows = (("861", "cmcc"), ("861", ""), ("862", ""), ("862", "unicom"), ("863", "a"), ("863", "b"))
    ok(store, [PortedRows(1, rows), PortedSwitch(1)])
    assert [store.ported_network(n) for n in ("861", "862", "863")] == [None, "unicom", "b"]


@pytest.mark.parametrize(
    "op",
    [
        PortedRows(0, (("8613800138000", "cmcc"),)),
        PortedRows(-1, (("8613800138000", "cmcc"),)),
        PortedRows(MAX_GENERATION + 1, (("8613800138000", "cmcc"),)),
        PortedRows(1, (("8613800138000", "cmcc"), ("+8613800138001", "cmcc"))),
        PortedRows(1, (("8613800138000", "cmcc"), ("", "cmcc"))),
        PortedRows(1, (("8613800138000", "cmcc"), ("1234567890123456", "cmcc"))),
        PortedRows(1, (("8613800138000", "cmcc"), ("86138\u0660", "cmcc"))),
        PortedRows(1, (("8613800138000", "cmcc"), ("86138 0", "cmcc"))),
        PortedRows(1, (("8613800138000", "cmcc"), ("8613800138001", "\u00e9" * 33))),
        PortedSwitch(-1),
        PortedSwitch(MAX_GENERATION + 1),
        PortedPurge(-1, 10),
    ],
)
def test_an_invalid_op_is_refused_alone_and_writes_nothing(open_store: StoreFactory, op: Op) -> None:
    store = open_store()
    results = store.apply([submit("+447700900001"), op, PortedRows(2, (("8613900139000", "unicom"),))])
    assert isinstance(results[0], SubmitResult)
    assert type(results[1]) is InvalidField
    assert results[2] == Done()
    assert store.ported_count(1) == 0
    assert store.ported_generation() == 0
    assert store.ported_generations() == (2,)
    assert store.count(b"messages") == 1


def test_the_longest_rows_are_taken(open_store: StoreFactory) -> None:
    store = open_store()
    ok(store, [PortedRows(MAX_GENERATION, (("123456789012345", "\u00e9" * 32), ("1", "x"))),
               PortedSwitch(MAX_GENERATION)])  # fmt: skip
    assert store.ported_network("123456789012345") == "\u00e9" * 32
    assert store.ported_network("1") == "x"
    assert store.ported_generations() == (MAX_GENERATION,)
    assert purge(store, keep=MAX_GENERATION, limit=10) == (0, 1)


def test_a_lookup_of_something_that_is_no_number_finds_nothing(open_store: StoreFactory) -> None:
    store = open_store()
    ok(store, [PortedRows(1, numbers(0, 3)), PortedSwitch(1)])
    for odd in ("", "+8613800000000", "8613800000000" + "0" * 600, "\u00e9\u0000", "86138000000000000"):
        assert store.ported_network(odd) is None


def test_many_numbers_are_looked_up_in_one_read_as_one_by_one(open_store: StoreFactory) -> None:
    store = open_store()
    wanted = ["8613800000000", "8613900000000", "", "8613800000002", "8" * 600, "8613800000001"]
    assert store.ported_networks(wanted) == [None] * len(wanted)
    ok(store, [PortedRows(1, numbers(0, 3)), PortedRows(1, (("8613800000001", "unicom"),)), PortedSwitch(1)])
    assert store.ported_networks(wanted) == [store.ported_network(n) for n in wanted]
    assert store.ported_networks(wanted) == ["cmcc", None, None, "cmcc", None, "unicom"]
    assert store.ported_networks([]) == []


def test_a_switch_back_rolls_back_while_the_old_rows_are_kept(open_store: StoreFactory) -> None:
    store = open_store()
    ok(store, [PortedRows(1, numbers(0, 5)), PortedSwitch(1)])
    ok(store, [PortedRows(2, numbers(0, 5, "unicom")), PortedSwitch(2)])
    assert store.ported_network("8613800000000") == "unicom"
    ok(store, [PortedSwitch(1)])
    assert store.ported_network("8613800000000") == "cmcc"
    ok(store, [PortedSwitch(0)])  # no table at all
    assert store.ported_network("8613800000000") is None
    assert store.ported_generation() == 0
    assert store.ported_count() == 0
    assert store.ported_next_generation() == 3
    assert purge(store, keep=0, limit=4) == (10, 3)
    assert store.ported_generations() == ()


def test_purge_skips_the_kept_generation_wherever_it_sits(open_store: StoreFactory) -> None:
    store = open_store()
    for gen in (1, 2, 3, 4):
        ok(store, [PortedRows(gen, numbers(0, 7, f"n{gen}"))])
    ok(store, [PortedSwitch(3)])
    assert purge(store, keep=3, limit=5) == (21, 5)
    assert store.ported_generations() == (3,)
    assert store.ported_network("8613800000006") == "n3"


def test_count_walks_in_chunks_when_generations_share_the_table(open_store: StoreFactory) -> None:
    store = open_store()
    ok(store, [PortedRows(1, numbers(0, 25)), PortedRows(2, numbers(0, 40)), PortedRows(3, numbers(0, 3))])
    assert [store.ported_count(g, chunk=7) for g in (1, 2, 3, 4)] == [25, 40, 3, 0]
    assert [store.ported_count(g, chunk=40) for g in (1, 2, 3)] == [25, 40, 3]


def test_an_abandoned_import_survives_a_reopen_and_the_next_purge_removes_it(open_store: StoreFactory) -> None:
    store = open_store()
    write(store, 1, numbers(0, 100))
    ok(store, [PortedSwitch(1)])
    write(store, 2, numbers(0, 60, "unicom"))  # cut short: never switched
    store = open_store()  # as after a restart
    assert store.ported_generation() == 1
    assert store.ported_network("8613800000000") == "cmcc"
    assert store.ported_generations() == (1, 2)
    # The next import must not write into the partial generation.
    assert store.ported_next_generation() == 3
    assert purge(store, keep=store.ported_generation(), limit=1000) == (60, 1)
    assert store.ported_generations() == (1,)
    assert store.ported_count() == 100


# --- through the writers -------------------------------------------------------------------------------


async def apply(writer: Writer, ops: Sequence[Op]) -> list[Result]:
    results = await writer.apply(ops)
    errors = [r for r in results if isinstance(r, GatewayError)]
    assert not errors, errors
    return [r for r in results if not isinstance(r, GatewayError)]


async def replace_then_purge(writer: Writer, store: Store) -> None:
    """What the engine does: import generation 2 over 1 in chunks, switch, purge; an invalid chunk fails."""
    await apply(writer, [PortedRows(1, numbers(0, 300)), PortedSwitch(1)])
    new = numbers(100, 400, "unicom")
    gen = store.ported_next_generation()
    assert gen == 2
    for k in range(0, len(new), 150):
        assert await apply(writer, [PortedRows(gen, new[k : k + 150])]) == [Done()]
        assert store.ported_network("8613800000000") == "cmcc"
    with pytest.raises(InvalidField, match="ASCII digits"):
        await writer.do(PortedRows(gen, (("8613800000000", "x"), ("+86", "x"))))  # type: ignore[call-overload]
    await apply(writer, [PortedSwitch(gen)])
    assert store.ported_network("8613800000000") is None
    assert store.ported_network("8613800000100") == "unicom"
    purged = 0
    while True:
        (result,) = await apply(writer, [PortedPurge(gen, 120)])
        assert isinstance(result, PortedPurged)
        purged += result.rows
        if not result.more:
            break
    assert purged == 300
    assert store.ported_generations() == (2,)
    assert store.ported_count() == 400


async def test_the_thread_writer_imports_switches_and_purges(open_store: StoreFactory) -> None:
    store = open_store()
    writer = Writer(store)
    with trio.fail_after(LIMIT_SECONDS):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            await replace_then_purge(writer, store)
            await writer.aclose()


async def test_the_writer_process_imports_switches_and_purges_readable_here(tmp_path: Path, clock: FakeClock) -> None:
    with trio.fail_after(LIMIT_SECONDS):
        async with started(config(tmp_path), clock) as (process, store), trio.open_nursery() as nursery:
            writer = Writer(store, process=process)
            await nursery.start(writer.run)
            await replace_then_purge(writer, store)
            await writer.aclose()


async def test_a_writer_process_killed_mid_import_leaves_the_current_table_and_a_purgeable_rest(
    tmp_path: Path, clock: FakeClock
) -> None:
    cfg = config(tmp_path)
    with trio.fail_after(LIMIT_SECONDS):
        process = await WriterProcess.start(cfg, clock())
        try:
            for ops in ([PortedRows(1, numbers(0, 500))], [PortedSwitch(1)]):
                await process.send(ops, clock())
                assert await process.receive() == [Done()]
            for k in range(3):  # three chunks of generation 2 acknowledged, a fourth in flight when killed
                await process.send([PortedRows(2, numbers(k * 200, 200, "unicom"))], clock())
                assert await process.receive() == [Done()]
            await process.send([PortedRows(2, numbers(600, 200, "unicom"))], clock())
            os.kill(process.pid, signal.SIGKILL)
        finally:
            await process.aclose()

        process = await WriterProcess.start(cfg, clock())  # the restart
        try:
            store = Store(cfg, clock)
            try:
                assert store.ported_generation() == 1
                assert store.ported_count() == 500
                assert store.ported_network("8613800000000") == "cmcc"
                assert store.ported_generations() == (1, 2)
                assert store.ported_count(2) in (600, 800)  # the chunk in flight: all of it or none
                assert store.ported_next_generation() == 3
                await process.send([PortedPurge(store.ported_generation(), 10_000)], clock())
                (purged,) = await process.receive()
                assert isinstance(purged, PortedPurged)
                assert purged.rows in (600, 800)
                assert not purged.more
                assert store.ported_generations() == (1,)
                assert store.ported_network("8613800000000") == "cmcc"
            finally:
                store.close()
        finally:
            await process.aclose()
