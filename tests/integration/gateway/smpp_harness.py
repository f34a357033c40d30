"""A gateway with its SMPP server face on 127.0.0.1:0, for upstream ESMEs (smpplib in a thread, or a raw
sans-IO session over a real socket)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from gateway.app import GatewayConfig
from gateway.sim.server import Simulator
from gateway.upstream.smpp_core import SmppAccountConfig, SmppServerConfig
from tests.integration.gateway.harness import Harness, running_gateway

SYSTEM_ID = "acmesmpp"
PASSWORD = "pw12345"


def with_smpp(tmp: Path, **server: Any) -> Any:
    """A `configure` for running_gateway: [smpp_server] on port 0 with one system_id for account acme."""
    (tmp / "smpp.secret").write_text(PASSWORD)
    account_keys = {k[8:]: server.pop(k) for k in list(server) if k.startswith("account_")}

    def configure(cfg: GatewayConfig) -> GatewayConfig:
        account = SmppAccountConfig(account="acme", system_id=SYSTEM_ID, password_file=str(tmp / "smpp.secret"),
                                    **account_keys)  # fmt: skip
        smpp = SmppServerConfig(port=0, accounts=(account,), **server)
        return dataclasses.replace(cfg, smpp_server=smpp)

    return configure


@asynccontextmanager
async def smpp_gateway(
    tmp: Path, *, simulator: tuple[Simulator, int] | None = None, sync: bool = False, **server: Any
) -> AsyncIterator[tuple[Harness, int]]:
    async with running_gateway(tmp, configure=with_smpp(tmp, **server), simulator=simulator, sync=sync) as h:
        smpp = h.running.smpp
        assert smpp is not None
        await trio.lowlevel.checkpoint()
        yield h, smpp.port


# --- helpers for tests/integration/gateway/test_smpp_server.py ------------------------------------------


@asynccontextmanager
async def running_simulator(**changes: Any) -> AsyncIterator[tuple[Simulator, int]]:
    """The harness's simulator with `changes` (receipt_delay_seconds, ...), for `smpp_gateway(simulator=)`."""
    from gateway.sim.config import IdFormat as SimIdFormat
    from gateway.sim.config import SimConfig

    from .harness import SIM_PASSWORD

    config = SimConfig(credentials=(("gw", SIM_PASSWORD),), id_format=SimIdFormat.HEX, seed=7, **changes)
    sim = Simulator(config)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve, "127.0.0.1", 0)
        yield sim, port
        nursery.cancel_scope.cancel()


def record_submits(sim: Simulator) -> list[Any]:
    """Every submit_sm the simulator (the carrier) reads from the gateway, in order, as the simulator
    decoded it off the wire."""
    seen: list[Any] = []
    real = sim._on_submit

    def watch(conn: Any, pdu: Any) -> None:
        seen.append(pdu)
        real(conn, pdu)

    sim._on_submit = watch  # type: ignore[method-assign]
    return seen
