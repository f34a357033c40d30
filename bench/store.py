"""Store benchmark: durable accept, submit-response update, receipt, and recovery of a 1M-message store.

Every write figure is with fsync on (StoreConfig.sync=True) and group commit through the real trio Writer,
with many concurrent caller tasks, each waiting for its own commit as the engine will. Recovery opens a
store holding `--recover-count` queued messages in a fresh subprocess and times Store.open (recovery
included) until the first due message is in hand; its peak RSS is that subprocess's ru_maxrss.

    .venv/bin/python bench/store.py                 # full run (builds a 1M-message store, ~1-2 min)
    .venv/bin/python bench/store.py --quick         # smaller counts, for a smoke run

Last line: one JSON object (accept_per_s, update_per_s, receipt_per_s, recover_1m_s, recover_rss_mb, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

import trio

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gateway import gctune
from gateway.lifecycle import Ev, Event
from gateway.store import (
    Advance,
    Op,
    Prepare,
    Receipt,
    Recipient,
    Store,
    StoreConfig,
    Submit,
    Writer,
)

TEXT = "Your code is 482913. It expires in 10 minutes. Do not share it with anyone."


def submit(n_recipients: int, base: int) -> Submit:
    recipients = tuple(Recipient(f"+4479{base + i:08d}") for i in range(n_recipients))
    return Submit("acme", "notification", "ACME", TEXT, recipients, batch=f"b{base // 100_000}")


async def drive(writer: Writer, jobs: Sequence[Sequence[Op]], callers: int) -> float:
    """Run `jobs` through the writer from `callers` concurrent tasks; seconds until all were committed."""
    it = iter(jobs)

    async def caller() -> None:
        for ops in it:
            for result in await writer.apply(ops):
                if isinstance(result, Exception):
                    raise result

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(callers):
            nursery.start_soon(caller)
    return time.perf_counter() - start


CPU_SHARE: dict[str, float] = {}


async def with_writer(store: Store, jobs: Sequence[Sequence[Op]], callers: int, name: str = "") -> float:
    writer = Writer(store)
    cpu = time.process_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        elapsed = await drive(writer, jobs, callers)
        await writer.aclose()
    if name:
        # CPU seconds this process got per wall second. The writer path is bound to one core (the GIL);
        # well under 1 means other load took the core (or fsync waits), so the rate is pessimistic.
        CPU_SHARE[name] = (time.process_time() - cpu) / elapsed
    return elapsed


def bench_writes(path: str, n: int, callers: int, per_submit: int) -> dict[str, float]:
    cfg = StoreConfig(path=path, sync=True, map_size_bytes=4 << 30)
    store = Store.open(cfg)
    out: dict[str, float] = {}
    # Accept: each caller submits one text to `per_submit` recipients (the upstream API's shape).
    jobs: Sequence[Sequence[Op]] = [[submit(per_submit, i)] for i in range(0, n, per_submit)]
    out["accept_per_s"] = n / trio.run(with_writer, store, jobs, callers, "accept_per_s")
    # Accept with one recipient per submit: the per-call overhead of the writer shows here.
    jobs = [[submit(1, n + i)] for i in range(n // 4)]
    out["accept_single_per_s"] = (n // 4) / trio.run(with_writer, store, jobs, callers, "accept_single_per_s")
    ids = [m.id for m in store.iter_messages()][:n]
    setup: list[list[Op]] = [[Prepare(i, "carrierA", 1)] for i in ids]
    setup += [[Advance(i, 0, Event(Ev.DISPATCH, bind="b1", sequence=k + 1))] for k, i in enumerate(ids)]
    trio.run(with_writer, store, setup, callers)
    # Update: one submit_sm_resp per call (as a bind's reader task sends them one by one), and 16 per
    # call (what one socket read of a busy bind holds, if the engine hands them over together).
    half = len(ids) // 2
    single, batched = ids[:half], ids[half:]
    jobs = [[Advance(i, 0, Event(Ev.SUBMIT_OK, carrier_id=f"{i:x}"))] for i in single]
    out["update_per_s"] = half / trio.run(with_writer, store, jobs, callers, "update_per_s")
    ops: list[Op] = [Advance(i, 0, Event(Ev.SUBMIT_OK, carrier_id=f"{i:x}")) for i in batched]
    jobs = [ops[k : k + 16] for k in range(0, len(ops), 16)]
    out["update_batch16_per_s"] = len(ops) / trio.run(with_writer, store, jobs, callers, "update_batch16_per_s")
    # Receipt: find by carrier id, change state, log the event, count the batch; same two shapes.
    jobs = [[Receipt("carrierA", f"{i:x}", Ev.RECEIPT_DELIVERED)] for i in single]
    out["receipt_per_s"] = half / trio.run(with_writer, store, jobs, callers, "receipt_per_s")
    ops = [Receipt("carrierA", f"{i:x}", Ev.RECEIPT_DELIVERED) for i in batched]
    jobs = [ops[k : k + 16] for k in range(0, len(ops), 16)]
    out["receipt_batch16_per_s"] = len(ops) / trio.run(with_writer, store, jobs, callers, "receipt_batch16_per_s")
    out.update({f"cpu_share_{k.removesuffix('_per_s')}": v for k, v in CPU_SHARE.items()})
    problems = store.check()
    store.close()
    if problems:
        raise SystemExit(f"index check failed: {problems}")
    return out


def build_queued(path: str, count: int) -> None:
    """A store with `count` messages waiting in the due index (built without fsync: this is setup)."""
    store = Store(StoreConfig(path=path, sync=False, map_size_bytes=8 << 30))
    step = 2000
    for base in range(0, count, step):
        store.apply([submit(min(step, count - base), base)])
    store.close()


RECOVER_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[2])
start = time.perf_counter()
from gateway.store import Store, StoreConfig
store = Store.open(StoreConfig(path=sys.argv[1], map_size_bytes=8 << 30))
first = store.due(now_ms=1 << 62, limit=1)
elapsed = time.perf_counter() - start
assert first and store.get(first[0].message_id) is not None
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec, so it would report the parent's peak.
with open("/proc/self/status") as status:
    hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"seconds": elapsed, "rss_mb": hwm / 1024}))
"""


def bench_recovery(path: str, count: int) -> dict[str, float]:
    build_queued(path, count)
    # Drop this process's cached pages of the file so the child really reads from the page cache/disk.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(
        [sys.executable, "-c", RECOVER_CHILD, path, root], capture_output=True, text=True, check=True
    )
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    size_mb = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)) / 2**20
    return {"recover_1m_s": child["seconds"], "recover_rss_mb": child["rss_mb"], "recover_file_mb": size_mb}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--messages", type=int, default=200_000)
    # Concurrent callers, each waiting for its own commit: ten binds with a window of 100 have ~1000
    # submit_sm_resp / receipts in flight; the group size (and so the fsync cost per op) follows from it.
    parser.add_argument("--callers", type=int, default=1024)
    parser.add_argument("--per-submit", type=int, default=100)
    parser.add_argument("--recover-count", type=int, default=1_000_000)
    parser.add_argument("--dir", default=None, help="where to put the stores (default: a temp dir)")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.recover_count = 20_000, 100_000
    root = tempfile.mkdtemp(prefix="bench-store-", dir=args.dir)
    # The collector as the gateway's writer process runs it (gateway/gctune.py).
    gctune.tune()
    try:
        result: dict[str, float | int | str] = {}
        result.update(bench_writes(os.path.join(root, "w"), args.messages, args.callers, args.per_submit))
        result.update(bench_recovery(os.path.join(root, "r"), args.recover_count))
        result.update(
            messages=args.messages,
            callers=args.callers,
            per_submit=args.per_submit,
            recover_count=args.recover_count,
            fsync=True,
            load=os.getloadavg()[0],
        )
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
