"""Two gateway nodes (child processes, each with its own store and a [cluster] table) share one real Valkey and
bind the same simulator account, whose receipts come round robin over both nodes' binds: most of a node's
receipts come in on the other node and are handed over. Under load on both nodes, node a is SIGKILLed and
restarted, then node b, then Valkey is SIGKILLed and started again. Afterwards every submit either node
acknowledged ends delivered, its receipt matched in the store of the node that sent it: nothing acknowledged
is lost, nor any receipt a node owed another. Beside that load, marketing to a few numbers from both nodes
against a cap of 3 an hour: no number gets more than 3 through the kills and Valkey's restart.

The simulator lives in this process (tests/integration/gateway_crash/helpers.py), so it sees every submit_sm
and keeps the receipts a killed node's bind did not answer for the binds still up.
"""

from __future__ import annotations

import json
import signal
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from gateway.lifecycle import State
from gateway.sim.config import SimConfig
from gateway.store import Store, StoreConfig
from gateway.upstream import MessageClass, SubmitRequest, UpstreamError, open_unix_client
from tests.valkey import ValkeyServer

from .helpers import (
    ACCOUNT,
    ROOT,
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

NODES = ("a", "b")
WORKERS = 3  # submitting clients per node
STEP = 250  # acknowledged submits per node between two faults
CAP = 3  # marketing per number an hour, across the nodes
CAPPED = tuple(f"+4477118{i:05d}" for i in range(8))  # the numbers the cap workers send marketing to
DELIVERED = State.DELIVERED.name.lower()


def node_config(directory: Path, sim_port: int, node: str, valkey_port: int) -> Path:
    """helpers.write_config's gateway, one node of a cluster: notification goes on while Valkey is away
    (hold_classes: marketing only), and receipts whose map entry a kill lost are offered to every node soon."""
    directory.mkdir(parents=True, exist_ok=True)
    path = write_config(directory, sim_port)
    path.write_text(
        path.read_text()
        + f"""
[cluster]
node = "{node}"
valkey_port = {valkey_port}
timeout_seconds = 0.5
retry_seconds = 0.2
hold_classes = ["marketing"]
orphan_seconds = 1.0

[[caps]]
name = "crash-cap"
limit = {CAP}
window_seconds = 3600
classes = ["marketing"]
"""
    )
    return path


async def cap_worker(node: str, socket_path: Path, answers: Counter[tuple[str, str]], stop: trio.Event) -> None:
    """Marketing to a few numbers from both nodes, against a cap of CAP an hour across the nodes (marketing is
    held while Valkey is away: refused `overloaded`, never checked locally only). Counts the answers."""
    n = 0
    while not stop.is_set():
        try:
            async with open_unix_client(socket_path, account=ACCOUNT, secret=SECRET) as client:
                while not stop.is_set():
                    n += 1
                    number = CAPPED[n % len(CAPPED)]
                    request = SubmitRequest((number,), f"offer {node} {n}", MessageClass.MARKETING, "CrashTest")
                    try:
                        (m,) = (await client.submit(request)).messages
                    except UpstreamError as e:
                        answers[(e.code, "")] += 1
                        if e.code != "overloaded":  # the node went away: connect again
                            raise
                    else:
                        answers[(m.state, m.reason or "")] += 1
                    await trio.sleep(0.01)
        except (OSError, UpstreamError):
            await trio.sleep(0.02)


def cluster_request(node: str) -> Callable[[int, str], SubmitRequest]:
    """helpers.load_worker's requests with texts unique across the nodes, notification only (at-least-once:
    every one acknowledged must end delivered)."""

    def make(n: int, text: str) -> SubmitRequest:
        return SubmitRequest((f"+4477009{n % 100000:05d}",), f"cluster {node} {n}", MessageClass.NOTIFICATION,
                             "CrashTest")  # fmt: skip

    return make


async def acked_more(ledgers: dict[str, Ledger], count: int) -> None:
    """Until each node acknowledged `count` more submits."""
    targets = {node: len(ledger.acked) + count for node, ledger in ledgers.items()}
    for node, ledger in ledgers.items():
        await ledger.wait_for_acks(targets[node])


async def settle(socket_path: Path, ids: list[str], seconds: float) -> dict[str, str]:
    """Poll `status` until every message is delivered, for at most `seconds`; the last states seen."""
    states: dict[str, str] = {}
    with trio.move_on_after(seconds):
        async with open_unix_client(socket_path, account=ACCOUNT, secret=SECRET) as client:

            async def query(chunk: list[str]) -> None:
                for message_id in chunk:
                    (status,) = await client.status(message_id=message_id)
                    states[message_id] = status.state

            pending = list(ids)
            while pending:
                async with trio.open_nursery() as nursery:
                    for i in range(16):
                        nursery.start_soon(query, pending[i::16])
                pending = [i for i in pending if states[i] != DELIVERED]
                if pending:
                    await trio.sleep(0.2)
    return states


async def cluster_status(admin_socket: Path) -> dict[str, Any]:
    """The `cluster` block of `gatewayctl --json status` (ClusterStatistics)."""
    done = await trio.run_process(
        [sys.executable, "-m", "gateway.ctl.main", "-s", str(admin_socket), "--json", "status"],
        capture_stdout=True, cwd=ROOT,
    )  # fmt: skip
    block: dict[str, Any] = json.loads(done.stdout)["cluster"]
    return block


@pytest.mark.slow
async def test_a_node_and_valkey_killed_under_load_lose_no_message_and_no_receipt(tmp_path: Path) -> None:
    sim = RecordingSimulator(
        SimConfig(credentials=((SIM_SYSTEM_ID, SIM_PASSWORD),), receipt_delay_seconds=0.2, seed=16)
    )
    valkey = ValkeyServer(tmp_path / "valkey")
    await trio.to_thread.run_sync(valkey.start)
    ledgers = {node: Ledger() for node in NODES}
    sockets = {node: tmp_path / node / "gw.sock" for node in NODES}
    stop_load = trio.Event()
    states: dict[str, dict[str, str]] = {}
    cluster: dict[str, dict[str, Any]] = {}
    cap_answers: Counter[tuple[str, str]] = Counter()
    try:
        with trio.fail_after(100):
            async with trio.open_nursery() as nursery:
                port = await nursery.start(sim.serve, "127.0.0.1", 0)
                gateways = {
                    node: GatewayProcess(node_config(tmp_path / node, port, node, valkey.port), tmp_path / node)
                    for node in NODES
                }
                for node in NODES:
                    await gateways[node].start()
                for node in NODES:
                    with trio.fail_after(20):
                        await wait_until_serving(sockets[node])
                for node in NODES:
                    for _ in range(WORKERS):
                        nursery.start_soon(load_worker, sockets[node], ledgers[node], stop_load, cluster_request(node))
                    nursery.start_soon(cap_worker, node, sockets[node], cap_answers, stop_load)
                with trio.fail_after(20):
                    await acked_more(ledgers, STEP)

                # Each node dies once mid-stream: its parts' receipts come in on the other meanwhile, handed
                # over to it.
                for dead, alive in (("a", "b"), ("b", "a")):
                    assert await gateways[dead].kill() == -signal.SIGKILL
                    with trio.fail_after(10):
                        await ledgers[alive].wait_for_acks(len(ledgers[alive].acked) + STEP // 2)
                    await gateways[dead].start()
                    with trio.fail_after(20):
                        await wait_until_serving(sockets[dead])
                    with trio.fail_after(20):
                        await acked_more(ledgers, STEP)

                # Valkey dies: each node sends with its own checks, keeps others' receipts as early and
                # its map entries in memory, and hands them over once Valkey is back (from its AOF).
                await trio.to_thread.run_sync(valkey.kill)
                with trio.fail_after(20):
                    await acked_more(ledgers, STEP // 2)
                await trio.to_thread.run_sync(valkey.start)
                with trio.fail_after(20):
                    await acked_more(ledgers, STEP)

                stop_load.set()
                try:
                    for node in NODES:
                        states[node] = await settle(sockets[node], list(ledgers[node].acked), seconds=25)
                    for node in NODES:
                        cluster[node] = await cluster_status(tmp_path / node / "admin.sock")
                finally:
                    codes = {node: await gateways[node].terminate() for node in NODES}
                assert codes == dict.fromkeys(NODES, 0), {n: gateways[n].last_log()[-3000:] for n in NODES}
                nursery.cancel_scope.cancel()
    finally:
        await trio.to_thread.run_sync(valkey.stop)

    # Both nodes' binds got receipts for the other's parts (the simulator's round robin), and handed them over.
    for node in NODES:
        assert cluster[node]["handed_over"] > 0, cluster
        assert cluster[node]["taken_over"] > 0, cluster
        assert cluster[node]["reachable"], cluster
        assert cluster[node]["outages"] == 1, cluster  # Valkey's kill (both restarted before it)
        assert cluster[node]["map_waiting"] == 0, cluster
    summary = []
    for node in NODES:
        ledger = ledgers[node]
        # A receipt whose map entry died with its node is offered to every node (orphan_seconds), maybe while
        # that node is down: it takes it at its restart (tests/integration/cluster/test_shared.py).
        undelivered = {i: s for i, s in states[node].items() if s != DELIVERED}
        assert not undelivered, f"node {node}: {len(undelivered)} acknowledged, not delivered: {undelivered}"
        store = Store.open(StoreConfig(path=str(tmp_path / node / "store")))
        try:
            for message_id, text in ledger.acked.items():
                message = store.get(int(message_id))
                assert message is not None, f"node {node}: acknowledged message {message_id} ({text!r}) is lost"
                assert message.text == text
                assert message.state is State.DELIVERED, (node, message_id, message.segments)
                assert sim.texts[text] >= 1
            assert store.check() == []
            unmatched = store.unmatched_count()
        finally:
            store.close()
        summary.append(f"{node}: {len(ledger.acked)} acknowledged, {ledger.lost_answers} answers cut off, "
                       f"{unmatched} unmatched receipts")  # fmt: skip
    # The cap held across both nodes, their kills and Valkey's: no number got more than CAP marketing texts
    # (a slot counted by a node killed before its commit stays used: fewer, never more).
    capped = {number.lstrip("+"): sim.destinations[number.lstrip("+")] for number in CAPPED}
    assert all(n <= CAP for n in capped.values()), capped
    assert sum(capped.values()) > 0, (capped, cap_answers)
    assert cap_answers[("rejected", "frequency_capped")] > 0, cap_answers
    # A text the carrier got twice is a part resent after the kill (at-least-once): the first copy's receipt
    # has no part to match (it ends unmatched); every other receipt matched.
    duplicates = sum(1 for n in sim.texts.values() if n > 1)
    print(
        "; ".join(summary),
        f"; {duplicates} texts sent twice; capped: {capped} {dict(cap_answers)}; "
        f"cluster: {cluster}; simulator: {sim.stats()}",
    )
