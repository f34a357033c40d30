"""The gateway process: configuration, wiring, signals and graceful shutdown.

    gateway serve -c conf/gateway.toml

Start order: store (recovery) -> writer -> built-in simulators -> carrier pools -> engine -> upstream
listeners. Shutdown (SIGTERM / SIGINT) runs the other way as a sequence: stop accepting, let the binds
drain their windows and unbind, commit what they answered, close the writer, close the store.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import trio

from gateway import gctune
from gateway.carriers.config import BindConfig, CarrierConfig
from gateway.carriers.jobs import Inbound, OutcomeKind, SubmitOutcome
from gateway.carriers.pool import CarrierPool
from gateway.config import Problems, build_into, load_toml, read_secret
from gateway.engine import AccountSettings, CarrierSettings, EncodingSettings, Engine, EngineSettings
from gateway.engine.settings import RouteSettings
from gateway.errors import ConfigError
from gateway.routing import Route, RouteTable
from gateway.sim.config import SimConfig
from gateway.sim.server import Simulator
from gateway.smpp.msgid import IdFormat
from gateway.store import Store, StoreConfig, Writer
from gateway.store.remote import WriterProcess
from gateway.store.store import wall_ms as store_wall_ms
from gateway.upstream import Credentials, ServerConfig, serve_tcp, serve_unix

log = structlog.get_logger(__name__)


# --- configuration ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerSection:
    socket_path: str = "var/gateway.sock"
    # Loopback TCP listener for the upstream protocol; None: Unix socket only.
    tcp_port: int | None = None
    tcp_host: str = "127.0.0.1"
    log_level: str = "info"
    log_format: str = "console"  # or "json"
    # How long binds may take to drain their windows and unbind on shutdown.
    shutdown_grace_seconds: float = 10.0
    upstream: ServerConfig = field(default_factory=ServerConfig)


@dataclass(frozen=True, slots=True)
class CarrierSection:
    """One carrier: its binds (gateway.carriers) and how the engine treats it (gateway.engine)."""

    name: str
    binds: tuple[BindConfig, ...] = ()
    encoding: EncodingSettings = field(default_factory=EncodingSettings)
    response_ids: IdFormat = field(default_factory=IdFormat)
    receipt_ids: IdFormat = field(default_factory=IdFormat)
    receipts: bool = True
    job_queue_size: int = 1000
    results_queue_size: int = 1000
    inbound_queue_size: int = 1000

    def carrier_config(self) -> CarrierConfig:
        return CarrierConfig(
            name=self.name,
            binds=self.binds,
            job_queue_size=self.job_queue_size,
            results_queue_size=self.results_queue_size,
            inbound_queue_size=self.inbound_queue_size,
        )

    def settings(self) -> CarrierSettings:
        return CarrierSettings(self.name, self.encoding, self.response_ids, self.receipt_ids, self.receipts)


@dataclass(frozen=True, slots=True)
class SimulatorSection:
    """A built-in SMSC simulator the gateway starts in-process (the embedded defaults use two)."""

    name: str
    port: int
    host: str = "127.0.0.1"
    settings: SimConfig = field(default_factory=SimConfig)


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    store: StoreConfig
    server: ServerSection = field(default_factory=ServerSection)
    engine: EngineSettings = field(default_factory=EngineSettings)
    accounts: tuple[AccountSettings, ...] = ()
    carriers: tuple[CarrierSection, ...] = ()
    routes: tuple[RouteSettings, ...] = ()
    simulators: tuple[SimulatorSection, ...] = ()


def load_config(path: Path) -> GatewayConfig:
    """Read and check the whole configuration; every problem is reported at once (ConfigError): types and
    unknown keys, references between sections, and secrets that cannot be read."""
    path = path.resolve()
    raw = load_toml(path)
    file = str(path)
    problems: Problems = []
    cfg = build_into(GatewayConfig, raw, file=file, key="", problems=problems)
    _check_references(raw, file, problems)  # on the raw tables, so they are reported even beside type errors
    if cfg is not None:
        cfg = _resolve_paths(cfg, path.parent.parent if path.parent.name == "conf" else path.parent)
        _check_secrets(cfg, file, problems)
    if problems or cfg is None:
        raise ConfigError(problems)
    return cfg


def _tables(raw: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = raw.get(key, [])
    return [t for t in value if isinstance(t, dict)] if isinstance(value, list) else []


def _check_references(raw: dict[str, Any], file: str, problems: Problems) -> None:
    names = [c.get("name") for c in _tables(raw, "carriers")]
    for dup in sorted({str(n) for n in names if names.count(n) > 1}):
        problems.append((file, "carriers", f"carrier {dup!r} is defined twice"))
    for i, c in enumerate(_tables(raw, "carriers")):
        if not c.get("binds"):
            problems.append((file, f"carriers[{i}].binds", "a carrier needs at least one bind"))
    for i, route in enumerate(_tables(raw, "routes")):
        carriers = route.get("carriers", [])
        for carrier in carriers if isinstance(carriers, list) else []:
            if carrier not in names:
                problems.append((file, f"routes[{i}].carriers", f"unknown carrier {carrier!r}"))
        prefix = route.get("prefix", "")
        if isinstance(prefix, str) and prefix and not prefix.isdigit():
            problems.append((file, f"routes[{i}].prefix", "must be digits (\"\" for every number)"))
    accounts = _tables(raw, "accounts")
    if not accounts:
        problems.append((file, "accounts", "at least one upstream account is needed"))
    for i, account in enumerate(accounts):
        if not account.get("secret_env") and not account.get("secret_file"):
            problems.append((file, f"accounts[{i}]", "needs secret_env or secret_file (never the secret itself)"))


def _check_secrets(cfg: GatewayConfig, file: str, problems: Problems) -> None:
    """Every account secret and bind password must be readable now, not at the first bind or hello."""
    for i, a in enumerate(cfg.accounts):
        key = f"accounts[{i}].secret_env" if a.secret_env else f"accounts[{i}].secret_file"
        try:
            read_secret(env=a.secret_env, file=Path(a.secret_file) if a.secret_file else None, what=a.name)
        except ConfigError as err:
            problems.extend((file, key, f"{where}: {reason}") for where, _, reason in err.problems)
    for i, c in enumerate(cfg.carriers):
        for j, b in enumerate(c.binds):
            key = f"carriers[{i}].binds[{j}].password_{'env' if b.password_env else 'file'}"
            try:
                b.resolve_password()
            except ConfigError as err:
                problems.extend((file, key, f"{where}: {reason}") for where, _, reason in err.problems)


def _resolve_paths(cfg: GatewayConfig, base: Path) -> GatewayConfig:
    """Relative paths in the config are relative to the project directory (the parent of conf/)."""

    def resolve(p: str) -> str:
        return p if os.path.isabs(p) else str(base / p)

    store = cfg.store
    server = cfg.server
    accounts = tuple(
        AccountSettings(a.name, a.secret_env, resolve(a.secret_file) if a.secret_file else None, a.mo_addresses)
        for a in cfg.accounts
    )
    return GatewayConfig(
        store=StoreConfig(**{**_fields(store), "path": resolve(store.path)}),
        server=ServerSection(**{**_fields(server), "socket_path": resolve(server.socket_path)}),
        engine=cfg.engine,
        accounts=accounts,
        carriers=tuple(
            CarrierSection(**{**_fields(c), "binds": tuple(_resolve_bind(b, resolve) for b in c.binds)})
            for c in cfg.carriers
        ),
        routes=cfg.routes,
        simulators=cfg.simulators,
    )


def _resolve_bind(b: BindConfig, resolve: Any) -> BindConfig:
    if not b.password_file:
        return b
    return BindConfig(**{**_fields(b), "password_file": resolve(b.password_file)})


def _fields(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__ if obj.__dataclass_fields__[name].init}


def credentials(cfg: GatewayConfig) -> Credentials:
    return Credentials(
        {
            a.name: read_secret(
                env=a.secret_env, file=Path(a.secret_file) if a.secret_file else None, what=f"account {a.name}"
            )
            for a in cfg.accounts
        }
    )


def setup_logging(server: ServerSection) -> None:
    level = logging.getLevelNamesMapping().get(server.log_level.upper(), logging.INFO)
    renderer: Any = structlog.processors.JSONRenderer()
    if server.log_format != "json":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


# --- the process ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Running:
    """What `Gateway.run` started, handed to whoever awaited `nursery.start(gateway.run)`."""

    socket_path: str
    tcp: tuple[str, int] | None
    simulators: dict[str, Simulator]
    engine: Engine
    pools: dict[str, CarrierPool]


class Gateway:
    def __init__(self, cfg: GatewayConfig, *, wall_ms: Callable[[], int] | None = None) -> None:
        """`wall_ms` replaces the wall clock (milliseconds since the epoch) for schedules, validity and the
        store's timestamps; tests pass a virtual one."""
        self.cfg = cfg
        self._wall_ms = wall_ms
        self._stop = trio.Event()
        self.stopped = trio.Event()  # set once the store is closed
        self.running: Running | None = None

    def shutdown(self) -> None:
        """Begin the graceful shutdown sequence (what SIGTERM does)."""
        self._stop.set()

    async def run(self, *, task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED) -> None:
        cfg = self.cfg
        creds = credentials(cfg)
        await trio.to_thread.run_sync(_make_dirs, cfg)
        process = None
        if cfg.store.writer_process:
            # The worker opens the store for writing and runs recovery before this process reads it.
            process = await WriterProcess.start(cfg.store, (self._wall_ms or store_wall_ms)())
            log.info("store_writer_started", pid=process.pid, resent=process.recovery.resent,
                     unknown=process.recovery.unknown)  # fmt: skip
        try:
            store = await trio.to_thread.run_sync(_open_store, cfg, self._wall_ms, process is None)
            if process is not None:
                store.observe_seq(process.last_seq)
            log.info("store_opened", path=cfg.store.path, last_event=store.last_seq())
            try:
                async with trio.open_nursery() as root:
                    writer = Writer(store, process=process)
                    await root.start(writer.run)
                    sims = await self._start_simulators(root)
                    await self._serve(root, store, writer, creds, sims, task_status)
                    root.cancel_scope.cancel()  # simulators
            finally:
                store.close()
                log.info("store_closed")
        finally:
            if process is not None:
                await process.aclose()
            self.stopped.set()

    async def _start_simulators(self, root: trio.Nursery) -> dict[str, Simulator]:
        sims: dict[str, Simulator] = {}
        for section in self.cfg.simulators:
            sim = Simulator(section.settings)
            await root.start(sim.serve, section.host, section.port)
            sims[section.name] = sim
        return sims

    async def _serve(
        self,
        root: trio.Nursery,
        store: Store,
        writer: Writer,
        creds: Credentials,
        sims: dict[str, Simulator],
        task_status: trio.TaskStatus[Running],
    ) -> None:
        cfg = self.cfg
        queue = sum(c.results_queue_size for c in cfg.carriers) or 1000
        results_tx, results_rx = trio.open_memory_channel[SubmitOutcome](queue)
        inbound_tx, inbound_rx = trio.open_memory_channel[Inbound](queue)
        pools = {
            c.name: CarrierPool(c.carrier_config(), results=results_tx, inbound=inbound_tx) for c in cfg.carriers
        }
        engine = Engine(
            store=store,
            writer=writer,
            pools=pools,
            carriers={c.name: c.settings() for c in cfg.carriers},
            routes=RouteTable(Route(r.prefix, r.carriers) for r in cfg.routes),
            settings=cfg.engine,
            accounts=cfg.accounts,
            results=results_rx,
            inbound=inbound_rx,
            **({"wall_ms": self._wall_ms} if self._wall_ms else {}),
        )
        async with trio.open_nursery() as carriers:
            for pool in pools.values():
                await carriers.start(pool.run)
            async with trio.open_nursery() as core:
                await core.start(engine.run)
                async with trio.open_nursery() as front:
                    path = await front.start(serve_unix, cfg.server.socket_path, engine, creds, cfg.server.upstream)
                    tcp = None
                    if cfg.server.tcp_port is not None:
                        tcp = await front.start(
                            _serve_tcp, engine, creds, cfg.server.upstream, cfg.server.tcp_host, cfg.server.tcp_port
                        )
                    self.running = Running(path, tcp, sims, engine, pools)
                    log.info("gateway_ready", socket=path, tcp=tcp, carriers=list(pools))
                    task_status.started(self.running)
                    await self._stop.wait()
                    log.info("shutdown_started")
                    front.cancel_scope.cancel()  # 1. stop accepting
                await self._drain(pools, results_tx, inbound_tx, engine)  # 2-3. binds drain and unbind
                log.info("engine_counters", **engine.counters)  # receipts early / ignored / unparseable, MO
                core.cancel_scope.cancel()
        await writer.aclose()  # 4. commit the writer's tail
        log.info("shutdown_complete")

    async def _drain(
        self,
        pools: dict[str, CarrierPool],
        results: trio.MemorySendChannel[SubmitOutcome],
        inbound: trio.MemorySendChannel[Inbound],
        engine: Engine,
    ) -> None:
        grace = self.cfg.server.shutdown_grace_seconds
        for pool in pools.values():
            pool.stop()
        with trio.move_on_after(grace + 2):
            for pool in pools.values():
                await pool.wait_stopped()
        # Jobs no bind ever took are "submitting" in the store but never left: they go back as NOT_SENT, so
        # they are queued again rather than settled as "unknown" by the next start's recovery.
        for name, pool in pools.items():
            for job in pool.take_unsent():
                outcome = SubmitOutcome(context=job.context, kind=OutcomeKind.NOT_SENT, carrier=name, bind="",
                                        reason="gateway stopping")  # fmt: skip
                await results.send(outcome)
        # What the binds handed back (responses, "not sent", "unknown", receipts) must reach the store:
        # closing the channels lets the engine drain them to the end and commit. A segment still in flight
        # after the grace period stays "submitting" in the store, and recovery settles it at the next start.
        await results.aclose()
        await inbound.aclose()
        with trio.move_on_after(grace):
            await engine.drained()


def _make_dirs(cfg: GatewayConfig) -> None:
    Path(cfg.store.path).mkdir(parents=True, exist_ok=True)
    Path(cfg.server.socket_path).parent.mkdir(parents=True, exist_ok=True)


def _open_store(cfg: GatewayConfig, wall_ms: Callable[[], int] | None, recover: bool) -> Store:
    """The gateway's store handle: it writes and recovers too without a writer process (`recover`);
    with one, the worker has recovered already and this handle only reads."""
    clock = wall_ms or store_wall_ms
    return Store.open(cfg.store, clock) if recover else Store(cfg.store, clock)


async def _serve_tcp(
    backend: Engine,
    creds: Credentials,
    config: ServerConfig,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    await serve_tcp(backend, creds, config, host=host, port=port, task_status=task_status)


async def main_async(cfg: GatewayConfig) -> None:
    gateway = Gateway(cfg)
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            await nursery.start(gateway.run)
            async for signum in signals:
                log.info("signal_received", signal=signal.Signals(signum).name)
                gateway.shutdown()
                break


def serve_command(config_path: str) -> int:
    try:
        cfg = load_config(Path(config_path))  # secrets too: nothing starts with one unreadable
        setup_logging(cfg.server)
    except ConfigError as err:
        print(f"gateway: {err}", file=sys.stderr)
        return 2
    gctune.tune()
    trio.run(main_async, cfg)
    return 0
