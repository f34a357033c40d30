"""The engine: accept -> persist -> schedule -> route and split -> submit -> correlate -> event.

`Engine` wires its parts, each with one job, its own tasks (one or a few each, never one per message or PDU)
and a `statistics()` snapshot for the admin interface:

- scheduler     (scheduler.py) the store's due-time index into per-carrier ready queues; deadlines
- dispatch      (dispatch.py) ready messages prepared in one group commit, split, handed to the binds;
                later parts released in order; a carrier down too long hands its work back
- correlate     (correlate.py) submit_sm outcomes, receipts and MO into lifecycle events, a batch per commit
- backend       (backend.py) the `UpstreamBackend` the upstream server calls: submit, status, cancel,
                preview, events
- context       (context.py) what they share: store, writer, carriers, route table, commit, fault boundary

The engine's own task is housekeeping: MO reassembly expiry, store retention, unmatched receipts.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
import trio

from gateway.carriers.jobs import Inbound, SubmitOutcome
from gateway.carriers.pool import CarrierPool
from gateway.engine.backend import Backend, BackendStatistics
from gateway.engine.context import Context, FaultStatistics
from gateway.engine.correlate import CorrelateStatistics, Correlator
from gateway.engine.dispatch import Dispatch, DispatchStatistics
from gateway.engine.portability import PortabilityImporter
from gateway.engine.scheduler import Scheduler, SchedulerStatistics
from gateway.engine.settings import AccountSettings, CarrierSettings, EngineSettings
from gateway.errors import GatewayError
from gateway.memtrim import Trimmer
from gateway.policy.categories import FailureTable
from gateway.policy.policy import Policy
from gateway.routing.router import Routing
from gateway.store import Message, Store, Writer
from gateway.store.ops import BalanceResult, TopUp

if TYPE_CHECKING:
    from gateway.cluster.shared import Shared

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class EngineStatistics:
    scheduler: SchedulerStatistics
    dispatch: DispatchStatistics
    correlate: CorrelateStatistics
    backend: BackendStatistics
    faults: FaultStatistics
    receipts_unmatched: int  # receipts no submit claimed in time, kept in the unmatched table


class Engine:
    def __init__(
        self,
        *,
        store: Store,
        writer: Writer,
        pools: dict[str, CarrierPool],
        carriers: dict[str, CarrierSettings],
        routing: Routing,
        settings: EngineSettings,
        policy: Policy | None = None,
        accounts: Sequence[AccountSettings],
        results: trio.MemoryReceiveChannel[SubmitOutcome],
        inbound: trio.MemoryReceiveChannel[Inbound],
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        rng: random.Random | None = None,
        shared: Shared | None = None,
    ) -> None:
        self._ctx = ctx = Context(
            store=store, writer=writer, pools=pools, carriers=carriers, routing=routing, policy=policy or Policy(),
            settings=settings, wall_ms=wall_ms, rng=rng or random.Random(), shared=shared,
        )  # fmt: skip
        self.store = store
        self.writer = writer
        self.settings = settings
        ready_tx: dict[str, trio.MemorySendChannel[Message]] = {}
        ready_rx: dict[str, trio.MemoryReceiveChannel[Message]] = {}
        for name in pools:
            ready_tx[name], ready_rx[name] = trio.open_memory_channel[Message](settings.ready_queue_size)
        self.scheduler = Scheduler(ctx, ready_tx)
        self.dispatch = Dispatch(ctx, ready_rx, self.scheduler)
        self.correlator = Correlator(ctx, self.scheduler, self.dispatch, accounts, results, inbound)
        # What the upstream server calls (gateway.upstream.UpstreamBackend).
        self.backend = Backend(ctx, self.scheduler)
        self._unmatched = store.unmatched_count()

    @property
    def portability(self) -> PortabilityImporter:
        """The number-portability table, imported from its CSV while the gateway runs (portability.py)."""
        return self._ctx.portability

    @property
    def routing(self) -> Routing:
        return self._ctx.routing

    def set_routing(self, routing: Routing) -> None:
        """A reload's routes, networks, word lists and number rules: they apply to messages accepted from now
        on (each message keeps the carriers its accept chose)."""
        self._ctx.routing = routing

    @property
    def policy(self) -> Policy:
        return self._ctx.policy

    def set_policy(self, policy: Policy) -> None:
        """A reload's compliance rules: they apply to requests and MO from now on."""
        self._ctx.policy = policy

    def failure_table(self) -> FailureTable:
        """Each carrier's failure codes as batch reports name them (CarrierSettings.failure_reasons)."""
        return self.backend.failure_table()

    async def top_up(self, op: TopUp) -> BalanceResult:
        """An operator's change to an account's balance, committed before it is answered."""
        (result,) = await self._ctx.apply([op])
        if isinstance(result, GatewayError):
            raise result
        assert isinstance(result, BalanceResult)
        return result

    @property
    def shared(self) -> Shared | None:
        """What this node shares with the others (gateway.cluster), None for one node."""
        return self._ctx.shared

    def wake(self) -> None:
        """Something became due (a submit, a resend, a retry): the scheduler rescans the due index now."""
        self.scheduler.wake()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.correlator.restore_mo_parts()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.scheduler.run)
            nursery.start_soon(self.scheduler.run_deadlines)
            self.dispatch.start(nursery)
            self.correlator.start(nursery)
            nursery.start_soon(self._housekeeping)
            nursery.start_soon(self._ctx.run_failer)
            nursery.start_soon(self._ctx.portability.run)
            await nursery.start(self.backend.batches.run)
            if self._ctx.shared is not None:  # several nodes (docs/scaling.md)
                await nursery.start(self._ctx.shared.run, self._ctx.apply)
            task_status.started()

    async def drained(self) -> None:
        """Once the carriers' result and inbound channels were closed and everything in them is stored."""
        await self.correlator.drained()

    async def _housekeeping(self) -> None:
        trimmer = Trimmer()
        while True:
            await trio.sleep(min(30.0, self.settings.mo_reassembly_timeout_seconds / 4))
            trimmer.maybe()
            await self.correlator.expire_mo_parts()
            result = await self.writer.sweep()
            while result.more:
                result = await self.writer.sweep()
            self._report_unmatched()

    def _report_unmatched(self) -> None:
        """A receipt no response claimed in time was moved to the unmatched table by the sweep: never silent."""
        count = self.store.unmatched_count()
        if count > self._unmatched:
            log.warning("receipts_unmatched", new=count - self._unmatched, kept=count,
                        hint="gatewayctl receipts --unmatched")  # fmt: skip
        self._unmatched = count

    # --- carriers and accounts a reload changes (app.Gateway.reload) --------------------------------------

    def add_carrier(self, name: str, pool: CarrierPool, settings: CarrierSettings) -> None:
        """A new carrier whose pool is running: messages of routes naming it may go to it from now on."""
        ctx = self._ctx
        ctx.set_carrier(name, settings, pool)
        tx, rx = trio.open_memory_channel[Message](self.settings.ready_queue_size)
        self.scheduler.add_carrier(name, tx)
        self.dispatch.add_carrier(name, rx)
        self.scheduler.rescan()

    def retune_carrier(self, name: str, settings: CarrierSettings) -> None:
        """A carrier's settings changed but not its binds (receipt timeout, errors, encodings ...)."""
        self._ctx.set_carrier(name, settings)

    async def replace_pool(
        self, name: str, start: Callable[[], Awaitable[CarrierPool]], settings: CarrierSettings, grace: float
    ) -> None:
        """A carrier whose binds changed: paused, its old pool stopped (windows answered) and what it had
        not sent kept for it; then `start()`'s new pool takes over and the carrier resumes. Its messages wait
        meanwhile; none is moved or dropped."""
        old = await self.dispatch.retire(name, reroute=False, grace=grace)
        pool = await start()
        self._ctx.set_carrier(name, settings, pool)
        await self.dispatch.hand_back_from(name, old)  # a job a dispatcher put in the old queue meanwhile
        await self.dispatch.hold(name, None)

    async def remove_carrier(self, name: str, grace: float) -> None:
        """A carrier a reload removed: drained (what was queued for it moves on along its route), its pool
        stopped within `grace` seconds, its tasks ended. Messages that can go nowhere else end no_route."""
        old = await self.dispatch.retire(name, reroute=True, grace=grace)
        await self.dispatch.hand_back_from(name, old, reroute=True)
        # No checkpoint from here on: the scheduler never sees the carrier half gone.
        self.dispatch.remove_carrier(name)
        self.scheduler.remove_carrier(name)
        self._ctx.drop_carrier(name)
        self.scheduler.rescan()

    def set_accounts(self, accounts: Sequence[AccountSettings]) -> None:
        """A reload's accounts: MO reach them by their addresses (routing and policy come with the reload)."""
        self.correlator.set_accounts(accounts)

    @property
    def held(self) -> dict[str, str]:
        """The carriers the operator paused or drained, with which (gatewayctl carrier)."""
        return dict(self._ctx.held)

    async def hold_carrier(self, carrier: str, how: str | None) -> int:
        """Pause (PAUSED), drain (DRAINED) or resume (None) a carrier: Dispatch.hold."""
        return await self.dispatch.hold(carrier, how)

    def statistics(self) -> EngineStatistics:
        return EngineStatistics(
            self.scheduler.statistics(), self.dispatch.statistics(), self.correlator.statistics(),
            self.backend.statistics(), self._ctx.fault_statistics(), self._unmatched,
        )  # fmt: skip

    @property
    def counters(self) -> dict[str, int]:
        """The counts the log's engine_counters line shows (a flat view of `statistics()`)."""
        s = self.statistics()
        c = s.correlate
        return {
            "receipts_unparseable": c.receipts_unparseable, "receipts_early": c.receipts_early,
            "receipts_ignored": c.receipts_ignored, "mo": c.mo, "internal_errors": s.faults.internal_errors,
            "rerouted": s.faults.rerouted, "handed_back": s.dispatch.handed_back,
            "overdue_ended": s.scheduler.overdue_ended, "inbound_refused": c.inbound_refused,
            "carrier_cool_downs": c.carrier_cool_downs, "receipts_unmatched": s.receipts_unmatched,
        }  # fmt: skip
