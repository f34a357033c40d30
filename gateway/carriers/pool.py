"""A carrier's binds as one pool: one jobs channel shared by its transmit-capable binds.

    pool = CarrierPool(carrier_config)
    await nursery.start(pool.run)
    await pool.jobs.send(SubmitJob(pdu, context))
    outcome = await pool.results.receive()
    item = await pool.inbound.receive(); ...store...; item.ack()

Each bind pulls from the shared channel when it has window and TPS room, so a slow or throttled bind simply
takes less; a bind that is down takes nothing.
"""

from __future__ import annotations

import trio

from gateway.carriers.bind import Bind, BindStatus
from gateway.carriers.bucket import AccountBudget
from gateway.carriers.config import BindMode, CarrierConfig
from gateway.carriers.jobs import Inbound, SubmitJob, SubmitOutcome


class CarrierPool:
    def __init__(
        self,
        config: CarrierConfig,
        *,
        results: trio.MemorySendChannel[SubmitOutcome] | None = None,
        inbound: trio.MemorySendChannel[Inbound] | None = None,
    ) -> None:
        """`results` / `inbound` may be the engine's own channels (shared by all carriers); otherwise the
        pool makes bounded ones and exposes their receiving ends as `self.results` / `self.inbound`."""
        self.config = config
        self.jobs, jobs_out = trio.open_memory_channel[SubmitJob](config.job_queue_size)
        self._jobs_out = jobs_out
        self.results: trio.MemoryReceiveChannel[SubmitOutcome] | None = None
        self.inbound: trio.MemoryReceiveChannel[Inbound] | None = None
        if results is None:
            results, self.results = trio.open_memory_channel[SubmitOutcome](config.results_queue_size)
        if inbound is None:
            inbound, self.inbound = trio.open_memory_channel[Inbound](config.inbound_queue_size)
        # The account's TPS, shared by every bind below (a cluster leases it: gateway.cluster.shared).
        self.budget = AccountBudget(config.account_tps, trio.current_time()) if config.account_tps > 0 else None
        self.binds: list[Bind] = []
        for bind_cfg in config.binds:
            if bind_cfg.mode is BindMode.TX_RX_PAIR:
                modes = [(BindMode.TRANSMITTER, f"{bind_cfg.name}-tx"), (BindMode.RECEIVER, f"{bind_cfg.name}-rx")]
            else:
                modes = [(bind_cfg.mode, bind_cfg.name)]
            for mode, name in modes:
                self.binds.append(
                    Bind(
                        bind_cfg,
                        carrier=config.name,
                        mode=mode,
                        jobs=jobs_out,
                        results=results,
                        inbound=inbound,
                        name=name,
                        budget=self.budget,
                    )
                )
        self._done = trio.Event()
        self._tx_binds = [bind for bind in self.binds if bind.mode.transmits]
        self._started_at = trio.current_time()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every bind until `stop()` has finished them all."""
        self._started_at = trio.current_time()
        async with trio.open_nursery() as nursery:
            for bind in self.binds:
                await nursery.start(bind.run)
            task_status.started()
        self._done.set()

    def stop(self) -> None:
        """Graceful stop of every bind (stop taking jobs, drain within the grace period, unbind, close)."""
        for bind in self.binds:
            bind.stop()

    async def wait_stopped(self) -> None:
        await self._done.wait()

    def transmitter_down_since(self) -> float | None:
        """Since when (trio's clock) no transmit-capable bind of the pool has been bound; None while one is.

        Counted from when the pool started if none was ever bound (the engine's failover waits on this).
        """
        since = self._started_at
        for bind in self._tx_binds:
            core = bind.core
            if core.is_bound:
                return None
            if core.unbound_since is not None and core.unbound_since > since:
                since = core.unbound_since
        return since

    def take_unsent(self) -> list[SubmitJob]:
        """Jobs still in the channel, which no bind took: safe to hand to another route at any time, while
        the pool runs (a bind takes a job only when it can send it at once) or after `stop()`. Jobs a bind
        took and never wrote come back as NOT_SENT outcomes instead."""
        out = []
        while True:
            try:
                out.append(self._jobs_out.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                return out

    async def wait_bound(self) -> None:
        """Until every bind is bound once (tests and start-up checks)."""
        for bind in self.binds:
            await bind.wait_bound()

    def retry_now(self) -> int:
        """Every bind of the carrier that waits to connect again does so now; how many."""
        return sum(bind.retry_now() for bind in self.binds)

    def status(self) -> list[BindStatus]:
        return [bind.status() for bind in self.binds]
