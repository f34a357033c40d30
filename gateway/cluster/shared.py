"""The shell between this node and the Valkey (or Redis) the nodes share [trio] (docs/scaling.md).

What it does for the engine:
- check      at accept, the other nodes' opt-outs and blacklists and every node's frequency-cap counts, one
             server-side script per group commit (cluster.core.CHECK); counted there before the store commits
- publish    an opt-out or blacklist change, to the shared lists and the change stream, before it is
             committed here; every node copies the stream into its own store (`_lists_loop`), so its local
             checks agree and go on while Valkey is away
- receipts   the receipt map (carrier, id -> node) written for every part this node sent (`mapped`); a
             receipt for another node's part is handed to it through its handover stream, written to
             Valkey's append-only file before the carrier hears deliver_sm_resp (`route_receipts`); one no
             node had mapped yet is kept here as an early receipt and looked up again (`_late_loop`)
- TPS        each carrier's account_tps budget, leased a tenth of a second at a time (`_tps_loop`)

While Valkey is unreachable: classes in `hold_classes` are refused for now (retryable), the others go with this
node's own checks; map entries, list changes and late receipts wait in memory (bounded) and are written when
it returns; each carrier sends its 1/nodes share of account_tps. Logged (`cluster_unreachable`,
`cluster_reachable`) and shown in status and metrics. Nothing this node acknowledged depends on Valkey.
"""

from __future__ import annotations

import math
import os
import secrets
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import coredis
import structlog
import trio
from coredis.retry import NoRetryPolicy

from gateway.carriers.bucket import AccountBudget
from gateway.cluster import core
from gateway.cluster.core import ClusterConfig, HandedReceipt, Keys, ListChange
from gateway.errors import ConfigError, GatewayError
from gateway.store import ForgetEarly, Op, Receipt, ReceiptResult, SetBlacklist, SetCursor, SetOptOut, Store, Submit
from gateway.upstream.errors import Overloaded

log = structlog.get_logger(__name__)

Apply = Callable[[Sequence[Op]], Awaitable[list[Any]]]

LISTS_CURSOR = "cluster:lists"
HANDOVER_CURSOR = "cluster:handover"
ORPHANS_CURSOR = "cluster:orphans"
# List changes waited for Valkey since (ms), and all were published at (ms): store cursors, see `publish`.
UNPUBLISHED_FROM = "cluster:unpublished_from"
PUBLISHED_UNTIL = "cluster:published_until"
_BATCH = 1000  # entries a read or a write to Valkey takes at most
_READ_BLOCK_MS = 200
_LATE_SECONDS = 0.2  # how often early receipts are looked up in the map again
_ORPHANS_KEPT = 100_000  # offered receipts the stream keeps (each node reads them within seconds)


class SharedUnavailable(GatewayError):
    """Valkey could not be reached for one request (the caller decides what waits)."""


class NodeNameTaken(GatewayError):
    """Another running node holds this node's name in Valkey: the start is refused (docs/scaling.md)."""


@dataclass(frozen=True, slots=True)
class ClusterStatistics:
    node: str
    reachable: bool
    unreachable_since_ms: int  # 0 while reachable
    outages: int  # times Valkey became unreachable since the start
    checks: int  # recipients checked against the shared lists and caps
    refused: dict[str, int]  # of which refused by what only the cluster knew: reason -> count
    local_only: int  # recipients accepted with this node's checks alone (Valkey unreachable)
    held: int  # requests refused for now because Valkey was unreachable (hold_classes)
    lists_published: int  # opt-out and blacklist changes this node wrote to the shared lists
    lists_applied: int  # changes of other nodes copied into this node's store
    map_written: int  # receipt map entries written
    map_removed: int  # of which removed again: their part's final receipt came
    map_waiting: int  # map entries waiting for Valkey
    handed_over: int  # receipts this node received for another node's parts and handed over
    taken_over: int  # receipts other nodes received for this node's parts, applied here
    late_waiting: int  # receipts no node had mapped yet, looked up again
    offered: int  # of which offered to every node (still unmapped after orphan_seconds)
    tps_granted: dict[str, int]  # tokens leased per carrier since the start
    dropped: int  # map entries and late receipts a full backlog pushed out (logged cluster_backlog_full)
    name_taken_by: str  # "" normally; else the other running node that holds this node's name (host, pid)


def password(cfg: ClusterConfig) -> str | None:
    """Valkey's password from the environment or a file; ConfigError when it cannot be read."""
    if cfg.valkey_password_env:
        value = os.environ.get(cfg.valkey_password_env)
        if value is None:
            raise ConfigError([("<env>", cfg.valkey_password_env, "environment variable not set")])
        return value
    if cfg.valkey_password_file:
        try:
            return Path(cfg.valkey_password_file).read_text(encoding="utf-8").strip("\r\n")
        except OSError as err:
            raise ConfigError([(cfg.valkey_password_file, "valkey_password_file", str(err))]) from err
    return None


class Shared:
    def __init__(
        self,
        cfg: ClusterConfig,
        *,
        store: Store,
        budgets: Callable[[], dict[str, AccountBudget]] = dict,
        receipt_seconds: dict[str, float] | None = None,
        wall_ms: Callable[[], int],
    ) -> None:
        self.cfg = cfg
        self.node = cfg.node
        self.keys = Keys(cfg.key_prefix)
        self._store = store
        # Each carrier's account_tps budget, as its pool now has it (a reload may replace a pool).
        self._budgets = budgets
        self._receipt_seconds = receipt_seconds or {}
        self._wall_ms = wall_ms
        self._client: coredis.Redis[bytes] | None = None
        self._check: Any = None
        self._tps: Any = None
        self._map_script: Any = None
        self._claim_script: Any = None
        self._password: str | None = None
        # This run's claim on the node's name (CLAIM): its token, the claim's TTL, and another run seen holding
        # the name (since when); that run is reported only once its hold outlasts a TTL (renewed: it runs).
        self._token = f"{socket.gethostname()} pid {os.getpid()} {secrets.token_hex(4)}"
        self._claim_ttl_ms = core.claim_ttl_ms(cfg.timeout_seconds)
        self._claimed = False
        self._other = ""
        self._other_since = 0.0
        self._name_taken_by = ""
        self.reachable = False
        self._down_since_ms = 0
        self._outages = 0
        self._wake_up = trio.Event()  # set when Valkey comes back
        self._apply: Apply | None = None
        self._map: deque[tuple[str, int]] = deque(maxlen=cfg.backlog)
        self._map_wake = trio.Event()
        self._lists_waiting: deque[ListChange] = deque(maxlen=cfg.backlog)
        # Receipts kept here as early whose part no node had mapped: (op, looked up until, trio time).
        # (op, looked up until, offered to every node at: trio time; inf once offered).
        self._late: deque[tuple[Receipt, float, float]] = deque(maxlen=cfg.backlog)
        self._calls = 0
        self._checks = self._local_only = self._held = 0
        self._refused: dict[str, int] = {}
        self._published = self._applied = self._map_written = self._map_removed = self._handed = self._taken = 0
        self._granted: dict[str, int] = {}
        self._durable: bool | None = None
        self._evicting = False
        self._settings_refused = False  # CONFIG GET refused (logged once)
        # What a full backlog pushed out (map entries, late receipts): counted and logged, never silent. List
        # changes pushed out are published again whole from the store (`_republish`).
        self._dropped = 0
        self._lists_overflowed = False
        self._offered = 0

    # --- running --------------------------------------------------------------------------------------

    async def run(self, apply: Apply, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect (or keep trying), then the loops, until cancelled. `apply` is the engine's commit."""
        self._apply = apply
        self._password = password(self.cfg)
        client = self._new_client()
        async with client:
            self._client = client
            self._check = client.register_script(core.CHECK)
            self._tps = client.register_script(core.TPS)
            self._map_script = client.register_script(core.MAP)
            self._claim_script = client.register_script(core.CLAIM)
            self._restore_late()
            await self._probe()
            await self._claim_at_start()
            try:
                async with trio.open_nursery() as nursery:
                    for loop in (self._health_loop, self._claim_loop, self._lists_loop, self._handover_loop,
                                 self._map_loop, self._late_loop, self._orphans_loop, self._tps_loop):  # fmt: skip
                        nursery.start_soon(self._guarded, loop)
                    task_status.started()
            finally:
                with trio.CancelScope(shield=True):
                    await self._release_name()

    async def _guarded(self, loop: Callable[[], Awaitable[None]]) -> None:
        """The fault boundary around each loop: a bug, or the store refusing a write (full), is logged with
        its traceback and the loop starts again after retry_seconds; it never ends the node."""
        while True:
            try:
                await loop()
            except Exception as err:
                log.error("cluster_task_failed", task=loop.__name__, error=str(err) or type(err).__name__,
                          exc_info=err)  # fmt: skip
                await trio.sleep(self.cfg.retry_seconds)

    def statistics(self) -> ClusterStatistics:
        return ClusterStatistics(
            node=self.node, reachable=self.reachable, unreachable_since_ms=self._down_since_ms,
            outages=self._outages, checks=self._checks, refused=dict(self._refused), local_only=self._local_only,
            held=self._held, lists_published=self._published, lists_applied=self._applied,
            map_written=self._map_written, map_removed=self._map_removed, map_waiting=len(self._map),
            handed_over=self._handed, taken_over=self._taken, late_waiting=len(self._late), offered=self._offered,
            tps_granted=dict(self._granted), dropped=self._dropped, name_taken_by=self._name_taken_by,
        )  # fmt: skip

    async def _call(self, fn: Callable[[], Awaitable[Any]], *, seconds: float | None = None) -> Any:
        """One request to Valkey within the timeout; any failure marks Valkey unreachable and raises
        SharedUnavailable (the caller decides what waits)."""
        if not self.reachable:
            raise SharedUnavailable("Valkey is unreachable")
        try:
            with trio.fail_after(seconds or self.cfg.timeout_seconds):
                return await fn()
        except (coredis.exceptions.RedisError, OSError, trio.TooSlowError) as err:
            self._went_down(err)
            raise SharedUnavailable(f"Valkey is unreachable: {err or type(err).__name__}") from err

    def _went_down(self, err: BaseException) -> None:
        if self.reachable or not self._down_since_ms:  # once an outage (at start too)
            self.reachable = False
            self._down_since_ms = self._wall_ms()
            self._outages += 1
            log.error("cluster_unreachable", host=self.cfg.valkey_host, port=self.cfg.valkey_port,
                      error=str(err) or type(err).__name__, holding=list(self.cfg.hold_classes))  # fmt: skip

    async def _probe(self) -> None:
        assert self._client is not None
        client = self._client
        try:
            with trio.fail_after(self.cfg.timeout_seconds):
                await client.ping()
                settings = await self._settings(client)
                # A write too: a full Valkey (maxmemory, noeviction) answers PING but refuses every write, and
                # stays away until it has room rather than coming back for one failed write a retry.
                await client.set(self.keys.probe(self.node), b"1", px=60_000)
        except (coredis.exceptions.RedisError, OSError, trio.TooSlowError) as err:
            self._went_down(err)
            return
        self._check_settings(settings)
        if not self.reachable:
            was = self._down_since_ms
            self.reachable = True
            self._down_since_ms = 0
            log.info("cluster_reachable", node=self.node, host=self.cfg.valkey_host, port=self.cfg.valkey_port,
                     down_seconds=round((self._wall_ms() - was) / 1000, 1) if was else 0,
                     waiting_map=len(self._map), waiting_lists=len(self._lists_waiting))  # fmt: skip
            self._wake_up.set()
            self._wake_up = trio.Event()

    async def _settings(self, client: coredis.Redis[bytes]) -> dict[bytes, bytes] | None:
        """Valkey's appendonly, maxmemory and maxmemory-policy; None where CONFIG is not allowed (a managed
        service renames or forbids it, or an ACL user lacks it): the nodes work without knowing them."""
        try:
            answer = await client.config_get(["appendonly", "maxmemory", "maxmemory-policy"])
        except coredis.exceptions.ResponseError as err:  # an answer, not a lost connection
            if not self._settings_refused:
                log.warning("cluster_settings_unreadable", error=str(err),
                            reason="CONFIG GET refused: make sure Valkey runs with appendonly yes and "
                            "maxmemory-policy noeviction (docs/scaling.md); receipts are handed over with WAITAOF "
                            "all the same")  # fmt: skip
            self._settings_refused = True
            return None
        return {k: v for k, v in answer.items() if isinstance(k, bytes) and isinstance(v, bytes)}

    def _check_settings(self, settings: dict[bytes, bytes] | None) -> None:
        """Warns (once a change) of a Valkey that would lose what the nodes share: no append-only file, or
        keys evicted under memory pressure (caps, receipt-map entries, handover streams vanish)."""
        if settings is None:
            return  # unknown: the first WAITAOF tells (`_hand_over`)
        if settings.get(b"appendonly") == b"yes":
            self._durable = True
        else:
            self._not_durable()
        policy = settings.get(b"maxmemory-policy", b"noeviction").decode("ascii", "replace")
        evicting = settings.get(b"maxmemory", b"0") not in (b"0", b"") and policy != "noeviction"
        if evicting and not self._evicting:
            log.warning("cluster_evicting", maxmemory=settings.get(b"maxmemory", b"").decode("ascii", "replace"),
                        policy=policy, reason="Valkey may evict keys when full: frequency-cap counts, receipt-map "
                        "entries and handed-over receipts would vanish; set maxmemory-policy noeviction "
                        "(docs/scaling.md)")  # fmt: skip
        self._evicting = evicting

    def _not_durable(self) -> None:
        if self._durable is not False and self.cfg.handover_fsync:
            log.warning("cluster_not_durable", reason="Valkey runs without appendonly: receipts handed over "
                        "between nodes die with it (docs/scaling.md)")  # fmt: skip
        self._durable = False

    def _overflow(self, what: str) -> None:
        self._dropped += 1
        if self._dropped == 1 or self._dropped % 10_000 == 0:
            log.error("cluster_backlog_full", what=what, dropped=self._dropped, backlog=self.cfg.backlog,
                      reason="Valkey away too long: the oldest entries are dropped (docs/scaling.md)")  # fmt: skip

    async def _health_loop(self) -> None:
        while True:
            await trio.sleep(self.cfg.retry_seconds)
            if not self.reachable:
                await self._probe()
            if self.reachable and self._lists_overflowed:
                self._lists_waiting.clear()
                self._lists_overflowed = False
                await self._republish()
            elif self.reachable and self._lists_waiting:
                await self._publish_waiting()

    async def _until_reachable(self) -> None:
        while not self.reachable:
            await self._wake_up.wait()

    # --- one running node a name ----------------------------------------------------------------------

    async def _claim_at_start(self) -> None:
        """This node's name for this run. A node killed lately holds it for up to one TTL, which is waited
        out; a run that still holds it after that renews it: another node runs under this name, and the
        start is refused (NodeNameTaken). Not asked while Valkey is unreachable (`_claim_loop` asks later)."""
        waiting = False
        while self.reachable:
            await self._claim_name()
            if self._name_taken_by:
                raise NodeNameTaken(
                    f"{self.node!r} is the name of another running node ({self._name_taken_by}), in Valkey "
                    f"{self.cfg.valkey_host}:{self.cfg.valkey_port}; each node needs a name of its own"
                )
            if not self._other:
                return
            if not waiting:
                waiting = True
                log.warning("cluster_node_name_waiting", node=self.node, holder=self._other,
                            seconds=self._claim_ttl_ms / 1000,
                            reason="another run holds this node's name: waiting for it to lapse (a node killed "
                            "holds it this long)")  # fmt: skip
            await trio.sleep(0.25)

    async def _claim_loop(self) -> None:
        """Renews this run's claim on the name a third of its TTL at a time (claims it when Valkey was
        unreachable at the start). Another node found running under the name is logged and shown in status."""
        while True:
            await trio.sleep(self._claim_ttl_ms / 3000)
            if self.reachable:
                was = self._name_taken_by
                await self._claim_name()
                if self._name_taken_by and not was:
                    log.error("cluster_node_name_taken", node=self.node, holder=self._name_taken_by,
                              reason="another running node uses this name: its receipts, handovers and TPS "
                              "leases are mixed with this node's; give each node its own [cluster] node")  # fmt: skip
                elif was and not self._name_taken_by:
                    log.info("cluster_node_name_claimed", node=self.node)

    async def _claim_name(self) -> None:
        """One CLAIM: this run holds the name now, or another run does (`_other`; `_name_taken_by` once it has
        held it longer than a TTL); nothing changes while Valkey is unreachable."""
        try:
            holder = await self._call(
                lambda: self._claim_script(keys=[self.keys.node(self.node)], args=[self._token, self._claim_ttl_ms])
            )
        except SharedUnavailable:
            return
        other = holder.decode("utf-8", "replace") if isinstance(holder, bytes) else str(holder or "")
        now = trio.current_time()
        if not other:
            self._claimed = True
            self._other = self._name_taken_by = ""
        elif other != self._other:
            self._other, self._other_since = other, now
        elif now - self._other_since > self._claim_ttl_ms / 1000 + 0.5:  # (clocks tick apart)
            self._name_taken_by = other

    async def _release_name(self) -> None:
        """At a stop, the name goes at once (a restart need not wait for it), if this run holds it. On a
        connection of its own: the stop has cancelled the running client's."""
        if not self._claimed or not self.reachable:  # unreachable: it lapses within its TTL
            return
        with trio.move_on_after(self.cfg.timeout_seconds):
            try:
                async with self._new_client() as client:
                    await client.eval(core.RELEASE, keys=[self.keys.node(self.node)], args=[self._token])
            except* (coredis.exceptions.RedisError, OSError):  # (the client's task group wraps them)
                pass  # it lapses within its TTL

    def _new_client(self) -> coredis.Redis[bytes]:
        return coredis.Redis(
            host=self.cfg.valkey_host, port=self.cfg.valkey_port, db=self.cfg.valkey_db,
            username=self.cfg.valkey_username or None, password=self._password,
            decode_responses=False, retry_policy=NoRetryPolicy(), connect_timeout=self.cfg.timeout_seconds,
            client_name=f"gateway-{self.node}", verify_version=False,
        )  # fmt: skip

    # --- accept ---------------------------------------------------------------------------------------

    async def check(self, submits: Sequence[Submit]) -> list[list[tuple[str, str]] | Overloaded]:
        """Per submit, per recipient: (reason, detail) when only the cluster refuses it, ("", "") when it may
        go (its caps are counted across the nodes now). While Valkey is unreachable: `Overloaded` (retry
        shortly) for a submit of a class that waits for it, and no refusal for the others (this node's own
        checks alone, counted in `local_only`)."""
        out: list[list[tuple[str, str]] | Overloaded] = [[("", "")] * len(s.recipients) for s in submits]
        groups: list[tuple[str, bool, tuple[core.CapRule, ...], list[str]]] = []
        where: list[tuple[int, int, tuple[core.CapRule, ...]]] = []
        for i, s in enumerate(submits):
            caps = tuple(core.CapRule(c.rule, c.scope, c.window_seconds, c.limit) for c in s.caps)
            numbers = []
            for j, r in enumerate(s.recipients):
                if not r.reject:
                    numbers.append(r.number)
                    where.append((i, j, caps))
            if numbers:
                groups.append((s.account, s.check_optout, caps, numbers))
        if not where:
            return out
        if self.reachable:
            self._calls += 1
            args = [self.keys.prefix, f"{self.node}:{self._wall_ms()}:{self._calls}", *core.check_args(groups)]
            try:
                codes = core.unpack_int_list(await self._call(lambda: self._check(keys=[], args=args)))
            except SharedUnavailable:
                pass
            else:
                self._checks += len(where)
                for (i, j, caps), code in zip(where, codes, strict=True):
                    verdicts = out[i]
                    if code and not isinstance(verdicts, Overloaded):
                        s = submits[i]
                        reason, _ = verdicts[j] = core.verdict(code, s.account, s.message_class, caps)
                        self._refused[reason] = self._refused.get(reason, 0) + 1
                return out
        for i, s in enumerate(submits):
            if self.cfg.held(s.message_class):
                self._held += 1
                out[i] = Overloaded(
                    f"shared_state_unavailable: {s.message_class} messages wait until this node reaches the "
                    "cluster's Valkey again (their opt-outs and caps are checked across the nodes); try again "
                    "shortly", field="class",
                )  # fmt: skip
            else:
                self._local_only += sum(1 for r in s.recipients if not r.reject)
        return out

    async def until_reachable(self) -> None:
        """Until Valkey can be reached (at once when it can)."""
        await self._until_reachable()

    # --- opt-out and blacklist changes ----------------------------------------------------------------

    async def publish(self, ops: Sequence[Op]) -> None:
        """The opt-out and blacklist changes among `ops`, to every node (before this node commits them).
        While Valkey is unreachable they wait in memory and go when it returns."""
        now = self._wall_ms()
        changes = [_change(op, self.node, now) for op in ops if isinstance(op, SetOptOut | SetBlacklist)]
        if not changes:
            return
        if self.reachable and not self._lists_waiting:
            try:
                await self._write_changes(changes)
                return
            except SharedUnavailable:
                pass
        if not self._lists_waiting and self._apply is not None:
            # Durable before the change is: should this node stop before Valkey returns, its next start
            # publishes every list entry since then (`_republish`).
            await self._apply([SetCursor(UNPUBLISHED_FROM, now)])
        if len(self._lists_waiting) + len(changes) > self.cfg.backlog:
            self._lists_overflowed = True  # every entry since the outage goes again from the store
        self._lists_waiting.extend(changes)

    async def _publish_waiting(self) -> None:
        while self._lists_waiting and self.reachable:
            chunk = [self._lists_waiting[i] for i in range(min(_BATCH, len(self._lists_waiting)))]
            try:
                await self._write_changes(chunk)
            except SharedUnavailable:
                return
            for _ in chunk:
                self._lists_waiting.popleft()
        if not self._lists_waiting and self._apply is not None:
            await self._apply([SetCursor(PUBLISHED_UNTIL, self._wall_ms())])

    async def _republish(self) -> None:
        """List changes this node made while Valkey was away and had not published when it stopped (they
        waited in memory): every entry of its store since then is published again."""
        since = self._store.stored_cursor(UNPUBLISHED_FROM) or 0
        if since <= (self._store.stored_cursor(PUBLISHED_UNTIL) or 0):
            return
        entries = self._store.listings_since(since)
        changes = [ListChange(table, number, scope, True, source, note, at_ms, self.node)
                   for table, scope, number, at_ms, source, note in entries]  # fmt: skip
        for i in range(0, len(changes), _BATCH):
            await self._write_changes(changes[i : i + _BATCH])
        assert self._apply is not None
        await self._apply([SetCursor(PUBLISHED_UNTIL, self._wall_ms())])
        log.info("cluster_lists_republished", entries=len(changes), since_ms=since)

    async def _write_changes(self, changes: list[ListChange]) -> None:
        assert self._client is not None
        client, k = self._client, self.keys

        async def write() -> None:
            async with client.pipeline(transaction=True) as p:
                for c in changes:
                    table = k.optout if c.table == "optout" else k.blacklist
                    f = core.list_field(c.scope, c.number)
                    if c.present:
                        p.hset(table, {f: core.pack_listing(c.at_ms, c.source, c.note)})
                    else:
                        p.hdel(table, [f])
                    p.xadd(k.lists, {"c": core.pack_change(c)}, trim_strategy=coredis.PureToken.MAXLEN,
                           threshold=self.cfg.lists_stream_length, trim_operator=coredis.PureToken.APPROXIMATELY)

        await self._call(write)
        self._published += len(changes)

    async def _lists_loop(self) -> None:
        """Every node's list changes into this node's store, each with the stream position in one commit."""
        while True:
            await self._until_reachable()
            try:
                await self._republish()
                cursor = self._store.stored_cursor(LISTS_CURSOR)
                if cursor is None or await self._fell_behind(cursor):
                    cursor = await self._copy_lists()
                while True:
                    cursor = await self._read_changes(cursor)
            except SharedUnavailable:
                continue

    async def _fell_behind(self, cursor: int) -> bool:
        """Whether the stream dropped changes this node has not read (it was away longer than the stream
        keeps): some were trimmed, and the oldest kept is past this node's cursor."""
        assert self._client is not None
        client, key = self._client, self.keys.lists
        if not await self._call(lambda: client.exists([key])):
            return False
        info = await self._call(lambda: client.xinfo_stream(key))
        first = info["first-entry"]
        trimmed = int(info["entries-added"]) > int(info["length"])
        return trimmed and first is not None and core.stream_cursor(first.identifier) > cursor + 1

    async def _copy_lists(self) -> int:
        """The shared lists whole into this store (a new node, or one away longer than the stream keeps);
        returns the stream position they are current to."""
        assert self._client is not None
        assert self._apply is not None
        client, k = self._client, self.keys
        last = await self._call(lambda: client.xrevrange(k.lists, count=1))
        cursor = core.stream_cursor(last[0].identifier) if last else 0
        copied = 0
        for table, name in ((k.optout, "optout"), (k.blacklist, "blacklist")):
            scan = 0
            while True:
                scan, found = await self._call(partial(client.hscan, table, scan, count=_BATCH))
                ops: list[Op] = []
                for f, raw in dict(found).items():
                    try:
                        scope, _, number = f.decode().partition("\0")
                        at_ms, source, note = core.unpack_listing(raw)
                    except ValueError as err:  # another writer's value: skipped, the rest copied
                        log.error("cluster_listing_unreadable", table=name, field=repr(f)[:80], error=str(err))
                        continue
                    ops.append(_local_op(ListChange(name, number, scope, True, source, note, at_ms)))
                if ops:
                    await self._apply(ops)
                    copied += len(ops)
                if not scan:
                    break
        await self._apply([SetCursor(LISTS_CURSOR, cursor)])
        log.info("cluster_lists_copied", entries=copied, cursor=core.stream_id(cursor))
        return cursor

    async def _read_changes(self, cursor: int) -> int:
        assert self._client is not None
        assert self._apply is not None
        client, k = self._client, self.keys
        found = await self._call(
            lambda: client.xread({k.lists: core.stream_id(cursor)}, count=_BATCH, block=_READ_BLOCK_MS),
            seconds=self.cfg.timeout_seconds + _READ_BLOCK_MS / 1000,
        )
        entries = next(iter(found.values()), ()) if found else ()
        if not entries:
            return cursor
        ops: list[Op] = []
        for e in entries:
            try:
                c = core.unpack_change(e.field_values[b"c"])
            except (KeyError, ValueError) as err:
                log.error("cluster_list_change_unreadable", id=e.identifier.decode(), error=str(err))
                continue
            if c.node != self.node:
                ops.append(_local_op(c))
        cursor = core.stream_cursor(entries[-1].identifier)
        await self._apply([*ops, SetCursor(LISTS_CURSOR, cursor)])
        self._applied += len(ops)
        return cursor

    # --- receipts -------------------------------------------------------------------------------------

    def mapped(self, carrier: str, carrier_id: str) -> None:
        """A part this node sent was accepted with `carrier_id`: receipts for it on any node come here."""
        ttl = self.cfg.receipt_map_seconds or self._receipt_seconds.get(carrier, 72 * 3600.0)
        if len(self._map) == self.cfg.backlog:
            self._overflow("map")
        self._map.append((self.keys.receipt(carrier, carrier_id), int(ttl * 1000)))
        self._map_wake.set()  # at once: a receipt may reach another node within milliseconds

    def unmap(self, carrier: str, carrier_id: str) -> None:
        """A part of this node's got its final receipt: its map entry goes (the TTL would take it hours
        later; the map holds only the parts still waiting for a receipt). Only the receipt's first
        candidate id: the store matched it, or it names no part waiting anywhere."""
        if len(self._map) == self.cfg.backlog:
            self._overflow("map")
        self._map.append((self.keys.receipt(carrier, carrier_id), 0))
        self._map_wake.set()

    def settled(self, ops: Sequence[Op], results: Sequence[Any]) -> None:
        """After `ops` were applied here: the map entries of parts whose receipts ended them go."""
        for op, result in zip(ops, results, strict=False):
            if type(op) is Receipt and type(result) is ReceiptResult and result.matched and (
                result.state is not None and result.state.is_final
            ):
                self.unmap(op.carrier, op.carrier_id)

    async def _map_loop(self) -> None:
        while True:
            if not self._map:
                await self._map_wake.wait()
            self._map_wake = trio.Event()
            await self._until_reachable()
            while self._map and self.reachable:
                chunk = [self._map[i] for i in range(min(_BATCH, len(self._map)))]

                keys = [key for key, _ in chunk]
                args = [self.node, *(ttl_ms for _, ttl_ms in chunk)]  # a TTL of 0 unmaps
                try:
                    await self._call(partial(self._map_script, keys=keys, args=args))
                except SharedUnavailable:
                    break
                for _ in chunk:
                    self._map.popleft()
                removed = sum(1 for _, ttl_ms in chunk if not ttl_ms)
                self._map_written += len(chunk) - removed
                self._map_removed += removed

    async def route_receipts(self, ops: list[Op]) -> list[Op]:
        """The ops to apply here: `ops` without the receipts whose part another node sent, which are handed
        to it first (durably, before this returns). On any failure every receipt stays here."""
        receipts = [op for op in ops if isinstance(op, Receipt)]
        if not receipts or not self.reachable:
            return ops
        try:
            owners = await self._owners(receipts)
            away = _by_owner(receipts, owners, self.node)
            if not away:
                return ops
            await self._hand_over(away)
        except SharedUnavailable:
            return ops
        gone = {id(r) for rs in away.values() for r in rs}
        return [op for op in ops if id(op) not in gone]

    async def _owners(self, receipts: Sequence[Receipt]) -> list[str | None]:
        """The node each receipt's part was sent from (its first candidate id the map knows), or None."""
        assert self._client is not None
        client = self._client
        names = [self.keys.receipt(r.carrier, cid) for r in receipts for cid in (r.carrier_id, *r.alternatives)]
        found = iter(await self._call(lambda: client.mget(names)))
        owners: list[str | None] = []
        for r in receipts:
            candidates = [next(found) for _ in range(1 + len(r.alternatives))]
            owners.append(next((o.decode() for o in candidates if o is not None), None))
        return owners

    async def _hand_over(self, away: dict[str, list[Receipt]]) -> None:
        assert self._client is not None
        client, k = self._client, self.keys
        fsync = self.cfg.handover_fsync and self._durable is not False  # (None: not known, CONFIG refused)

        async def write() -> None:
            for owner, rs in away.items():
                fields = {str(i): core.pack_receipt(_handed(r, self.node)) for i, r in enumerate(rs)}
                if not fsync:
                    await client.xadd(k.handover(owner), fields)
                    continue
                try:  # WAITAOF: on Valkey's disk before the carrier hears deliver_sm_resp
                    with client.ensure_persistence(1, 0, int(self.cfg.timeout_seconds * 1000)):
                        await client.xadd(k.handover(owner), fields)
                except coredis.exceptions.ResponseError as err:
                    if "appendonly" not in str(err):
                        raise
                    self._not_durable()  # written; Valkey keeps no append-only file to wait for

        await self._call(write)
        self._handed += sum(len(rs) for rs in away.values())

    def _restore_late(self) -> None:
        """The early receipts a stop or a crash left in the store, younger than late_receipt_seconds, are
        looked up again: some may be another node's (they were in memory only)."""
        since = self._wall_ms() - int(self.cfg.late_receipt_seconds * 1000)
        now = trio.current_time()
        for carrier, e in self._store.early_receipts(since, self.cfg.backlog):
            op = Receipt(carrier, e.keys[0], e.kind, e.reason, e.keys[1:], e.raw_id if e.raw_id != e.keys[0] else "",
                         e.text)  # fmt: skip
            age = (self._wall_ms() - e.at_ms) / 1000
            left = self.cfg.late_receipt_seconds - age
            self._late.append((op, now + max(left, 1.0), now + max(self.cfg.orphan_seconds - age, 0.0)))

    def late(self, op: Receipt) -> None:
        """A receipt kept here as early whose part no node had mapped yet: looked up again for a while."""
        if len(self._late) == self.cfg.backlog:
            self._overflow("late")
        now = trio.current_time()
        self._late.append((op, now + self.cfg.late_receipt_seconds, now + self.cfg.orphan_seconds))

    async def _late_loop(self) -> None:
        """Early receipts of this node looked up in the map again: one another node now owns is handed to
        it and forgotten here; one this node owns waits for its own submit_sm_resp as any early receipt;
        one nobody mapped within orphan_seconds is offered to every node (`_orphans_loop`)."""
        while True:
            await trio.sleep(_LATE_SECONDS)
            await self._until_reachable()
            now = trio.current_time()
            while self._late and self._late[0][1] < now:
                self._late.popleft()
            if not self._late:
                continue
            batch = [self._late.popleft() for _ in range(min(_BATCH, len(self._late)))]
            receipts = [item[0] for item in batch]
            try:
                owners = await self._owners(receipts)
                away = _by_owner(receipts, owners, self.node)
                if away:
                    await self._hand_over(away)
                unowned = [
                    item for item, owner in zip(batch, owners, strict=True)
                    # this store sent its part: its own submit_sm_resp claimed it (and unmapped the part)
                    if owner is None and not self._store.sent_part(item[0].carrier, _ids(item[0]))
                ]  # fmt: skip
                due = [item[0] for item in unowned if item[2] <= now]
                if due:
                    await self._offer(due)
            except SharedUnavailable:
                self._late.extendleft(reversed(batch))
                continue
            offered = {id(op) for op in due}
            self._late.extend((op, until, math.inf if id(op) in offered else at) for op, until, at in unowned)
            forget: list[Op] = [ForgetEarly(r.carrier, r.carrier_id) for rs in away.values() for r in rs]
            if forget and self._apply is not None:
                await self._apply(forget)

    async def _offer(self, receipts: list[Receipt]) -> None:
        assert self._client is not None
        client, key = self._client, self.keys.orphans
        fields = {str(i): core.pack_receipt(_handed(r, self.node)) for i, r in enumerate(receipts)}
        await self._call(lambda: client.xadd(key, fields, trim_strategy=coredis.PureToken.MAXLEN,
                                             threshold=_ORPHANS_KEPT, trim_operator=coredis.PureToken.APPROXIMATELY))
        self._offered += len(receipts)

    async def _orphans_loop(self) -> None:
        """Receipts other nodes offered (nobody had mapped their part): the ones whose part this node's store
        sent are applied here, with the stream position in one commit, and their offering node is told to
        forget its early copy."""
        assert self._client is not None
        assert self._apply is not None
        client, key, apply = self._client, self.keys.orphans, self._apply
        while True:
            await self._until_reachable()
            try:
                cursor = self._store.stored_cursor(ORPHANS_CURSOR)
                if cursor is None:  # a new node: from now on (older offers were for the nodes there then)
                    last = await self._call(lambda: client.xrevrange(key, count=1))
                    cursor = core.stream_cursor(last[0].identifier) if last else 0
                    # Kept at once: after a crash this node reads the offers made while it was down.
                    await apply([SetCursor(ORPHANS_CURSOR, cursor)])
                while True:
                    found = await self._call(
                        partial(client.xread, {key: core.stream_id(cursor)}, count=100, block=_READ_BLOCK_MS),
                        seconds=self.cfg.timeout_seconds + _READ_BLOCK_MS / 1000,
                    )
                    entries = next(iter(found.values()), ()) if found else ()
                    if entries:
                        cursor = await self._adopt(entries)
            except SharedUnavailable:
                continue

    async def _adopt(self, entries: Sequence[Any]) -> int:
        assert self._apply is not None
        ops: list[Receipt] = []
        notices: dict[str, dict[str, bytes]] = {}
        for e in entries:
            for raw in e.field_values.values():
                try:
                    r = core.unpack_receipt(raw)
                except ValueError as err:
                    log.error("cluster_receipt_unreadable", id=e.identifier.decode(), error=str(err))
                    continue
                if r.via == self.node or not self._store.sent_part(r.carrier, _ids(r)):
                    continue
                ops.append(Receipt(r.carrier, r.carrier_id, r.kind, r.reason, r.alternatives, r.raw_id, r.text))
                box = notices.setdefault(r.via, {})
                box[f"f{len(box)}"] = core.pack_forget(r.carrier, r.carrier_id)
        cursor = core.stream_cursor(entries[-1].identifier)
        results = await self._apply([*ops, SetCursor(ORPHANS_CURSOR, cursor)])
        self._taken += len(ops)
        self.settled(ops, results)
        if notices:
            assert self._client is not None
            client = self._client
            for via, fields in notices.items():
                await self._call(partial(client.xadd, self.keys.handover(via), fields))
        return cursor

    async def _handover_loop(self) -> None:
        """Receipts other nodes received for this node's parts: applied with the stream position in one
        commit (none twice, none lost), then deleted from the stream."""
        assert self._client is not None
        client, key = self._client, self.keys.handover(self.node)
        while True:
            await self._until_reachable()
            cursor = self._store.stored_cursor(HANDOVER_CURSOR) or 0
            try:
                while True:
                    found = await self._call(
                        partial(client.xread, {key: core.stream_id(cursor)}, count=100, block=_READ_BLOCK_MS),
                        seconds=self.cfg.timeout_seconds + _READ_BLOCK_MS / 1000,
                    )
                    entries = next(iter(found.values()), ()) if found else ()
                    if not entries:
                        continue
                    cursor = await self._take_over(entries)
                    ids = [e.identifier for e in entries]
                    await self._call(partial(client.xdel, key, ids))
            except SharedUnavailable:
                continue

    async def _take_over(self, entries: Sequence[Any]) -> int:
        assert self._apply is not None
        ops: list[Receipt] = []
        forget: list[Op] = []
        for e in entries:
            for name, raw in e.field_values.items():
                try:
                    if name.startswith(b"f"):  # another node took a receipt this node offered
                        forget.append(ForgetEarly(*core.unpack_forget(raw)))
                        continue
                    r = core.unpack_receipt(raw)
                except ValueError as err:
                    log.error("cluster_receipt_unreadable", id=e.identifier.decode(), error=str(err))
                    continue
                ops.append(Receipt(r.carrier, r.carrier_id, r.kind, r.reason, r.alternatives, r.raw_id, r.text))
        if forget:
            gone = {(f.carrier, f.carrier_id) for f in forget if isinstance(f, ForgetEarly)}
            kept = [item for item in self._late if (item[0].carrier, item[0].carrier_id) not in gone]
            self._late.clear()
            self._late.extend(kept)
        cursor = core.stream_cursor(entries[-1].identifier)
        results = await self._apply([*ops, *forget, SetCursor(HANDOVER_CURSOR, cursor)])
        self._taken += len(ops)
        self.settled(ops, results)
        for op, result in zip(ops, results, strict=False):
            if isinstance(result, GatewayError):
                log.error("cluster_receipt_not_applied", carrier=op.carrier, id=op.carrier_id, error=str(result))
        return cursor

    # --- carrier TPS ----------------------------------------------------------------------------------

    async def _tps_loop(self) -> None:
        """Every tick, for each carrier with an account_tps: this node's tokens for the next tick, asked of
        Valkey (which counts every node's in the same second); its 1/nodes share while Valkey is away."""
        tick = 1 / core.TICKS_PER_SECOND
        while True:
            now = trio.current_time()
            for carrier, budget in self._budgets().items():
                await self._lease(carrier, budget, now, tick)
            await trio.sleep_until(now + tick)

    async def _lease(self, carrier: str, budget: AccountBudget, now: float, tick: float) -> None:
        share = budget.rate / self.cfg.nodes
        used, starved = budget.demand()
        want = core.tps_want(budget.rate, used, starved)
        if not self.reachable:
            budget.unleased(share, now)
            return
        if not want:
            budget.grant(0, now + tick)
            return
        args = [self.node, want, budget.rate, core.TICKS_PER_SECOND]
        try:
            granted, _ = core.unpack_int_list(
                await self._call(lambda: self._tps(keys=list(self.keys.tps(carrier)), args=args))
            )
        except SharedUnavailable:
            budget.unleased(share, now)
            return
        budget.grant(granted, trio.current_time() + tick)
        self._granted[carrier] = self._granted.get(carrier, 0) + granted


def _change(op: SetOptOut | SetBlacklist, node: str, now_ms: int) -> ListChange:
    if isinstance(op, SetOptOut):
        return ListChange("optout", op.number, op.scope, op.opted_out, op.source, op.note, now_ms, node)
    return ListChange("blacklist", op.number, op.scope, op.listed, op.source, "", now_ms, node)


def _local_op(c: ListChange) -> Op:
    if c.table == "optout":
        return SetOptOut(c.number, scope=c.scope, opted_out=c.present, source=c.source, note=c.note)
    return SetBlacklist(c.number, listed=c.present, scope=c.scope, source=c.source)


def _by_owner(receipts: Sequence[Receipt], owners: Sequence[str | None], node: str) -> dict[str, list[Receipt]]:
    """The receipts another node owns, by node."""
    away: dict[str, list[Receipt]] = {}
    for r, owner in zip(receipts, owners, strict=True):
        if owner is not None and owner != node:
            away.setdefault(owner, []).append(r)
    return away


def _handed(r: Receipt, via: str) -> HandedReceipt:
    return HandedReceipt(r.carrier, r.carrier_id, r.kind, r.reason, r.alternatives, r.raw_id, r.text, via)


def _ids(r: Receipt | HandedReceipt) -> tuple[str, ...]:
    return (r.carrier_id, *r.alternatives)
