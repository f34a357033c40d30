"""SIGKILL the whole gateway under load, again and again: nothing it acknowledged is lost (issue 6, "Tests").

The gateway runs as a child process (`python -m gateway.cli serve`), the carrier simulator in this process
so it sees every submit_sm across restarts, and clients submit unique texts all the time. The gateway is
SIGKILLed at seeded random moments and restarted; a last run settles and stops with SIGTERM. Then the store,
opened directly, must hold every acknowledged message, final or in flight again; its indexes must agree
with its records; and a text the carrier got more than once must belong to a segment flagged
possible_duplicate (the at-least-once resend of store recovery), never to an unflagged one.
"""

from __future__ import annotations

import random
import signal
from collections import defaultdict
from pathlib import Path

import pytest
import trio

from gateway.lifecycle import FINAL_STATES, State
from gateway.sim.config import SimConfig
from gateway.store import Message, Store, StoreConfig
from gateway.upstream import open_unix_client
from tests.integration.gateway_crash.helpers import (
    ACCOUNT,
    SECRET,
    SIM_PASSWORD,
    SIM_SYSTEM_ID,
    GatewayProcess,
    Ledger,
    RecordingSimulator,
    load_worker,
    wait_until_serving,
    write_config,
)

SEED = 20261122
KILLS = 6
# Also killed this many times early in its start (store recovery, binding, first accepts), load or not.
EARLY_KILLS = 2
WORKERS = 6
# A crash may leave work half done; after recovery it is waiting or on the wire again, never gone.
IN_FLIGHT = frozenset({State.QUEUED, State.SUBMITTING, State.SUBMITTED, State.DEFERRED, State.UNKNOWN})
# "unknown" (at-most-once after a crash) stays so until validity ends: settled for this test's purpose.
SETTLED = {s.name.lower() for s in FINAL_STATES | {State.UNKNOWN}}


async def kill_under_load(gateway: GatewayProcess, socket_path: Path, ledger: Ledger, rng: random.Random) -> None:
    """One life: start, let the load run a random while (and until this life acknowledged at least 20)."""
    await gateway.start()
    with trio.fail_after(20):
        await wait_until_serving(socket_path)
    acked_before = len(ledger.acked)
    await trio.sleep(rng.uniform(0.2, 1.5))
    with trio.fail_after(10):
        await ledger.wait_for_acks(acked_before + 20)
    await trio.sleep(rng.uniform(0.0, 0.05))  # not right after an ack: anywhere in the stream
    assert await gateway.kill() == -signal.SIGKILL


async def kill_early(gateway: GatewayProcess, rng: random.Random) -> None:
    await gateway.start()
    await trio.sleep(rng.uniform(0.1, 0.8))
    code = await gateway.kill()
    assert code == -signal.SIGKILL, f"the gateway exited ({code}) before the kill:\n{gateway.last_log()}"


async def settle(socket_path: Path, ids: list[str], seconds: float, quiet: float = 1.5) -> dict[str, str]:
    """Poll `status` until every message is final (or unknown) or nothing changed for `quiet` seconds (a
    receipt cut off by a kill may come back only after the simulator's response timeout), for at most
    `seconds`; the last states seen."""
    states: dict[str, str] = {}
    with trio.move_on_after(seconds):
        async with open_unix_client(socket_path, account=ACCOUNT, secret=SECRET) as client:

            async def query(chunk: list[str]) -> None:
                for message_id in chunk:
                    (status,) = await client.status(message_id=message_id)
                    states[message_id] = status.state

            pending, last_change = list(ids), trio.current_time()
            while pending and trio.current_time() - last_change < quiet:
                before = {i: states.get(i) for i in pending}
                async with trio.open_nursery() as nursery:
                    for i in range(16):
                        nursery.start_soon(query, pending[i::16])
                if any(states[i] != before[i] for i in pending):
                    last_change = trio.current_time()
                pending = [i for i in pending if states[i] not in SETTLED]
                await trio.sleep(0.2)
    return states


def texts_in_store(store: Store) -> dict[str, list[Message]]:
    by_text: dict[str, list[Message]] = defaultdict(list)
    for message in store.iter_messages():
        by_text[message.text].append(message)
    return by_text


@pytest.mark.slow
async def test_sigkill_under_load_loses_nothing_acknowledged(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    sim = RecordingSimulator(
        SimConfig(credentials=((SIM_SYSTEM_ID, SIM_PASSWORD),), receipt_delay_seconds=0.05, seed=SEED)
    )
    ledger = Ledger()
    stop_load = trio.Event()
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(sim.serve, "127.0.0.1", 0)
            config = write_config(tmp_path, port)
            socket_path = tmp_path / "gw.sock"
            gateway = GatewayProcess(config, tmp_path)
            for _ in range(WORKERS):
                nursery.start_soon(load_worker, socket_path, ledger, stop_load)
            early = set(rng.sample(range(KILLS), EARLY_KILLS))
            for life in range(KILLS):
                if life in early:
                    await kill_early(gateway, rng)
                await kill_under_load(gateway, socket_path, ledger, rng)
            # The last life: no more load, let every acknowledged message run its course, stop gracefully.
            await gateway.start()
            with trio.fail_after(20):
                await wait_until_serving(socket_path)
            stop_load.set()
            try:
                states = await settle(socket_path, list(ledger.acked), seconds=20)
            finally:
                code = await gateway.terminate()
            assert code == 0, gateway.last_log()
            nursery.cancel_scope.cancel()

    assert gateway.runs == KILLS + EARLY_KILLS + 1
    assert len(ledger.acked) >= KILLS * 20
    unsettled = {i: s for i, s in states.items() if s not in SETTLED}
    store = Store.open(StoreConfig(path=str(tmp_path / "store")))
    unknown = 0
    try:
        for message_id, text in ledger.acked.items():
            message = store.get(int(message_id))
            assert message is not None, f"acknowledged message {message_id} ({text!r}) is lost"
            assert message.text == text
            assert message.account == ACCOUNT
            assert message.state in FINAL_STATES | IN_FLIGHT, (message_id, message.state, message.segments)
            unknown += message.state is State.UNKNOWN
            if message.state is State.DELIVERED:
                assert sim.texts[text] >= 1, f"{message_id} is delivered, but the carrier never got {text!r}"
        assert store.check() == []
        by_text = texts_in_store(store)
        duplicates = {text: n for text, n in sim.texts.items() if n > 1}
        for text, n in duplicates.items():
            messages = by_text.get(text, [])
            assert messages, f"the carrier got {text!r} {n} times, but the store has no such message"
            flagged = [m for m in messages if any(s.possible_duplicate for s in m.segments)]
            assert flagged, f"the carrier got {text!r} {n} times, never flagged possible_duplicate: {messages}"
            # Marketing is at-most-once (store/config.py): recovery marks it unknown, never sends it again.
            assert all(m.message_class != "marketing" for m in messages), f"{text!r} sent {n} times: {messages}"
        for text in sim.texts:
            assert text in by_text, f"the carrier got {text!r}, which the store never accepted"
    finally:
        store.close()
    print(
        f"{gateway.runs} runs, {ledger.sent} sent, {len(ledger.acked)} acknowledged, "
        f"{ledger.lost_answers} answers cut off, {len(duplicates)} texts sent twice, "
        f"{len(unsettled)} in flight after settling, {unknown} unknown; simulator: {sim.stats()}"
    )
