"""A receipt whose part no node has in the shared receipt map (Valkey lost its data, or the node that sent it
stopped while its map entries waited for Valkey) is offered to every node after orphan_seconds: the node whose
store sent the part takes it and tells the offering node to forget its early copy. Nothing stays unmatched."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import coredis
import trio

from gateway.cluster.shared import Shared
from gateway.sim.config import IdFormat as SimIdFormat
from gateway.sim.config import SimConfig
from gateway.upstream import MessageClass, SubmitRequest
from tests.integration.gateway.harness import SIM_PASSWORD, Harness, collect_final_events
from tests.valkey import ValkeyServer

from .harness import running_nodes


async def _until(done: Callable[[], object]) -> None:
    """Polls what the nodes report (bounded by the test's fail_after)."""
    while True:
        if done():
            return
        await trio.sleep(0.02)


def _shared(h: Harness) -> Shared:
    shared = h.running.engine.shared
    assert shared is not None
    return shared


async def test_receipts_whose_map_entries_valkey_lost_are_taken_by_the_node_that_sent_them(
    tmp_path: Path, valkey: ValkeyServer
) -> None:
    # The SMSC holds each receipt a second: the map entries are written, then Valkey forgets them all.
    sim = SimConfig(credentials=(("gw", SIM_PASSWORD),), id_format=SimIdFormat.HEX, seed=7, receipt_delay_seconds=1.0)
    with trio.fail_after(40):
        async with running_nodes(tmp_path, valkey.port, sim_config=sim, orphan_seconds=0.5) as (a, b):
            async with a.client() as client:
                result = await client.submit(SubmitRequest(
                    sender="ACME", to=tuple(f"44770055{i:04d}" for i in range(60)), text="Your code is 1234",
                    message_class=MessageClass.NOTIFICATION,
                ))  # fmt: skip
            want = {m.message_id for m in result.messages if m.state == "accepted"}
            assert len(want) == 60
            await _until(lambda: _shared(a).statistics().map_written >= 60)
            valkey_client: coredis.Redis[bytes] = coredis.Redis(port=valkey.port)
            async with valkey_client:
                await valkey_client.flushall()
            async with a.client() as client:
                finals, _ = await collect_final_events(client, want)
            assert {e.kind for e in finals.values()} == {"delivered"}
            sa, sb = _shared(a).statistics(), _shared(b).statistics()
            # Some receipts came in on B's bind, found no owner, were offered and taken by A.
            assert sb.offered > 0
            assert sa.taken_over >= sb.offered
            # B forgets every copy it offered: nothing waits there, and nothing turns unmatched later.
            await _until(lambda: not (b.running.engine.store.summary()["early_receipts"]
                                      or _shared(b).statistics().late_waiting))  # fmt: skip
            assert b.running.engine.statistics().receipts_unmatched == 0
