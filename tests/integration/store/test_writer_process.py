"""The store's writer process (gateway/store/worker.py, remote.py): real child processes committing to a real
LMDB environment that this process reads, as gateway/app.py wires them. Callers of the Writer cannot tell it
from the thread writer: results, per-op errors, group commit, map growth and recovery behave the same; a
worker that cannot start or dies stops the gateway with a typed error."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from gateway.errors import StoreError
from gateway.lifecycle import Ev, Event, State
from gateway.store import (
    Advance,
    Prepare,
    Receipt,
    Store,
    StoreConfig,
    SubmitResult,
    UnknownMessage,
    Writer,
    WriterClosed,
)
from gateway.store.records import EventKind
from gateway.store.remote import WriterProcess
from gateway.store.wire import WorkerCrashed
from tests.integration.store.support import T0, FakeClock, submit

LIMIT_SECONDS = 25


def config(tmp_path: Path, **overrides: Any) -> StoreConfig:
    return StoreConfig(path=str(tmp_path / "db"), sync=False, **overrides)


@asynccontextmanager
async def started(cfg: StoreConfig, clock: FakeClock) -> AsyncIterator[tuple[WriterProcess, Store]]:
    """The worker first (it opens the store and recovers), then this process's reader, as app.py does."""
    process = await WriterProcess.start(cfg, clock())
    try:
        store = Store(cfg, clock)
        try:
            store.observe_seq(process.last_seq)
            yield process, store
        finally:
            store.close()
    finally:
        await process.aclose()


async def test_lifecycle_through_the_worker_is_readable_here_with_the_gateways_clock(
    tmp_path: Path, clock: FakeClock
) -> None:
    cfg = config(tmp_path)
    with trio.fail_after(LIMIT_SECONDS):
        async with started(cfg, clock) as (process, store), trio.open_nursery() as nursery:
            writer = Writer(store, process=process)
            await nursery.start(writer.run)
            seq_before = store.last_seq()

            clock.ms = T0 + 1_000
            accepted = await writer.do(submit("+447700900001", client_ref="r1"))
            (msg_id,) = accepted.message_ids
            assert accepted.outcomes[0].state is State.ACCEPTED

            clock.ms = T0 + 2_000
            prepared = await writer.do(Prepare(msg_id, "carA", 1, dispatch_bind="carA-1"))
            assert prepared.message_id == msg_id
            clock.ms = T0 + 3_000
            advanced = await writer.do(Advance(msg_id, 0, Event(Ev.SUBMIT_OK, carrier_id="C-77")))
            assert advanced.state is State.SUBMITTED
            clock.ms = T0 + 4_000
            receipt = await writer.do(Receipt("carA", "C-77", Ev.RECEIPT_DELIVERED))
            assert (receipt.matched, receipt.message_id, receipt.segment) == (True, msg_id, 0)
            assert receipt.state is State.DELIVERED

            msg = store.get(msg_id)
            assert msg is not None
            assert msg.state is State.DELIVERED
            assert msg.carrier == "carA"
            assert msg.segments[0].carrier_id == "C-77"
            assert msg.segments[0].bind == "carA-1"
            # Every timestamp is the clock of this process at the time of its op, not the worker's.
            assert msg.created_ms == T0 + 1_000
            assert msg.final_ms == T0 + 4_000
            assert store.find_segment("carA", "C-77") == (msg_id, 0)
            assert store.by_client_ref("acme", "r1") == (msg_id,)

            # The events were logged in the worker; this process learns their seq from the replies.
            assert store.last_seq() == seq_before + 2
            events = store.events(seq_before)
            assert [(e.kind, e.message_id, e.at_ms) for e in events] == [
                (EventKind.SUBMITTED, msg_id, T0 + 3_000),
                (EventKind.DELIVERED, msg_id, T0 + 4_000),
            ]
            assert events[-1].seq == store.last_seq()
            await writer.aclose()


async def test_per_op_error_reaches_its_caller_while_the_group_commits(tmp_path: Path, clock: FakeClock) -> None:
    """One group, one transaction: an op refused with its own error does not abort the others. (Callers'
    groups leave at once while the writer process has room, so the two ops are queued by one caller.)"""
    cfg = config(tmp_path, group_wait_seconds=0.2)
    with trio.fail_after(LIMIT_SECONDS):
        async with started(cfg, clock) as (process, store):
            writer = Writer(store, process=process)
            async with trio.open_nursery() as nursery:
                await nursery.start(writer.run)
                bad, good = await writer.apply([Advance(999, 0, Event(Ev.CANCEL)), submit("+447700900002")])
                await writer.aclose()
            assert isinstance(good, SubmitResult)
            assert store.get(good.message_ids[0]) is not None
    assert isinstance(bad, UnknownMessage)
    assert "999" in str(bad)
    assert good.outcomes[0].state is State.ACCEPTED
    assert writer.groups == 1  # both in one transaction: the error did not abort the submit


async def test_many_concurrent_callers_each_get_their_own_result(tmp_path: Path, clock: FakeClock) -> None:
    cfg = config(tmp_path, group_wait_seconds=0.005)
    callers_n = 300
    got: dict[int, SubmitResult] = {}

    async def caller(writer: Writer, store: Store, n: int) -> None:
        result = await writer.do(submit(f"+4477009{n:05d}", client_ref=f"ref-{n}"))
        # Told after the commit: a fresh read here sees the worker's write.
        msg = store.get(result.message_ids[0])
        assert msg is not None
        assert (msg.recipient, msg.client_ref) == (f"+4477009{n:05d}", f"ref-{n}")
        got[n] = result

    with trio.fail_after(LIMIT_SECONDS):
        async with started(cfg, clock) as (process, store):
            writer = Writer(store, process=process)
            async with trio.open_nursery() as nursery:
                await nursery.start(writer.run)
                async with trio.open_nursery() as callers:
                    for n in range(callers_n):
                        callers.start_soon(caller, writer, store, n)
                await writer.aclose()
            assert store.count(b"messages") == callers_n
    ids = [r.message_ids[0] for r in got.values()]
    assert len(got) == callers_n
    assert len(set(ids)) == callers_n
    assert writer.ops == callers_n
    assert writer.groups < callers_n // 2  # group commit: callers share transactions


async def test_worker_grows_the_map_and_this_process_still_reads_everything(tmp_path: Path, clock: FakeClock) -> None:
    initial = 256 * 1024
    cfg = config(tmp_path, map_size_bytes=initial, map_grow=True)
    ids: list[int] = []
    with trio.fail_after(LIMIT_SECONDS):
        async with started(cfg, clock) as (process, store):
            writer = Writer(store, process=process)
            async with trio.open_nursery() as nursery:
                await nursery.start(writer.run)
                for i in range(40):
                    result = await writer.do(submit(*[f"+44{i:04d}{j:04d}" for j in range(50)], text="z" * 300))
                    ids.extend(result.message_ids)
                    # Read between commits, so this process has to adopt every size the worker moved to.
                    assert store.get(ids[-1]) is not None
                await writer.aclose()
            # The data file cannot be larger than the map: the worker doubled it at least three times.
            assert (tmp_path / "db" / "data.mdb").stat().st_size > 4 * initial
            missing = [i for i in ids if store.get(i) is None]
            assert missing == []
            assert store.count(b"messages") == len(ids) == 40 * 50
            assert store.check() == []


def _crash_while_submitting(cfg: StoreConfig, clock: FakeClock) -> int:
    """A thread-mode store left with one segment in "submitting", as a crash after dispatch leaves it."""
    store = Store.open(cfg, clock)
    try:
        (result,) = store.apply([submit("+447700900003", message_class="notification")])
        assert isinstance(result, SubmitResult)
        (msg_id,) = result.message_ids
        (prepared,) = store.apply([Prepare(msg_id, "carA", 1, dispatch_bind="carA-1")])
        assert not isinstance(prepared, Exception)
        msg = store.get(msg_id)
        assert msg is not None
        assert msg.segments[0].state is State.SUBMITTING
    finally:
        store.close()
    return msg_id


async def test_recovery_runs_in_the_worker_at_start(tmp_path: Path, clock: FakeClock) -> None:
    cfg = config(tmp_path)
    msg_id = _crash_while_submitting(cfg, clock)
    clock.ms = T0 + 60_000
    with trio.fail_after(LIMIT_SECONDS):
        async with started(cfg, clock) as (process, store):
            assert (process.recovery.resent, process.recovery.unknown) == (1, 0)
            msg = store.get(msg_id)
            assert msg is not None
            seg = msg.segments[0]
            assert seg.state is State.QUEUED
            assert seg.possible_duplicate  # at-least-once: the carrier may have it already
            assert seg.updated_ms == T0 + 60_000  # recovered at the gateway's time, passed at start
            assert msg_id in [d.message_id for d in store.due(clock.ms)]


def _regular_file(tmp_path: Path) -> str:
    path = tmp_path / "not-a-directory"
    path.write_bytes(b"this is no LMDB environment")
    return str(path)


async def test_worker_that_cannot_open_the_store_refuses_to_start(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = StoreConfig(path=_regular_file(tmp_path), sync=False)
    children: list[trio.Process] = []
    open_process = trio.lowlevel.open_process

    async def recording(*args: Any, **kwargs: Any) -> trio.Process:
        child = await open_process(*args, **kwargs)
        children.append(child)
        return child

    monkeypatch.setattr(trio.lowlevel, "open_process", recording)
    with trio.fail_after(LIMIT_SECONDS), pytest.raises(StoreError) as caught:
        await WriterProcess.start(cfg, clock())
    assert cfg.path in str(caught.value)
    assert type(caught.value) is StoreError
    (child,) = children
    assert child.returncode == 1  # exited and reaped: nothing left running


async def test_worker_killed_stops_the_writer_with_worker_crashed(tmp_path: Path, clock: FakeClock) -> None:
    cfg = config(tmp_path)
    told: list[SubmitResult] = []
    with trio.fail_after(LIMIT_SECONDS):
        async with started(cfg, clock) as (process, store):
            writer = Writer(store, process=process)
            # The writer ends with WorkerCrashed; its caller is not left waiting: WriterClosed, never a result.
            with pytest.RaisesGroup(WorkerCrashed, WriterClosed, flatten_subgroups=True):
                async with trio.open_nursery() as nursery:
                    await nursery.start(writer.run)
                    told.append(await writer.do(submit("+447700900004")))
                    os.kill(process.pid, signal.SIGKILL)
                    told.append(await writer.do(submit("+447700900005")))
            with pytest.raises(WriterClosed):  # and nothing is accepted after
                await writer.do(submit("+447700900006"))
    assert len(told) == 1  # the op sent to a dead worker was never acknowledged


async def test_worker_killed_while_idle_stops_the_writer_without_waiting_for_an_op(
    tmp_path: Path, clock: FakeClock
) -> None:
    cfg = config(tmp_path)
    with trio.fail_after(LIMIT_SECONDS):
        async with started(cfg, clock) as (process, store):
            writer = Writer(store, process=process)
            with pytest.RaisesGroup(pytest.RaisesExc(WorkerCrashed, match=r"exited \(-9\)"), flatten_subgroups=True):
                async with trio.open_nursery() as nursery:
                    await nursery.start(writer.run)
                    await writer.do(submit("+447700900004"))
                    os.kill(process.pid, signal.SIGKILL)
                    await trio.sleep_forever()  # no further op: the writer notices the end of file itself


async def test_clean_stop_commits_the_queue_then_the_worker_exits_zero(tmp_path: Path, clock: FakeClock) -> None:
    cfg = config(tmp_path, group_max=10)
    results: list[SubmitResult] = []

    async def caller(writer: Writer, n: int) -> None:
        results.append(await writer.do(submit(f"+4477009{n:05d}")))

    with trio.fail_after(LIMIT_SECONDS):
        process = await WriterProcess.start(cfg, clock())
        try:
            store = Store(cfg, clock)
            try:
                writer = Writer(store, process=process)
                async with trio.open_nursery() as nursery:
                    for n in range(50):
                        nursery.start_soon(caller, writer, n)
                    await trio.testing.wait_all_tasks_blocked()
                    # Fifty ops in five groups wait, none sent yet: closing must commit them all first.
                    await nursery.start(writer.run)
                    await writer.aclose()
                    assert store.count(b"messages") == 50
                assert len(results) == 50
                assert all(store.get(r.message_ids[0]) is not None for r in results)
            finally:
                store.close()
        finally:
            await process.aclose()
    assert process._process.returncode == 0


async def test_worker_starts_without_warnings(
    tmp_path: Path, clock: FakeClock, capfd: pytest.CaptureFixture[str]
) -> None:
    # The worker inherits the gateway's stderr: whatever it prints there lands in the gateway's log, and the
    # project treats warnings as errors.
    with trio.fail_after(LIMIT_SECONDS):
        process = await WriterProcess.start(config(tmp_path), clock())
        await process.aclose()
    assert process._process.returncode == 0
    assert "Warning" not in capfd.readouterr().err


async def test_worker_outlives_the_thread_that_started_it(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # trio starts child processes from a worker thread and retires idle threads after 10 s; a child that
    # died with that thread (PR_SET_PDEATHSIG) took the shipped gateway down 10 s after every start. The
    # idle timeout is shortened (a private trio constant) so the thread retires within this test, though
    # not before the worker is up: a thread gone before the child set PR_SET_PDEATHSIG never fired it.
    monkeypatch.setattr(trio._core._thread_cache, "IDLE_TIMEOUT", 1.5)
    with trio.fail_after(LIMIT_SECONDS):
        async with started(config(tmp_path), clock) as (process, store):
            writer = Writer(store, process=process)
            async with trio.open_nursery() as nursery:
                await nursery.start(writer.run)
                await trio.sleep(3.0)  # real time: the starting thread retires meanwhile
                result = await writer.do(submit("+447700900007"))
                assert isinstance(result, SubmitResult)
                await writer.aclose()
    assert process._process.returncode == 0


_GATEWAY = """
import sys, trio
from gateway.store import StoreConfig
from gateway.store.remote import WriterProcess

async def main():
    process = await WriterProcess.start(StoreConfig(path=sys.argv[1], sync=False), 0)
    print(process.pid, flush=True)
    await trio.sleep_forever()

trio.run(main)
"""


def _alive(pid: int) -> bool:
    """A process that has not exited (a zombie waiting for a reaper counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
async def test_worker_exits_when_its_gateway_is_killed(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT_SECONDS):
        gateway = await trio.lowlevel.open_process(
            [sys.executable, "-c", _GATEWAY, str(tmp_path / "db")], stdout=subprocess.PIPE
        )
        try:
            assert gateway.stdout is not None
            line = b""
            while not line.endswith(b"\n"):
                chunk = await gateway.stdout.receive_some(64)
                assert chunk, "the gateway exited before starting its writer"
                line += chunk
            worker = int(line)
            assert _alive(worker)
        finally:
            gateway.kill()
            await gateway.wait()
        for _ in range(200):  # the watcher thread ends it as soon as the gateway is gone
            if not _alive(worker):
                break
            await trio.sleep(0.05)
        else:
            raise AssertionError("the writer outlived its gateway by 10 s")
