"""The gateway process: configuration, wiring, signals and graceful shutdown.

    gateway serve -c conf/gateway.toml

Start order: checks (state directories private, the store's lock, every socket can be created: all problems
at once) -> store (recovery) -> writer -> built-in simulators -> carrier pools -> engine -> upstream
listeners. Shutdown (SIGTERM / SIGINT) runs the other way as a sequence: stop accepting, let the binds
drain their windows and unbind, commit what they answered, close the writer, close the store, release the
lock. SIGHUP re-reads the config: a bad one is refused and the running one stays; a good one changes what
can change live (the log level and format) and names the keys that need a restart.
"""

from __future__ import annotations

import dataclasses
import errno
import faulthandler
import logging
import os
import re
import signal
import socket
import stat
import sys
import time
from collections.abc import AsyncIterator, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import structlog
import trio

from gateway import debuglog, gctune
from gateway.admin.service import AdminContext, AdminService, ReloadOutcome
from gateway.carriers.config import BindConfig, CarrierConfig
from gateway.carriers.jobs import Inbound, OutcomeKind, SubmitOutcome
from gateway.carriers.pool import CarrierPool
from gateway.cluster.core import ClusterConfig
from gateway.cluster.shared import NodeNameTaken, Shared
from gateway.cluster.shared import password as cluster_password
from gateway.config import Problems, build_into, changed_keys, choices, limits, load_toml, read_secret
from gateway.engine import AccountSettings, CarrierSettings, EncodingSettings, Engine, EngineSettings
from gateway.engine.portability import PortabilitySettings
from gateway.engine.settings import (
    CapSettings,
    ComplianceSettings,
    ErrorBudgetSettings,
    ErrorClasses,
    NetworkSettings,
    RouteSettings,
    WordListSettings,
)
from gateway.errors import ConfigError, GatewayError
from gateway.ops.http import serve_ops
from gateway.policy.content import SignatureRules, check_signature, has_optout_wording
from gateway.policy.keywords import Keywords
from gateway.policy.policy import AccountRules, CapRule, Policy
from gateway.policy.windows import Window, next_open_ms
from gateway.routing.content import WordLists
from gateway.routing.numbers import NumberBook
from gateway.routing.router import CarrierProfile, Connection, NetworkTable, Router, RouteRule, Routing
from gateway.sim.config import SimConfig
from gateway.sim.server import Simulator
from gateway.smpp.msgid import ALL_FORMS, IdForm, IdFormat
from gateway.store import Store, StoreConfig, Writer
from gateway.store.lock import StoreInUse, StoreLock, lock_store
from gateway.store.remote import WriterProcess
from gateway.store.store import wall_ms as store_wall_ms
from gateway.upstream import Credentials, ServerConfig, UpstreamBackend, serve_tcp, serve_unix
from gateway.upstream.server import Drain
from gateway.upstream.smpp_core import MAX_PASSWORD, SmppAccountConfig, SmppServerConfig
from gateway.upstream.smpp_server import SmppServer

log = structlog.get_logger(__name__)


# --- configuration ----------------------------------------------------------------------------------

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True, slots=True)
class ServerSection:
    socket_path: str = "var/gateway.sock"
    # The admin socket (docs/admin.md): gatewayctl's, mode 0600, every account and the operator's commands.
    # "": admin.sock beside socket_path.
    admin_socket: str = ""
    admin: bool = True

    @property
    def admin_path(self) -> str | None:
        if not self.admin:
            return None
        return self.admin_socket or str(Path(self.socket_path).parent / "admin.sock")
    # Loopback TCP listener for the upstream protocol; None: Unix socket only.
    tcp_port: int | None = field(default=None, metadata=limits(1, 65535))
    tcp_host: str = "127.0.0.1"
    log_level: str = field(default="info", metadata=choices(*LOG_LEVELS))
    log_format: str = field(default="console", metadata=choices("console", "json"))
    # How long binds may take to drain their windows and unbind on shutdown.
    shutdown_grace_seconds: float = field(default=10.0, metadata=limits(0.0, 3600.0))
    upstream: ServerConfig = field(default_factory=ServerConfig)


@dataclass(frozen=True, slots=True)
class CarrierSection:
    """One carrier: its binds (gateway.carriers) and how the engine treats it (gateway.engine)."""

    name: str
    binds: tuple[BindConfig, ...] = ()
    encoding: EncodingSettings = field(default_factory=EncodingSettings)
    response_ids: IdFormat = field(default_factory=IdFormat)
    receipt_ids: IdFormat = field(default_factory=IdFormat)
    # The forms its receipts may write ids in besides the response's own (default all): see CarrierSettings.
    receipt_id_forms: tuple[IdForm, ...] = ALL_FORMS
    receipts: bool = True
    job_queue_size: int = field(default=1000, metadata=limits(1, None))
    results_queue_size: int = field(default=1000, metadata=limits(1, None))
    inbound_queue_size: int = field(default=1000, metadata=limits(1, None))
    # The account's contracted submits a second over all its binds (in a cluster, every node's): 0 for none.
    account_tps: float = field(default=0.0, metadata=limits(0.0, None))
    # What each submit_sm_resp error means: retry here, move to the next carrier of the route, or fail.
    errors: ErrorClasses = field(default_factory=ErrorClasses)
    receipt_timeout_seconds: float = field(default=72 * 3600.0, metadata=limits(1.0, 90 * 86400.0))
    handback_seconds: float = field(default=30.0, metadata=limits(0.0, 86400.0))
    # Word lists ([[word_lists]] names) whose words this carrier blocks: a text with one goes to another
    # carrier of its route, or is refused content_blocked.
    blocked_words: tuple[str, ...] = ()
    # Too many failures in a window: skipped for a cool-down while its routes have another carrier.
    error_budget: ErrorBudgetSettings = field(default_factory=ErrorBudgetSettings)
    # Its failure codes as batch reports name them: "001" or "undeliverable:001" -> a category.
    failure_reasons: dict[str, str] = field(default_factory=dict)

    def mistakes(self) -> list[tuple[str, str]]:
        return self.settings().mistakes()

    def carrier_config(self) -> CarrierConfig:
        return CarrierConfig(
            name=self.name,
            binds=self.binds,
            job_queue_size=self.job_queue_size,
            results_queue_size=self.results_queue_size,
            inbound_queue_size=self.inbound_queue_size,
            account_tps=self.account_tps,
        )

    def settings(self) -> CarrierSettings:
        return CarrierSettings(
            self.name, self.encoding, self.response_ids, self.receipt_ids, self.receipts, self.errors,
            self.receipt_timeout_seconds, self.handback_seconds, receipt_id_forms=self.receipt_id_forms,
            error_budget=self.error_budget, failure_reasons=dict(self.failure_reasons),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class SimulatorSection:
    """A built-in SMSC simulator the gateway starts in-process (the embedded defaults use two)."""

    name: str
    port: int = field(metadata=limits(1, 65535))
    host: str = "127.0.0.1"
    settings: SimConfig = field(default_factory=SimConfig)


@dataclass(frozen=True, slots=True)
class MetricsSection:
    """[metrics]: Prometheus /metrics, /live and /ready over HTTP (docs/metrics.md). Off by default; on, it
    listens on the loopback unless told otherwise: the figures name carriers and accounts' refusals."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = field(default=9464, metadata=limits(1, 65535))


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    store: StoreConfig
    server: ServerSection = field(default_factory=ServerSection)
    engine: EngineSettings = field(default_factory=EngineSettings)
    accounts: tuple[AccountSettings, ...] = ()
    carriers: tuple[CarrierSection, ...] = ()
    routes: tuple[RouteSettings, ...] = ()
    simulators: tuple[SimulatorSection, ...] = ()
    networks: tuple[NetworkSettings, ...] = ()
    word_lists: tuple[WordListSettings, ...] = ()
    portability: PortabilitySettings = field(default_factory=PortabilitySettings)
    # Compliance rules (gateway/policy/): without the table only opt-outs (of marketing) and MO keywords.
    compliance: ComplianceSettings | None = None
    caps: tuple[CapSettings, ...] = ()
    metrics: MetricsSection = field(default_factory=MetricsSection)
    # The SMPP server face (docs/smpp_server.md): off without the table.
    smpp_server: SmppServerConfig | None = None
    # Several nodes sharing lists, caps, receipts and carrier TPS in Valkey (docs/scaling.md): one node without.
    cluster: ClusterConfig | None = None


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
        # The project directory: the parent of conf/ (conf/examples/ too), else the config's own directory.
        cfg = _resolve_paths(cfg, next((p.parent for p in path.parents if p.name == "conf"), path.parent))
        unreadable: Problems = []  # reported with the rest of the routing's problems, not instead of them
        cfg = _read_word_files(cfg, file, unreadable)
        _check_secrets(cfg, file, problems)
        _check_tls_files(cfg, file, problems)
        _check_smpp_server(cfg, file, problems)
        _check_cluster(cfg, file, problems)
        if not problems:
            build_routing(cfg, file, problems)
            build_policy(cfg, file, problems)
        problems.extend(unreadable)
    if problems or cfg is None:
        raise ConfigError(problems)
    return cfg


def build_routing(cfg: GatewayConfig, file: str = "", problems: Problems | None = None) -> Routing | None:
    """The route table, networks, word lists and number rules of `cfg`; every problem is added to
    `problems` as (file, key, reason) (None returned), or raised as ConfigError when `problems` is None."""
    found: Problems = []
    numbers = None
    try:
        numbers = NumberBook(cfg.engine.test_prefixes)
    except ValueError as err:
        found.append((file, "engine.test_prefixes", str(err)))
    book = numbers or NumberBook()
    default_region = cfg.engine.default_region.upper()
    if not default_region and cfg.engine.default_country_code:
        default_region = _region_of_code(cfg.engine.default_country_code)
        if not default_region:
            code = cfg.engine.default_country_code
            found.append((file, "engine.default_country_code", f"{code!r} is no country code"))
    if default_region and not book.is_region(default_region):
        found.append((file, "engine.default_region", f"{default_region!r} is not an ISO 3166 region"))
    regions = {}
    for i, a in enumerate(cfg.accounts):
        if a.region and not book.is_region(a.region):
            found.append((file, f"accounts[{i}].region", f"{a.region!r} is not an ISO 3166 region"))
        regions[a.name] = (a.region or default_region).upper()
    networks = None
    names = [n.name for n in cfg.networks]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        found.append((file, "networks", f"network {dup!r} is defined twice"))
    try:
        networks = NetworkTable({n.name: n.blocks for n in cfg.networks})
    except ValueError as err:
        found.append((file, "networks", str(err)))
    words = None
    lists: dict[str, tuple[str, ...]] = {}
    for i, w in enumerate(cfg.word_lists):
        if w.name in lists:
            found.append((file, f"word_lists[{i}].name", f"word list {w.name!r} is defined twice"))
        lists[w.name] = w.words + w.file_words
    if lists:
        try:
            words = WordLists(lists)
        except ValueError as err:
            found.append((file, "word_lists", str(err)))
    carriers: dict[str, CarrierProfile] = {}
    for i, c in enumerate(cfg.carriers):
        for name in c.blocked_words:
            if name not in lists:
                found.append((file, f"carriers[{i}].blocked_words", f"no word list {name!r}"))
        carriers[c.name] = CarrierProfile(c.encoding.route_encoding(), frozenset(c.blocked_words))
    rules = []
    for i, r in enumerate(cfg.routes):
        key = f"routes[{i}]"
        connections = [Connection(c, priority=n + 1) for n, c in enumerate(r.carriers)]
        connections += [Connection(c.carrier, c.priority, c.weight, c.cost or 0.0) for c in r.connections]
        found.extend((file, k, reason) for k, reason in _route_mistakes(r, key, {a.name for a in cfg.accounts}))
        for conn in connections:
            if conn.carrier not in carriers:
                found.append((file, f"{key}.connections", f"unknown carrier {conn.carrier!r}"))
        for p in (r.prefix, *r.prefixes):
            if p and (not p.isascii() or not p.isdigit()):
                found.append((file, f"{key}.prefixes", f"{p!r} must be digits (\"\" for every number)"))
        for n in r.networks:
            if n not in names:
                found.append((file, f"{key}.networks", f"no network {n!r}"))
        for country in r.countries:
            if not book.is_region(country):
                found.append((file, f"{key}.countries", f"{country!r} is not an ISO 3166 region"))
        prefixes = tuple(p for p in (r.prefix, *r.prefixes) if p)
        rules.append(RouteRule(
            r.name or key, tuple(connections), networks=frozenset(r.networks), prefixes=prefixes,
            countries=frozenset(x.upper() for x in r.countries), classes=frozenset(r.classes),
            accounts=frozenset(r.accounts), senders=frozenset(r.senders), strategy=r.strategy,
            mobile_only=r.mobile_only,
        ))  # fmt: skip
    router = None
    if not found:
        try:
            router = Router(rules, carriers, networks=networks, words=words)
        except ValueError as err:
            found.append((file, "routes", str(err)))
    if found or router is None or numbers is None:
        if problems is None:
            raise ConfigError(found)
        problems.extend(found)
        return None
    return Routing(router, numbers, regions, default_region)


def build_policy(cfg: GatewayConfig, file: str = "", problems: Problems | None = None) -> Policy | None:
    """The compliance policy of `cfg` (gateway/policy/policy.py); every problem is added to `problems` as
    (file, key, reason) (None returned), or raised as ConfigError when `problems` is None."""
    found: Problems = []
    c = cfg.compliance
    on = c is not None
    c = c or ComplianceSettings(window="", optout_wordings=())
    window = None
    if on and c.window:
        try:
            window = Window.parse(c.window)
        except ValueError as err:
            found.append((file, "compliance.window", str(err)))
    lists = {w.name for w in cfg.word_lists}
    for name in c.banned_words:
        if name not in lists:
            found.append((file, "compliance.banned_words", f"no word list {name!r}"))
    base = None
    try:
        s = c.signature
        base = SignatureRules(s.required, s.max_units, s.min_units, frozenset(s.reserved), s.symbols)
    except ValueError as err:
        found.append((file, "compliance.signature", str(err)))
    usable = _usable_wordings(c.optout_wordings, file, found)
    accounts: dict[str, AccountRules] = {}
    for i, a in enumerate(cfg.accounts):
        key = f"accounts[{i}]"
        try:
            keywords = Keywords((*c.optout_keywords, *a.optout_keywords), (*c.optin_keywords, *a.optin_keywords))
        except ValueError as err:
            found.append((file, f"{key}.optout_keywords" if a.optout_keywords else "compliance.optout_keywords",
                          str(err)))  # fmt: skip
            keywords = Keywords()
        signature = base or SignatureRules()
        for name in a.signatures:  # an approved signature must pass the rules itself, or no text could use it
            broken = check_signature(f"【{name}】", signature)
            if broken is not None:
                found.append((file, f"{key}.signatures", f"{name!r}: {broken.detail}"))
        try:
            required = signature.required if a.signature_required is None else a.signature_required
            signature = dataclasses.replace(signature, required=required, allowed=frozenset(a.signatures))
        except ValueError as err:
            found.append((file, f"{key}.signatures", str(err)))
        if a.time_zone:
            try:
                next_open_ms(Window(0, 1), (a.time_zone,), 0)
            except ValueError as err:
                found.append((file, f"{key}.time_zone", str(err)))
        if a.append_optout and usable and not has_optout_wording(a.append_optout, usable):
            wordings = " / ".join(usable)
            found.append((file, f"{key}.append_optout", f"{a.append_optout!r} is none of the wordings ({wordings})"))
        templated = frozenset(a.template_classes)
        accounts[a.name] = AccountRules(signature, a.append_optout, a.time_zone, keywords, templated)
    names = [r.name for r in cfg.caps]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        found.append((file, "caps", f"cap {dup!r} is defined twice"))
    caps = [
        CapRule(r.name, r.scope, frozenset(r.classes), r.window_seconds, r.limit,
                {"any": None, "yes": True, "no": False}[r.offers_optout], r.give_back)
        for r in cfg.caps
    ]  # fmt: skip
    if found:
        if problems is None:
            raise ConfigError(found)
        problems.extend(found)
        return None
    return Policy(
        optout_blocks=c.optout_blocks, window=window, window_classes=c.window_classes, banned_lists=c.banned_words,
        banned_classes=c.banned_word_classes,
        wordings=c.optout_wordings, wording_classes=c.optout_wording_classes, caps=caps, accounts=accounts,
        optout_scope=c.optout_scope,
    )  # fmt: skip


def _usable_wordings(wordings: Sequence[str], file: str, found: Problems) -> tuple[str, ...]:
    """The opt-out wordings a text can be checked for; one with no letter or digit folds to nothing
    (policy/content.py), so every text would seem to offer it and the check would raise: a problem."""
    usable = []
    for i, wording in enumerate(wordings):
        try:
            has_optout_wording("", (wording,))
        except ValueError as err:
            found.append((file, f"compliance.optout_wordings[{i}]", f"{err}: every text would seem to offer it"))
        else:
            usable.append(wording)
    return tuple(usable)


def _policy(cfg: GatewayConfig) -> Policy:
    policy = build_policy(cfg)  # raises ConfigError rather than return None
    assert policy is not None
    return policy


def _route_mistakes(r: RouteSettings, key: str, accounts: set[str]) -> list[tuple[str, str]]:
    """What makes a route never match, or match otherwise than written, though each value is valid alone."""
    found = []
    if not r.carriers and not r.connections:
        found.append((f"{key}.carriers", "a route needs carriers (or connections)"))
    if r.carriers and r.connections:
        found.append((f"{key}.connections", "give carriers (in order) or connections, not both"))
    named = [*r.carriers, *(c.carrier for c in r.connections)]
    for dup in sorted({c for c in named if named.count(c) > 1}):
        found.append((f"{key}.connections", f"carrier {dup!r} is named twice"))
    if r.strategy == "least_cost":
        if r.carriers:
            found.append((f"{key}.carriers", "a least_cost route needs connections with a cost each"))
        for j, c in enumerate(r.connections):
            if c.cost is None:
                found.append((f"{key}.connections[{j}].cost", "required for least_cost (the price per part)"))
    if r.prefix and r.prefixes:
        found.append((f"{key}.prefix", "give prefix or prefixes, not both"))
    for name in r.accounts:
        if name not in accounts:
            found.append((f"{key}.accounts", f"no account {name!r}"))
    for sender in r.senders:
        if not sender or len(sender) > _MAX_SENDER:
            found.append((f"{key}.senders", f"{sender!r} can never match: a sender is 1-{_MAX_SENDER} characters"))
    return found


# SMPP 3.4 5.2.8 source_addr: a C-Octet String of at most 21 octets, its NUL included.
_MAX_SENDER = 20


def _routing(cfg: GatewayConfig) -> Routing:
    routing = build_routing(cfg)  # raises ConfigError rather than return None
    assert routing is not None
    return routing


def _configure_portability(engine: Engine, cfg: GatewayConfig) -> None:
    """The portability file (checked against the table in the store, imported when it changed) and the
    networks its rows may name (any, when no network is configured)."""
    engine.portability.configure(cfg.portability, [n.name for n in cfg.networks])


def _region_of_code(code: str) -> str:
    import phonenumbers  # only for this older setting

    return str(phonenumbers.region_code_for_country_code(int(code))) if code.isdigit() else ""


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
    for i, w in enumerate(_tables(raw, "word_lists")):
        if not w.get("words") and not w.get("file"):
            problems.append((file, f"word_lists[{i}]", "needs words or a file"))
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


def _check_tls_files(cfg: GatewayConfig, file: str, problems: Problems) -> None:
    """Each bind's TLS files must be readable and load as the bind will load them (carriers/bind.py), now
    rather than at its first connection; a TLS setting the bind would ignore is a problem too."""
    for i, c in enumerate(cfg.carriers):
        for j, b in enumerate(c.binds):
            problems.extend((file, f"carriers[{i}].binds[{j}].{name}", reason) for name, reason in _tls_mistakes(b))


def _check_smpp_server(cfg: GatewayConfig, file: str, problems: Problems) -> None:
    """[smpp_server]: each system_id's account exists and its password can be read now (SMPP 3.4 4.1.1: at
    most 8 characters); the TLS certificate and key load as the server will load them."""
    smpp = cfg.smpp_server
    if smpp is None:
        return
    names = {a.name for a in cfg.accounts}
    for i, a in enumerate(smpp.accounts):
        key = f"smpp_server.accounts[{i}]"
        if a.account not in names:
            problems.append((file, f"{key}.account", f"no account {a.account!r} in [[accounts]]"))
        try:
            password = smpp_password(a)
        except ConfigError as err:
            where = f"{key}.password_{'env' if a.password_env else 'file'}"
            problems.extend((file, where, f"{w}: {reason}") for w, _, reason in err.problems)
            continue
        if not 0 < len(password) <= MAX_PASSWORD or not password.isascii():
            where = f"{key}.password_{'env' if a.password_env else 'file'}"
            problems.append((file, where, f"the password must be 1 to {MAX_PASSWORD} ASCII characters "
                             "(SMPP 3.4 4.1.1)"))  # fmt: skip
    if smpp.tls_cert_file:
        import ssl

        for name in ("tls_cert_file", "tls_key_file"):
            reason = _unreadable(getattr(smpp, name))
            if reason:
                problems.append((file, f"smpp_server.{name}", reason))
                return
        try:
            smpp_ssl_context(smpp)
        except (ssl.SSLError, OSError) as err:
            problems.append((file, "smpp_server.tls_cert_file",
                             f"{smpp.tls_cert_file} with {smpp.tls_key_file}: not a certificate and its "
                             f"unencrypted private key ({err})"))  # fmt: skip


def _check_cluster(cfg: GatewayConfig, file: str, problems: Problems) -> None:
    """[cluster]: Valkey's password can be read now."""
    if cfg.cluster is None:
        return
    try:
        cluster_password(cfg.cluster)
    except ConfigError as err:
        where = f"cluster.valkey_password_{'env' if cfg.cluster.valkey_password_env else 'file'}"
        problems.extend((file, where, f"{w}: {reason}") for w, _, reason in err.problems)


def smpp_password(a: SmppAccountConfig) -> str:
    return read_secret(env=a.password_env, file=Path(a.password_file) if a.password_file else None,
                       what=f"system_id {a.system_id}")  # fmt: skip


def smpp_passwords(smpp: SmppServerConfig) -> dict[str, str]:
    return {a.system_id: smpp_password(a) for a in smpp.accounts}


def smpp_ssl_context(smpp: SmppServerConfig) -> Any:
    """The server's TLS context, or None for plain TCP."""
    if not smpp.tls_cert_file:
        return None
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(smpp.tls_cert_file, smpp.tls_key_file, password=lambda: b"")
    return ctx


def _tls_mistakes(b: BindConfig) -> list[tuple[str, str]]:
    import ssl  # only here and in the binds' shell

    files = [name for name in ("tls_ca_file", "tls_cert_file", "tls_key_file") if getattr(b, name)]
    if not b.tls:
        plain = "is set but tls is false: the bind would connect in plain text (set tls = true)"
        return [(name, plain) for name in (*files, "tls_server_name") if getattr(b, name)]
    found = [(name, reason) for name in files if (reason := _unreadable(getattr(b, name)))]
    if b.tls_key_file and not b.tls_cert_file:
        found.append(("tls_key_file", "needs tls_cert_file: a key alone is never used"))
    if found:
        return found
    try:
        ctx = ssl.create_default_context(cafile=b.tls_ca_file)
    except (ssl.SSLError, OSError) as err:
        return [("tls_ca_file", f"{b.tls_ca_file}: no CA certificate in it ({err})")]
    if b.tls_cert_file:
        try:  # no passphrase: nobody is there to type one at a reconnect
            ctx.load_cert_chain(b.tls_cert_file, b.tls_key_file, password=lambda: b"")
        except (ssl.SSLError, OSError) as err:
            pair = f"{b.tls_cert_file} with {b.tls_key_file}" if b.tls_key_file else b.tls_cert_file
            return [("tls_cert_file", f"{pair}: not a certificate and its unencrypted private key ({err})")]
    return []


def _unreadable(path: str) -> str | None:
    """Why the file at `path` cannot be read, or None."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return f"{path}: not a regular file"
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as err:
        return f"{path}: {err.strerror or err}"
    return None


def _read_word_files(cfg: GatewayConfig, file: str, problems: Problems) -> GatewayConfig:
    """Each word list's file read into its `file_words`: UTF-8 (a BOM allowed), one word per line, blank
    lines and lines starting with # skipped."""
    lists = []
    for i, w in enumerate(cfg.word_lists):
        if w.file:
            try:
                lines = Path(w.file).read_text(encoding="utf-8-sig").splitlines()
            except UnicodeDecodeError as err:
                problems.append((file, f"word_lists[{i}].file", f"{w.file}: not UTF-8 at byte {err.start}"))
                lines = []
            except OSError as err:
                problems.append((file, f"word_lists[{i}].file", f"{w.file}: {err.strerror or err}"))
                lines = []
            words = tuple(x.strip() for x in lines if x.strip() and not x.lstrip().startswith("#"))
            w = dataclasses.replace(w, file_words=words)
        lists.append(w)
    return dataclasses.replace(cfg, word_lists=tuple(lists))


def _resolve_paths(cfg: GatewayConfig, base: Path) -> GatewayConfig:
    """Relative paths in the config are relative to the project directory (the parent of conf/)."""

    def resolve(p: str) -> str:
        return p if os.path.isabs(p) else str(base / p)

    store = cfg.store
    server = cfg.server
    accounts = tuple(
        dataclasses.replace(a, secret_file=resolve(a.secret_file) if a.secret_file else None) for a in cfg.accounts
    )
    return dataclasses.replace(
        cfg,
        store=StoreConfig(**{**_fields(store), "path": resolve(store.path)}),
        server=ServerSection(**{
            **_fields(server), "socket_path": resolve(server.socket_path),
            "admin_socket": resolve(server.admin_socket) if server.admin_socket else "",
        }),
        accounts=accounts,
        carriers=tuple(
            CarrierSection(**{**_fields(c), "binds": tuple(_resolve_bind(b, resolve) for b in c.binds)})
            for c in cfg.carriers
        ),
        word_lists=tuple(dataclasses.replace(w, file=resolve(w.file) if w.file else "") for w in cfg.word_lists),
        portability=dataclasses.replace(cfg.portability, file=resolve(cfg.portability.file))
        if cfg.portability.file else cfg.portability,
        smpp_server=_resolve_smpp(cfg.smpp_server, resolve),
    )


def _resolve_smpp(smpp: SmppServerConfig | None, resolve: Any) -> SmppServerConfig | None:
    if smpp is None:
        return None
    accounts = tuple(
        dataclasses.replace(a, password_file=resolve(a.password_file)) if a.password_file else a for a in smpp.accounts
    )
    tls = {name: resolve(getattr(smpp, name)) for name in ("tls_cert_file", "tls_key_file") if getattr(smpp, name)}
    return dataclasses.replace(smpp, accounts=accounts, **tls)


def _resolve_bind(b: BindConfig, resolve: Any) -> BindConfig:
    """A bind's file paths (its password, its TLS files) resolved like the config's other paths."""
    names = ("password_file", "tls_ca_file", "tls_cert_file", "tls_key_file")
    paths = {name: resolve(getattr(b, name)) for name in names if getattr(b, name)}
    return BindConfig(**{**_fields(b), **paths}) if paths else b


def _fields(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__ if obj.__dataclass_fields__[name].init}


def credentials(cfg: GatewayConfig) -> Credentials:
    return Credentials(_secrets(cfg.accounts))


class _LiveLogging:
    """The level and format a reload may change. Loggers are cached at first use, with the processors they
    were configured with; these two processors read the current choice at every event instead. (No hot
    path logs per message, so filtering in a processor costs nothing that matters.)"""

    _LEVELS = {name.lower(): number for name, number in logging.getLevelNamesMapping().items()}

    def __init__(self) -> None:
        self.level = logging.INFO
        self.renderer: Any = structlog.processors.JSONRenderer()

    def set(self, server: ServerSection) -> None:
        self.level = self._LEVELS.get(server.log_level, logging.INFO)
        if server.log_format == "json":
            self.renderer = structlog.processors.JSONRenderer()
        else:
            self.renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())

    def filter(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if self._LEVELS.get(method, logging.INFO) < self.level:
            raise structlog.DropEvent
        return event

    def render(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
        return self.renderer(logger, method, event)


_logging = _LiveLogging()


def apply_log_settings(server: ServerSection) -> None:
    """A reload's level and format: the processors `setup_logging` installed read them at every event, so
    nothing is configured again (and a process that never set up logging, a test, is left as it is)."""
    _logging.set(server)
    debuglog.set_level(server.log_level)


def setup_logging(server: ServerSection) -> None:
    apply_log_settings(server)
    structlog.configure(
        processors=[
            _logging.filter,
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _logging.render,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


# What a reload applies to the running process; every other changed key waits for a restart.
LIVE_KEYS = frozenset({"server.log_level", "server.log_format"})
# The routing a reload swaps in whole (routes, networks, word lists, which lists each carrier blocks, how
# numbers are read): new messages take it; a message keeps the carriers its accept chose.
_ROUTING_KEY = re.compile(
    r"(routes|networks|word_lists|portability)(\[|\.|$)|carriers\[\d+\]\.blocked_words|accounts\[\d+\]\.region"
    r"|engine\.(default_region|default_country_code|test_prefixes)$"
)


# The compliance rules a reload swaps in whole: new requests and MO take them.
_POLICY_KEY = re.compile(
    r"(compliance|caps)(\[|\.|$)"
    r"|accounts\[\d+\]\.(signature_required|signatures|append_optout|time_zone|optout_keywords|optin_keywords"
    r"|template_classes)$"
)


# Carriers (added, removed, their binds and settings changed) and accounts (added, removed, secrets, MO
# addresses): a reload applies them with the routing and policy built for them (Gateway.reload).
_TOPOLOGY_KEY = re.compile(r"(carriers|accounts)(\[|$)")
# The SMPP server face's accounts and limits: a reload applies them to new binds (and the held parts, the
# redeliveries); where it listens needs a restart.
_SMPP_LIVE = ("accounts", "refused_status", "auth_failure_delay_seconds", "lockout_failures", "lockout_seconds",
              "reassembly_timeout_seconds", "redeliver_seconds", "redeliver_attempts",
              "bind_timeout_seconds")  # fmt: skip
_SMPP_KEY = re.compile(rf"smpp_server\.({'|'.join(_SMPP_LIVE)})(\[|\.|$)")


def is_live_key(key: str) -> bool:
    return (
        key in LIVE_KEYS or _ROUTING_KEY.match(key) is not None or _POLICY_KEY.match(key) is not None
        or _TOPOLOGY_KEY.match(key) is not None or _SMPP_KEY.match(key) is not None
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Topology:
    """What a reload changes of the carriers and accounts, by name (the config's order does not matter)."""

    added: tuple[CarrierSection, ...] = ()
    removed: tuple[str, ...] = ()
    # A new pool: its binds or queues changed (the old one is paused, stopped and replaced).
    rebound: tuple[CarrierSection, ...] = ()
    # Only how the engine treats it changed (receipt timeout, error classes, encodings ...): no bind drops.
    retuned: tuple[CarrierSection, ...] = ()
    accounts: tuple[AccountSettings, ...] | None = None  # the new accounts, when they changed

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.rebound or self.retuned or self.accounts is not None)


def topology(old: GatewayConfig, new: GatewayConfig) -> Topology:
    before = {c.name: c for c in old.carriers}
    after = {c.name: c for c in new.carriers}
    kept = [(before[n], c) for n, c in after.items() if n in before]
    return Topology(
        added=tuple(c for n, c in after.items() if n not in before),
        removed=tuple(n for n in before if n not in after),
        rebound=tuple(c for b, c in kept if b.carrier_config() != c.carrier_config()),
        retuned=tuple(c for b, c in kept if b.carrier_config() == c.carrier_config() and b.settings() != c.settings()),
        accounts=new.accounts if old.accounts != new.accounts else None,
    )


def reload_config(
    path: Path, active: GatewayConfig
) -> tuple[GatewayConfig, Routing | None, Policy | None, ReloadOutcome, Topology]:
    """SIGHUP or `gatewayctl reload`: the config file again. Refused (logged with every problem) when it is
    not valid, and the running config stays; otherwise the live keys are applied and the returned config is
    the running one with them, with the new routing and compliance policy when they changed (the caller
    swaps them in). Keys that differ from the running config and need a restart are named each time."""
    try:
        new = load_config(path)
    except ConfigError as err:
        said = [f"{file}: {key}: {reason}" for file, key, reason in err.problems]
        log.error("config_reload_refused", path=str(path), problems=said)
        return active, None, None, ReloadOutcome(problems=tuple(said), refused=True), Topology()
    changed = changed_keys(active, new)
    applied = [key for key in changed if is_live_key(key)]
    running = dataclasses.replace(
        active,
        server=dataclasses.replace(active.server, log_level=new.server.log_level, log_format=new.server.log_format),
    )
    routing: Routing | None = None
    policy: Policy | None = None
    refused: list[str] = []
    change = Topology()
    # A change of carriers or accounts brings its routing and policy with it, applied or refused together.
    whole = any(_TOPOLOGY_KEY.match(key) for key in changed)
    if whole:
        # Carriers and accounts come with the routing and policy built for them, or not at all.
        candidate = _with_policy(_with_routing(dataclasses.replace(running, carriers=new.carriers,
                                                                   accounts=new.accounts), new), new)  # fmt: skip
        problems: Problems = []
        routing = build_routing(candidate, str(path), problems)
        policy = build_policy(candidate, str(path), problems) if routing is not None else None
        if routing is None or policy is None:
            said = [f"{f}: {k}: {r}" for f, k, r in problems]
            log.error("carriers_reload_refused", path=str(path), problems=said)
            refused += said
            routing = policy = None
            applied = [key for key in applied if not (_TOPOLOGY_KEY.match(key) or _ROUTING_KEY.match(key)
                                                      or _POLICY_KEY.match(key))]  # fmt: skip
        else:
            change = topology(running, candidate)
            running = candidate
    if not whole and any(_ROUTING_KEY.match(key) for key in changed):
        candidate = _with_routing(running, new)
        problems = []
        routing = build_routing(candidate, str(path), problems)
        if routing is None:  # it names what only a restart brings (a new carrier): the old routing stays
            said = [f"{f}: {k}: {r}" for f, k, r in problems]
            log.error("routing_reload_refused", path=str(path), problems=said)
            refused += said
            applied = [key for key in applied if not _ROUTING_KEY.match(key)]
        else:
            running = candidate
    if not whole and any(_POLICY_KEY.match(key) for key in changed):
        candidate = _with_policy(running, new)
        problems = []
        # As load_config built it, unless the routing it names (a banned word list) was refused above.
        policy = build_policy(candidate, str(path), problems)
        if policy is None:
            said = [f"{f}: {k}: {r}" for f, k, r in problems]
            log.error("policy_reload_refused", path=str(path), problems=said)
            refused += said
            applied = [key for key in applied if not _POLICY_KEY.match(key)]
        else:
            running = candidate
    if running.smpp_server is not None and new.smpp_server is not None:
        live = {name: getattr(new.smpp_server, name) for name in _SMPP_LIVE}
        running = dataclasses.replace(running, smpp_server=dataclasses.replace(running.smpp_server, **live))
    apply_log_settings(running.server)
    restart = [key for key in changed if not is_live_key(key)]
    # A warning when something waits for a restart: the operator has to act on it.
    (log.warning if restart else log.info)("config_reloaded", path=str(path), applied=applied, restart_needed=restart)
    return running, routing, policy, ReloadOutcome(tuple(applied), tuple(restart), tuple(refused)), change


def _with_policy(running: GatewayConfig, new: GatewayConfig) -> GatewayConfig:
    """`running` with the compliance keys of `new` (accounts matched by name)."""
    fields = ("signature_required", "signatures", "append_optout", "time_zone", "optout_keywords", "optin_keywords",
              "template_classes")  # fmt: skip
    by_name = {a.name: a for a in new.accounts}
    return dataclasses.replace(
        running,
        compliance=new.compliance,
        caps=new.caps,
        accounts=tuple(
            dataclasses.replace(a, **{f: getattr(by_name[a.name], f) for f in fields}) if a.name in by_name else a
            for a in running.accounts
        ),
    )


def _with_routing(running: GatewayConfig, new: GatewayConfig) -> GatewayConfig:
    """`running` with the routing keys of `new` (carriers and accounts matched by name)."""
    blocked = {c.name: c.blocked_words for c in new.carriers}
    regions = {a.name: a.region for a in new.accounts}
    return dataclasses.replace(
        running,
        routes=new.routes,
        networks=new.networks,
        word_lists=new.word_lists,
        portability=new.portability,
        engine=dataclasses.replace(
            running.engine,
            default_region=new.engine.default_region,
            default_country_code=new.engine.default_country_code,
            test_prefixes=new.engine.test_prefixes,
        ),
        carriers=tuple(
            dataclasses.replace(c, blocked_words=blocked.get(c.name, c.blocked_words)) for c in running.carriers
        ),
        accounts=tuple(dataclasses.replace(a, region=regions.get(a.name, a.region)) for a in running.accounts),
    )


# --- the process ------------------------------------------------------------------------------------


def _secrets(accounts: Sequence[AccountSettings]) -> dict[str, str]:
    return {
        a.name: read_secret(env=a.secret_env, file=Path(a.secret_file) if a.secret_file else None,
                            what=f"account {a.name}")
        for a in accounts
    }  # fmt: skip


@dataclass(slots=True)
class _Live:
    """What a running gateway's reload needs to start a carrier and change the accounts."""

    carriers: trio.Nursery
    results: trio.MemorySendChannel[SubmitOutcome]
    inbound: trio.MemorySendChannel[Inbound]
    credentials: Credentials

    async def start_pool(self, section: CarrierSection) -> CarrierPool:
        pool = CarrierPool(section.carrier_config(), results=self.results, inbound=self.inbound)
        await self.carriers.start(pool.run)
        return pool


@dataclass(slots=True)
class Running:
    """What `Gateway.run` started, handed to whoever awaited `nursery.start(gateway.run)`."""

    socket_path: str
    tcp: tuple[str, int] | None
    simulators: dict[str, Simulator]
    engine: Engine
    pools: dict[str, CarrierPool]
    admin_socket: str | None = None
    # Where /metrics, /live and /ready are served (None: metrics off).
    metrics: tuple[str, int] | None = None
    # The SMPP server face (None: no [smpp_server]).
    smpp: SmppServer | None = None


class CannotStart(GatewayError):
    """What stops the gateway before it serves (the store is another gateway's, a port is taken, a directory
    is not writable): one line per problem, `file: key: reason` where a config key is the cause."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("cannot start:\n  " + "\n  ".join(problems))


class Gateway:
    def __init__(
        self,
        cfg: GatewayConfig,
        *,
        wall_ms: Callable[[], int] | None = None,
        source: str = "config",
        config_path: Path | None = None,
    ) -> None:
        """`wall_ms` replaces the wall clock (milliseconds since the epoch) for schedules, validity and the
        store's timestamps; tests pass a virtual one. `source` names the config file in CannotStart;
        `config_path` is the file a reload reads (None: the gateway cannot reload)."""
        self.cfg = cfg
        self.source = source
        self.config_path = config_path
        # The config as reloads left it (live keys applied); `cfg` stays what the process started with.
        self.active = cfg
        self._reloading = trio.Lock()
        self._live: _Live | None = None  # what a reload needs to start a carrier (set once serving)
        self.started_ms = int(time.time() * 1000)
        self._wall_ms = wall_ms
        self._stop = trio.Event()
        self._upstream_drain = Drain()  # the upstream connections' graceful end (step 1 of the shutdown)
        self.stopped = trio.Event()  # set once the store is closed
        self.running: Running | None = None

    def shutdown(self) -> None:
        """Begin the graceful shutdown sequence (what SIGTERM does)."""
        self._stop.set()

    async def reload(self) -> ReloadOutcome:
        """Read the config file again and apply what can change live (SIGHUP, `gatewayctl reload`); one at a
        time. Never raises: a bug in it is logged and reported, and the running config stays."""
        path = self.config_path
        if path is None:
            return ReloadOutcome(problems=("-: -: this gateway was started without a config file",), refused=True)
        async with self._reloading:
            try:
                active, routing, policy, report, change = await trio.to_thread.run_sync(
                    reload_config, path, self.active
                )
                # The secrets again, every reload: a rotated secret file under the same name is the usual way.
                secrets = None if report.refused else await trio.to_thread.run_sync(_secrets, active.accounts)
            except Exception as err:  # the fault boundary of a reload: a bug here never ends the gateway
                error = f"{type(err).__name__}: {err}"
                log.error("config_reload_failed", path=str(path), error=error, kept="the running config",
                          exc_info=err)  # fmt: skip
                return ReloadOutcome(problems=(f"{path}: -: internal error: {error}",), refused=True)
            self.active = active
            if self.running is None:
                return report
            # What the reload does next (carriers bound, pools started) logs as the gateway's own, not with
            # the context of the admin connection or signal that asked for it.
            context = structlog.contextvars.get_contextvars()
            structlog.contextvars.clear_contextvars()
            try:
                done = await self._apply(change, routing, policy, secrets)
            finally:
                structlog.contextvars.bind_contextvars(**context)
            # Every reload looks at the portability file again: a new file under the same name is the usual
            # way to replace the table.
            _configure_portability(self.running.engine, active)
            if self.running.smpp is not None and active.smpp_server is not None:
                # The passwords again, every reload, as the secrets: a rotated password file is the usual way.
                try:
                    passwords = await trio.to_thread.run_sync(smpp_passwords, active.smpp_server)
                except ConfigError as err:  # gone since the file was checked: the running accounts stay
                    unread = tuple(f"{f}: {k}: {r}" for f, k, r in err.problems)
                    log.error("smpp_reload_refused", problems=list(unread))
                    report = dataclasses.replace(report, problems=report.problems + unread)
                else:
                    self.running.smpp.update(active.smpp_server, passwords)
            # Carriers and accounts by name, not by their place in the file's lists.
            kept = tuple(key for key in report.applied if not _TOPOLOGY_KEY.match(key)) if done else report.applied
            return dataclasses.replace(report, applied=kept + tuple(done))

    async def _apply(
        self, change: Topology, routing: Routing | None, policy: Policy | None, secrets: dict[str, str] | None
    ) -> list[str]:
        """A reload's new carriers first (so the new routes find them), then its accounts, routing and policy,
        then the carriers whose binds changed (each paused while its pool is replaced), and the removed ones
        last (drained along their routes, which no longer name them)."""
        assert self.running is not None
        assert self._live is not None
        engine, live = self.running.engine, self._live
        grace = self.cfg.server.shutdown_grace_seconds
        done: list[str] = []
        for section in change.added:
            pool = await live.start_pool(section)
            engine.add_carrier(section.name, pool, section.settings())
            log.info("carrier_added", carrier=section.name, binds=len(section.binds))
            done.append(f"carrier {section.name}: added")
        for section in change.retuned:
            engine.retune_carrier(section.name, section.settings())
            log.info("carrier_retuned", carrier=section.name)
            done.append(f"carrier {section.name}: settings changed")
        if secrets is not None and (changed := live.credentials.changed(secrets)):
            before = live.credentials.accounts()
            live.credentials.update(secrets)
            for name in changed:
                what = "added" if name not in before else "removed" if name not in secrets else "secret changed"
                done.append(f"account {name}: {what}")
            log.info("account_credentials_changed", accounts=changed)
        if change.accounts is not None:
            engine.set_accounts(change.accounts)
            log.info("accounts_reloaded", accounts=[a.name for a in change.accounts])
            if not any(line.startswith("account ") for line in done):
                done.append("accounts: settings changed")
        if routing is not None:
            engine.set_routing(routing)
        if policy is not None:
            engine.set_policy(policy)
        for section in change.rebound:
            await engine.replace_pool(section.name, partial(live.start_pool, section), section.settings(), grace)
            log.info("carrier_rebound", carrier=section.name, binds=len(section.binds))
            done.append(f"carrier {section.name}: binds changed, rebound")
        for name in change.removed:
            await engine.remove_carrier(name, grace)
            log.info("carrier_removed", carrier=name)
            done.append(f"carrier {name}: removed")
        return done

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run(self, *, task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED) -> None:
        """Raises CannotStart, before anything has started, with every reason it cannot."""
        lock: StoreLock | None = None
        try:
            lock = await trio.to_thread.run_sync(prepare, self.cfg, self.source)
            await self._run_locked(task_status)
        finally:
            if lock is not None:
                lock.release()  # after the writer process has exited: the next gateway may open the store
            self.stopped.set()

    async def _run_locked(self, task_status: trio.TaskStatus[Running]) -> None:
        cfg = self.cfg
        creds = credentials(cfg)
        process = None
        if cfg.store.writer_process:
            # The worker opens the store for writing and runs recovery before this process reads it.
            process = await WriterProcess.start(_store_config(cfg), (self._wall_ms or store_wall_ms)())
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

    async def _start_simulators(self, root: trio.Nursery) -> dict[str, Simulator]:
        sims: dict[str, Simulator] = {}
        for i, section in enumerate(self.cfg.simulators):
            sim = Simulator(section.settings)
            try:
                await root.start(sim.serve, section.host, section.port)
            except OSError as err:  # taken since prepare() checked
                reason = _listen_problem(section.host, section.port, err)
                raise CannotStart([f"{self.source}: simulators[{i}].port: {reason}"]) from err
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
            routing=_routing(cfg),
            policy=_policy(cfg),
            settings=cfg.engine,
            accounts=cfg.accounts,
            results=results_rx,
            inbound=inbound_rx,
            wall_ms=self._wall_ms or store_wall_ms,
            shared=_shared(cfg, store, pools, self._wall_ms or store_wall_ms),
        )
        _configure_portability(engine, cfg)
        if cfg.cluster is not None:
            c = cfg.cluster
            log.info("cluster_node", node=c.node, valkey=f"{c.valkey_host}:{c.valkey_port}")
        async with trio.open_nursery() as carriers:
            for pool in pools.values():
                await carriers.start(pool.run)
            self._live = _Live(carriers, results_tx, inbound_tx, creds)
            async with trio.open_nursery() as core:
                try:
                    await core.start(engine.run)
                except* NodeNameTaken as taken:
                    raise CannotStart([f"{self.source}: cluster.node: {e}" for e in _leaves(taken)]) from None
                async with trio.open_nursery() as front:
                    path, tcp = await self._listen(front, engine, creds)
                    smpp = await self._listen_smpp(front, engine)
                    admin = await self._listen_admin(front, engine, pools, creds, path, tcp, smpp)
                    metrics = None
                    if cfg.metrics.enabled:
                        m = cfg.metrics
                        try:
                            metrics = await front.start(
                                partial(serve_ops, engine, pools, m.host, m.port, stopping=lambda: self.stopping,
                                        smpp=smpp.statistics if smpp is not None else None)
                            )
                        except OSError as err:  # taken since prepare() checked
                            reason = _listen_problem(m.host, m.port, err)
                            raise CannotStart([f"{self.source}: metrics.port: {reason}"]) from err
                    self.running = Running(path, tcp, sims, engine, pools, admin_socket=admin, metrics=metrics,
                                           smpp=smpp)  # fmt: skip
                    log.info("gateway_ready", socket=path, tcp=tcp, admin=admin, carriers=list(pools))
                    task_status.started(self.running)
                    await self._stop.wait()
                    log.info("shutdown_started")
                    # 1. stop accepting; what the connections already read is answered (a committed submit
                    # too), within the upstream close bound, then they close.
                    self._upstream_drain.begin()
                    with trio.move_on_after(server_close_seconds(self.cfg) + 1):
                        await self._upstream_drain.wait()
                    if smpp is not None:
                        with trio.move_on_after(1.0):
                            await smpp.flush_cursors()
                    front.cancel_scope.cancel()
                await self._drain(pools, results_tx, inbound_tx, engine)  # 2-3. binds drain and unbind
                log.info("engine_counters", **engine.counters)  # receipts early / ignored / unparseable, MO
                core.cancel_scope.cancel()
        await writer.aclose()  # 4. commit the writer's tail
        log.info("shutdown_complete")

    async def _listen(
        self, front: trio.Nursery, engine: Engine, creds: Credentials
    ) -> tuple[str, tuple[str, int] | None]:
        server = self.cfg.server
        try:
            path: str = await front.start(
                partial(
                    serve_unix, server.socket_path, engine.backend, creds, server.upstream, drain=self._upstream_drain
                )
            )
        except OSError as err:
            reason = f"{server.socket_path}: {err.strerror or err}"
            raise CannotStart([f"{self.source}: server.socket_path: {reason}"]) from err
        if server.tcp_port is None:
            return path, None
        try:
            tcp: tuple[str, int] = await front.start(
                _serve_tcp, engine.backend, creds, server.upstream, server.tcp_host, server.tcp_port,
                self._upstream_drain,
            )
        except OSError as err:
            reason = _listen_problem(server.tcp_host, server.tcp_port, err)
            raise CannotStart([f"{self.source}: server.tcp_port: {reason}"]) from err
        return path, tcp

    async def _listen_smpp(self, front: trio.Nursery, engine: Engine) -> SmppServer | None:
        smpp = self.cfg.smpp_server
        if smpp is None:
            return None
        server = SmppServer(engine.backend, smpp, smpp_passwords(smpp), drain=self._upstream_drain,
                            ssl_context=smpp_ssl_context(smpp))  # fmt: skip
        try:
            await front.start(server.serve)
        except OSError as err:
            reason = _listen_problem(smpp.host, smpp.port, err)
            raise CannotStart([f"{self.source}: smpp_server.port: {reason}"]) from err
        return server

    async def _listen_admin(
        self,
        front: trio.Nursery,
        engine: Engine,
        pools: dict[str, CarrierPool],
        creds: Credentials,
        path: str,
        tcp: tuple[str, int] | None,
        smpp: SmppServer | None = None,
    ) -> str | None:
        """The admin socket (docs/admin.md) and its throughput sampler; None when the config turns it off."""
        server = self.cfg.server
        admin_path = server.admin_path
        if admin_path is None:
            return None
        service = AdminService(
            AdminContext(
                engine=engine,
                pools=pools,
                accounts=lambda: [a.name for a in self.active.accounts],
                reload=self.reload,
                config_path=str(self.config_path or self.source),
                started_ms=self.started_ms,
                sockets={"upstream": path, "tcp": list(tcp) if tcp else None, "admin": admin_path,
                         **({"smpp": [self.cfg.smpp_server.host, smpp.port]} if smpp and self.cfg.smpp_server else {})},
                smpp=(lambda: dataclasses.asdict(smpp.statistics())) if smpp is not None else None,
            )
        )
        front.start_soon(service.run_sampler)
        try:
            served: str = await front.start(
                partial(
                    # 0600 whatever the upstream socket's mode: the admin socket's file mode is the credential.
                    serve_unix, admin_path, engine.backend, creds,
                    dataclasses.replace(server.upstream, unix_mode=0o600), drain=self._upstream_drain, admin=service,
                )
            )
        except OSError as err:
            raise CannotStart([f"{self.source}: server.admin_socket: {admin_path}: {err.strerror or err}"]) from err
        return served

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


# --- before anything starts -------------------------------------------------------------------------


def prepare(cfg: GatewayConfig, source: str) -> StoreLock:
    """The state directories (created, private), the store's lock, and whether every socket can be created;
    raises CannotStart with every problem at once. The lock comes before anything that touches the store
    or the socket: a second gateway must change nothing of the first one's."""
    store, sockets = Path(cfg.store.path), Path(cfg.server.socket_path).parent
    directories = [("store.path", store), ("server.socket_path", sockets)]
    admin = cfg.server.admin_path
    if admin is not None and Path(admin).parent != sockets:
        directories.append(("server.admin_socket", Path(admin).parent))
    problems = [f"{source}: {key}: {reason}" for key, directory in directories if (reason := _writable_dir(directory))]
    lock = None
    if not problems:
        try:
            lock = lock_store(store)
        except StoreInUse as err:
            problems.append(str(err))
        else:
            problems.extend(f"{source}: store.path: {reason}" for reason in _make_private(store, sockets))
    problems.extend(_socket_problems(cfg, source))
    if problems or lock is None:
        if lock is not None:
            lock.release()
        raise CannotStart(problems)
    return lock


def _writable_dir(directory: Path) -> str | None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        return f"{directory} is not a directory"
    except OSError as err:
        return f"cannot create {directory}: {err.strerror}"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"{directory} is not writable"
    return None


def _make_private(store: Path, sockets: Path) -> list[str]:
    """Message texts live in the store: the gateway's user alone may read it. The process umask (077) covers
    what is created from now on; this covers a store created before, and the state directory holding both
    the store and the socket (`var/`), unless it is a shared one (sticky or writable by others, as /tmp)."""
    targets = [(store, 0o700)] + [(f, 0o600) for f in store.iterdir() if stat.S_ISREG(f.lstat().st_mode)]
    state = store.parent
    info = state.stat()
    if state == sockets and info.st_uid == os.getuid() and not info.st_mode & (stat.S_ISVTX | stat.S_IWOTH):
        targets.append((state, 0o700))
    problems = []
    for path, mode in targets:
        try:
            if stat.S_IMODE(path.lstat().st_mode) & ~mode:
                path.chmod(mode)
        except OSError as err:
            problems.append(f"cannot make {path} private ({mode:o}): {err.strerror}")
    return problems


def _socket_problems(cfg: GatewayConfig, source: str) -> list[str]:
    """The upstream socket's path and every TCP port this config listens on, checked by trying them."""
    problems = []
    paths = [("server.socket_path", cfg.server.socket_path)]
    if cfg.server.admin_path is not None:
        paths.append(("server.admin_socket", cfg.server.admin_path))
        if cfg.server.admin_path == cfg.server.socket_path:
            problems.append(f"{source}: server.admin_socket: {cfg.server.admin_path} is server.socket_path too")
    for key, path in paths:
        if os.path.lexists(path):
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                problems.append(f"{source}: {key}: {path} exists and is not a socket")
            elif _served(path):
                problems.append(f"{source}: {key}: {path} is in use (another process serves there)")
    ports = [("server.tcp_port", cfg.server.tcp_host, cfg.server.tcp_port)]
    ports += [(f"simulators[{i}].port", s.host, s.port) for i, s in enumerate(cfg.simulators)]
    if cfg.metrics.enabled and cfg.metrics.port:  # port 0 (tests): any free one, nothing to check
        ports.append(("metrics.port", cfg.metrics.host, cfg.metrics.port))
    seen: dict[tuple[str, int], str] = {}
    for key, host, port in ports:
        if port is None:
            continue
        if (host, port) in seen:
            problems.append(f"{source}: {key}: {host}:{port} is {seen[host, port]} too")
        elif reason := _cannot_listen(host, port):
            problems.append(f"{source}: {key}: {reason}")
        seen.setdefault((host, port), key)
    return problems


def _served(path: str) -> bool:
    """A socket file someone accepts on (a stale one from a dead gateway refuses the connection)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


def _cannot_listen(host: str, port: int) -> str | None:
    """Bind as trio's listeners do (SO_REUSEADDR: a closed connection's TIME_WAIT does not count)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in infos:
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(address)
    except OSError as err:
        return _listen_problem(host, port, err)
    return None


def _listen_problem(host: str, port: int, err: OSError) -> str:
    if err.errno == errno.EADDRINUSE:
        return f"{host}:{port} is in use (another process listens there)"
    return f"{host}:{port}: cannot listen: {err.strerror or err}"


def _shared(
    cfg: GatewayConfig, store: Store, pools: dict[str, CarrierPool], wall_ms: Callable[[], int]
) -> Shared | None:
    """[cluster]: what this node shares with the others (docs/scaling.md); None for one node."""
    if cfg.cluster is None:
        return None
    return Shared(
        cfg.cluster, store=store, wall_ms=wall_ms,
        budgets=lambda: {name: p.budget for name, p in pools.items() if p.budget is not None},
        receipt_seconds={c.name: c.receipt_timeout_seconds for c in cfg.carriers},
    )  # fmt: skip


def _open_store(cfg: GatewayConfig, wall_ms: Callable[[], int] | None, recover: bool) -> Store:
    """The gateway's store handle: it writes and recovers too without a writer process (`recover`);
    with one, the worker has recovered already and this handle only reads."""
    clock = wall_ms or store_wall_ms
    return Store.open(_store_config(cfg), clock) if recover else Store(_store_config(cfg), clock)


def _store_config(cfg: GatewayConfig) -> StoreConfig:
    """[store] as configured, with what the store needs to know of the carriers (their receipt timeouts)."""
    timeouts = {c.name: c.receipt_timeout_seconds for c in cfg.carriers}
    return dataclasses.replace(cfg.store, receipt_timeouts={**timeouts, **cfg.store.receipt_timeouts})


async def _serve_tcp(
    backend: UpstreamBackend,
    creds: Credentials,
    config: ServerConfig,
    host: str,
    port: int,
    drain: Drain,
    *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    await serve_tcp(backend, creds, config, host=host, port=port, drain=drain, task_status=task_status)


def server_close_seconds(cfg: GatewayConfig) -> float:
    return cfg.server.upstream.close_timeout_seconds


async def main_async(cfg: GatewayConfig, config_path: Path) -> None:
    """The gateway until it has stopped. The signals are ours from before the start to the end of the
    shutdown sequence: a SIGHUP at any moment reloads or is ignored, never kills."""
    gateway = Gateway(cfg, source=str(config_path), config_path=config_path)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(gateway.run)
            nursery.start_soon(_handle_signals, signals, gateway)
            nursery.start_soon(_watchdog)
            await gateway.stopped.wait()
            nursery.cancel_scope.cancel()


# The event loop must come back to its tasks every few milliseconds. Stuck in one computation (a bug that
# loops), it answers nothing, not even SIGTERM: the stacks of every thread then go to stderr (the log), so
# the operator sees where, instead of a silent process.
WATCHDOG_SECONDS = 60.0


async def _watchdog() -> None:
    try:
        while True:
            faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=False)
            await trio.sleep(WATCHDOG_SECONDS / 6)
    finally:
        faulthandler.cancel_dump_traceback_later()


async def _handle_signals(signals: AsyncIterator[int], gateway: Gateway) -> None:
    async for signum in signals:
        name = signal.Signals(signum).name
        log.info("signal_received", signal=name)
        if signum != signal.SIGHUP:
            gateway.shutdown()
        elif not gateway.stopping:
            await gateway.reload()


def serve_command(config_path: str) -> int:
    os.umask(0o077)  # the store, the state directory, the socket: the gateway's user alone (and its child)
    try:
        cfg = load_config(Path(config_path))  # secrets too: nothing starts with one unreadable
        setup_logging(cfg.server)
    except ConfigError as err:
        print(f"gateway: {err}", file=sys.stderr)
        return 2
    gctune.tune()
    try:
        trio.run(main_async, cfg, Path(config_path).resolve())
    except (CannotStart, ExceptionGroup) as err:
        refused = _cannot_start(err)
        if refused is None:
            raise
        print(f"gateway: {refused}", file=sys.stderr)
        return 1
    return 0


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    """The exceptions in `group` and in the groups inside it."""
    return [leaf for e in group.exceptions for leaf in (_leaves(e) if isinstance(e, BaseExceptionGroup) else [e])]


def _cannot_start(err: Exception) -> CannotStart | None:
    """The CannotStart that ended the run, through the nurseries' exception groups; None for anything else."""
    if isinstance(err, CannotStart):
        return err
    if not isinstance(err, ExceptionGroup):
        return None
    match, rest = err.split(CannotStart)
    if match is None or rest is not None:
        return None
    return CannotStart([p for e in _leaves(match) if isinstance(e, CannotStart) for p in e.problems])
