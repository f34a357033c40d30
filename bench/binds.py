"""Benchmark: one bind (window 100, no TPS limit) against the simulator, each in its own process.

Measures submit_sm answered per second while receipts flow back (registered_delivery=1, receipts sent at
once), plus each process's CPU seconds. The bind side runs a minimal engine stand-in: a feeder task filling
the jobs channel, a consumer draining outcomes, and one acking every inbound receipt.

    .venv/bin/python bench/binds.py [--messages 100000] [--window 100] [--profile sim|bind]

Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import multiprocessing as mp
import os
import pstats
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

import trio

TARGET_SUBMIT_PER_S = 10_000
_PASSWORD_ENV = "GATEWAY_BENCH_PASSWORD"


def _profiled(enabled: bool, fn: Any, *args: Any) -> Any:
    if not enabled:
        return fn(*args)
    prof = cProfile.Profile()
    try:
        return prof.runcall(fn, *args)
    finally:
        stats = pstats.Stats(prof, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(25)


# --- simulator process ---------------------------------------------------------------------------------


def _sim_process(conn: Connection, profile: bool) -> None:
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    _profiled(profile, trio.run, _sim_main, conn)


async def _sim_main(conn: Connection) -> None:
    from gateway.sim import SimConfig, Simulator

    sim = Simulator(SimConfig(credentials=(("bench", "secret"),), window=1000))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve, "127.0.0.1", 0)
        cpu0 = time.process_time()
        conn.send(port)
        # Wait for "stop" from the parent without blocking the event loop.
        await trio.to_thread.run_sync(conn.recv)
        conn.send({"cpu_seconds": time.process_time() - cpu0, "counters": sim.stats()})
        nursery.cancel_scope.cancel()


# --- bind process --------------------------------------------------------------------------------------


def _bind_process(conn: Connection, port: int, messages: int, window: int, profile: bool) -> None:
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    os.environ[_PASSWORD_ENV] = "secret"
    result = _profiled(profile, trio.run, _bind_main, port, messages, window)
    result["bind_cpu_seconds"] = time.process_time()
    conn.send(result)


async def _bind_main(port: int, messages: int, window: int) -> dict[str, Any]:
    from gateway.carriers import BindConfig, CarrierConfig, CarrierPool, OutcomeKind, SubmitJob
    from gateway.smpp import pdu as P

    bind = BindConfig(
        name="bench", port=port, system_id="bench", password_env=_PASSWORD_ENV, window=window, tps=0
    )
    pool = CarrierPool(CarrierConfig(name="sim", binds=(bind,), job_queue_size=window * 4))
    assert pool.results is not None
    assert pool.inbound is not None
    results, inbound = pool.results, pool.inbound
    pdus = [
        P.SubmitSm(
            source_addr="ACME",
            destination_addr=f"4477009{i:05d}",
            short_message=b"benchmark message %d" % i,
            registered_delivery=1,
        )
        for i in range(1000)
    ]
    counts = {"accepted": 0, "other": 0, "receipts": 0}
    all_receipts = trio.Event()

    async def feed() -> None:
        # send_nowait until the channel is full: `await send()` yields on every call, which would hand the
        # bind one job per scheduler turn and measure the feeder instead of the bind.
        jobs = pool.jobs
        for i in range(messages):
            job = SubmitJob(pdus[i % 1000], i)
            try:
                jobs.send_nowait(job)
            except trio.WouldBlock:
                await jobs.send(job)

    async def ack() -> None:
        while counts["receipts"] < messages:
            item = await inbound.receive()
            item.ack()
            counts["receipts"] += 1
            # Drain what is already there without a checkpoint per item.
            while True:
                try:
                    item = inbound.receive_nowait()
                except trio.WouldBlock:
                    break
                item.ack()
                counts["receipts"] += 1
        all_receipts.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        await pool.wait_bound()
        start = time.perf_counter()
        cpu0 = time.process_time()
        nursery.start_soon(feed)
        nursery.start_soon(ack)
        done = 0
        while done < messages:
            outcome = await results.receive()
            done += 1
            counts["accepted" if outcome.kind is OutcomeKind.ACCEPTED else "other"] += 1
            while done < messages:
                try:
                    outcome = results.receive_nowait()
                except trio.WouldBlock:
                    break
                done += 1
                counts["accepted" if outcome.kind is OutcomeKind.ACCEPTED else "other"] += 1
        submit_elapsed = time.perf_counter() - start
        with trio.fail_after(60):
            await all_receipts.wait()
        receipts_elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu0
        pool.stop()
        await pool.wait_stopped()
        nursery.cancel_scope.cancel()
    return {
        "accepted": counts["accepted"],
        "not_accepted": counts["other"],
        "receipts": counts["receipts"],
        "submit_elapsed": submit_elapsed,
        "receipts_elapsed": receipts_elapsed,
        "bind_cpu_seconds_measured": cpu,
    }


# --- driver --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--profile", choices=["sim", "bind"], default=None)
    args = parser.parse_args(argv)
    ctx = mp.get_context("spawn")
    sim_parent, sim_child = ctx.Pipe()
    sim = ctx.Process(target=_sim_process, args=(sim_child, args.profile == "sim"))
    sim.start()
    port = sim_parent.recv()
    bind_parent, bind_child = ctx.Pipe()
    bind = ctx.Process(
        target=_bind_process, args=(bind_child, port, args.messages, args.window, args.profile == "bind")
    )
    bind.start()
    result = bind_parent.recv()
    bind.join()
    sim_parent.send("stop")
    sim_result = sim_parent.recv()
    sim.join()
    submit_per_s = result["accepted"] / result["submit_elapsed"]
    out = {
        "bench": "binds",
        "messages": args.messages,
        "window": args.window,
        "submit_per_s": round(submit_per_s),
        "receipts_per_s": round(result["receipts"] / result["receipts_elapsed"]),
        "accepted": result["accepted"],
        "not_accepted": result["not_accepted"],
        "receipts": result["receipts"],
        "bind_cpu_seconds": round(result["bind_cpu_seconds_measured"], 2),
        "sim_cpu_seconds": round(sim_result["cpu_seconds"], 2),
        "elapsed_seconds": round(result["receipts_elapsed"], 2),
        "target_submit_per_s": TARGET_SUBMIT_PER_S,
        "target_met": submit_per_s >= TARGET_SUBMIT_PER_S,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
