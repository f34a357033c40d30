"""Batches (issue 14): ingest of a template batch through the whole gateway, and the report and details of a
batch of a million recipients read from a store.

    .venv/bin/python bench/batch.py [--recipients 100000] [--report-recipients 1000000]
    .venv/bin/python bench/batch.py --recipients 10000 --report-recipients 50000     # a quick run
    .venv/bin/python bench/batch.py --only ingest | report

Ingest (`batch_ingest_recipients_per_s`): a simulator and a gateway in their own processes (fsync on, the
store writer process on, as shipped); an upstream client makes a two-variable template, the operator approves
it on the admin socket, the client makes a batch, streams --recipients rows in `add` chunks of --chunk with
--in-flight requests outstanding on its one connection, sends it, and polls `show` until `targeted` is
--recipients: every recipient accepted into the store (the runner expanded them; the carrier side sends
meanwhile, delivery need not finish). Measured from the first add to that `show`; `batch_add_rows_per_s` is
the add phase alone (first add to the last add's answer), `batch_expand_recipients_per_s` the expansion
(the send's answer to `targeted` complete). `show_ms_during_expansion` is the polls' round trip meanwhile.

Report (`report_ms`, `details_page_ms`): a store in a temp dir (gateway.store.Store, no gateway) is filled
with one batch of --report-recipients recipients through the store's own ops (Submit in chunks of 1,000 with
each recipient's rendered text, then Prepare, Advance(SUBMIT_OK) and a Receipt for every one: --failed-share
undeliverable or expired with a few reasons, the rest delivered; filled with fsync off: the fill is not
measured), then gateway.engine.reporting.batch_answer, the function behind `batch show` and `batch details`
on both sockets, is timed in-process: the report (median of --runs), a page of 1,000 failed recipients
(median of --runs; the first read of it apart, as `details_page_first_ms`), and a page from the middle of
the failures (`details_page_mid_ms`).

--pause-carrier (a diagnostic, not the issue's figure): the operator pauses the carrier before the send, so
the expansion runs without the carrier side's work beside it.

Prints progress to stderr and one JSON object as its last line of stdout, with the 1-minute load average
before and after each part (/proc/loadavg). Environment: BATCH_PROFILE=path runs the gateway under cProfile
and writes its stats there (the gateway's event loop only; the store writer process is not profiled);
BATCH_GATEWAY_LOG=path keeps the gateway's log there.
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
from pathlib import Path
from typing import Any

import trio

# The process helpers of the end-to-end benchmark (run as `python bench/batch.py`: bench/ is on the path).
from e2e import children, cpu_seconds, free_port

from gateway.upstream import BlockingClient, UpstreamClient, UpstreamError, open_unix_client
from gateway.upstream.schema import OPERATOR

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret"
ACCOUNT = "bench"
TEMPLATE = "Hi {name}, your coupon {coupon} is ready at Acme. Reply STOP to opt out"
FIRST_NAMES = ("Ann", "Bob", "Chloe", "David", "Emma", "Farid", "Grace", "Hiro", "Isla", "Jack", "Kemi", "Liam")


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def progress(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


# --- ingest through the gateway ---------------------------------------------------------------------




def write_config(tmp: Path, sim_port: int, window: int) -> Path:
    (tmp / "acct.secret").write_text(SECRET)
    (tmp / "sim.secret").write_text("simpw")
    cfg = tmp / "gateway.toml"
    cfg.write_text(f"""
[server]
socket_path = "{tmp}/gw.sock"
log_level = "warning"

[store]
path = "{tmp}/store"
sync = true
map_size_bytes = 4294967296

[engine]
default_region = "GB"
# The bench's numbers, 4477 and 8 digits, as the tests' harness: a reserved test range.
test_prefixes = ["4477"]

[[accounts]]
name = "{ACCOUNT}"
secret_file = "{tmp}/acct.secret"

[[carriers]]
name = "sim"
response_ids = {{ base = "hex", fold_case = true }}
receipt_ids = {{ base = "hex", fold_case = true }}

[[carriers.binds]]
name = "trx0"
host = "127.0.0.1"
port = {sim_port}
system_id = "gw"
password_file = "{tmp}/sim.secret"
mode = "transceiver"
window = {window}

[[routes]]
name = "default"
carriers = ["sim"]
""")
    return cfg






def rows(first: int, count: int) -> list[dict[str, Any]]:
    return [
        {"to": f"4477{n:08d}", "vars": {"name": f"{FIRST_NAMES[n % len(FIRST_NAMES)]}{n % 1000}",
                                        "coupon": f"AC-{n:07d}"}}
        for n in range(first, first + count)
    ]  # fmt: skip


async def wait_for_socket(path: Path, proc: subprocess.Popen[bytes]) -> None:
    with trio.fail_after(30):
        while not path.exists():
            if proc.poll() is not None:
                raise RuntimeError("the gateway exited at start")
            await trio.sleep(0.05)


def operator(admin_socket: Path, command: str, **args: Any) -> dict[str, Any]:
    with BlockingClient.connect_unix(admin_socket, account=OPERATOR, secret="-") as client:
        return client.admin(command, **args)


def approve(admin_socket: Path) -> dict[str, Any]:
    return operator(admin_socket, "template", action="approve", account=ACCOUNT, template_id="t")


async def ingest_batch(client: UpstreamClient, admin_socket: Path, args: argparse.Namespace) -> dict[str, Any]:
    n = args.recipients
    made = await client.account("template", action="create", template_id="t", text=TEMPLATE)
    progress("template", made["state"], made["variables"])
    approved = await trio.to_thread.run_sync(approve, admin_socket)
    progress("template", approved["state"])
    try:
        created = await client.account("batch", action="create", batch_id="b", template="t", sender="ACME")
        message_class = "marketing"
    except UpstreamError as err:  # the config may refuse marketing (no opt-out wording): say why, use notification
        progress("marketing refused:", err, "- using notification")
        created = await client.account("batch", action="create", batch_id="b", template="t", sender="ACME",
                                        **{"class": "notification"})  # fmt: skip
        message_class = "notification"
    progress("batch", created["state"], created["class"])
    if args.pause_carrier:  # a diagnostic: the expansion without the carrier side sending beside it
        held = await trio.to_thread.run_sync(lambda: operator(admin_socket, "carrier", action="pause", name="sim"))
        progress("carrier paused:", held)

    chunks = [(first, rows(first, min(args.chunk, n - first))) for first in range(0, n, args.chunk)]
    add_latencies: list[float] = []
    limiter = trio.CapacityLimiter(args.in_flight)
    last: dict[str, Any] = {}

    async def add(first: int, chunk: list[dict[str, Any]]) -> None:
        async with limiter:
            t = time.perf_counter()
            answer = await client.account("batch", action="add", batch_id="b", first=first, rows=chunk)
            add_latencies.append(time.perf_counter() - t)
            if answer["recipients"] >= last.get("recipients", 0):
                last.update(answer)

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for first, chunk in chunks:
            nursery.start_soon(add, first, chunk)
    t_added = time.perf_counter()
    if last.get("recipients") != n:
        raise RuntimeError(f"the batch holds {last.get('recipients')} recipients after the adds, not {n}")
    progress(f"added {n} rows in {t_added - t0:.2f} s ({n / (t_added - t0):,.0f}/s)")

    sent = await client.account("batch", action="send", batch_id="b")
    t_sent = time.perf_counter()
    progress("sent:", sent["state"])
    show_latencies: list[float] = []
    report: dict[str, Any] = {}
    shown = 0
    with trio.fail_after(args.timeout):
        while True:
            t = time.perf_counter()
            report = await client.account("batch", action="show", batch_id="b")
            show_latencies.append(time.perf_counter() - t)
            if report["targeted"] >= n:
                break
            if report["targeted"] >= shown + n // 10:
                shown = report["targeted"]
                progress(f"targeted {shown} after {time.perf_counter() - t_sent:.2f} s")
            await trio.sleep(args.poll)
    t_done = time.perf_counter()
    progress(f"targeted {report['targeted']} {t_done - t_sent:.2f} s after the send")
    return {
        "class": message_class,
        "t0": t0, "t_added": t_added, "t_sent": t_sent, "t_done": t_done,
        "add_latencies": add_latencies, "show_latencies": show_latencies, "report": report,
    }  # fmt: skip


async def run_ingest(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="batch-bench-") as tmpdir:
        tmp = Path(tmpdir)
        sim_port = free_port()
        sim = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "sim", "--port", str(sim_port), "--account", "gw:simpw",
             "--id-format", "hex", "--window", "1000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        config = write_config(tmp, sim_port, args.window)
        profile = os.environ.get("BATCH_PROFILE")
        runner = [sys.executable, "-m", "cProfile", "-o", profile] if profile else [sys.executable]
        log = open(os.environ.get("BATCH_GATEWAY_LOG") or tmp / "gateway.log", "wb")  # noqa: SIM115
        gw = subprocess.Popen(
            [*runner, "-m", "gateway.cli", "serve", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
        try:
            await wait_for_socket(tmp / "gw.sock", gw)
            await trio.sleep(0.5)  # the bind up
            workers = children(gw.pid)  # the store's writer process
            load0 = loadavg()
            cpu0 = cpu_seconds(gw.pid)
            worker_cpu0 = sum(cpu_seconds(p) for p in workers)
            sim_cpu0 = cpu_seconds(sim.pid)
            own0 = time.process_time()
            async with open_unix_client(tmp / "gw.sock", account=ACCOUNT, secret=SECRET) as client:
                got = await ingest_batch(client, tmp / "admin.sock", args)
            cpu = cpu_seconds(gw.pid) - cpu0
            worker_cpu = sum(cpu_seconds(p) for p in workers) - worker_cpu0
            sim_cpu = cpu_seconds(sim.pid) - sim_cpu0
            own = time.process_time() - own0
        finally:
            gw.terminate()
            gw.wait(60)
            sim.terminate()
            sim.wait(30)
            log.close()
        n = args.recipients
        total = got["t_done"] - got["t0"]
        adding = got["t_added"] - got["t0"]
        expanding = got["t_done"] - got["t_sent"]
        report = got["report"]
        adds, shows = got["add_latencies"], got["show_latencies"]
        return {
            "batch_ingest_recipients_per_s": round(n / total, 1),
            "batch_add_rows_per_s": round(n / adding, 1),
            "batch_expand_recipients_per_s": round(n / expanding, 1),
            "recipients": n,
            "class": got["class"],
            "ingest_s": round(total, 3),
            "add_s": round(adding, 3),
            "send_s": round(got["t_sent"] - got["t_added"], 3),
            "expand_s": round(expanding, 3),
            "add_ms_p50": round(statistics.median(adds) * 1000, 1),
            "add_ms_max": round(max(adds) * 1000, 1),
            "show_ms_during_expansion_p50": round(statistics.median(shows) * 1000, 2),
            "show_ms_during_expansion_max": round(max(shows) * 1000, 2),
            "shows": len(shows),
            # What the report said when every recipient was in: the carrier side was sending meanwhile.
            "at_done": {k: report.get(k) for k in ("targeted", "valid", "refused", "submitted", "delivered",
                                                   "failed")} | {"refused_by_reason": report.get("refused_by_reason")},
            "gateway_main_cpu_s": round(cpu, 2),
            "store_writer_cpu_s": round(worker_cpu, 2),
            "simulator_cpu_s": round(sim_cpu, 2),
            "client_cpu_s": round(own, 2),
            "loadavg_1m_before": load0,
            "loadavg_1m_after": loadavg(),
            "config": {"chunk": args.chunk, "in_flight": args.in_flight, "fsync": True, "writer_process": True,
                       "window": args.window, "poll_s": args.poll, "profiled": bool(profile),
                       "carrier_paused": args.pause_carrier},
        }  # fmt: skip


# --- report and details from a filled store -------------------------------------------------------


def fill_store(store: Any, n: int, failed_share: float, seed: int) -> tuple[int, int]:
    """One batch "big" of account ACCOUNT, n recipients, every one ended: failed_share failed (receipts
    undeliverable with two reasons, or expired), the rest delivered. Returns (delivered, failed)."""
    from gateway.lifecycle import Ev, Event
    from gateway.store import Advance, Prepare, Receipt, Recipient, Submit

    rng = random.Random(seed)
    ids: list[int] = []
    t = time.perf_counter()
    per_apply = 5  # Submits of 1,000 recipients per transaction
    for start in range(0, n, 1000 * per_apply):
        ops = []
        for first in range(start, min(start + 1000 * per_apply, n), 1000):
            recipients = tuple(
                Recipient(f"4477{k:08d}", route=("sim",),
                          text=TEMPLATE.format(name=f"{FIRST_NAMES[k % 12]}{k % 1000}", coupon=f"AC-{k:07d}"))
                for k in range(first, min(first + 1000, n))
            )  # fmt: skip
            ops.append(Submit(ACCOUNT, "marketing", "ACME", "", recipients, client_ref=f"big#{first}", batch="big"))
        for result in store.apply(ops):
            if isinstance(result, Exception):
                raise result
            ids.extend(result.message_ids)
        if start % 100_000 == 0:
            progress(f"store fill: {len(ids):,} accepted, {time.perf_counter() - t:.1f} s")

    def apply_all(ops: list[Any], label: str) -> None:
        t1 = time.perf_counter()
        for k in range(0, len(ops), 5000):
            for result in store.apply(ops[k : k + 5000]):
                if isinstance(result, Exception):
                    raise result
        progress(f"store fill: {label} {len(ops):,} in {time.perf_counter() - t1:.1f} s")

    apply_all([Prepare(i, "sim", 1, dispatch_bind="b1") for i in ids], "prepared and dispatched")
    apply_all([Advance(i, 0, Event(Ev.SUBMIT_OK, carrier_id=f"{i:x}")) for i in ids], "submitted")
    failing = set(rng.sample(range(len(ids)), int(len(ids) * failed_share)))
    failures = (
        (Ev.RECEIPT_UNDELIVERABLE, "undeliverable:001"), (Ev.RECEIPT_UNDELIVERABLE, "undeliverable:045"),
        (Ev.RECEIPT_EXPIRED, "expired"),
    )  # fmt: skip
    receipts = []
    for j, i in enumerate(ids):
        kind, reason = rng.choice(failures) if j in failing else (Ev.RECEIPT_DELIVERED, "")
        receipts.append(Receipt("sim", f"{i:x}", kind, reason))
    apply_all(receipts, "receipts")
    return len(ids) - len(failing), len(failing)


def timed_ms(fn: Any, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def run_report(args: argparse.Namespace) -> dict[str, Any]:
    from gateway.admin.commands import Batch
    from gateway.engine.reporting import batch_answer
    from gateway.policy.categories import FailureTable
    from gateway.store import Store, StoreConfig

    n = args.report_recipients
    with tempfile.TemporaryDirectory(prefix="batch-report-") as tmpdir:
        store = Store.open(StoreConfig(path=f"{tmpdir}/store", sync=False, map_size_bytes=16 << 30))
        try:
            t = time.perf_counter()
            delivered, failed = fill_store(store, n, args.failed_share, seed=14)
            fill_s = time.perf_counter() - t
            table = FailureTable({})
            load0 = loadavg()
            show = Batch("show", ACCOUNT, "big")
            report = batch_answer(store, table, show, ACCOUNT)
            if report["targeted"] != n or report["failed"] != failed:
                raise RuntimeError(f"the report does not add up: {report}")
            report_ms = timed_ms(lambda: batch_answer(store, table, show, ACCOUNT), args.runs)
            details = Batch("details", ACCOUNT, "big", outcome="failed", limit=1000)
            first_ms = timed_ms(lambda: batch_answer(store, table, details, ACCOUNT), 1)[0]
            page = batch_answer(store, table, details, ACCOUNT)
            if len(page["recipients"]) != min(1000, failed) or any(r["state"] != "failed" for r in page["recipients"]):
                raise RuntimeError("the details page is not 1,000 failed recipients")
            details_ms = timed_ms(lambda: batch_answer(store, table, details, ACCOUNT), args.runs)
            # A page from the middle of the failures: the index is entered at `after`, not scanned to it.
            middle = store.batch_details(ACCOUNT, "big", "failed", 0, failed // 2)[1]
            mid = Batch("details", ACCOUNT, "big", outcome="failed", after=middle, limit=1000)
            mid_ms = timed_ms(lambda: batch_answer(store, table, mid, ACCOUNT), args.runs)
            size_mb = sum(f.stat().st_size for f in Path(tmpdir, "store").iterdir()) / 1e6
        finally:
            store.close()
    return {
        "report_ms": round(statistics.median(report_ms), 3),
        "report_ms_runs": [round(x, 3) for x in report_ms],
        "details_page_ms": round(statistics.median(details_ms), 2),
        "details_page_ms_runs": [round(x, 2) for x in details_ms],
        "details_page_first_ms": round(first_ms, 2),
        "details_page_mid_ms": round(statistics.median(mid_ms), 2),
        "report_recipients": n,
        "report_delivered": delivered,
        "report_failed": failed,
        "report_failed_by_reason": report.get("failed_by_reason"),
        "store_fill_s": round(fill_s, 1),
        "store_mb": round(size_mb, 1),
        "loadavg_1m_before": load0,
        "loadavg_1m_after": loadavg(),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipients", type=int, default=100_000, help="the ingested batch's recipients")
    ap.add_argument("--chunk", type=int, default=1000, help="rows per add request (1-1000)")
    ap.add_argument("--in-flight", type=int, default=4, help="add requests outstanding on the connection")
    ap.add_argument("--window", type=int, default=100, help="the simulator bind's window")
    ap.add_argument("--poll", type=float, default=0.05, help="seconds between show requests during the expansion")
    ap.add_argument("--timeout", type=float, default=900, help="seconds the expansion may take")
    ap.add_argument("--report-recipients", type=int, default=1_000_000, help="the report's batch in the store")
    ap.add_argument("--failed-share", type=float, default=0.1, help="of the report's batch, the share failed")
    ap.add_argument("--runs", type=int, default=9, help="timed reads of the report and of a details page")
    ap.add_argument("--only", choices=("ingest", "report"))
    ap.add_argument("--pause-carrier", action="store_true",
                    help="a diagnostic: the operator pauses the carrier before the send, so nothing is sent while "
                         "the batch expands (not the issue's figure)")  # fmt: skip
    args = ap.parse_args()
    out: dict[str, Any] = {"loadavg_1m_start": loadavg()}
    if args.only != "report":
        out["ingest"] = trio.run(run_ingest, args)
        progress("ingest", json.dumps(out["ingest"]))
    if args.only != "ingest":
        out["report"] = run_report(args)
        progress("report", json.dumps(out["report"]))
    out["targets"] = {
        "batch_ingest_recipients_per_s": ">= 20000", "report_ms": "<= 50", "details_page_ms": "<= 100",
    }  # fmt: skip
    out["loadavg_1m_end"] = loadavg()
    out["cpus"] = os.cpu_count()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
