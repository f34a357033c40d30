# ruff: noqa: RUF001 - the UCS-2 sample text is Chinese, with its own full-width punctuation
"""End-to-end throughput: upstream client -> gateway (own process, fsync on) -> simulator (own process,
receipts on) -> receipts back to the client as events.

    .venv/bin/python bench/e2e.py [--messages 20000] [--binds 1] [--window 100]
    .venv/bin/python bench/e2e.py --smsc 127.0.0.1:2775 --smsc-account gw:secret [--smsc-ids decimal]
    .venv/bin/python bench/e2e.py --scrape [--metrics-port 28501] [--sim-port 28502]

For each of three texts (GSM-7 160 chars = 1 part, GSM-7 300 chars = 2 parts, 100 Chinese characters =
UCS-2 2 parts) it starts a fresh simulator and gateway, pushes N messages from the client library in
requests of --per-request recipients with --concurrency requests in flight, and measures from the first
submit until every message's final receipt event has reached the client (the client subscribes to
final events only, as a platform showing delivery reports does; --all-events adds the "submitted" ones).
Prints one JSON object as its last line. `gateway_cpu_s` is the gateway's two processes together
(`gateway_main_cpu_s`: the event loop; `store_writer_cpu_s`: its store writer process). `run_wait_s`: time
the event loop, the writer process and the simulator were runnable but waiting for a core; `host_steal_s`:
CPU time the hypervisor gave to other guests meanwhile. `gateway_rss_mb` is the peak resident size of the
gateway's two processes; `rss_mb_trace` their resident size sampled every few seconds, to see it stay flat;
`anon_mb_trace` the anonymous part of it (the processes' own memory: resident size also counts the pages of
the LMDB file they mapped and touched, page cache the kernel reclaims, which grows with the store, and
counts the pages both processes share twice); `pss_mb_trace` their proportional set size, shared pages
counted once; `gateway_anon_mb` the largest anonymous sample.

With --smsc the benchmark starts no simulator: the gateway binds to that SMSC (an implementation this
project did not write), with the account --smsc-account; the SMSC must send a receipt for every submit.
`simulator_cpu_s` is then null.

With --scrape the gateway serves [metrics] (docs/metrics.md) and the benchmark GETs /metrics every second
during the run, as a Prometheus would (ten times its usual rate): `scrapes`, `scrape_p50_ms` (request to last
byte) and `scrape_bytes` are added. Run it A/B against the same command without --scrape to see what a
scraped gateway costs (bench/RESULTS.md, session 8).

Environment: E2E_PYSPY=path/to/py-spy records GIL samples (raw format) of the gateway's event loop (of
the simulator with E2E_PROFILE=sim, of the store writer process with E2E_PROFILE=writer) into
$TMPDIR/e2e-<text>.prof; E2E_NOSYNC=1 turns fsync off (only to see what fsync costs: the figures the issue
asks for are with fsync on); E2E_GATEWAY_LOG=path keeps the gateway's log there.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from gateway.upstream import MessageClass, SubmitRequest, UpstreamClient, open_unix_client

ROOT = Path(__file__).resolve().parent.parent
TEXTS = {
    "gsm7_1part": ("Your appointment at Riverside Clinic is confirmed for Tuesday 14 May at 10:30. Reply C to cancel "
                   "or call 020 7946 0000. Please arrive 10 minutes early. Thank you!!")[:160],
    "gsm7_2part": ("Big weekend sale at Acme Stores: 30% off all garden furniture, 20% off barbecues and free delivery "
                   "on orders over 50 pounds. Visit your nearest store or shop online before Sunday midnight. Use "
                   "code SUMMER at checkout. Terms apply; while stocks last. Reply STOP to opt out of offers...")[:300],
    "ucs2_2part": ("您好，您的订单已发货，预计三天内送达。如有任何问题，请联系客服热线，我们将竭诚为您服务。"
                   "感谢您选择我们的产品，祝您生活愉快，万事如意！欢迎再次光临本店，期待您的下次惠顾。谢谢")[:100],
}
SECRET = "bench-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rules_toml(tmp: Path) -> tuple[str, str]:
    """--rules: issue 12's table in the config: 1,000 routes (995 that never take the bench's account, the
    last ones by network, country and a default), 10,000 network blocks over 40 networks, three word lists
    of 5,000 words each (bench/content.py's) that the carrier blocks. Returns (the carrier's
    blocked_words line, the tables)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from content import random_lists  # the bench directory's sibling

    from gateway.routing.content import WordLists

    rng = random.Random(12)
    lists = random_lists(7)
    # Random short words turn up inside any text once spaces and symbols are dropped ("fast" across "breakfast
    # time"): the words the bench's own texts contain are left out, so every message is scanned and sent.
    found = WordLists(lists)
    inside = {hit.word for text in TEXTS.values() for hit in found.hits(text)}
    lists = {name: [w for w in words if w not in inside] for name, words in lists.items()}
    # The other accounts the routes name (a route naming no account of the config is refused).
    tables = [f'[[accounts]]\nname = "acct{i}"\nsecret_file = "{tmp}/acct.secret"\n' for i in range(50)]
    for name, words in lists.items():
        (tmp / f"words-{name}.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
        tables.append(f'[[word_lists]]\nname = "{name}"\nfile = "{tmp}/words-{name}.txt"\n')
    blocks: dict[int, list[str]] = {i: [] for i in range(40)}
    seen: set[str] = set()
    while len(seen) < 10_000:
        block = "86" + str(rng.randint(130, 199)) + "".join(rng.choices("0123456789", k=rng.randint(1, 3)))
        if block not in seen:
            seen.add(block)
            blocks[rng.randrange(40)].append(block)
    tables += [f'[[networks]]\nname = "net{i}"\nblocks = {json.dumps(b)}\n' for i, b in blocks.items()]
    for i in range(995):
        cond = [f'accounts = ["acct{rng.randrange(50)}"]']
        if i % 3 == 0:
            cond.append(f'networks = ["net{rng.randrange(40)}"]')
        elif i % 3 == 1:
            cond.append(f'prefixes = ["{rng.randint(1, 99)}"]')
        else:
            cond.append(f'classes = ["{rng.choice(["marketing", "verification"])}"]')
        tables.append(f'[[routes]]\nname = "r{i}"\n' + "\n".join(cond) + '\ncarriers = ["sim"]\n')
    tables += [
        '[[routes]]\nname = "cn"\ncountries = ["CN"]\ncarriers = ["sim"]\n',
        '[[routes]]\nname = "gb-marketing"\ncountries = ["GB"]\nclasses = ["marketing"]\nmobile_only = true\n'
        'carriers = ["sim"]\n',
        '[[routes]]\nname = "fr"\nprefixes = ["33"]\ncarriers = ["sim"]\n',
        '[[routes]]\nname = "us"\ncountries = ["US"]\ncarriers = ["sim"]\n',
    ]
    tables.append(compliance_toml(tmp, rng))
    return 'blocked_words = ["a", "b", "c"]', "\n".join(tables)


def compliance_toml(tmp: Path, rng: random.Random) -> str:
    """--rules, issue 13's part: every compliance rule on: 2,000 banned words, signature rules (checked, none
    required: the bench's texts carry none), the marketplace's five caps (conf/examples/china.toml; each
    message counts in the notification rules), and a send window for every class, open for the run (two
    hours either side of now in London, where the bench's numbers are). The 10,000 opted-out and 10,000
    blacklisted numbers go in through the lists requests (seed_lists)."""
    words: set[str] = set()
    while len(words) < 2_000:
        word = "".join(chr(rng.randrange(0x4E00, 0x9FA5)) for _ in range(3))
        if not any(word in text for text in TEXTS.values()):
            words.add(word)
    (tmp / "banned.txt").write_text("\n".join(sorted(words)) + "\n", encoding="utf-8")
    # The window: two hours either side of now in London (the bench's numbers' zone).
    london = int(time.time() // 60) + _london_offset_minutes()
    start, end = (london - 120) % 1440, (london + 120) % 1440
    caps = [
        ("all-marketing-day", "all", "marketing", "any", 86400, 3),
        ("all-marketing-2days", "all", "marketing", "any", 172800, 5),
        ("seller-marketing-2days", "account", "marketing", "any", 172800, 1),
        ("seller-notification-optout-day", "account", "notification", "yes", 86400, 5),
        ("seller-notification-day", "account", "notification", "no", 86400, 2),
    ]
    return "\n".join([
        f'[[word_lists]]\nname = "banned"\nfile = "{tmp}/banned.txt"\n',
        "[compliance]",
        'banned_words = ["banned"]',
        'banned_word_classes = ["marketing", "notification", "verification"]',
        f'window = "{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"',
        'window_classes = ["marketing", "notification", "verification"]',
        "[compliance.signature]",
        "required = false\n",
        *(f'[[caps]]\nname = "{n}"\nscope = "{sc}"\nclasses = ["{c}"]\noffers_optout = "{o}"\n'
          f"window_seconds = {w}\nlimit = {lim}\n" for n, sc, c, o, w, lim in caps),
    ])  # fmt: skip


def _london_offset_minutes() -> int:
    from zoneinfo import ZoneInfo

    offset = datetime.datetime.now(ZoneInfo("Europe/London")).utcoffset()
    return int(offset.total_seconds() // 60) if offset else 0


async def seed_lists(client: UpstreamClient) -> None:
    """--rules: 10,000 opted-out and 10,000 blacklisted numbers on the account's lists (none a recipient)."""
    for name, base in (("optout", 447900000000), ("blacklist", 447910000000)):
        for k in range(0, 10_000, 1_000):
            await client.lists(name, "add", [str(base + k + i) for i in range(1_000)])


def write_config(
    tmp: Path, sim_port: int, binds: int, window: int, *, host: str = "127.0.0.1", account: str = "gw:simpw",
    ids: str = "hex", rules: bool = False, metrics_port: int | None = None,
) -> Path:
    system_id, password = account.split(":", 1)
    (tmp / "acct.secret").write_text(SECRET)
    (tmp / "sim.secret").write_text(password)
    bind_blocks = "\n".join(
        f"""
[[carriers.binds]]
name = "trx{i}"
host = "{host}"
port = {sim_port}
system_id = "{system_id}"
password_file = "{tmp}/sim.secret"
mode = "transceiver"
window = {window}
"""
        for i in range(binds)
    )
    blocked, tables = rules_toml(tmp) if rules else ("", "")
    cfg = tmp / "gateway.toml"
    sync = "false" if os.environ.get("E2E_NOSYNC") else "true"
    metrics = f"[metrics]\nenabled = true\nport = {metrics_port}\n" if metrics_port else ""
    cfg.write_text(f"""
[server]
socket_path = "{tmp}/gw.sock"
log_level = "warning"

[store]
path = "{tmp}/store"
sync = {sync}
map_size_bytes = 4294967296

{metrics}
[[accounts]]
name = "bench"
secret_file = "{tmp}/acct.secret"

[[carriers]]
name = "sim"
response_ids = {{ base = "{ids}", fold_case = true }}
receipt_ids = {{ base = "{ids}", fold_case = true }}
{blocked}
{bind_blocks}

{tables}

[[routes]]
name = "default"
carriers = ["sim"]
""")
    return cfg


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def steal_seconds() -> float:
    """CPU time the hypervisor gave to others while this VM wanted it, summed over its cores (/proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0


def run_wait_seconds(pid: int) -> float:
    """Time the process's threads spent runnable but waiting for a core (schedstat's run_delay)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def rss_mb(pid: int, field: str = "VmHWM:") -> float:
    """Peak (VmHWM) or current (VmRSS) resident size of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return 0.0


def pss_mb(pid: int) -> float:
    """Proportional set size in MB: each page shared with other processes (the LMDB map both gateway
    processes read, the libraries) counted once between them."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def trace_rss(
    pids: list[int], out: list[float], anon: list[float], pss: list[float], every: float
) -> None:
    while True:
        out.append(round(sum(rss_mb(p, "VmRSS:") for p in pids), 1))
        anon.append(round(sum(rss_mb(p, "RssAnon:") for p in pids), 1))
        pss.append(round(sum(pss_mb(p) for p in pids), 1))
        await trio.sleep(every)


async def wait_for_socket(path: Path, proc: subprocess.Popen[bytes]) -> None:
    with trio.fail_after(30):
        while not path.exists():
            if proc.poll() is not None:
                raise RuntimeError("the gateway exited at start")
            await trio.sleep(0.05)


async def scrape_metrics(port: int, every: float, times: list[float], sizes: list[int]) -> None:
    """GET /metrics every `every` seconds until cancelled: each scrape's time (request to last byte) and size."""
    while True:
        t0 = time.perf_counter()
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            got = bytearray()
            while chunk := await stream.receive_some(65536):
                got += chunk
        times.append(time.perf_counter() - t0)
        if not got.startswith(b"HTTP/1.1 200 "):
            raise RuntimeError(f"/metrics answered {bytes(got[:40])!r}")
        sizes.append(len(got))
        await trio.sleep(max(0.0, every - (time.perf_counter() - t0)))


async def push(client: UpstreamClient, text: str, n: int, per_request: int, concurrency: int) -> list[float]:
    """Submit n messages; returns each request's accept latency (seconds)."""
    latencies: list[float] = []
    limiter = trio.CapacityLimiter(concurrency)

    async def one(start: int) -> None:
        async with limiter:
            to = tuple(f"4477{n_:08d}" for n_ in range(start, min(start + per_request, n)))
            t0 = time.perf_counter()
            result = await client.submit(SubmitRequest(to, text, MessageClass.NOTIFICATION, "ACME"))
            latencies.append(time.perf_counter() - t0)
            assert len(result.messages) == len(to)

    async with trio.open_nursery() as nursery:
        for start in range(0, n, per_request):
            nursery.start_soon(one, start)
    return latencies


async def run_one(label: str, text: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"e2e-{label}-") as tmpdir:
        tmp = Path(tmpdir)
        sim: subprocess.Popen[bytes] | None = None
        metrics_port = (args.metrics_port or free_port()) if args.scrape else None
        if args.smsc:
            host, _, port = args.smsc.rpartition(":")
            config = write_config(tmp, int(port), args.binds, args.window, host=host, account=args.smsc_account,
                                  ids=args.smsc_ids, rules=args.rules, metrics_port=metrics_port)  # fmt: skip
        else:
            sim_port = args.sim_port or free_port()
            sim = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "sim", "--port", str(sim_port), "--account", "gw:simpw",
                 "--id-format", "hex", "--window", "1000"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            config = write_config(tmp, sim_port, args.binds, args.window, rules=args.rules, metrics_port=metrics_port)
        gw = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "-c", str(config)],
            stdout=subprocess.DEVNULL, stderr=open(os.environ.get("E2E_GATEWAY_LOG") or tmp / "gateway.log", "wb"),  # noqa: SIM115
        )  # fmt: skip
        try:
            await wait_for_socket(tmp / "gw.sock", gw)
            await trio.sleep(0.5)  # binds up
            profiler = None
            if os.environ.get("E2E_PYSPY"):  # E2E_PYSPY=path/to/py-spy: GIL samples of the gateway, raw format
                which = os.environ.get("E2E_PROFILE")
                target = sim.pid if which == "sim" and sim else children(gw.pid)[0] if which == "writer" else gw.pid
                profiler = subprocess.Popen(
                    [os.environ["E2E_PYSPY"], "record", "--gil", "-f", "raw", "-r", "250", "--pid", str(target),
                     "-o", f"{tempfile.gettempdir()}/e2e-{label}.prof"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                await trio.sleep(0.5)
            async with open_unix_client(tmp / "gw.sock", account="bench", secret=SECRET) as client:
                # What a platform showing delivery reports needs: the final outcome of each message (the
                # "submitted" events too with --all-events).
                if args.rules:
                    await seed_lists(client)
                kinds = None if args.all_events else ("delivered", "failed")
                sub = await client.subscribe(after=None, window=10_000, kinds=kinds)
                workers = children(gw.pid)  # the store's writer process
                cpu0 = cpu_seconds(gw.pid)
                worker_cpu0 = sum(cpu_seconds(p) for p in workers)
                watched = (gw.pid, *workers, *((sim.pid,) if sim else ()))
                sim_cpu0 = cpu_seconds(sim.pid) if sim else 0.0
                waits0 = [run_wait_seconds(p) for p in watched]
                rss_trace: list[float] = []
                anon_trace: list[float] = []
                pss_trace: list[float] = []
                steal0 = steal_seconds()
                own_cpu0 = time.process_time()
                t0 = time.perf_counter()
                finals = 0
                failed = 0  # every message should be delivered: a failed one is not a matched receipt
                segments = 0
                latencies: list[float] = []
                scrape_times: list[float] = []
                scrape_sizes: list[int] = []
                async with trio.open_nursery() as nursery:

                    async def pusher() -> None:
                        latencies.extend(await push(client, text, args.messages, args.per_request, args.concurrency))

                    nursery.start_soon(pusher)
                    nursery.start_soon(trace_rss, [gw.pid, *workers], rss_trace, anon_trace, pss_trace, args.rss_every)
                    if metrics_port:
                        nursery.start_soon(scrape_metrics, metrics_port, 1.0, scrape_times, scrape_sizes)
                    with trio.fail_after(args.timeout):
                        async for event in sub:
                            if event.kind in ("delivered", "failed"):
                                finals += 1
                                failed += event.kind == "failed"
                                if failed == 1 and event.kind == "failed":
                                    print(f"{label}: a message failed: {event.reason}", file=sys.stderr, flush=True)
                                if finals % 1000 == 0 or finals == args.messages:
                                    await sub.ack(event.seq)
                                if finals == args.messages:
                                    break
                    nursery.cancel_scope.cancel()
                elapsed = time.perf_counter() - t0
                cpu = cpu_seconds(gw.pid) - cpu0
                worker_cpu = sum(cpu_seconds(p) for p in workers) - worker_cpu0
                sim_cpu = cpu_seconds(sim.pid) - sim_cpu0 if sim else None
                waits = [run_wait_seconds(p) - w for p, w in zip(watched, waits0, strict=True)]
                steal = steal_seconds() - steal0
                own_cpu = time.process_time() - own_cpu0
                (status,) = await client.status(message_id=event.message_id)
                segments = status.segments * args.messages
                if profiler is not None:
                    profiler.send_signal(signal.SIGINT)
                    profiler.wait(30)
            scraped = {
                "scrapes": len(scrape_times),
                "scrape_p50_ms": round(statistics.median(scrape_times) * 1000, 2) if scrape_times else None,
                "scrape_bytes": max(scrape_sizes, default=0),
            } if metrics_port else {}  # fmt: skip
            return {
                "messages": args.messages,
                "msgs_per_s": round(args.messages / elapsed, 1),
                "segments_per_s": round(segments / elapsed, 1),
                "accept_p50_ms": round(statistics.median(latencies) * 1000, 2),
                "accept_p99_ms": round(statistics.quantiles(latencies, n=100)[98] * 1000, 2),
                "recipients_per_request": args.per_request,
                "gateway_cpu_s": round(cpu + worker_cpu, 2),
                "gateway_rss_mb": round(rss_mb(gw.pid) + sum(rss_mb(p) for p in workers), 1),
                "gateway_main_cpu_s": round(cpu, 2),
                "store_writer_cpu_s": round(worker_cpu, 2),
                "rss_mb_trace": rss_trace,
                "anon_mb_trace": anon_trace,
                "gateway_anon_mb": max(anon_trace, default=0.0),
                "pss_mb_trace": pss_trace,
                "simulator_cpu_s": None if sim_cpu is None else round(sim_cpu, 2),
                "client_cpu_s": round(own_cpu, 2),
                # Runnable but waiting for a core: the event loop, the writer process, the simulator.
                "run_wait_s": [round(w, 2) for w in waits],
                # The host's share: CPU this VM wanted and did not get (a busy neighbour).
                "host_steal_s": round(steal, 2),
                "receipts_matched": finals - failed,
                "failed": failed,
                "elapsed_s": round(elapsed, 2),
                **scraped,
            }
        finally:
            gw.terminate()
            gw.wait(30)
            if sim is not None:
                sim.terminate()
                sim.wait(30)


async def main_async(args: argparse.Namespace) -> None:
    out: dict[str, Any] = {}
    for label, text in TEXTS.items():
        if args.only and label not in args.only:
            continue
        key = f"{label}_rules" if args.rules else label
        out[key] = await run_one(label, text, args)
        print(key, json.dumps(out[key]), file=sys.stderr, flush=True)
    out["loadavg_1m"] = os.getloadavg()[0]
    out["config"] = {"binds": args.binds, "window": args.window, "fsync": True, "concurrency": args.concurrency,
                     "events": "all" if args.all_events else "final", "smsc": args.smsc or "built-in simulator",
                     "scrape": args.scrape}
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--per-request", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--binds", type=int, default=1)
    ap.add_argument("--window", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--all-events", action="store_true", help="subscribe to every event, not only final ones")
    ap.add_argument("--smsc", help="HOST:PORT of an SMSC to bind to instead of starting the simulator")
    ap.add_argument("--smsc-account", default="gw:simpw", help="SYSTEM_ID:PASSWORD for --smsc")
    ap.add_argument("--smsc-ids", default="hex", choices=("hex", "decimal", "as-is"), help="its message_id base")
    ap.add_argument("--rss-every", type=float, default=5.0, help="seconds between resident-size samples")
    ap.add_argument("--scrape", action="store_true", help="[metrics] on, and GET /metrics every second of the run")
    ap.add_argument("--metrics-port", type=int, default=0, help="the gateway's metrics port (default: a free one)")
    ap.add_argument("--sim-port", type=int, default=0, help="the simulator's port (default: a free one)")
    ap.add_argument("--rules", action="store_true",
                    help="issue 12's routing table in the config (1,000 routes, 10,000 network blocks, three word "
                         "lists of 5,000 words the carrier blocks); results as <text>_rules")  # fmt: skip
    trio.run(main_async, ap.parse_args())


if __name__ == "__main__":
    main()
