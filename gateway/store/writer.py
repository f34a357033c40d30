"""The single writer task: owns every write transaction and commits in groups.

Callers add operations to the open group and sleep until that group has committed; nobody is told before
the data is durable. A group closes when it holds `group_max` operations, or when no caller has added
anything since the writer last looked (after one scheduler pass), or `group_wait_seconds` after the writer
started looking, whichever comes first; while a group commits the next one fills, so under load groups grow
by themselves and an idle writer adds no latency. Each group runs in one
`trio.to_thread.run_sync(store.apply, ops)` call: an LMDB write transaction must begin and commit on one
thread (py-lmdb docs, "Threads"). With a writer process (remote.py) the group is sent there instead, and
its Python work runs on another core: a caller whose ops open a group sends it itself while the process has
room in its pipeline (`PIPELINE_DEPTH` groups), so the process starts on it at once; groups that fill while
the pipeline is full are sent by the writer task as room comes back, with no lingering. (Left to the writer
task, a group would leave only after every other runnable task, and under load those are the callers
running their next requests' checks: the event loop and the process took turns, 0.95 of a core between
them; sent by the caller they overlap, 1.2-1.3 cores, +25% accepts and +20% end to end; bench/RESULTS.md,
session 8.) At most `queue_max` operations wait; further callers block (backpressure towards the upstream
sockets).

Callers park on their group directly (`trio.lowlevel.wait_task_rescheduled`) and the commit reschedules
each one: waking a caller costs one reschedule and nothing more (no Event, no extra coroutine frame),
which matters when a thousand callers each wait for one submit_sm_resp or receipt.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import overload

import structlog
import trio

from gateway.errors import GatewayError, StoreError
from gateway.ops.histogram import LATENCY_BOUNDS, SIZE_BOUNDS, Histogram, HistogramSnapshot
from gateway.store.ops import (
    Advance,
    AdvanceResult,
    Done,
    Mo,
    Op,
    Prepare,
    PrepareResult,
    Receipt,
    ReceiptResult,
    Result,
    SetBlacklist,
    SetCursor,
    SetOptOut,
    Submit,
    SubmitResult,
    Sweep,
    SweepResult,
)
from gateway.store.remote import WriterProcess
from gateway.store.store import Store
from gateway.store.wire import WorkerCrashed

log = structlog.get_logger(__name__)


# Groups in flight to a writer process. bench/e2e.py, 3 runs each (one-part texts, msg/s): 1 -> 4,451-6,114,
# 2 -> 5,401-6,721, 3 -> 5,145-7,181. Deeper adds memory and latency for no measurable gain.
PIPELINE_DEPTH = 3


class WriterClosed(StoreError):
    """The writer is shut down: nothing more is accepted."""


@dataclass(frozen=True, slots=True)
class WriterStatistics:
    accepting: bool  # running and not closed: a caller's ops can be committed
    groups: int  # groups committed since the start
    ops: int  # their operations
    queued: int  # operations added and not yet answered (committing, in flight, or waiting to)
    in_flight: int  # groups sent to the writer process and not yet answered
    # From a group leaving (to the worker thread or process) to its results: the commit with its fsync, and
    # in process mode the pipeline ahead of it.
    commit_seconds: HistogramSnapshot
    group_ops: HistogramSnapshot  # operations per committed group


class _Group:
    __slots__ = ("done", "error", "ops", "results", "sent", "waiters")

    def __init__(self) -> None:
        self.done = False  # committed (or failed): its callers have their answer
        self.sent = 0.0  # trio's clock when it left for the commit
        self.ops: list[Op] = []
        self.results: list[Result | GatewayError] = []
        self.error: StoreError | None = None
        # Callers parked until this group has committed (a dict: ordered, O(1) removal on cancel).
        self.waiters: dict[trio.lowlevel.Task, None] = {}

    def finish(self) -> None:
        self.done = True
        for task in self.waiters:
            trio.lowlevel.reschedule(task)
        self.waiters.clear()

    def park(self, task: trio.lowlevel.Task) -> Callable[[object], trio.lowlevel.Abort]:
        """Register `task` as waiting; the returned abort function lets a cancelled caller leave (its ops
        stay queued and may still commit)."""
        self.waiters[task] = None

        def abort(_: object) -> trio.lowlevel.Abort:
            del self.waiters[task]
            return trio.lowlevel.Abort.SUCCEEDED

        return abort


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


class Writer:
    """`async with trio.open_nursery() as n: await n.start(writer.run)`; then `await writer.do(op)`."""

    def __init__(self, store: Store, *, process: WriterProcess | None = None) -> None:
        self._store = store
        # The writer process when the store's writes run there (remote.py); else a worker thread here.
        self._process = process
        self._cfg = store.cfg
        self._groups: deque[_Group] = deque()
        self._queued = 0
        self._closed = False
        self._work = trio.Event()
        self._space = trio.Event()
        self.groups = 0
        self.ops = 0
        # Process mode: groups sent and not yet answered (a commit overlaps the next groups' transfer, and
        # the worker never waits for this event loop between two commits).
        self._depth = PIPELINE_DEPTH
        self._slots = trio.Semaphore(self._depth)
        self._in_flight: deque[_Group] = deque()
        self._send_lock = trio.StrictFIFOLock()
        self._started = False
        self._finished = trio.Event()
        self._commit_seconds = Histogram(LATENCY_BOUNDS)
        self._group_ops = Histogram(SIZE_BOUNDS)

    def statistics(self) -> WriterStatistics:
        return WriterStatistics(
            self._started and not self._closed, self.groups, self.ops, self._queued, len(self._in_flight),
            self._commit_seconds.snapshot(), self._group_ops.snapshot(),
        )  # fmt: skip

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Commit groups until `aclose()`; what is already queued is committed before returning."""
        self._started = True
        task_status.started()
        try:
            if self._process is None:
                await self._groups_loop(self._commit)
                return
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._replies, self._process)
                    await self._groups_loop(self._send)
                    for _ in range(self._depth):  # every group sent has its answer
                        await self._slots.acquire()
                    nursery.cancel_scope.cancel()
            except BaseExceptionGroup as errors:
                # The reply task (end of file) and a send (broken pipe) can both see the process die: one
                # death, one WorkerCrashed.
                crashed, rest = errors.split(WorkerCrashed)
                if crashed is None or rest is not None:
                    raise
                raise _first_leaf(crashed) from None
        finally:
            # However run() ends (a crashed writer process, cancellation), no caller waits forever: what
            # was queued or in flight and not answered is refused, and later calls are too.
            self._closed = True
            for group in (*self._in_flight, *self._groups):
                group.error = WriterClosed("the store writer stopped before answering")
                group.finish()
            self._in_flight.clear()
            self._groups.clear()
            self._space.set()
            self._finished.set()

    async def _groups_loop(self, commit: Callable[[_Group], Awaitable[None]]) -> None:
        while True:
            if not self._groups:
                if self._closed:
                    return
                self._work = trio.Event()
                await self._work.wait()
                continue
            if self._process is not None:
                # Wait for room in the pipeline before closing the group: it keeps filling meanwhile.
                await self._slots.acquire()
                if not self._groups:  # its caller sent it meanwhile (see apply)
                    self._slots.release()
                    continue
            else:
                await self._linger(self._groups[0])
            await commit(self._groups.popleft())

    async def _linger(self, group: _Group) -> None:
        """Let the open group grow while callers are still adding to it (bounded by group_wait)."""
        deadline = trio.current_time() + self._cfg.group_wait_seconds
        while len(group.ops) < self._cfg.group_max and len(self._groups) == 1 and not self._closed:
            before = len(group.ops)
            await trio.lowlevel.checkpoint()
            if len(group.ops) == before or trio.current_time() >= deadline:
                return

    async def _commit(self, group: _Group) -> None:
        group.sent = trio.current_time()
        try:
            # Not cancellable once started (abandon_on_cancel=False): a commit always finishes, so every
            # caller learns the truth about its operation.
            results = await trio.to_thread.run_sync(self._store.apply, group.ops)
        except StoreError as err:
            self._settle(group, err)
        else:
            self._settle(group, results)

    async def _send(self, group: _Group) -> None:
        """Hand the group to the writer process (a slot is held); `_replies` settles it. Groups are sent
        from this task and from callers (apply): one at a time, in flight in the order of the wire."""
        assert self._process is not None
        async with self._send_lock:
            group.sent = trio.current_time()
            self._in_flight.append(group)
            await self._process.send(group.ops, self._store.now_ms())

    async def _replies(self, process: WriterProcess) -> None:
        """The writer process answers groups in the order they were sent."""
        while True:
            try:
                results: list[Result | GatewayError] | StoreError = await process.receive()
            except StoreError as err:  # StoreFull or another refusal of the whole group
                results = err
            # An answer with nothing in flight is a broken worker: IndexError ends the gateway, as it must.
            group = self._in_flight.popleft()
            self._store.observe_seq(process.last_seq)
            self._settle(group, results)
            self._slots.release()

    def _settle(self, group: _Group, results: list[Result | GatewayError] | StoreError) -> None:
        if isinstance(results, StoreError):
            log.warning("group_commit_failed", ops=len(group.ops), error=str(results))
            group.error = results
        else:
            group.results = results
            self.groups += 1
            self.ops += len(group.ops)
            self._commit_seconds.observe(trio.current_time() - group.sent)
            self._group_ops.observe(len(group.ops))
        self._queued -= len(group.ops)
        group.finish()
        self._space.set()

    async def aclose(self) -> None:
        """Stop accepting; returns once `run()` has committed what was queued (at once if it never ran)."""
        self._closed = True
        self._work.set()
        self._space.set()
        if self._started:
            await self._finished.wait()
        else:
            await trio.lowlevel.checkpoint()

    def _open_group(self, size: int) -> _Group:
        # The group being committed has left the deque, so the last group here is still open.
        if self._groups and len(self._groups[-1].ops) + size <= self._cfg.group_max:
            return self._groups[-1]
        group = _Group()
        self._groups.append(group)
        return group

    async def apply(self, ops: Sequence[Op]) -> list[Result | GatewayError]:
        """Queue `ops` (committed together, in order) and return their results after the commit.
        Per-op refusals (unknown id, invalid transition, StoreFull for a submit) come back as values.
        A caller cancelled while waiting does not un-queue its ops: they may still commit."""
        while self._queued >= self._cfg.queue_max and not self._closed:
            if self._space.is_set():
                self._space = trio.Event()
            await self._space.wait()
        if self._closed:
            raise WriterClosed("the store writer is closed")
        group = self._open_group(len(ops))
        start = len(group.ops)
        group.ops.extend(ops)
        self._queued += len(ops)
        if self._process is not None and self._slots.value and self._groups[0] is group:
            # The writer process has room: this caller sends the group now. Left to the writer task, it
            # would leave only after every other runnable task (trio runs them in turn), and under load those
            # are the other callers, each running a request's checks: the event loop and the writer process
            # would take turns instead of working at once.
            self._slots.acquire_nowait()
            self._groups.popleft()
            with trio.CancelScope(shield=True):  # a frame half sent would break the stream
                await self._send(group)
        else:
            if not self._work.is_set():  # Event.set is KI-protected: not free when the writer is awake already
                self._work.set()
        # Park on the group itself (see the module docstring). Its finish() is yet to come, unless the
        # answer came while this caller was sending it.
        if not group.done:
            await trio.lowlevel.wait_task_rescheduled(group.park(trio.lowlevel.current_task()))
        if group.error is not None:
            raise group.error
        return group.results[start : start + len(ops)]

    @overload
    async def do(self, op: Submit) -> SubmitResult: ...
    @overload
    async def do(self, op: Prepare) -> PrepareResult: ...
    @overload
    async def do(self, op: Advance) -> AdvanceResult: ...
    @overload
    async def do(self, op: Receipt) -> ReceiptResult: ...
    @overload
    async def do(self, op: Sweep) -> SweepResult: ...
    @overload
    async def do(self, op: Mo | SetOptOut | SetBlacklist | SetCursor) -> Done: ...

    async def do(self, op: Op) -> Result:
        """One operation; its own error (StoreFull, InvalidTransition, UnknownMessage) is raised."""
        (result,) = await self.apply((op,))
        if isinstance(result, GatewayError):
            raise result
        return result

    async def sweep(self) -> SweepResult:
        """Retention: purge in small transactions (each one queued like any other op) until caught up."""
        total = SweepResult(0, 0, 0, True)
        while total.more:
            step = await self.do(Sweep(self._cfg.sweep_batch))
            total = SweepResult(
                total.messages + step.messages,
                total.events + step.events,
                total.other + step.other,
                step.more,
            )
        return total
