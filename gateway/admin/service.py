"""The admin socket's service: runs the operator's commands (gateway/admin/commands.py) against the running
gateway, and keeps the throughput samples `status` reports.

Everything here reads what the parts already keep (their `statistics()` snapshots, the binds' status, the
store's O(1) counts and indexes): answering an operator costs the hot path nothing. The answers are maps
of plain values; docs/admin.md lists their keys.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import structlog
import trio

from gateway.admin.commands import (
    Accounts,
    Balance,
    Batch,
    BatchEdit,
    Binds,
    Carrier,
    CarrierAction,
    Command,
    Find,
    Health,
    Lists,
    Receipts,
    Reload,
    Show,
    Status,
    TemplateCommand,
    parse_command,
)
from gateway.carriers.pool import CarrierPool
from gateway.engine import Engine
from gateway.engine.context import DRAINED, PAUSED
from gateway.engine.reporting import balance_answer, batch_answer
from gateway.lifecycle import State
from gateway.ops.health import readiness
from gateway.routing.numbers import Number
from gateway.store import InvalidField
from gateway.store.ops import TopUp
from gateway.store.records import Message
from gateway.upstream.errors import InvalidRequest, NotFound
from gateway.upstream.schema import AdminRequest, AdminResult, ListResult, result_map

log = structlog.get_logger(__name__)

VERSION = "0.1.0"
# Throughput samples: one every SAMPLE_SECONDS, kept for the longest window `status` reports.
SAMPLE_SECONDS = 5.0
WINDOWS = (("10s", 10.0), ("1m", 60.0), ("5m", 300.0), ("15m", 900.0))
_KEEP = int(max(w for _, w in WINDOWS) / SAMPLE_SECONDS) + 2


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """What a reload did, as `gatewayctl reload` prints it: the keys applied, the keys that differ but wait
    for a restart, and every problem (`file: key: reason`) that refused all or part of it."""

    applied: tuple[str, ...] = ()
    restart_needed: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    refused: bool = False


@dataclass(frozen=True, slots=True)
class AdminContext:
    """What the service needs of the running gateway (gateway/app.py builds it)."""

    engine: Engine
    pools: Mapping[str, CarrierPool]
    accounts: Callable[[], Sequence[str]]
    reload: Callable[[], Awaitable[ReloadOutcome]]
    config_path: str
    started_ms: int
    sockets: Mapping[str, Any]
    # The SMPP server face's figures (None: no [smpp_server]).
    smpp: Callable[[], Mapping[str, Any]] | None = None


class Rates:
    """Counters sampled over time; `per_second(name, window)` is their rate over the last `window` seconds
    (over what has been sampled, when the gateway is younger than that). Pure: the caller passes the time."""

    def __init__(self, keep: int = _KEEP) -> None:
        self._samples: deque[tuple[float, dict[str, int]]] = deque(maxlen=keep)

    def sample(self, now: float, counters: dict[str, int]) -> None:
        self._samples.append((now, counters))

    def per_second(self, now: float, current: dict[str, int], window: float) -> dict[str, float]:
        base = None
        for at, counters in self._samples:  # the oldest sample within the window
            if now - at <= window + SAMPLE_SECONDS / 2:
                base = (at, counters)
                break
        if base is None or now - base[0] <= 0:
            return dict.fromkeys(current, 0.0)
        span = now - base[0]
        return {name: round(max(value - base[1].get(name, 0), 0) / span, 1) for name, value in current.items()}


class AdminService:
    def __init__(self, ctx: AdminContext) -> None:
        self._ctx = ctx
        self.rates = Rates()

    async def run_sampler(self) -> None:
        """Sample the throughput counters until cancelled (started beside the admin socket)."""
        while True:
            self.rates.sample(trio.current_time(), self._throughput_counters())
            await trio.sleep(SAMPLE_SECONDS)

    async def admin(self, account: str | None, request: AdminRequest) -> AdminResult:
        command = parse_command(request.command, request.args)
        log.info("admin_command", command=request.command, account=account)
        return AdminResult(await self._run(command, account))

    async def _run(self, command: Command, account: str | None) -> dict[str, Any]:
        if isinstance(command, Status):
            return self._status()
        if isinstance(command, Binds):
            return self._binds(command.carrier)
        if isinstance(command, Carrier):
            return await self._carrier(command)
        if isinstance(command, Find):
            return self._find(command, account)
        if isinstance(command, Show):
            return self._show(command, account)
        if isinstance(command, Reload):
            return asdict(await self._ctx.reload())
        if isinstance(command, Lists):
            return await self._lists(command)
        if isinstance(command, Health):
            return self._health()
        if isinstance(command, Accounts):
            return {"accounts": list(self._ctx.accounts())}
        if isinstance(command, Receipts):
            return self._receipts(command)
        if isinstance(command, Batch):
            return self._batch(command, self._owner(command.account, account))
        if isinstance(command, Balance):
            return await self._balance(command, self._owner(command.account, account))
        if isinstance(command, BatchEdit):
            return await self._ctx.engine.backend.batches.edit(self._owner(command.account, account), command)
        if isinstance(command, TemplateCommand):
            batches = self._ctx.engine.backend.batches
            # Reviewing a template is the operator's (the admin socket's "*" connection).
            return await batches.template(self._owner(command.account, account), command, operator=account is None)
        raise TypeError(f"no handler for {command!r}")

    # --- status ---------------------------------------------------------------------------------------

    def _throughput_counters(self) -> dict[str, int]:
        s = self._ctx.engine.statistics()
        return {
            "accepted": s.backend.accepted,
            "refused": sum(s.backend.refused.values()),
            "dispatched": s.dispatch.dispatched,
            "carrier_answers": s.correlate.outcomes,
            "receipts": s.correlate.receipts,
            "mo": s.correlate.mo,
        }

    def _status(self) -> dict[str, Any]:
        ctx, now = self._ctx, trio.current_time()
        engine = ctx.engine
        s = engine.statistics()
        current = self._throughput_counters()
        throughput = {label: self.rates.per_second(now, current, window) for label, window in WINDOWS}
        carriers = {}
        for name, pool in ctx.pools.items():
            binds = pool.status()
            carriers[name] = {
                "binds": len(binds),
                "bound": sum(1 for b in binds if b.state == "bound"),
                "held": engine.held.get(name),
                "cooling": name in s.correlate.cooling,
                "ready_queue": s.scheduler.ready.get(name, 0),
                "job_queue": s.dispatch.carriers[name].queued_jobs if name in s.dispatch.carriers else 0,
            }
        return {
            "version": VERSION,
            "pid": os.getpid(),
            "config": ctx.config_path,
            "started_at": ctx.started_ms / 1000,
            "uptime_seconds": round(time.time() - ctx.started_ms / 1000, 1),
            "sockets": dict(ctx.sockets),
            "accounts": list(ctx.accounts()),
            "carriers": carriers,
            "store": engine.store.summary(),
            "totals": current,
            "refused_by_reason": dict(sorted(s.backend.refused.items())),
            "throughput": throughput,
            "counters": engine.counters,
            **({"smpp_server": dict(ctx.smpp())} if ctx.smpp is not None else {}),
            **({"cluster": asdict(engine.shared.statistics())} if engine.shared is not None else {}),
            "errors": {
                "internal_errors": s.faults.internal_errors,
                "poisoned": s.faults.poisoned,
                "receipts_unmatched": s.receipts_unmatched,
                "receipts_unparseable": s.correlate.receipts_unparseable,
            },
        }

    # --- binds and carriers ---------------------------------------------------------------------------

    def _binds(self, only: str | None) -> dict[str, Any]:
        ctx = self._ctx
        if only is not None and only not in ctx.pools:
            raise NotFound(f"no carrier {only!r}; carriers: {', '.join(ctx.pools)}")
        now = trio.current_time()
        rows = []
        for name, pool in ctx.pools.items():
            if only is not None and name != only:
                continue
            for b in pool.status():
                row = asdict(b)
                row["since_seconds"] = round(max(now - b.since, 0.0), 1)
                del row["since"]
                row["held"] = ctx.engine.held.get(name)
                rows.append(row)
        return {"binds": rows}

    async def _carrier(self, command: Carrier) -> dict[str, Any]:
        ctx = self._ctx
        if command.name not in ctx.pools:
            raise NotFound(f"no carrier {command.name!r}; carriers: {', '.join(ctx.pools)}")
        actions = {CarrierAction.PAUSE: PAUSED, CarrierAction.DRAIN: DRAINED, CarrierAction.RESUME: None}
        how = actions[command.action]
        taken_back = await ctx.engine.hold_carrier(command.name, how)
        # Resume also ends the wait of binds that are down: a bind the SMSC refused (a password fixed in its
        # file) or one backing off connects again now, not at the end of its wait.
        retried = ctx.pools[command.name].retry_now() if how is None else 0
        return {"carrier": command.name, "held": how, "taken_back": taken_back, "binds_retried": retried}

    def _health(self) -> dict[str, Any]:
        """The same answer as the metrics port's /ready (gateway/ops/health.py)."""
        ready = readiness({name: pool.status() for name, pool in self._ctx.pools.items()}, store_open=True)
        return {"live": True, "ready": ready.ready, "problems": list(ready.problems)}

    # --- messages -------------------------------------------------------------------------------------

    def _find(self, command: Find, account: str | None) -> dict[str, Any]:
        engine = self._ctx.engine
        routing = engine.routing
        region = routing.region_of(account) if account is not None else routing.default_region
        number = routing.numbers.parse(command.to, region)
        if not isinstance(number, Number):
            raise InvalidRequest(f"{command.to!r} is not a number: {number}", field="args.to")
        store = engine.store
        # The recipient index, newest first; `since` cuts the walk at the first older message, and other
        # accounts' messages are skipped (so more are read than shown).
        plain = command.since is None and account is None
        ids = store.recent(number.e164, command.limit if plain else 10 * command.limit)
        found = []
        for msg in store.get_many(ids):
            if msg is None or (account is not None and msg.account != account):
                continue
            if command.since is not None and msg.created_ms < command.since * 1000:
                break
            found.append(_summary(msg))
            if len(found) >= command.limit:
                break
        return {"number": number.e164, "messages": found}

    def _show(self, command: Show, account: str | None) -> dict[str, Any]:
        store = self._ctx.engine.store
        if command.message_id is not None:
            msg = store.get(command.message_id)
            msgs = [msg] if msg is not None else []
        else:
            owner = command.account or account
            if owner is None:
                raise NotFound("a client_ref is an account's: name the account")
            msgs = [m for m in store.get_many(store.by_client_ref(owner, command.client_ref or "")) if m]
        msgs = [m for m in msgs if account is None or m.account == account]
        if not msgs:
            raise NotFound("no such message")
        return {"messages": [_detail(m) for m in msgs]}

    def _receipts(self, command: Receipts) -> dict[str, Any]:
        store = self._ctx.engine.store
        rows = store.unmatched_receipts(command.after, command.limit)
        return {
            "unmatched": store.unmatched_count(),
            "receipts": [
                {
                    "carrier": r.carrier, "id": r.raw_id, "status": str(r.kind), "reason": r.reason,
                    "at": r.at_ms / 1000, "unmatched_at": r.expired_ms / 1000,
                    "text": r.text.decode("latin-1"), "forms": list(r.keys),
                }
                for r in rows
            ],
            "next": rows[-1].key.hex() if len(rows) == command.limit else None,
        }

    # --- batches and balances ---------------------------------------------------------------------------

    def _owner(self, named: str | None, connection: str | None) -> str:
        """The account a batch or balance command is about: the connection's own, or the one it names (an
        operator's connection names any)."""
        if connection is not None and named not in (None, connection):
            raise NotFound(f"no account {named!r} for this connection")
        owner = named or connection
        if owner is None:
            raise InvalidRequest("account is required", field="args.account")
        if owner not in self._ctx.accounts():
            raise NotFound(f"no account {owner!r}")
        return owner

    def _batch(self, command: Batch, account: str) -> dict[str, Any]:
        engine = self._ctx.engine
        return batch_answer(engine.store, engine.failure_table(), command, account)

    async def _balance(self, command: Balance, account: str) -> dict[str, Any]:
        engine = self._ctx.engine
        bal = None
        if command.action in ("topup", "unlimited"):
            unlimited = command.action == "unlimited"
            try:
                bal = await engine.top_up(TopUp(account, command.parts, command.note, unlimited))
            except InvalidField as err:
                raise InvalidRequest(str(err), field="args.parts") from None
            log.info("balance_changed", account=account, parts=command.parts, unlimited=unlimited,
                     note=command.note, available=bal.available if bal.limited else None)  # fmt: skip
        return balance_answer(engine.store, command, account, bal)

    # --- lists ----------------------------------------------------------------------------------------

    async def _lists(self, command: Lists) -> dict[str, Any]:
        kind, _, name = command.scope.partition(":")
        engine = self._ctx.engine
        if kind == "carrier" and name not in self._ctx.pools:
            raise NotFound(f"no carrier {name!r}")
        if kind == "account" and name not in self._ctx.accounts():
            raise NotFound(f"no account {name!r}")
        if kind == "gateway":
            scope, account = "", None
        elif kind == "carrier":
            scope, account = command.scope, None
        else:  # an account's: its opt-outs are kept under its name, its blacklist as "account:NAME"
            scope, account = (name if command.request.list.value == "optout" else command.scope), name
        result: ListResult = await engine.backend.edit_list(command.request, scope, account, "admin")
        body = result_map(result)
        body["scope"] = command.scope
        return body


def _summary(m: Message) -> dict[str, Any]:
    return {
        "message_id": str(m.id), "account": m.account, "to": m.recipient, "sender": m.sender,
        "class": m.message_class, "state": m.state.name.lower(), "reason": m.reason or None,
        "carrier": m.carrier or None, "created_at": m.created_ms / 1000, "parts": len(m.segments),
    }  # fmt: skip


def _detail(m: Message) -> dict[str, Any]:
    """A message's whole record, as `gatewayctl show` prints it."""
    out = _summary(m)
    out.update(
        text=m.text,
        client_ref=m.client_ref or None,
        batch_id=m.batch or None,
        receipt_requested=m.receipt,
        expires_at=m.expires_ms / 1000 if m.expires_ms else None,
        final_at=m.final_ms / 1000 if m.final_ms else None,
        route=list(m.route),
        trail=[{"carrier": c, "reason": r} for c, r in m.trail],
        possible_duplicate=m.possible_duplicate,
        caps=list(m.caps),
        concat_ref=m.concat_ref or None,
        segments=[
            {
                "state": s.state.name.lower(), "reason": s.reason or None, "carrier_id": s.carrier_id or None,
                "bind": s.bind or None, "attempts": s.attempts, "possible_duplicate": s.possible_duplicate,
                "updated_at": s.updated_ms / 1000 if s.updated_ms else None,
                "due_at": s.due_ms / 1000 if s.due_ms and s.state in _WAITING else None,
            }
            for s in m.segments
        ],
    )
    return out


_WAITING = frozenset({State.ACCEPTED, State.QUEUED, State.DEFERRED})


__all__ = ["AdminContext", "AdminService", "Rates", "ReloadOutcome"]
