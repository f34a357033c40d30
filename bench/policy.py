"""Compliance benchmark: durable accepts with every rule on, as the engine's backend makes them.

conf/examples/china.toml's rules (the marketplace's five caps, signatures, opt-out wording, the 09:00-21:00
window with the clock inside it) plus 2,000 banned words, and 10,000 opted-out and 10,000 blacklisted
numbers in the store. Each request: one marketing text to `--per-request` mainland China mobiles through
`Backend.submit` (numbers, routes, word scans, the policy's text checks and caps, the store's opt-out,
blacklist and cap checks in the accept transaction), fsync on, the writer in its own process as shipped,
`--callers` requests in flight.

    .venv/bin/python bench/policy.py                     # 200,000 recipients
    .venv/bin/python bench/policy.py --recipients 20000  # a quick run

Last line: one JSON object: policy_accepts_per_s, the outcome counts, and optout_import_s: 1,000,000
opt-outs added through the lists requests `gatewayctl optout import` sends (1,000 numbers each, four in
flight; the socket and the CSV reading left out), scaled to a million when --optouts is smaller.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import trio

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gateway import gctune
from gateway.app import _store_config, build_policy, build_routing, load_config
from gateway.engine.backend import Backend
from gateway.engine.context import Context
from gateway.engine.scheduler import Scheduler
from gateway.engine.settings import WordListSettings
from gateway.store import Op, SetBlacklist, SetOptOut, Store, Writer
from gateway.store.remote import WriterProcess
from gateway.upstream import ListAction, ListName, ListRequest, MessageClass, SubmitRequest

CONFIG = Path(__file__).resolve().parents[1] / "conf" / "examples" / "china.toml"
# 12:00 in Shanghai: inside the marketing window.
NOON_IN_SHANGHAI_MS = 1_800_000_000_000 - 1_800_000_000_000 % 86_400_000 + 4 * 3_600_000
BLOCKS = ("134", "135", "136", "137", "138", "139", "150", "151", "152", "186", "185", "189", "133", "199")
TEXT = "【Acme】冬季大促：全场满200减30，会员再享9折，活动截至本周日。"  # noqa: RUF001


def numbers(rng: random.Random, n: int) -> list[str]:
    return [f"86{rng.choice(BLOCKS)}{rng.randrange(10**8):08d}" for _ in range(n)]


def banned_words(rng: random.Random, n: int) -> tuple[str, ...]:
    return tuple("".join(chr(rng.randrange(0x4E00, 0x9FA5)) for _ in range(rng.randint(2, 4))) for _ in range(n))


async def run(args: argparse.Namespace, tmp: str) -> dict[str, float | int | str]:
    rng = random.Random(7)
    cfg = load_config(CONFIG)
    words = [*cfg.word_lists, WordListSettings("generated", banned_words(rng, args.banned_words))]
    assert cfg.compliance is not None
    cfg = dataclasses.replace(
        # POLICY_NOSYNC=1: no fsync, to tell the disk's share from the processes' (as E2E_NOSYNC in e2e.py).
        cfg, store=dataclasses.replace(
            cfg.store, path=os.path.join(tmp, "store"), sync=not os.environ.get("POLICY_NOSYNC")
        ),
        word_lists=tuple(words),
        compliance=dataclasses.replace(cfg.compliance, banned_words=(*cfg.compliance.banned_words, "generated")),
    )  # fmt: skip
    if args.no_rules:  # the same accepts with no compliance table: what the rules cost
        cfg = dataclasses.replace(cfg, compliance=None, caps=())
    routing, policy = build_routing(cfg), build_policy(cfg)
    assert routing is not None
    assert policy is not None
    start_ms = int(time.time() * 1000)

    def wall_ms() -> int:
        return NOON_IN_SHANGHAI_MS + int(time.time() * 1000) - start_ms

    store_cfg = _store_config(cfg)
    process = await WriterProcess.start(store_cfg, int(time.time() * 1000))
    store = Store(store_cfg)
    out: dict[str, float | int | str] = {}
    try:
        async with trio.open_nursery() as nursery:
            writer = Writer(store, process=process)
            await nursery.start(writer.run)
            listed = numbers(rng, 20_000)
            seed: list[Op] = [SetOptOut(n, scope="demo", source="import") for n in listed[:10_000]]
            seed += [SetBlacklist(n, source="import") for n in listed[10_000:]]
            await writer.apply(seed)
            ctx = Context(
                store=store, writer=writer, pools={}, carriers={c.name: c.settings() for c in cfg.carriers},
                routing=routing, policy=policy, settings=cfg.engine, wall_ms=wall_ms, rng=random.Random(1),
            )  # fmt: skip
            backend = Backend(ctx, Scheduler(ctx, {}))
            # A fifth of each request's recipients are listed numbers (refused in the store).
            requests = []
            for _ in range(args.recipients // args.per_request):
                to = numbers(rng, args.per_request - args.per_request // 5) + rng.sample(listed, args.per_request // 5)
                requests.append(SubmitRequest(tuple(to), TEXT, MessageClass.MARKETING, "ACME"))
            outcomes: Counter[str] = Counter()
            pending = iter(requests)

            async def caller() -> None:
                for request in pending:
                    result = await backend.submit("demo", request)
                    outcomes.update(m.reason or m.state for m in result.messages)

            gctune.tune()
            began, cpu, writer_cpu = time.perf_counter(), time.process_time(), _cpu_seconds(process.pid)
            async with trio.open_nursery() as callers:
                for _ in range(args.callers):
                    callers.start_soon(caller)
            elapsed = time.perf_counter() - began
            # Which side bounds the rate: the event loop's checks, or the writer's transactions.
            out["main_cpu_share"] = round((time.process_time() - cpu) / elapsed, 2)
            out["writer_cpu_share"] = round((_cpu_seconds(process.pid) - writer_cpu) / elapsed, 2)
            total = sum(outcomes.values())
            if os.environ.get("POLICY_GROUPS"):  # how the writer grouped them (a diagnosis aid)
                ws = writer.statistics()
                out["groups"] = ws.groups
                out["ops_per_group"] = round(ws.ops / max(ws.groups, 1), 1)
                out["commit_s_mean"] = round(ws.commit_seconds.sum / max(ws.commit_seconds.count, 1), 4)
            out["policy_accepts_per_s"] = round(total / elapsed)
            out["recipients"] = total
            out.update({f"outcome_{k}": v for k, v in sorted(outcomes.items())})
            # An opt-out import as `gatewayctl optout import` makes it: 1,000 numbers a lists request, four in
            # flight, each number read as a number, written, its entry read back (here without the socket).
            many = [f"86{rng.choice(BLOCKS)}{i:08d}" for i in range(args.optouts)]
            began = time.perf_counter()
            for k in range(0, len(many), 4_000):
                async with trio.open_nursery() as flight:
                    for j in range(k, min(k + 4_000, len(many)), 1_000):
                        request = ListRequest(ListName.OPTOUT, ListAction.ADD, tuple(many[j : j + 1_000]))
                        flight.start_soon(backend.lists, "demo", request)
            out["optout_import_s"] = round((time.perf_counter() - began) * 1_000_000 / max(1, len(many)), 2)
            await writer.aclose()
            nursery.cancel_scope.cancel()
    finally:
        store.close()
        await process.aclose()
    return out


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipients", type=int, default=200_000)
    p.add_argument("--per-request", type=int, default=100)
    p.add_argument("--callers", type=int, default=16)
    p.add_argument("--banned-words", type=int, default=2_000)
    p.add_argument("--optouts", type=int, default=1_000_000)
    p.add_argument("--no-rules", action="store_true", help="no [compliance] and no caps (the lists still seeded)")
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-policy-")
    try:
        out = trio.run(run, args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out["loadavg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
