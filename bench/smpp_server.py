"""The SMPP server face end to end: an upstream ESME -> gateway (own process, fsync on) -> simulator (own
process, receipts on) -> receipts back to the ESME as deliver_sm.

    .venv/bin/python bench/smpp_server.py [--messages 20000] [--window 100] [--receipt-window 100]

For each of three texts (bench/e2e.py's: GSM-7 160 chars = 1 part, GSM-7 300 chars = 2 parts, 100 Chinese
characters = UCS-2 2 parts) it starts a fresh simulator and gateway (e2e.py's config, plus [smpp_server] on
a free 127.0.0.1 port with one system_id for account "bench", tps 0, window --window), binds ONE transceiver
and pushes N messages with at most --window submit_sm outstanding. A long text goes as platforms send it:
one submit_sm per part, each with an 8-bit concatenation UDH (05 00 03 ref total seq, esm_class 0x40), the
parts of a message back to back; the gateway holds the parts unanswered, joins them, and splits the text
again for the carrier. Every receipt deliver_sm is answered with deliver_sm_resp as it is read.

The client is the project's sans-IO `Session` (ESME role) over one TCP stream, driven by `carriers.link.Link`
(one reader feeding `receive_data`, one writer sending everything queued in one write per turn); the
submit_sm bodies are encoded before the clock starts, so the client costs little beside the gateway
(`client_cpu_s`).

Per text: `msgs_per_s` (messages, not parts, from the first submit_sm to the last receipt), `receipts_matched`
(receipts whose receipted_message_id is an id some submit_sm_resp gave; must equal N), `submit_errors`
(submit_sm_resp with a non-zero command_status, by name in `submit_error_statuses`), `submit_msgs_per_s`
(first submit_sm to the last submit_sm_resp), and the processes' CPU as e2e.py measures it. Prints one JSON
object as its last line, with the 1-minute load average before and after and the host's core count.

Environment (as e2e.py's): E2E_PYSPY=path/to/py-spy records GIL samples (raw format) of the gateway's event
loop into $TMPDIR/smpp-<text>.prof; E2E_GATEWAY_LOG=path keeps the gateway's log there (else, when a run
goes wrong, its last lines are printed to stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

# The process helpers of the end-to-end benchmark (run as `python bench/smpp_server.py`: bench/ is on the path).
from e2e import (
    TEXTS,
    children,
    cpu_seconds,
    free_port,
    rss_mb,
    run_wait_seconds,
    steal_seconds,
    wait_for_socket,
    write_config,
)

from gateway.carriers.link import Link, LinkLost
from gateway.segmenting import RouteEncoding, rereference, segment
from gateway.smpp import codec
from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandId, Npi, Tag, Ton
from gateway.smpp.constants import CommandStatus as S
from gateway.smpp.session import Event, PduReceived, RequestExpired, ResponseReceived, Session, SessionConfig
from gateway.smpp.state import Role

SYSTEM_ID = "benchsmpp"
PASSWORD = "bench123"  # SMPP 3.4 4.1.1: at most 8 characters
TARGETS = {"gsm7_1part": 6500, "gsm7_2part": 3500, "ucs2_2part": 5000}


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def progress(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def smpp_config(tmp: Path, sim_port: int, smpp_port: int, args: argparse.Namespace) -> Path:
    """e2e.py's gateway config with [smpp_server] after it: one system_id for account "bench", no TPS cap."""
    config = write_config(tmp, sim_port, 1, args.window)
    (tmp / "smpp.secret").write_text(PASSWORD)
    with config.open("a") as f:
        f.write(f"""
[smpp_server]
host = "127.0.0.1"
port = {smpp_port}

[[smpp_server.accounts]]
account = "bench"
system_id = "{SYSTEM_ID}"
password_file = "{tmp}/smpp.secret"
bind_types = ["transceiver"]
window = {args.window}
tps = 0.0
receipt_window = {args.receipt_window or args.window}
""")
    return config


def submit_bodies(text: str, n: int) -> tuple[list[bytes], int]:
    """The submit_sm bodies (octets after the header) of n messages of `text` to n numbers, every part of a
    message after the one before; and the parts per message. The text is split once (UDH 8-bit, GSM 03.38
    one septet per octet, or UCS-2) and restamped per message with its own reference."""
    plan = segment(text, RouteEncoding(), ref=1)
    bodies = []
    for k in range(n):
        parts = rereference(plan, k % 255 + 1)
        for part in parts:
            pdu = P.SubmitSm(
                source_addr_ton=int(Ton.ALPHANUMERIC), source_addr="ACME", dest_addr_ton=int(Ton.INTERNATIONAL),
                dest_addr_npi=int(Npi.ISDN), destination_addr=f"4477{k:08d}", esm_class=part.esm_class,
                registered_delivery=1, data_coding=part.data_coding, short_message=part.short_message,
                tlvs=part.tlvs,
            )  # fmt: skip
            bodies.append(codec.encode(pdu, 0)[16:])
    return bodies, len(plan)


@dataclass(slots=True)
class Tally:
    """What came back: each submit_sm_resp's id or status, each receipt's receipted_message_id."""

    ids: set[str] = field(default_factory=set)
    errors: Counter[str] = field(default_factory=Counter)
    answered: int = 0  # submit_sm answered (parts)
    receipts: list[str] = field(default_factory=list)
    first_submit: float = 0.0
    last_answer: float = 0.0
    last_receipt: float = 0.0


class Esme:
    """One transceiver bind: the sans-IO session on a stream, a reader that answers each deliver_sm at once,
    and `submit` that keeps the window full."""

    def __init__(self, stream: trio.abc.Stream, window: int) -> None:
        # No enquire_link of ours: the bind is never idle while it is measured.
        config = SessionConfig(window=window, enquire_link_interval_seconds=0)
        self.session = Session(Role.ESME, config, now=trio.current_time())
        self.link = Link(stream, self.session)
        self.tally = Tally()
        self.parts = 0  # submit_sm to be answered in all
        self.expected = 0  # receipts to wait for
        self.bound = trio.Event()
        self.done = trio.Event()
        self.unbound = trio.Event()
        self._room = trio.Event()

    async def reader(self) -> None:
        try:
            while True:
                data = await self.link.receive()
                self.on_events(self.session.receive_data(data, trio.current_time()))
                self.link.kick()
        except LinkLost as err:
            self.link.fail(str(err))

    async def on_ticks(self, events: list[Event]) -> None:
        self.on_events(events)

    def on_events(self, events: list[Event]) -> None:
        tally = self.tally
        for event in events:
            if isinstance(event, PduReceived) and isinstance(event.pdu, P.DeliverSm):
                self.session.acknowledge(event.pdu)
                tally.receipts.append(str(event.pdu.tlv(Tag.RECEIPTED_MESSAGE_ID, "")))
                tally.last_receipt = time.perf_counter()
            elif isinstance(event, ResponseReceived):
                self.on_response(event.pdu)
            elif isinstance(event, RequestExpired) and event.request.command_id == CommandId.SUBMIT_SM:
                tally.answered += 1
                tally.errors["no_response"] += 1
        self._room.set()
        self._check_done()

    def on_response(self, pdu: P.Pdu) -> None:
        if isinstance(pdu, P.BindTransceiverResp):
            if pdu.command_status:
                self.link.fail(f"bind refused: {S(pdu.command_status).name}")
            self.bound.set()
            return
        if isinstance(pdu, P.UnbindResp):
            self.unbound.set()
            return
        tally = self.tally
        tally.answered += 1
        tally.last_answer = time.perf_counter()
        if pdu.command_status:
            tally.errors[_status_name(pdu.command_status)] += 1
        elif isinstance(pdu, P.SubmitSmResp):
            tally.ids.add(pdu.message_id)

    def _check_done(self) -> None:
        tally = self.tally
        if self.parts and tally.answered >= self.parts and len(tally.receipts) >= min(self.expected, len(tally.ids)):
            self.done.set()

    async def bind(self) -> None:
        self.session.send_request(P.BindTransceiver(system_id=SYSTEM_ID, password=PASSWORD), trio.current_time())
        self.link.kick()
        with trio.fail_after(10):
            await self.bound.wait()

    async def submit(self, bodies: list[bytes], messages: int) -> None:
        """Every body as a submit_sm, as many at once as the window has room for (one write per batch)."""
        self.parts, self.expected = len(bodies), messages
        session, submit_sm = self.session, CommandId.SUBMIT_SM
        self.tally.first_submit = time.perf_counter()
        i = 0
        while i < len(bodies):
            free = session.window_free
            if free <= 0:
                self._room = trio.Event()
                await self._room.wait()
                continue
            now = trio.current_time()
            for body in bodies[i : i + free]:
                session.send_encoded(submit_sm, body, now)
            i += free
            self.link.kick()
            await trio.lowlevel.checkpoint()

    async def unbind(self) -> None:
        """Unbind politely (a short wait for the unbind_resp)."""
        if self.link.closed or not self.session.is_bound:
            return
        self.session.send_request(P.Unbind(), trio.current_time())
        self.link.kick()
        with trio.move_on_after(2):
            await self.unbound.wait()


def _status_name(status: int) -> str:
    try:
        return S(status).name
    except ValueError:
        return f"0x{status:08X}"


async def open_smpp(port: int, gw: subprocess.Popen[bytes]) -> trio.SocketStream:
    """A TCP stream to the gateway's SMPP port, once it listens."""
    with trio.fail_after(30):
        while True:
            try:
                return await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                if gw.poll() is not None:
                    raise RuntimeError("the gateway exited at start") from None
                await trio.sleep(0.05)


async def drive(esme: Esme, bodies: list[bytes], args: argparse.Namespace) -> None:
    """Bind, push every message, wait for every receipt (or the timeout), unbind."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(esme.link.writer)
        nursery.start_soon(esme.link.ticker, esme.on_ticks)
        nursery.start_soon(esme.reader)
        await esme.bind()
        nursery.start_soon(esme.submit, bodies, args.messages)
        with trio.move_on_after(args.timeout):
            await esme.done.wait()
        await esme.unbind()
        nursery.cancel_scope.cancel()


class Meter:
    """The processes' CPU, run-queue wait and the host's steal from construction to `read()` (as e2e.py)."""

    def __init__(self, gw: int, sim: int) -> None:
        self.gw, self.sim = gw, sim
        self.workers = children(gw)  # the store's writer process
        self.watched = (gw, *self.workers, sim)
        self.cpu0 = [cpu_seconds(p) for p in self.watched]
        self.waits0 = [run_wait_seconds(p) for p in self.watched]
        self.steal0 = steal_seconds()
        self.own0 = time.process_time()

    def read(self) -> dict[str, Any]:
        cpu = [cpu_seconds(p) - c for p, c in zip(self.watched, self.cpu0, strict=True)]
        waits = [run_wait_seconds(p) - w for p, w in zip(self.watched, self.waits0, strict=True)]
        main, sim, writer = cpu[0], cpu[-1], sum(cpu[1:-1])
        return {
            "gateway_cpu_s": round(main + writer, 2),
            "gateway_main_cpu_s": round(main, 2),
            "store_writer_cpu_s": round(writer, 2),
            "simulator_cpu_s": round(sim, 2),
            "client_cpu_s": round(time.process_time() - self.own0, 2),
            "gateway_rss_mb": round(rss_mb(self.gw) + sum(rss_mb(p) for p in self.workers), 1),
            # Runnable but waiting for a core: the event loop, the writer process, the simulator.
            "run_wait_s": [round(w, 2) for w in waits],
            "host_steal_s": round(steal_seconds() - self.steal0, 2),
        }


def figures(tally: Tally, meter: dict[str, Any], n: int, parts: int, complete: bool) -> dict[str, Any]:
    elapsed = (tally.last_receipt if complete else time.perf_counter()) - tally.first_submit
    submitting = tally.last_answer - tally.first_submit
    matched = sum(1 for r in tally.receipts if r in tally.ids)
    return {
        "messages": n,
        "parts_per_message": parts,
        "msgs_per_s": round(n / elapsed, 1) if complete else None,
        "receipts_matched": matched,
        "receipts": len(tally.receipts),
        "receipts_unique": len(set(tally.receipts)),
        "message_ids": len(tally.ids),
        "submit_errors": sum(tally.errors.values()),
        "submit_error_statuses": dict(tally.errors),
        "submit_msgs_per_s": round(n / submitting, 1) if submitting > 0 else None,
        "elapsed_s": round(elapsed, 2),
        "complete": complete,
        **meter,
    }


def start_profiler(label: str, pid: int) -> subprocess.Popen[bytes] | None:
    pyspy = os.environ.get("E2E_PYSPY")
    if not pyspy:
        return None
    return subprocess.Popen(
        [pyspy, "record", "--gil", "-f", "raw", "-r", "250", "--pid", str(pid),
         "-o", f"{tempfile.gettempdir()}/smpp-{label}.prof"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def measure(label: str, text: str, tmp: Path, sim: subprocess.Popen[bytes],
                  gw: subprocess.Popen[bytes], smpp_port: int, args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    await wait_for_socket(tmp / "gw.sock", gw)
    bodies, parts = submit_bodies(text, args.messages)
    await trio.sleep(0.5)  # the carrier bind up
    profiler = start_profiler(label, gw.pid)
    if profiler is not None:
        await trio.sleep(0.5)
    stream = await open_smpp(smpp_port, gw)
    async with stream:
        esme = Esme(stream, args.window)
        meter = Meter(gw.pid, sim.pid)
        with esme.link.scope:  # cancelled when the link fails (or the gateway closes it after the unbind)
            await drive(esme, bodies, args)
        complete = esme.done.is_set()
        used = meter.read()
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(30)
    if esme.link.error and not complete:
        progress(f"{label}: the bind ended: {esme.link.error}")
    return figures(esme.tally, used, args.messages, parts, complete)


async def run_one(label: str, text: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"smpp-{label}-") as tmpdir:
        tmp = Path(tmpdir)
        sim_port, smpp_port = free_port(), free_port()
        sim = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "sim", "--port", str(sim_port), "--account", "gw:simpw",
             "--id-format", "hex", "--window", "1000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        config = smpp_config(tmp, sim_port, smpp_port, args)
        log_path = Path(os.environ.get("E2E_GATEWAY_LOG") or tmp / "gateway.log")
        with log_path.open("wb") as log:
            gw = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "-c", str(config)],
                                  stdout=subprocess.DEVNULL, stderr=log)  # fmt: skip
            try:
                out = await measure(label, text, tmp, sim, gw, smpp_port, args)
            finally:
                gw.terminate()
                gw.wait(30)
                sim.terminate()
                sim.wait(30)
        if not out["complete"] or out["receipts_matched"] != args.messages or out["submit_errors"]:
            tail = "\n".join(log_path.read_text().splitlines()[-30:])
            progress(f"{label}: the gateway's log ({log_path}) ends:\n{tail}")
        return out


async def main_async(args: argparse.Namespace) -> None:
    out: dict[str, Any] = {"loadavg_1m_start": loadavg()}
    for label, text in TEXTS.items():
        if args.only and label not in args.only:
            continue
        out[label] = await run_one(label, text, args)
        progress(label, json.dumps(out[label]))
    out["targets"] = {label: f">= {t} msg/s" for label, t in TARGETS.items()}
    out["loadavg_1m"] = loadavg()
    out["cpus"] = os.cpu_count()
    out["python"] = sys.version.split()[0]
    out["config"] = {"binds": 1, "bind_type": "transceiver", "window": args.window,
                     "receipt_window": args.receipt_window or args.window, "tps": 0, "fsync": True,
                     "long_messages": "UDH 8-bit parts", "carrier_binds": 1}  # fmt: skip
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--window", type=int, default=100, help="submit_sm outstanding (and the account's window)")
    ap.add_argument(
        "--receipt-window",
        type=int,
        default=0,
        help="the account's receipt_window: deliver_sm in flight to the bind (default: --window)",
    )
    ap.add_argument("--timeout", type=float, default=600, help="seconds to wait for every receipt")
    ap.add_argument("--only", nargs="*", choices=tuple(TEXTS))
    trio.run(main_async, ap.parse_args())


if __name__ == "__main__":
    main()
