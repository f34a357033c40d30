"""A chaos run (issue 11, "Tests that would have caught it"): the gateway as operators run it, as a child
process with its store writer process, against the built-in simulator misbehaving every way a foreign SMSC
does at once: link drops, throttling, 5% retryable errors and a share of destinations refused for good,
receipts in five id styles (TLVs, zero-padded, decimal, upper-case compact, stat:FAILED), receipts before
their responses, and SIGKILLs of the gateway under load.

Then, with the store opened directly: nothing acknowledged is lost; every message ended; every receipt whose
id the gateway learned was matched (none waits in the early table, none was left unmatched); a text the
carrier got twice belongs to a message flagged possible_duplicate; no part of a message left after an
earlier part was refused for good; messages reached the SMSC in acceptance order, give or take the window.
"""

from __future__ import annotations

import random
import signal
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import trio

from gateway.lifecycle import FINAL_STATES, State
from gateway.segmenting.decode import decode_text
from gateway.sim.concat import part_info
from gateway.sim.config import ReceiptOutcome, ReceiptStyle, SimConfig
from gateway.sim.server import Simulator
from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandStatus, EsmClass
from gateway.store import Store, StoreConfig
from gateway.upstream import MessageClass, SubmitRequest, UpstreamError, open_unix_client
from tests.integration.gateway_crash.helpers import (
    ACCOUNT,
    SECRET,
    SIM_PASSWORD,
    SIM_SYSTEM_ID,
    GatewayProcess,
    Ledger,
    wait_until_serving,
    write_config,
)

SEED = 20261203
KILLS = 3
WORKERS = 6
WINDOW = 50
REFUSED_PREFIX = "44770099"  # destinations the simulator refuses for good (ESME_RINVDSTADR)
LONG = " Big weekend sale: 30% off garden furniture, 20% off barbecues, free delivery over 50 pounds."


class ChaosSimulator(Simulator):
    """The simulator, recording each submit_sm in arrival order: (text, part, refused)."""

    def __init__(self, config: SimConfig) -> None:
        super().__init__(config)
        self.arrivals: list[tuple[str, int, bool]] = []

    def _on_submit(self, conn: Any, pdu: P.SubmitSm) -> None:
        errors, throttled = self.counters.errors_injected, self.counters.throttled
        super()._on_submit(conn, pdu)
        if self.counters.throttled > throttled:  # paused, not refused: the gateway sends it again
            return
        udhi = bool(pdu.esm_class & EsmClass.UDHI)
        info = part_info(pdu)
        text = decode_text(pdu.short_message, pdu.data_coding, udhi=udhi).text
        self.arrivals.append((text, info.seq if info else 1, self.counters.errors_injected > errors))


def chaos_config() -> SimConfig:
    return SimConfig(
        credentials=((SIM_SYSTEM_ID, SIM_PASSWORD),),
        seed=SEED,
        receipt_delay_seconds=0.05,
        receipt_mix=(ReceiptOutcome("DELIVRD", 0, 0.9), ReceiptOutcome("UNDELIV", 1, 0.1)),
        receipt_styles=tuple((style, 1.0) for style in ReceiptStyle),
        receipt_before_response_rate=0.2,
        throttle_tps=400.0,
        error_rate=0.05,
        error_status=int(CommandStatus.ESME_RSYSERR),
        destination_errors=((REFUSED_PREFIX, int(CommandStatus.ESME_RINVDSTADR)),),
        drop_every_pdus=900,
        response_timeout_seconds=5.0,
    )


def chaos_gateway_config(directory: Path, port: int) -> Path:
    path = write_config(directory, port)
    text = path.read_text().replace("window = 50", f"window = {WINDOW}")
    # Unknown segments (at-most-once after a kill) end no_receipt after a few seconds, not 72 hours.
    text = text.replace('[[carriers.binds]]', 'receipt_timeout_seconds = 6.0\n[[carriers.binds]]', 1)
    path.write_text(text)
    return path


async def chaos_load(socket_path: Path, ledger: Ledger, order: list[str], stop: trio.Event, worker: int) -> None:
    """One message per submit, every third a long one, every twentieth to a refused destination."""
    classes = (MessageClass.NOTIFICATION, MessageClass.MARKETING)
    while not stop.is_set():
        try:
            async with open_unix_client(socket_path, account=ACCOUNT, secret=SECRET) as client:
                while not stop.is_set():
                    n, text = ledger.next_text()
                    text = f"{text}{LONG if n % 3 == 0 else ''}"
                    number = f"{REFUSED_PREFIX}{n % 1000:03d}" if n % 20 == 0 else f"447700{n % 1000000:06d}"
                    request = SubmitRequest((number,), text, classes[n % 2], "Chaos")
                    try:
                        result = await client.submit(request)
                    except (OSError, UpstreamError):
                        ledger.lost_answers += 1
                        raise
                    for message in result.messages:
                        ledger.acknowledge(message.message_id, text)
                        order.append(text)
        except (OSError, UpstreamError):
            await trio.sleep(0.02)


async def settle(store_dir: Path, ids: list[str], seconds: float) -> None:
    """Until every acknowledged message is final, read from the store directly (a second reader)."""
    with trio.move_on_after(seconds):
        while True:
            store = Store(StoreConfig(path=str(store_dir)))
            try:
                live = [i for i in ids if (m := store.get(int(i))) is None or m.state not in FINAL_STATES]
            finally:
                store.close()
            if not live:
                return
            await trio.sleep(0.5)


@pytest.mark.slow
async def test_chaos_run_loses_nothing_and_every_message_ends(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    sim = ChaosSimulator(chaos_config())
    ledger = Ledger()
    order: list[str] = []
    stop_load = trio.Event()
    with trio.fail_after(150):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(sim.serve, "127.0.0.1", 0)
            gateway = GatewayProcess(chaos_gateway_config(tmp_path, port), tmp_path)
            socket_path = tmp_path / "gw.sock"
            for worker in range(WORKERS):
                nursery.start_soon(chaos_load, socket_path, ledger, order, stop_load, worker)
            for _ in range(KILLS):
                await gateway.start()
                with trio.fail_after(20):
                    await wait_until_serving(socket_path)
                acked = len(ledger.acked)
                with trio.fail_after(20):
                    await ledger.wait_for_acks(acked + 150)
                await trio.sleep(rng.uniform(0.0, 0.3))
                assert await gateway.kill() == -signal.SIGKILL
            await gateway.start()
            with trio.fail_after(20):
                await wait_until_serving(socket_path)
            with trio.fail_after(20):
                await ledger.wait_for_acks(len(ledger.acked) + 300)
            stop_load.set()
            try:
                await settle(tmp_path / "store", list(ledger.acked), seconds=60)
            finally:
                code = await gateway.terminate()
            assert code == 0, gateway.last_log()
            nursery.cancel_scope.cancel()

    store = Store.open(StoreConfig(path=str(tmp_path / "store")))
    try:
        messages = {}
        for message_id, text in ledger.acked.items():
            message = store.get(int(message_id))
            assert message is not None, f"acknowledged message {message_id} ({text!r}) is lost"
            assert message.text == text
            messages[text] = message
        unfinished = {t: (m.state, m.segments) for t, m in messages.items() if m.state not in FINAL_STATES}
        assert not unfinished, f"{len(unfinished)} messages never ended: {list(unfinished.items())[:3]}"
        assert store.check() == []
        # Every receipt whose id the gateway learned was matched: no message whose carrier id is known ended
        # for want of a receipt, and a receipt still waiting (early, or unmatched) names no segment that is
        # waiting for one. What waits is a receipt for a submit whose response a kill or a link drop cut off
        # (an at-most-once message the gateway never learned the id of, ended no_receipt), or a second copy
        # of a receipt already applied (a kill between the commit and the deliver_sm_resp).
        known = {s.carrier_id: s for m in messages.values() for s in m.segments if s.carrier_id}
        no_receipt = [m for m in messages.values() if m.reason == "no_receipt"]
        assert all(not s.carrier_id for m in no_receipt for s in m.segments if s.reason == "no_receipt")
        unmatched = store.unmatched_receipts(limit=1000)
        waiting = [k.split(b"\0", 1)[1].decode() for k in store.keys_of(b"early")]
        waiting += [k for u in unmatched for k in u.keys]
        for key in waiting:
            segment = known.get(key)
            assert segment is None or segment.state in FINAL_STATES, (key, segment)
        # A text the carrier got twice belongs to a message flagged possible_duplicate.
        counts: dict[tuple[str, int], int] = defaultdict(int)
        for text, part, refused in sim.arrivals:
            if not refused:
                counts[text, part] += 1
        for (text, _), n in counts.items():
            if n > 1 and text in messages:
                assert messages[text].possible_duplicate, f"{text!r} reached the carrier {n} times, unflagged"
        # No half messages: no part of a message leaves after one of its parts was refused for good.
        # (The same part may come again: a kill before its refusal was stored makes recovery resend it.)
        refused_for_good: dict[str, int] = {}
        for text, part, refused in sim.arrivals:
            first = refused_for_good.get(text)
            assert first is None or part <= first, f"part {part} of {text!r} left after part {first} was refused"
            if refused and messages.get(text) is not None and messages[text].recipient.startswith(REFUSED_PREFIX):
                refused_for_good[text] = min(part, first or part)
        assert refused_for_good
        for message in messages.values():
            if message.recipient.startswith(REFUSED_PREFIX):
                assert (message.state, message.reason) == (State.REJECTED, "carrier_rejected:ESME_RINVDSTADR")
        # Order: a message sent once, on its first try, reached the SMSC within the window of its turn.
        rank = {text: i for i, text in enumerate(order)}
        clean = [t for t, p, r in sim.arrivals if p == 1 and not r and counts[t, 1] == 1 and t in rank]
        clean = [t for t in clean if all(s.attempts == 1 for s in messages[t].segments)]
        ranks = [rank[t] for t in clean]
        worst = max((max(0, ranks[i - 1] - r) for i, r in enumerate(ranks) if i), default=0)
        late = sum(1 for i in range(1, len(ranks)) if ranks[i] < ranks[i - 1] - 2 * WINDOW)
    finally:
        store.close()
    print(
        f"{gateway.runs} runs, {len(ledger.acked)} acknowledged, {len(sim.arrivals)} submits seen, "
        f"{len(refused_for_good)} refused for good, {len(no_receipt)} no_receipt, {len(unmatched)} unmatched, "
        f"worst order displacement {worst}; simulator: {sim.stats()}"
    )
    assert late <= len(ranks) // 100, f"{late} of {len(ranks)} messages more than {2 * WINDOW} places late"
