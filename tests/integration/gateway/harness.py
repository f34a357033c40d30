"""A whole gateway in the test process: a simulator on 127.0.0.1:0, the Gateway bound to it, a real Unix
socket, a real LMDB in a temp dir. Every wait is bounded by the caller's trio.fail_after."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from gateway.app import CarrierSection, Gateway, GatewayConfig, Running, ServerSection
from gateway.carriers.config import BindConfig, BindMode
from gateway.engine import AccountSettings, EncodingSettings, EngineSettings, RouteSettings
from gateway.sim.config import IdFormat as SimIdFormat
from gateway.sim.config import SimConfig
from gateway.sim.server import Simulator
from gateway.smpp.msgid import IdBase, IdFormat
from gateway.store import StoreConfig
from gateway.upstream import UpstreamClient, open_unix_client
from gateway.upstream.schema import Event

SECRET = "s3cret"
SIM_PASSWORD = "simpw"
# The numbers the tests send (447700900001, 4477{8 digits}) are mostly in no real numbering plan: accepted
# as a reserved test range, the way Ofcom's 07700 900xxx drama range is in the shipped config.
TEST_PREFIXES = ("4477",)


@dataclass
class Harness:
    gateway: Gateway
    running: Running
    sim: Simulator
    tmp: Path

    @asynccontextmanager
    async def client(self) -> AsyncIterator[UpstreamClient]:
        async with open_unix_client(self.running.socket_path, account="acme", secret=SECRET) as client:
            yield client


def gateway_config(tmp: Path, sim_port: int, *, sync: bool = False, window: int = 100) -> GatewayConfig:
    (tmp / "acme.secret").write_text(SECRET)
    (tmp / "sim.secret").write_text(SIM_PASSWORD)
    bind = BindConfig(
        name="trx",
        host="127.0.0.1",
        port=sim_port,
        system_id="gw",
        password_file=str(tmp / "sim.secret"),
        mode=BindMode.TRANSCEIVER,
        window=window,
        response_timeout_seconds=10.0,
    )
    hex_ids = IdFormat(base=IdBase.HEX, fold_case=True)
    return GatewayConfig(
        store=StoreConfig(path=str(tmp / "store"), sync=sync, map_size_bytes=1 << 28),
        server=ServerSection(socket_path=str(tmp / "gw.sock"), log_level="warning", shutdown_grace_seconds=2.0),
        engine=EngineSettings(
            default_region="GB", test_prefixes=TEST_PREFIXES, retry_backoff_min_seconds=0.05,
            scheduler_poll_seconds=0.2,
        ),
        accounts=(AccountSettings("acme", secret_file=str(tmp / "acme.secret"), mo_addresses=("ACME",)),),
        carriers=(
            CarrierSection(
                name="sim",
                binds=(bind,),
                encoding=EncodingSettings(),
                response_ids=hex_ids,
                receipt_ids=hex_ids,
            ),
        ),
        routes=(RouteSettings("", ("sim",)),),
    )


@asynccontextmanager
async def running_gateway(
    tmp: Path,
    *,
    sim_config: SimConfig | None = None,
    wall_ms: Callable[[], int] | None = None,
    sync: bool = False,
    configure: Callable[[GatewayConfig], GatewayConfig] | None = None,
    simulator: tuple[Simulator, int] | None = None,
) -> AsyncIterator[Harness]:
    """`simulator`: one the caller runs (and its port), which outlives this gateway: a restart test binds a
    second gateway on the same store to it, and gets the receipts it still holds."""
    sim = simulator[0] if simulator else Simulator(
        sim_config or SimConfig(credentials=(("gw", SIM_PASSWORD),), id_format=SimIdFormat.HEX, seed=7)
    )  # fmt: skip
    async with trio.open_nursery() as nursery:
        port = simulator[1] if simulator else await nursery.start(sim.serve, "127.0.0.1", 0)
        cfg = gateway_config(tmp, port, sync=sync)
        gateway = Gateway(configure(cfg) if configure else cfg, wall_ms=wall_ms)
        running: Running = await nursery.start(gateway.run)
        for pool in running.pools.values():
            await pool.wait_bound()
        try:
            yield Harness(gateway, running, sim, tmp)
        finally:
            gateway.shutdown()
            with trio.move_on_after(10):
                await gateway.stopped.wait()
            nursery.cancel_scope.cancel()


FINAL_KINDS = ("delivered", "failed")


async def collect_final_events(
    client: UpstreamClient, want: set[str], *, after: int | None = 0
) -> tuple[dict[str, Event], list[Event]]:
    """Read the event stream until every message id in `want` has a final event; ack as we go."""
    finals: dict[str, Event] = {}
    seen: list[Event] = []
    sub = await client.subscribe(after=after, window=5000)
    async for event in sub:
        seen.append(event)
        if event.kind in FINAL_KINDS and event.message_id in want:
            finals[event.message_id] = event
        if len(seen) % 500 == 0:
            await sub.ack(event.seq)
        if len(finals) == len(want):
            await sub.ack(event.seq)
            break
    return finals, seen


async def ctl(h: Harness, *argv: str, json_out: bool = False) -> tuple[int, str, str]:
    """gatewayctl as an operator runs it: a process of its own on the admin socket; (exit code, stdout,
    stderr)."""
    socket = h.running.admin_socket
    assert socket is not None
    full = [sys.executable, "-m", "gateway.ctl.main", "--socket", socket, *(["--json"] if json_out else []), *argv]
    done = await trio.run_process(full, capture_stdout=True, capture_stderr=True, check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def ctl_json(h: Harness, *argv: str) -> tuple[int, Any]:
    code, out, _ = await ctl(h, *argv, json_out=True)
    return code, json.loads(out)
