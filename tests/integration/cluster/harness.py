"""Two (or more) gateway nodes in the test process, each with its own LMDB store and sockets, sharing one
Valkey (tests/valkey.py) and binding the same simulator account: the receipts of one node's messages come in
on either node's bind, as a carrier's round robin over an account's receivers sends them."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from gateway.app import Gateway, GatewayConfig, Running
from gateway.cluster.core import ClusterConfig
from gateway.sim.config import IdFormat as SimIdFormat
from gateway.sim.config import SimConfig
from gateway.sim.server import Simulator
from tests.integration.gateway.harness import SIM_PASSWORD, Harness, gateway_config


def cluster_config(tmp: Path, sim_port: int, node: str, valkey_port: int, **cluster: Any) -> GatewayConfig:
    home = tmp / node
    home.mkdir(parents=True, exist_ok=True)
    cfg = gateway_config(home, sim_port)
    c = ClusterConfig(node=node, valkey_port=valkey_port, timeout_seconds=cluster.pop("timeout_seconds", 0.5),
                      retry_seconds=cluster.pop("retry_seconds", 0.2), **cluster)  # fmt: skip
    return dataclasses.replace(cfg, cluster=c)


@asynccontextmanager
async def running_nodes(
    tmp: Path,
    valkey_port: int,
    nodes: tuple[str, ...] = ("a", "b"),
    *,
    sim_config: SimConfig | None = None,
    configure: Callable[[GatewayConfig], GatewayConfig] | None = None,
    **cluster: Any,
) -> AsyncIterator[list[Harness]]:
    sim = Simulator(sim_config or SimConfig(credentials=(("gw", SIM_PASSWORD),), id_format=SimIdFormat.HEX, seed=7))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve, "127.0.0.1", 0)
        harnesses = []
        gateways = []
        for node in nodes:
            cfg = cluster_config(tmp, port, node, valkey_port, **cluster)
            gateway = Gateway(configure(cfg) if configure else cfg)
            running: Running = await nursery.start(gateway.run)
            for pool in running.pools.values():
                await pool.wait_bound()
            gateways.append(gateway)
            harnesses.append(Harness(gateway, running, sim, tmp / node))
        try:
            yield harnesses
        finally:
            for gateway in gateways:
                gateway.shutdown()
            with trio.move_on_after(10):
                for gateway in gateways:
                    await gateway.stopped.wait()
            nursery.cancel_scope.cancel()
