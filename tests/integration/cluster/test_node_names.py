"""Two nodes given the same `[cluster] node` (a config copied to a second machine and left unchanged): the
second does not start, and says why, while the first goes on serving. Under one name they would share one
handover stream and one TPS lease: receipts applied by the wrong store, the carrier's TPS exceeded."""

from __future__ import annotations

import sys
from pathlib import Path

import coredis
import pytest
import trio

from gateway.app import Gateway, Running, _cannot_start
from gateway.sim.config import IdFormat as SimIdFormat
from gateway.sim.config import SimConfig
from gateway.sim.server import Simulator
from gateway.upstream import MessageClass, SubmitRequest
from tests.integration.gateway.harness import SIM_PASSWORD, Harness
from tests.valkey import ValkeyServer

from .harness import cluster_config


async def test_a_second_node_of_the_same_name_is_refused_at_start_and_one_found_later_is_shown(
    tmp_path: Path, valkey: ValkeyServer
) -> None:
    sim = Simulator(SimConfig(credentials=(("gw", SIM_PASSWORD),), id_format=SimIdFormat.HEX, seed=7))
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(sim.serve, "127.0.0.1", 0)
            first = Gateway(cluster_config(tmp_path / "one", port, "a", valkey.port), source="one.toml")
            running: Running = await nursery.start(first.run)
            valkey_client: coredis.Redis[bytes] = coredis.Redis(port=valkey.port, verify_version=False)
            async with valkey_client:  # (claimed at its start; by its renewal when a slow start found Valkey away)
                while not await valkey_client.exists(["gw:node:a"]):  # noqa: ASYNC110 - a key in Valkey
                    await trio.sleep(0.05)
            second = Gateway(cluster_config(tmp_path / "two", port, "a", valkey.port), source="two.toml")
            with pytest.raises(ExceptionGroup) as info:
                await nursery.start(second.run)
            refused = _cannot_start(info.value)
            assert refused is not None, info.value
            (problem,) = refused.problems
            assert problem.startswith("two.toml: cluster.node: 'a' is the name of another running node (")
            assert problem.endswith(f"in Valkey 127.0.0.1:{valkey.port}; each node needs a name of its own")
            # The first never noticed: it serves, and still holds the name.
            shared = running.engine.shared
            assert shared is not None
            assert shared.statistics().name_taken_by == ""
            async with Harness(first, running, sim, tmp_path / "one" / "a").client() as client:
                request = SubmitRequest(to=("447700900001",), text="Your code", message_class=MessageClass.VERIFICATION,
                                        sender="ACME")  # fmt: skip
                (m,) = (await client.submit(request)).messages
            assert m.state == "accepted"

            # Another run renews the name past a claim's life (one started while Valkey was away for it): the
            # node shows it in status, until that run stops and the name lapses back to it.
            other = "elsewhere pid 7 beef"
            stop = trio.Event()
            async with valkey_client:

                async def impostor() -> None:
                    while not stop.is_set():
                        await valkey_client.set("gw:node:a", other, px=3000)
                        await trio.sleep(0.2)

                async with trio.open_nursery() as impostors:
                    impostors.start_soon(impostor)
                    while shared.statistics().name_taken_by != other:  # noqa: ASYNC110 - a Valkey key's holder
                        await trio.sleep(0.1)
                    done = await trio.run_process(
                        [sys.executable, "-m", "gateway.ctl.main", "-s", str(running.admin_socket), "status"],
                        capture_stdout=True,
                    )  # fmt: skip
                    assert f"TAKEN by another running node: {other}" in done.stdout.decode()
                    stop.set()
            while shared.statistics().name_taken_by:  # noqa: ASYNC110 - a Valkey key's holder
                await trio.sleep(0.1)
            first.shutdown()
            await first.stopped.wait()
            nursery.cancel_scope.cancel()
