"""The LMDB store: one environment, named sub-databases (layout in keys.py), records in records.py.

Every write goes through `apply(ops)`: one write transaction for the whole list, begun and committed on the
calling thread (the writer's `trio.to_thread.run_sync`). All index upkeep happens in `_save()`, which diffs
the old and new message record, so indexes cannot drift from records. The write path handles a record as
its stored msgpack array (records.MessageFields) and edits the fields an op changes; a transaction unpacks
each record it touches once and packs it once, before commit (`_Tx.records`). The Message type is for
readers. Reads are short read transactions.
"""

from __future__ import annotations

import errno
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cmp_to_key
from itertools import islice
from pathlib import Path
from typing import Any

import lmdb

from gateway.errors import ClientRefReused, GatewayError, StoreError, forget_traceback
from gateway.fastinit import fast_init
from gateway.lifecycle import (
    AWAITING_STATES,
    DUE_STATES,
    FINAL_STATES,
    Billed,
    Ev,
    Event,
    Ignored,
    InvalidReason,
    InvalidTransition,
    Segment,
    State,
    advance,
    is_reason,
    message_state,
)
from gateway.smpp.constants import CommandStatus
from gateway.smpp.errors import StoreFull, WireError
from gateway.store import keys, records
from gateway.store.config import Recovery, StoreConfig
from gateway.store.ops import (
    Advance,
    AdvanceResult,
    BalanceResult,
    BatchRows,
    Done,
    ForgetEarly,
    KeepMoPart,
    Mo,
    Op,
    Outcome,
    Overdue,
    PortedPurge,
    PortedPurged,
    PortedRows,
    PortedSwitch,
    Prepare,
    PrepareResult,
    PutBatch,
    PutTemplate,
    Receipt,
    ReceiptResult,
    Recipient,
    Reroute,
    Result,
    SetBlacklist,
    SetCursor,
    SetOptOut,
    Submit,
    SubmitResult,
    Sweep,
    SweepResult,
    TopUp,
)
from gateway.store.records import (
    F_ACCOUNT,
    F_BATCH,
    F_CAPS,
    F_CARRIER,
    F_CLIENT_REF,
    F_CONCAT_REF,
    F_CREATED_MS,
    F_EXPIRES_MS,
    F_FINAL_MS,
    F_ID,
    F_RECIPIENT,
    F_REPORTED,
    F_RESERVED,
    F_SEGMENTS,
    F_SENDER,
    F_TRAIL,
    REPORTED_SUBMITTED,
    S_CARRIER_ID,
    S_DUE_MS,
    S_DUPLICATE,
    S_REASON,
    S_STATE,
    VERSION,
    BatchCounters,
    CorruptRecord,
    EventKind,
    LogEvent,
    Message,
    MessageFields,
)

Clock = Callable[[], int]
# A message's segments as stored arrays (records.MessageFields[F_SEGMENTS]).
_Segs = list[list[Any]]
DAY_MS = 86_400_000


class UnknownMessage(StoreError):
    """No message (or segment) with this id: purged, or never stored."""


class InvalidField(StoreError, WireError):
    """A value too long to be part of a key (LMDB keys are at most 511 bytes)."""

    command_status = CommandStatus.ESME_RINVPARLEN


class WrongState(StoreError):
    """The operation needs the message in another state (for example Prepare on a submitted message)."""


class OpFailed(StoreError):
    """An operation hit a bug (an overflow, a record this code cannot handle): it alone was refused, the rest
    of its group committed without it. The message names the exception and where it was raised."""

    @classmethod
    def of(cls, err: Exception) -> OpFailed:
        frames = traceback.extract_tb(err.__traceback__)
        where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
        key = (type(err).__name__, where)
        if key not in _REPORTED_BUGS and len(_REPORTED_BUGS) < 100:  # a full traceback once per place
            _REPORTED_BUGS.add(key)
            traceback.print_exception(err, file=sys.stderr)
        return cls(f"{type(err).__name__}: {err}{where}")


_REPORTED_BUGS: set[tuple[str, str]] = set()


def wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class DueEntry:
    """A message that becomes sendable at `due_ms`; `key` is the cursor to resume after."""

    key: bytes
    due_ms: int
    message_id: int


fast_init(DueEntry)  # one per due message the scheduler reads


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    resent: int
    unknown: int


@dataclass(slots=True)
class _BatchDelta:
    targeted: int = 0
    valid: int = 0
    submitted: int = 0
    delivered: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    billed: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    failed_at: dict[str, int] = field(default_factory=dict)
    ended: int = 0
    ended_submitted: int = 0
    charged: int = 0

    def fail(self, reason: str, carrier: str, n: int = 1) -> None:
        self.failed[reason] = self.failed.get(reason, 0) + n
        key = f"{carrier}\x1f{reason}"
        self.failed_at[key] = self.failed_at.get(key, 0) + n


def _added(into: dict[str, int], delta: Mapping[str, int]) -> dict[str, int]:
    """`into` with `delta` added, keys that reach zero dropped."""
    for key, n in delta.items():
        total = into.get(key, 0) + n
        if total:
            into[key] = total
        else:
            into.pop(key, None)
    return into


# The sub-databases the hot paths pass to the transaction directly (no wrapper, no dict probe), in _Tx's
# attribute order.
# Store.summary's names for the tables it counts.
_SUMMARY_DBS = (
    ("messages", b"messages"),  # every message kept (final ones until purged)
    ("due", b"due"),  # waiting to be sent: queued, scheduled, deferred, back-off
    ("in_flight_parts", b"inflight"),  # parts at a carrier, their submit_sm_resp not stored yet
    ("awaiting_receipt", b"deadline"),  # messages with a deadline: a validity to watch or a receipt to wait for
    ("final", b"finals"),
    ("early_receipts", b"early"),  # receipts that came before their submit_sm_resp
    ("unmatched_receipts", b"unmatched"),
    ("opt_outs", b"optout"),
    ("blacklisted", b"blacklist"),
    ("events", b"events"),
)
_HOT_DBS = (b"messages", b"carrier_ix", b"events", b"inflight", b"due", b"finals", b"recipient", b"concat")


class _Tx:
    """One write transaction's working state; batch counters are summed and written once at the end."""

    __slots__ = (
        "balances", "batches", "carrier_ix", "concat", "db", "dirty", "due", "events", "finals", "inflight",
        "messages", "moves", "now", "recipient", "records", "seq", "txn",
    )  # fmt: skip

    def __init__(
        self, txn: lmdb.Transaction, dbs: dict[bytes, lmdb._Database], hot: tuple[lmdb._Database, ...], now: int,
        seq: int,
    ) -> None:  # fmt: skip
        self.txn = txn
        self.db = dbs
        self.now = now
        self.seq = seq
        self.batches: dict[tuple[str, str], _BatchDelta] = {}
        # Balances this transaction read ([available, reserved, charged]; None: unlimited) and what moved in
        # them ([reserved, charged, released, topped_up, note]): written once at the end (Store._flush_books).
        self.balances: dict[str, list[int] | None] = {}
        self.moves: dict[str, list[Any]] = {}
        # `hot` is the handles of _HOT_DBS, looked up once per store.
        (
            self.messages, self.carrier_ix, self.events, self.inflight, self.due, self.finals, self.recipient,
            self.concat,
        ) = hot  # fmt: skip
        # Message records as this transaction left them (records.MessageFields), by id: every record an op
        # loaded or saved. Several ops of a group often touch one message (the parts of a split message, a
        # submit_sm_resp and its receipt), so a record is unpacked once and packed once per group.
        # Ops edit copies and save them here only when they succeed (see Store._load).
        self.records: dict[int, MessageFields] = {}
        # Ids whose record changed, put by Store._flush_messages before commit; True for a message created
        # in this transaction (its id is above every stored one: LMDB may append it).
        self.dirty: dict[int, bool] = {}

    def batch(self, account: str, batch_id: str) -> _BatchDelta:
        key = (account, batch_id)
        delta = self.batches.get(key)
        if delta is None:
            delta = self.batches[key] = _BatchDelta()
        return delta

    def balance(self, account: str) -> list[int] | None:
        """The account's balance as this transaction left it ([available, reserved, charged]: edit it and
        record the move), None when it has none (unlimited)."""
        if account in self.balances:
            return self.balances[account]
        raw = self.get(b"balances", account.encode())
        bal = self.balances[account] = None if raw is None else records.unpack_balance(raw)
        return bal

    def move(self, account: str) -> list[Any]:
        """[reserved, charged, released, topped_up, note] moved in `account`'s balance in this transaction."""
        moved = self.moves.get(account)
        if moved is None:
            moved = self.moves[account] = [0, 0, 0, 0, ""]
        return moved

    def put(self, db: bytes, key: bytes, value: bytes = b"", append: bool = False) -> None:
        self.txn.put(key, value, db=self.db[db], append=append)

    def get(self, db: bytes, key: bytes) -> bytes | None:
        value = self.txn.get(key, db=self.db[db])
        return None if value is None else bytes(value)

    def delete(self, db: bytes, key: bytes) -> None:
        self.txn.delete(key, db=self.db[db])


class Store:
    """Synchronous LMDB store. Open once per process; writes only from the writer's thread call."""

    def __init__(self, cfg: StoreConfig, clock: Clock = wall_ms) -> None:
        self.cfg = cfg
        self._clock = clock
        # What the recovery at open (Store.open) did, for the log.
        self.last_recovery = RecoveryReport(0, 0)
        # set_mapsize needs no live transaction in this process: reads and growth take this lock.
        self._lock = threading.Lock()
        Path(cfg.path).mkdir(mode=0o700, parents=True, exist_ok=True)  # LMDB would make it with the files' mode
        self._env = lmdb.open(
            cfg.path,
            map_size=cfg.map_size_bytes,
            max_dbs=len(keys.DB_NAMES) + 1,
            sync=cfg.sync,
            metasync=cfg.sync,
            # Recovery touches a few pages of a large map; readahead would pull the whole file into RSS.
            readahead=False,
            mode=0o600,  # message texts: the gateway's user alone (LMDB's default makes them 0644)
        )
        self._dbs = {name: self._env.open_db(name) for name in keys.DB_NAMES}
        self._hot_dbs = tuple(self._dbs[name] for name in _HOT_DBS)
        # The portability lookup runs once per recipient at accept: its handles without a dict probe.
        self._ported = self._dbs[b"ported"]
        self._ported_meta = self._dbs[b"ported_meta"]
        self._caps_swept = b""  # where the next sweep of the cap counters starts (see _trim_caps)
        self._batches_swept = b""  # and of the batch definitions (see _trim_batches)
        with self._env.begin() as txn:
            self._ids = keys.IdClock(self._last_key_int(txn, b"messages"))
            self._seq = self._last_key_int(txn, b"events")
            # False only while the early-receipt table is known to be empty: then a submit_sm_resp skips
            # looking there. Set before any early receipt is written (so an aborted write leaves it set,
            # the safe side) and recomputed at the end of each write transaction while set. Exact
            # because this process's writer is the only writer (ARCHITECTURE.md, Concurrency).
            self._early_possible = self._has_early(txn)
        # A handler returns its refusal (a GatewayError) when it writes nothing: see _one.
        self._handlers: dict[type, Callable[[_Tx, Any], Result | GatewayError]] = {
            Submit: self._submit,
            Advance: self._advance,
            Receipt: self._receipt,
            ForgetEarly: self._forget_early,
            Prepare: self._prepare,
            Mo: self._mo,
            KeepMoPart: self._keep_mo_part,
            SetOptOut: self._set_optout,
            SetBlacklist: self._set_blacklist,
            SetCursor: self._set_cursor,
            Sweep: self._sweep,
            Reroute: self._reroute,
            TopUp: self._top_up,
            PutTemplate: self._put_template,
            PutBatch: self._put_batch,
            BatchRows: self._batch_rows,
            Overdue: self._overdue,
            PortedRows: self._ported_rows,
            PortedSwitch: self._ported_switch,
            PortedPurge: self._ported_purge,
        }

    @classmethod
    def open(cls, cfg: StoreConfig, clock: Clock = wall_ms) -> Store:
        """Open and recover: segments left in "submitting" are resent or marked unknown (see Recovery)."""
        store = cls(cfg, clock)
        store.last_recovery = store.recover()
        return store

    def close(self) -> None:
        self._env.close()

    def _has_early(self, txn: lmdb.Transaction) -> bool:
        return bool(txn.stat(self._dbs[b"early"])["entries"])

    def _last_key_int(self, txn: lmdb.Transaction, db: bytes) -> int:
        cur = txn.cursor(db=self._dbs[db])
        return keys.from_u64(bytes(cur.key())) if cur.last() else 0

    # --- writing ------------------------------------------------------------------------------------

    def apply(self, ops: Sequence[Op], now_ms: int | None = None) -> list[Result | GatewayError]:
        """Run `ops` in one write transaction. An op that fails on its own (unknown id, invalid
        transition) gets its error as its result; the others commit. A full map grows when configured,
        otherwise new submits are refused with StoreFull and the rest is retried without them.
        `now_ms` is the transaction's time (default: the store's clock; the writer process gets the
        gateway's).

        The fault boundary of the writer: an op that raises anything else (a bug, an overflow, a record
        this code cannot read) aborts its transaction; the group is then run again one op per transaction,
        so that op alone gets OpFailed and every other op commits. One poison message never stops the
        writer, and the gateway with it."""
        now = self._clock() if now_ms is None else now_ms
        try:
            return self._apply_group(ops, now)
        except StoreError:
            raise
        except Exception as err:
            if len(ops) == 1:
                return [OpFailed.of(err)]
        return [self._apply_alone(op, now) for op in ops]

    def _apply_alone(self, op: Op, now: int) -> Result | GatewayError:
        try:
            return self._apply_group([op], now)[0]
        except StoreError:
            raise
        except Exception as err:
            return OpFailed.of(err)

    def _apply_group(self, ops: Sequence[Op], now: int) -> list[Result | GatewayError]:
        try:
            return self._apply_growing(ops, now)
        except StoreFull as full:
            if not any(isinstance(op, Submit) for op in ops):
                raise
            rest = [op for op in ops if not isinstance(op, Submit)]
            done = iter(self._apply_growing(rest, now)) if rest else iter(())
            return [full if isinstance(op, Submit) else next(done) for op in ops]

    def _apply_growing(self, ops: Sequence[Op], now: int) -> list[Result | GatewayError]:
        while True:
            try:
                return self._apply_once(ops, now)
            except lmdb.MapFullError as err:
                if not (self.cfg.map_grow and self._grow()):
                    raise StoreFull("store map is full") from err
            except lmdb.Error as err:
                if _is_disk_full(err):
                    raise StoreFull("disk is full") from err
                raise StoreError(str(err)) from err

    def _grow(self) -> bool:
        with self._lock:
            size = self._env.info()["map_size"]
            try:
                self._env.set_mapsize(size * 2)
            except lmdb.Error:
                return False
        return True

    def _apply_once(self, ops: Sequence[Op], now: int) -> list[Result | GatewayError]:
        last_id = self._ids._last
        try:
            with self._env.begin(write=True) as txn:
                tx = _Tx(txn, self._dbs, self._hot_dbs, now, self._seq)
                results = self._run_ops(tx, ops)
                if tx.dirty:
                    self._flush_messages(tx)
                self._flush_batches(tx)
                if tx.balances:
                    self._flush_books(tx)
                early = self._early_possible and self._has_early(txn)
        except Exception:
            self._ids._last = last_id  # nothing was committed: hand the same ids out again
            raise
        self._seq = tx.seq
        self._early_possible = early
        return results

    def _run_ops(self, tx: _Tx, ops: Sequence[Op]) -> list[Result | GatewayError]:
        """Each op's result, in the order of `ops`; receipts are applied after the group's other ops.

        A receipt often shares a group with its own submit_sm_resp: SMSCs (and our simulator) send both at
        once, and the engine's two correlation tasks queue them in either order. Applied last, it matches
        its segment at once instead of taking the early-receipt path (stored, then found and applied by the
        response), and the message's "submitted" event comes before its "delivered" one.
        """
        later = [i for i, op in enumerate(ops) if type(op) is Receipt]
        if not later:
            return [self._one(tx, op) for op in ops]
        results: list[Result | GatewayError | None] = [
            None if type(op) is Receipt else self._one(tx, op) for op in ops
        ]
        for i in later:
            results[i] = self._one(tx, ops[i])
        return results  # type: ignore[return-value]  # every slot filled

    def _one(self, tx: _Tx, op: Op) -> Result | GatewayError:
        try:
            handler = self._handlers.get(type(op))
            if handler is None:  # a subclass of an op type
                handler = next(h for t, h in self._handlers.items() if isinstance(op, t))
            return handler(tx, op)
        except (InvalidTransition, InvalidReason, InvalidField, UnknownMessage, WrongState, CorruptRecord) as err:
            # Raised before this op wrote anything (every op computes first, then writes); the record it
            # loaded is its own copy, so not even an edit made before the raise stays (see _load). Returned
            # as a value: its traceback would keep this group's frames (and the records they hold) alive.
            forget_traceback(err)
            return err

    def _mo(self, tx: _Tx, op: Mo) -> Done:
        seq = self._log(tx, EventKind.MO, op.account, number=op.source, address=op.destination, text=op.text,
                        carrier=op.carrier)  # fmt: skip
        if op.parts > 1:  # the parts kept while it was incomplete are in the event now
            for part in range(1, op.parts + 1):  # a part never kept (the last one, say): nothing deleted
                tx.delete(b"mo_parts", keys.mo_part_key(op.source, op.destination, op.ref, op.parts, part))
        return Done(seq)

    def _keep_mo_part(self, tx: _Tx, op: KeepMoPart) -> Done:
        _check_lengths(op.source, op.destination)
        key = keys.mo_part_key(op.source, op.destination, op.ref, op.total, op.seq)
        tx.put(b"mo_parts", key, records.pack_mo_part(op.carrier, op.text, op.data_coding, tx.now))
        return Done(tx.seq)

    def _set_optout(self, tx: _Tx, op: SetOptOut) -> Done:
        _check_lengths(op.scope, op.number, op.source)
        key = keys.text_pair(op.scope, op.number)
        if op.opted_out and not op.source.startswith("mo:") and tx.get(b"optout", key) is not None:
            return Done()  # listed already: its record (when, and the reply that asked) is the evidence kept
        record = records.pack_listing(tx.now, op.source, op.note[:_MAX_NOTE])
        return self._set(tx, b"optout", key, op.opted_out, record)

    def _set_blacklist(self, tx: _Tx, op: SetBlacklist) -> Done:
        _check_lengths(op.scope, op.number, op.source)
        key = keys.blacklist_key(op.scope, op.number)
        if op.listed and tx.get(b"blacklist", key) is not None:
            return Done()  # listed already: since when is kept
        return self._set(tx, b"blacklist", key, op.listed, records.pack_listing(tx.now, op.source))

    def _set_cursor(self, tx: _Tx, op: SetCursor) -> Done:
        _check_lengths(op.account)
        key = op.account.encode()
        raw = tx.get(b"cursors", key)
        if raw is None or keys.from_u64(raw) < op.seq:
            tx.put(b"cursors", key, keys.u64(op.seq))
        return Done(op.seq)

    # --- balances, templates, batches ---------------------------------------------------------------

    def _top_up(self, tx: _Tx, op: TopUp) -> BalanceResult:
        _check_lengths(op.account)
        if op.unlimited:
            tx.delete(b"balances", op.account.encode())
            tx.balances[op.account] = None
            tx.move(op.account)[4] = op.note[:_MAX_NOTE] or "unlimited"
            return BalanceResult(op.account)
        bal = tx.balance(op.account)
        if op.parts < 0 and (bal is None or bal[0] + op.parts < 0):
            have = "no balance (unlimited)" if bal is None else f"{bal[0]} parts available"
            raise InvalidField(f"cannot take back {-op.parts} parts: the account has {have}")
        if bal is None:
            bal = tx.balances[op.account] = [0, 0, 0]
        bal[0] += op.parts
        moved = tx.move(op.account)
        moved[3] += op.parts
        moved[4] = op.note[:_MAX_NOTE]
        return BalanceResult(op.account, bal[0], bal[1], bal[2], True)

    def _put_template(self, tx: _Tx, op: PutTemplate) -> Done:
        _check_lengths(op.account, op.template_id)
        key = keys.text_pair(op.account, op.template_id)
        _expect_rev(tx.get(b"templates", key), op.expect_rev, records.unpack_template, f"template {op.template_id!r}")
        if not op.packed:
            tx.delete(b"templates", key)
            return Done()
        t = records.unpack_template(op.packed)
        tx.put(b"templates", key, records.pack_template(replace(t, rev=max(op.expect_rev, 0) + 1)))
        return Done()

    def _put_batch(self, tx: _Tx, op: PutBatch) -> Done:
        _check_lengths(op.account, op.batch_id)
        key = keys.text_pair(op.account, op.batch_id)
        raw = tx.get(b"batch_defs", key)
        old = _expect_rev(raw, op.expect_rev, records.unpack_batch_def, f"batch {op.batch_id!r}")
        new = records.unpack_batch_def(op.packed)
        new = replace(new, rev=(old.rev if old else 0) + 1, recipients=old.recipients if old else new.recipients)
        if old is not None and old.next_ms != new.next_ms and old.next_ms:
            tx.delete(b"batch_due", keys.u64(old.next_ms) + key)
        if new.next_ms:
            tx.put(b"batch_due", keys.u64(new.next_ms) + key)
        tx.put(b"batch_defs", key, records.pack_batch_def(new))
        return Done()

    def _batch_rows(self, tx: _Tx, op: BatchRows) -> Done:
        _check_lengths(op.account, op.batch_id)
        key = keys.text_pair(op.account, op.batch_id)
        raw = tx.get(b"batch_defs", key)
        if raw is None:
            raise UnknownMessage(f"no batch {op.batch_id!r}")
        b = records.unpack_batch_def(raw)
        if b.state != _OPEN_BATCH:
            raise WrongState(f"batch {op.batch_id!r} is {b.state}: recipients are added to a draft")
        if op.first < 0:
            raise InvalidField("first: must be 0 or more")
        for row in op.rows:
            records.unpack_batch_row(bytes(row))  # every row checked before the first is written
        cur = tx.txn.cursor(db=tx.db[b"batch_rows"])
        cur.putmulti(
            [(keys.batch_row_key(op.account, op.batch_id, op.first + i), bytes(row)) for i, row in enumerate(op.rows)]
        )
        end = op.first + len(op.rows)
        if end > b.recipients:
            tx.put(b"batch_defs", key, records.pack_batch_def(replace(b, recipients=end, rev=b.rev + 1)))
        return Done()

    def _set(self, tx: _Tx, db: bytes, key: bytes, present: bool, value: bytes = b"") -> Done:
        if present:
            tx.put(db, key, value)
        else:
            tx.delete(db, key)
        return Done()

    # --- number portability (keys.py: generations) ---------------------------------------------------

    def _ported_rows(self, tx: _Tx, op: PortedRows) -> Done:
        entries, deletes = _ported_entries(op)  # every row checked before the first is written
        prefix = keys.u32(op.generation)
        # In key order (the numbers' order: the prefix is the same, and str sorts faster than bytes), so
        # LMDB walks its pages forward. An import puts only: one C loop (putmulti) writes the chunk.
        numbers = sorted(entries)
        cur = tx.txn.cursor(db=tx.db[b"ported"])
        if not deletes:
            cur.putmulti(zip(_ported_keys(prefix, numbers), map(entries.__getitem__, numbers), strict=True))
            return Done()
        for n in numbers:
            value = entries[n]
            if value:
                cur.put(prefix + n.encode(), value)
            elif cur.set_key(prefix + n.encode()):
                cur.delete()
        return Done()

    def _ported_switch(self, tx: _Tx, op: PortedSwitch) -> Done:
        tx.put(b"ported_meta", keys.PORTED_CURRENT, _generation(op.generation, lowest=0))
        return Done()

    def _ported_purge(self, tx: _Tx, op: PortedPurge) -> PortedPurged:
        keep = _generation(op.keep, lowest=0)
        after = keys.u32(op.keep + 1) if op.keep < keys.MAX_GENERATION else None
        cur = tx.txn.cursor(db=tx.db[b"ported"])
        found = cur.first() and _other_generation(cur, keep, after)
        purged = 0
        while found and purged < op.limit:
            cur.delete()  # and moves to the next row
            purged += 1
            found = _other_generation(cur, keep, after)
        return PortedPurged(purged, found)

    # --- submit -------------------------------------------------------------------------------------

    def _submit(self, tx: _Tx, op: Submit) -> SubmitResult | ClientRefReused:
        _check_lengths(op.account, op.client_ref, op.batch, *(r.number for r in op.recipients))
        idem_key = keys.text_pair(op.account, op.client_ref) if op.client_ref else b""
        fingerprint = b""
        if idem_key:
            text = op.text
            if any(r.text for r in op.recipients):  # a template's: each recipient's own text
                text = "\0".join([text, *(r.text for r in op.recipients)])
            fingerprint = records.request_fingerprint(op.sender, text, [r.number for r in op.recipients])
            seen = tx.get(b"idem", idem_key)
            if seen is not None:
                return self._replay(tx, op, seen, fingerprint)
        outcomes = tuple(self._accept_one(tx, op, r) for r in op.recipients)
        ids = tuple(o.message_id for o in outcomes)
        if idem_key:
            tx.put(b"idem", idem_key, records.pack_idem(tx.now, ids, fingerprint))
            tx.put(b"idem_time", keys.u64(tx.now) + idem_key)
        tx.batch(op.account, op.batch).targeted += len(op.recipients)
        return SubmitResult(outcomes)

    def _replay(self, tx: _Tx, op: Submit, seen: bytes, fingerprint: bytes) -> SubmitResult | ClientRefReused:
        """The first submit's outcomes for a resend of it; refused (returned, nothing written) when the
        reference was used for another request: its ids would name other numbers' messages. A record
        written before fingerprints were kept has none and is taken as the same request."""
        stored = records.idem_fingerprint(seen)
        if stored and stored != fingerprint:
            return ClientRefReused(
                f"client_ref {op.client_ref!r} was used for another request (other recipients, sender or text)"
            )
        ids = records.unpack_idem(seen)[1]
        outcomes = []
        for msg_id in ids:
            f = self._cached(tx, msg_id)
            if f is None:
                state, reason = State.FAILED, "purged"
            else:  # Message.state and Message.reason, from the stored array
                state = _state_of(f[F_SEGMENTS])
                reason = _reason_of(f[F_SEGMENTS], state)
            outcomes.append(Outcome(msg_id, state, reason))
        return SubmitResult(tuple(outcomes), duplicate=True)

    def _accept_one(self, tx: _Tx, op: Submit, r: Recipient) -> Outcome:
        caps: list[str] = []
        bal = tx.balance(op.account)
        parts = r.parts if r.parts > 0 else 1
        if r.reject:
            reason, detail, route = r.reject, "", r.route
        elif bal is not None and bal[0] < parts:  # checked and reserved in one transaction: never overdrawn
            reason, detail, route = "insufficient_balance", f"needs {parts} parts, {bal[0]} available", r.route
        else:
            reason, detail, route, caps = self._stored_policy(tx, op, r)
        due = max(r.defer_until_ms, op.schedule_ms)
        now = tx.now
        if reason:
            state, due = State.REJECTED, 0
        elif due > now:
            state = State.DEFERRED
        else:
            state, due = State.ACCEPTED, now
        reserved = 0
        if bal is not None and not reason:
            reserved = parts
            bal[0] -= parts
            bal[1] += parts
            tx.move(op.account)[0] += parts
        # The stored array of Message(..., segments=(Segment(state, reason, updated_ms=now, due_ms=due),)).
        f: MessageFields = [
            VERSION, self._ids.next(now), op.account, op.batch, op.message_class, op.sender, r.number,
            r.text or op.text, op.receipt, op.client_ref, now, op.expires_ms,
            [[state, reason, "", "", 0, 0, False, now, due]], "", 0, 0, 0, [], list(route), caps, reserved,
        ]  # fmt: skip
        if op.batch:
            tx.batch(op.account, op.batch).valid += not reason
            tx.txn.put(keys.batch_ix_key(op.account, op.batch, f[F_ID]), b"", db=tx.db[b"batch_ix"])
        self._save(tx, f, None, None)
        return Outcome(f[F_ID], state, reason, detail)

    def _stored_policy(self, tx: _Tx, op: Submit, r: Recipient) -> tuple[str, str, tuple[str, ...], list[str]]:
        """Checks that read stored state, in the same transaction as the accept (ARCHITECTURE.md step 2), so
        two concurrent submits cannot both pass a cap of one: (reason, detail, the route without the carriers
        that blacklist the number, the cap counters it took a slot of and gives back if it fails)."""
        number = r.number
        reason, detail, route = _listed(tx.get, number, op.account, op.message_class, r.route, optout=op.check_optout)
        if reason:
            return reason, detail, route, []
        if not op.caps:
            return "", "", route, []
        now = tx.now
        key = number.encode()
        raw = tx.get(b"caps", key)
        counters = records.unpack_caps(raw) if raw else {}
        counting = []
        for cap in op.caps:  # every rule must have room before any counts it
            name = keys.cap_counter(cap.rule, cap.scope)
            window_ms = cap.window_seconds * 1000
            kept = counters.get(name)
            times = [t for t in kept[1] if t > now - window_ms] if kept else []
            if len(times) >= cap.limit:
                detail = f"rule {cap.rule}: at most {cap.limit} in {_span(cap.window_seconds)}"
                return "frequency_capped", detail, route, []
            counting.append((name, window_ms, times, cap.give_back))
        taken = []
        for name, window_ms, times, give_back in counting:
            times.append(now)
            counters[name] = [window_ms, times]
            if give_back:
                taken.append(name)
        tx.put(b"caps", key, records.pack_caps(counters))
        return "", "", route, taken

    def _give_back(self, tx: _Tx, f: MessageFields) -> None:
        """A message that ended failed frees the cap slots its accept took (CapCheck.give_back)."""
        key = f[F_RECIPIENT].encode()
        raw = tx.get(b"caps", key)
        if raw is not None:  # else swept: every window passed
            counters = records.unpack_caps(raw)
            created = f[F_CREATED_MS]
            for name in f[F_CAPS]:
                kept = counters.get(name)
                if kept is not None and created in kept[1]:
                    kept[1].remove(created)
                    if not kept[1]:
                        del counters[name]
            if counters:
                tx.put(b"caps", key, records.pack_caps(counters))
            else:
                tx.delete(b"caps", key)
        f[F_CAPS] = []

    # --- segment events -----------------------------------------------------------------------------

    def _cached(self, tx: _Tx, msg_id: int) -> MessageFields | None:
        """Message `msg_id` as this transaction sees it, its earlier ops' edits included (None: no such
        message). The transaction's own array: read it, never edit it."""
        f = tx.records.get(msg_id)
        if f is None:
            # A write transaction is begun with buffers=False: values are bytes, not memoryviews.
            raw: bytes | None = tx.txn.get(keys.u64(msg_id), db=tx.messages)  # type: ignore[assignment]
            if raw is None:
                return None
            f = tx.records[msg_id] = records.unpack_message_fields(raw)
        return f

    def _load(self, tx: _Tx, msg_id: int) -> MessageFields:
        """Message `msg_id` for an op to edit: a copy, so an op that fails after editing it leaves the
        transaction's record as it was (segment arrays are shared: ops replace them, never edit them)."""
        f = self._cached(tx, msg_id)
        if f is None:
            raise UnknownMessage(f"no message {msg_id}")
        return f.copy()

    def _prepare(self, tx: _Tx, op: Prepare) -> PrepareResult:
        if len(op.carrier) > _SHORT_PART:
            _check_lengths(op.carrier)
        f = self._load(tx, op.message_id)
        old = f[F_SEGMENTS]
        if any(s[S_STATE] not in DUE_STATES for s in old) or op.parts < 1:
            state = _state_of(old)
            raise WrongState(f"message {f[F_ID]} is {state.name}: cannot prepare {op.parts} parts")
        ref = f[F_CONCAT_REF]
        if op.concat and op.parts > 1 and not ref:
            ref = self._next_concat_ref(tx, f[F_RECIPIENT])
        s0 = records.segment_of(old[0])
        # The due time (and so the due-index key) stays as it was: see lifecycle._apply.
        due = s0.due_ms or tx.now
        queued = Segment(_QUEUED, "", "", "", 0, s0.attempts, s0.possible_duplicate, tx.now, due)
        first = queued
        if op.dispatch_bind:
            first, _ = advance(queued, Event(_DISPATCH, "", "", op.dispatch_bind), tx.now)
        sent = op.parts if not op.dispatch_parts else min(op.dispatch_parts, op.parts)
        f[F_CARRIER] = op.carrier
        f[F_CONCAT_REF] = ref
        self._save(tx, f, [list(first if i < sent else queued) for i in range(op.parts)], old)
        return PrepareResult(f[F_ID], ref)

    def _reroute(self, tx: _Tx, op: Reroute) -> AdvanceResult:
        f = self._load(tx, op.message_id)
        old = f[F_SEGMENTS]
        if f[F_CARRIER] != op.carrier or any(s[S_STATE] not in DUE_STATES for s in old):
            return AdvanceResult(f[F_ID], _state_of(old), ignored=True)
        attempts = max(s[5] for s in old)
        duplicate = any(s[S_DUPLICATE] for s in old)
        first = Segment(_ACCEPTED, "", "", "", 0, attempts, duplicate, tx.now, tx.now)
        f[F_CARRIER] = ""
        f[F_TRAIL] = [*f[F_TRAIL], [op.carrier, op.reason]]
        state = self._save(tx, f, [list(first)], old)
        return AdvanceResult(f[F_ID], state)

    def _overdue(self, tx: _Tx, op: Overdue) -> SweepResult:
        cur = tx.txn.cursor(db=tx.db[b"deadline"])
        due = []
        for key, _ in _take(cur, op.limit):
            at_ms, msg_id = keys.split_time_key(key)
            if at_ms > tx.now:
                break
            due.append((key, msg_id))
        for key, msg_id in due:
            f = self._cached(tx, msg_id)
            if f is None:  # purged meanwhile (indexes go with records, so this is a bug's leftover)
                tx.txn.delete(key, db=tx.db[b"deadline"])
                continue
            f = f.copy()
            segs = f[F_SEGMENTS].copy()
            expires = f[F_EXPIRES_MS]
            late = [i for i, s in enumerate(segs) if s[S_STATE] in AWAITING_STATES and s[S_DUE_MS] <= tx.now]
            stale = [i for i, s in enumerate(segs) if expires and expires <= tx.now and s[S_STATE] in DUE_STATES]
            if late:
                self._step(tx, f, segs, late, _NO_RECEIPT)
            if stale:
                self._step(tx, f, segs, stale, _EXPIRED)
            if late or stale:
                self._update(tx, f, segs)  # moves or removes the deadline key
            else:  # nothing overdue after all: put the key where the record says
                tx.txn.delete(key, db=tx.db[b"deadline"])
                if d := _deadline_of_fields(expires, segs):
                    tx.txn.put(keys.time_key(d, msg_id), b"", db=tx.db[b"deadline"])
        return SweepResult(len(due), 0, 0, len(due) == op.limit)

    def _next_concat_ref(self, tx: _Tx, destination: str) -> int:
        # TS 23.040 9.2.3.24.1: the reference must differ between concatenated messages that can be in
        # flight to the same destination at once; a per-destination counter (1..65535) guarantees it.
        key = destination.encode()
        raw: bytes | None = tx.txn.get(key, db=tx.concat)  # type: ignore[assignment]
        ref = keys.from_u16(raw) % 0xFFFF + 1 if raw else 1
        tx.txn.put(key, keys.u16(ref), db=tx.concat)
        return ref

    def _advance(self, tx: _Tx, op: Advance) -> AdvanceResult:
        event = op.event
        if len(event.carrier_id) > _SHORT_PART:
            _check_lengths(event.carrier_id)
        f = self._load(tx, op.message_id)
        old = f[F_SEGMENTS]
        seg = op.segment
        if seg is None:
            targets: Sequence[int] = [i for i, s in enumerate(old) if s[S_STATE] not in FINAL_STATES]
        elif 0 <= seg < len(old):
            targets = (seg,)
        else:
            raise UnknownMessage(f"message {f[F_ID]} has no segment {seg}")
        segs = old.copy()
        ignored = self._step(tx, f, segs, targets, event)
        early = False
        if event.kind is _SUBMIT_OK and not ignored and seg is not None:
            early = self._index_carrier_id(tx, f, segs, seg, event.carrier_id)
        state = self._update(tx, f, segs)
        return AdvanceResult(f[F_ID], state, ignored, early)

    def _step(self, tx: _Tx, f: MessageFields, segs: _Segs, targets: Sequence[int], event: Event) -> bool:
        """Advance `segs[i]` (stored arrays, replaced, never edited) for each target; True if ignored.
        `f` is the op's copy of the record: a delivered part is charged to its account's balance."""
        ignored = False
        billed = delivered = 0
        for i in targets:
            seg, effects = advance(records.segment_of(segs[i]), event, tx.now)
            if seg.state is _DELIVERED and segs[i][S_STATE] != _DELIVERED:
                delivered += 1
            segs[i] = list(seg)
            for effect in effects:
                if isinstance(effect, Billed):
                    billed += 1
                elif isinstance(effect, Ignored):
                    ignored = True
        # Only once every target advanced: an InvalidTransition above leaves no trace.
        if billed:  # parts a carrier took (and bills the gateway for)
            tx.batch(f[F_ACCOUNT], f[F_BATCH]).billed += billed
        if delivered:
            self._charge(tx, f, delivered)
        return ignored

    def _charge(self, tx: _Tx, f: MessageFields, parts: int) -> None:
        """Delivered parts are charged to the account's balance, from the message's reservation first (a
        text split into more parts than its accept reserved is charged the rest from the balance)."""
        account = f[F_ACCOUNT]
        tx.batch(account, f[F_BATCH]).charged += parts
        bal = tx.balance(account)
        if bal is None:
            f[F_RESERVED] = 0
            return
        from_reserve = min(parts, f[F_RESERVED])
        f[F_RESERVED] -= from_reserve
        bal[1] -= from_reserve
        bal[0] -= parts - from_reserve
        bal[2] += parts
        tx.move(account)[1] += parts

    def _release(self, tx: _Tx, f: MessageFields) -> None:
        """An ended message gives back what it reserved and was not charged."""
        parts = f[F_RESERVED]
        f[F_RESERVED] = 0
        bal = tx.balance(f[F_ACCOUNT])
        if bal is None:
            return
        bal[1] -= parts
        bal[0] += parts
        tx.move(f[F_ACCOUNT])[2] += parts

    def _index_carrier_id(self, tx: _Tx, f: MessageFields, segs: _Segs, seg: int, carrier_id: str) -> bool:
        """Index the carrier's id for this segment; apply a receipt that was waiting for it."""
        key = keys.text_pair(f[F_CARRIER], carrier_id)
        tx.txn.put(key, keys.seg_key(f[F_ID], seg), db=tx.carrier_ix)
        if not self._early_possible:
            return False
        raw = tx.get(b"early", key)
        if raw is None:
            return False
        claimed = _claim(records.unpack_early(raw, carrier_id), carrier_id)
        self._drop_early(tx, f[F_CARRIER], claimed)
        self._step(tx, f, segs, (seg,), Event(claimed[0].kind, claimed[0].reason))
        for again in claimed[1:]:  # the same receipt repeated, or an intermediate one and then the final
            try:
                self._step(tx, f, segs, (seg,), Event(again.kind, again.reason))
            except InvalidTransition:
                continue
        return True

    def _receipt(self, tx: _Tx, op: Receipt) -> ReceiptResult:
        """Match a receipt by its candidate keys (see ops.Receipt): one index lookup when the first one
        finds a segment waiting for its receipt, as nearly every receipt does."""
        if len(op.carrier) + len(op.carrier_id) > _SHORT_PART:
            _check_lengths(op.carrier, op.carrier_id)
        for alternative in op.alternatives:
            if len(op.carrier) + len(alternative) > _SHORT_PART:
                _check_lengths(op.carrier, alternative)
        # Validate now: an early receipt is applied later, inside another op that has already written.
        if op.kind not in _RECEIPT_KINDS:
            raise InvalidTransition(State.SUBMITTED, op.kind)
        if op.reason and not is_reason(op.reason):
            raise InvalidReason(op.kind, op.reason)
        found = self._find_segment(tx, op.carrier, op.carrier_id)
        if found is not None and found[2]:
            return self._apply_receipt(tx, op, found[0], found[1])
        for alternative in op.alternatives:
            other = self._find_segment(tx, op.carrier, alternative)
            if other is not None and other[2]:
                return self._apply_receipt(tx, op, other[0], other[1])
        if found is not None:  # the first candidate's segment has its outcome: a repeated receipt
            return self._apply_receipt(tx, op, found[0], found[1])
        return self._store_early(tx, op)

    def _find_segment(self, tx: _Tx, carrier: str, carrier_id: str) -> tuple[int, int, bool] | None:
        """(message id, segment, whether it waits for a receipt) indexed under this carrier id, or None."""
        where: bytes | None = tx.txn.get(keys.text_pair(carrier, carrier_id), db=tx.carrier_ix)  # type: ignore[assignment]
        if where is None:
            return None
        msg_id, seg = keys.split_seg_key(where)
        f = self._cached(tx, msg_id)
        if f is None or seg >= len(f[F_SEGMENTS]):
            return None  # an index entry no record backs: nothing a receipt can change
        return msg_id, seg, f[F_SEGMENTS][seg][S_STATE] in _AWAITING

    def _apply_receipt(self, tx: _Tx, op: Receipt, msg_id: int, seg: int) -> ReceiptResult:
        f = self._load(tx, msg_id)
        segs = f[F_SEGMENTS].copy()
        event = Event(op.kind, op.reason) if op.reason else _RECEIPT_EVENTS[op.kind]
        ignored = self._step(tx, f, segs, (seg,), event)
        ended = None
        if not ignored:  # an ignored receipt left the segment as it was: nothing to write
            was_final = _state_of(f[F_SEGMENTS]).is_final
            state = self._update(tx, f, segs)
            ended = state if state.is_final and not was_final else None
        return ReceiptResult(True, msg_id, seg, _STATES[segs[seg][S_STATE]], ignored=ignored, ended=ended)

    def _store_early(self, tx: _Tx, op: Receipt) -> ReceiptResult:
        """Keep a receipt nothing matched under each of its candidate keys, so the submit_sm_resp that gives
        any of them claims it (_index_carrier_id), and in arrival order for the sweep (_expire_early)."""
        ids = (op.carrier_id, *op.alternatives)
        entry = records.EarlyReceipt(
            op.kind, op.reason, tx.now, (op.raw_id or op.carrier_id)[:MAX_KEY_PART_BYTES // 4], ids,
            op.text[:UNMATCHED_TEXT_BYTES],
        )  # fmt: skip
        rows = []
        for carrier_id in ids:  # read every row before writing any: a corrupt one fails the op cleanly
            key = keys.text_pair(op.carrier, carrier_id)
            raw = tx.get(b"early", key)
            rows.append((key, records.unpack_early(raw, carrier_id) if raw else []))
        self._early_possible = True  # before the write: see __init__
        for key, entries in rows:
            entries.append(entry)
            tx.put(b"early", key, records.pack_early(entries))
        tx.put(b"early_time", keys.timed_pair(tx.now, op.carrier, op.carrier_id))
        return ReceiptResult(matched=False, early=True)

    def _forget_early(self, tx: _Tx, op: ForgetEarly) -> Done:
        raw = tx.get(b"early", keys.text_pair(op.carrier, op.carrier_id)) if self._early_possible else None
        if raw is not None:
            gone = [e for e in records.unpack_early(raw, op.carrier_id) if e.keys[0] == op.carrier_id]
            self._drop_early(tx, op.carrier, gone)
        return Done()

    def _drop_early(self, tx: _Tx, carrier: str, gone: Sequence[records.EarlyReceipt]) -> None:
        """Remove the receipts `gone` from every early row that lists them, and their arrival-order keys."""
        for carrier_id in dict.fromkeys(k for e in gone for k in e.keys):
            key = keys.text_pair(carrier, carrier_id)
            raw = tx.get(b"early", key)
            if raw is None:
                continue
            rest = [e for e in records.unpack_early(raw, carrier_id) if e not in gone]
            if rest:
                tx.put(b"early", key, records.pack_early(rest))
            else:
                tx.delete(b"early", key)
        for e in gone:
            first = e.keys[0]
            raw = tx.get(b"early", keys.text_pair(carrier, first))
            shared = raw is not None and any(
                o.at_ms == e.at_ms and o.keys[0] == first for o in records.unpack_early(raw, first)
            )
            if not shared:
                tx.delete(b"early_time", keys.timed_pair(e.at_ms, carrier, first))

    # --- the one place indexes change ---------------------------------------------------------------
    #
    # Records are handled as their stored arrays (records.MessageFields): a receipt edits three fields
    # of the transaction's copy, without building a Message and its Segments just to take them apart.
    # Indexes change op by op; the record itself is packed and put once, by _flush_messages.

    def _update(self, tx: _Tx, f: MessageFields, segs: _Segs) -> State:
        """Store the message `f` (as loaded) with new segments `segs` (the per-receipt hot path)."""
        return self._save(tx, f, segs, f[F_SEGMENTS])

    def _save(self, tx: _Tx, f: MessageFields, segs: _Segs | None, old: _Segs | None) -> State:
        """Report, reindex and write message `f`: its segments become `segs` (None: keep f's own);
        `old` is the segments as this op found them (None: a new message). Returns the new state."""
        if segs is None:
            segs = f[F_SEGMENTS]
        state = _state_of(segs)
        old_state = None if old is None else _state_of(old)
        old_final_ms = f[F_FINAL_MS]
        # A final message whose reason changes (a part of a long message upgraded by a late receipt) is
        # reported too, so that its batch counters stay equal to a recount.
        if state is not old_state or (
            old_final_ms and old is not None and _reason_of(segs, state) != _reason_of(old, state)
        ):
            self._report(tx, f, segs, state, old, old_state)
        f[F_SEGMENTS] = segs
        self._write(tx, f, old, old_final_ms)
        return state

    def _write(self, tx: _Tx, f: MessageFields, old: _Segs | None, old_final_ms: int) -> None:
        msg_id = f[F_ID]
        segs = f[F_SEGMENTS]
        expires = f[F_EXPIRES_MS]
        before, after = _deadline_of_fields(expires, old), _deadline_of_fields(expires, segs)
        if before != after:
            deadline_db = tx.db[b"deadline"]
            if before:
                tx.txn.delete(keys.time_key(before, msg_id), db=deadline_db)
            if after:
                tx.txn.put(keys.time_key(after, msg_id), b"", db=deadline_db)
        if old is not None and len(old) == len(segs):
            self._reindex_segments(tx, msg_id, old, segs)
        else:  # a new message, or a split
            self._reindex_due(tx, msg_id, _due_of_fields(old), _due_of_fields(segs))
            self._reindex_inflight(tx, msg_id, old, segs)
        if old is None:
            tx.txn.put(keys.recipient_key(f[F_RECIPIENT], msg_id), b"", db=tx.recipient)
        if f[F_FINAL_MS] and not old_final_ms:
            tx.txn.put(keys.time_key(f[F_FINAL_MS], msg_id), b"", db=tx.finals)
        # The record itself is put once per transaction, by _flush_messages.
        tx.records[msg_id] = f
        if msg_id not in tx.dirty:
            tx.dirty[msg_id] = old is None

    def _flush_messages(self, tx: _Tx) -> None:
        """Put every record the transaction changed, in id order: stored ones, then the new ones, whose ids
        are above every stored id (keys.IdClock), appended."""
        u64, pack, recs, dirty = keys.u64, records.pack_message_fields, tx.records, tx.dirty
        ids = sorted(dirty)
        stored = [(u64(i), pack(recs[i])) for i in ids if not dirty[i]]
        new = [(u64(i), pack(recs[i])) for i in ids if dirty[i]]
        cur = tx.txn.cursor(db=tx.messages)
        if stored:
            cur.putmulti(stored)
        # An append below the last key is skipped without an error (MDB_KEYEXIST): check none was.
        if new and cur.putmulti(new, append=True)[1] != len(new):
            raise StoreError("a new message id is not above the stored ones")

    def _reindex_segments(self, tx: _Tx, msg_id: int, old: _Segs, new: _Segs) -> None:
        """Due and inflight upkeep when no segment was added (every op but a split): only the segments an
        op replaced can move either index (ops replace segment arrays, never edit them)."""
        due_may_move = False
        for i, s in enumerate(new):
            was = old[i]
            if was is s:
                continue
            before, now = was[S_STATE], s[S_STATE]
            # The due key is the earliest due time of the waiting segments (receipt deadlines included):
            # only a waiting one moves it.
            if before in DUE_STATES or now in DUE_STATES:
                due_may_move = True
            if before == _SUBMITTING:
                if now != _SUBMITTING:
                    tx.txn.delete(keys.seg_key(msg_id, i), db=tx.inflight)
            elif now == _SUBMITTING:
                tx.txn.put(keys.seg_key(msg_id, i), b"", db=tx.inflight)
        if due_may_move:
            self._reindex_due(tx, msg_id, _due_of_fields(old), _due_of_fields(new))

    def _reindex_due(self, tx: _Tx, msg_id: int, before: int, after: int) -> None:
        if before == after:
            return
        if before:
            tx.txn.delete(keys.time_key(before, msg_id), db=tx.due)
        if after:
            tx.txn.put(keys.time_key(after, msg_id), b"", db=tx.due)

    def _reindex_inflight(self, tx: _Tx, msg_id: int, old: _Segs | None, new: _Segs) -> None:
        """Inflight upkeep for a new message or a split: segment i is indexed while it is submitting."""
        was = _inflight_of_fields(old)
        for i, s in enumerate(new):
            if s[S_STATE] != _SUBMITTING:
                continue
            if i in was:
                was.discard(i)
            else:
                tx.txn.put(keys.seg_key(msg_id, i), b"", db=tx.inflight)
        for i in was:  # submitting before, not now
            tx.txn.delete(keys.seg_key(msg_id, i), db=tx.inflight)

    def _report(
        self, tx: _Tx, f: MessageFields, segs: _Segs, state: State, old: _Segs | None,
        old_state: State | None,
    ) -> None:  # fmt: skip
        """The message moved from `old_state` to `state`: log the events upstream apps care about, keep
        batch counters (in this transaction) and set f's reported bits and final time."""
        batch = f[F_BATCH]
        delta = tx.batch(f[F_ACCOUNT], batch)
        final = state in FINAL_STATES
        # A receipt that raced ahead of its submit_sm_resp takes the message from "submitting" straight to
        # final in one transaction; a carrier still accepted it, and the app hears so before the outcome.
        if not f[F_REPORTED] & REPORTED_SUBMITTED and (
            state is _SUBMITTED or (final and any(s[S_CARRIER_ID] for s in segs))
        ):
            delta.submitted += 1
            self._log_message(tx, f, EventKind.SUBMITTED, "")
            f[F_REPORTED] |= REPORTED_SUBMITTED
        if not final:
            return
        reason = _reason_of(segs, state)
        if f[F_RESERVED]:
            self._release(tx, f)
        if old is None:  # refused at accept
            if batch:
                delta.refused[reason] = delta.refused.get(reason, 0) + 1
                self._index_outcome(tx, f, _OUT_REFUSED, 0)
            self._log_message(tx, f, EventKind.FAILED, reason)
            f[F_FINAL_MS] = f[F_FINAL_MS] or tx.now
            return
        carrier = f[F_CARRIER]
        was_final = old_state is not None and old_state in FINAL_STATES
        if was_final:  # an upgrade, to delivered or (a part of a long message) to another failure
            delta.fail(_reason_of(old, old_state), carrier, -1)  # type: ignore[arg-type]
        else:
            delta.ended += 1
            delta.ended_submitted += bool(f[F_REPORTED] & REPORTED_SUBMITTED)
        outcome = _OUT_DELIVERED if state is _DELIVERED else _OUT_FAILED
        if batch:
            self._index_outcome(tx, f, outcome, _OUT_FAILED if was_final else 0)
        if state is _DELIVERED:
            delta.delivered += 1
            self._log_message(tx, f, EventKind.DELIVERED, reason)
        else:
            delta.fail(reason, carrier)
            if not was_final:  # the application heard "failed" once already; status has the new reason
                self._log_message(tx, f, EventKind.FAILED, reason)
            if f[F_CAPS]:
                self._give_back(tx, f)
        f[F_FINAL_MS] = f[F_FINAL_MS] or tx.now

    def _index_outcome(self, tx: _Tx, f: MessageFields, outcome: int, old: int) -> None:
        """A batch message's outcome in the batch_out index (moved when an upgrade changes it)."""
        account, batch, msg_id = f[F_ACCOUNT], f[F_BATCH], f[F_ID]
        db = tx.db[b"batch_out"]
        if old and old != outcome:
            tx.txn.delete(keys.batch_out_key(account, batch, old, msg_id), db=db)
        if old != outcome:
            tx.txn.put(keys.batch_out_key(account, batch, outcome, msg_id), b"", db=db)

    def _log_message(self, tx: _Tx, f: MessageFields, kind: EventKind, reason: str) -> None:
        seq = tx.seq = tx.seq + 1
        duplicate = False
        for s in f[F_SEGMENTS]:
            if s[S_DUPLICATE]:
                duplicate = True
                break
        packed = records.pack_event_fields(
            seq, tx.now, kind, f[F_ACCOUNT], f[F_ID], f[F_BATCH], f[F_CLIENT_REF], f[F_RECIPIENT], f[F_SENDER],
            reason, "", f[F_CARRIER], duplicate,
        )  # fmt: skip
        tx.txn.put(keys.u64(seq), packed, db=tx.events, append=True)

    def _log(self, tx: _Tx, kind: EventKind, *args: Any, **kwargs: Any) -> int:
        """Append to the event log; `args` / `kwargs` are LogEvent's fields after `kind`."""
        tx.seq += 1
        packed = records.pack_event_fields(tx.seq, tx.now, kind, *args, **kwargs)
        tx.txn.put(keys.u64(tx.seq), packed, db=tx.events, append=True)
        return tx.seq

    def _flush_batches(self, tx: _Tx) -> None:
        for (account, batch_id), d in tx.batches.items():
            if not batch_id:  # a submit without a batch id has no counters
                continue
            key = keys.text_pair(account, batch_id)
            raw = tx.get(b"batches", key)
            b = records.unpack_batch(raw) if raw else BatchCounters()
            tx.put(b"batches", key, records.pack_batch(BatchCounters(
                b.targeted + d.targeted, b.valid + d.valid, b.submitted + d.submitted,
                b.delivered + d.delivered, _added(dict(b.failed), d.failed), b.billed + d.billed,
                _added(dict(b.refused), d.refused), _added(dict(b.failed_at), d.failed_at), b.ended + d.ended,
                b.ended_submitted + d.ended_submitted, b.charged + d.charged,
            )))  # fmt: skip

    def _flush_books(self, tx: _Tx) -> None:
        """Each balance this transaction moved, and one statement row a second of what moved in it."""
        for account, moved in tx.moves.items():
            bal = tx.balances.get(account)
            if bal is not None:
                tx.put(b"balances", account.encode(), records.pack_balance(*bal))
            reserved, charged, released, topped_up, note = moved
            key = keys.statement_key(account, tx.now)
            raw = tx.get(b"statement", key)
            e = records.unpack_statement(raw) if raw else records.StatementEntry(tx.now)
            tx.put(b"statement", key, records.pack_statement(records.StatementEntry(
                e.at_ms, e.reserved + reserved, e.charged + charged, e.released + released,
                e.topped_up + topped_up, "; ".join(n for n in (e.note, note) if n)[:_MAX_NOTE],
            )))  # fmt: skip

    # --- recovery and retention ---------------------------------------------------------------------

    def recover(self) -> RecoveryReport:
        """Segments left in "submitting": resend (at-least-once, flagged possible duplicate) or mark unknown
        (at-most-once), per message class. Walks the small inflight index in short transactions."""
        resent = unknown = 0
        while True:
            with self._env.begin() as txn:
                cur = txn.cursor(db=self._dbs[b"inflight"])
                batch = [keys.split_seg_key(bytes(k)) for k, _ in _take(cur, self.cfg.sweep_batch)]
            if not batch:
                return RecoveryReport(resent, unknown)
            ops: list[Op] = []
            for msg_id, seg in batch:
                msg = self.get(msg_id)
                mode = self.cfg.recovery_for(msg.message_class) if msg else Recovery.AT_MOST_ONCE
                kind = Ev.RESEND if mode is Recovery.AT_LEAST_ONCE else Ev.LOST
                resent += kind is Ev.RESEND
                unknown += kind is Ev.LOST
                reason = "unknown_after_timeout" if kind is Ev.LOST else ""
                timeout = self.cfg.receipt_timeouts.get(msg.carrier) if msg and kind is Ev.LOST else None
                until = self._clock() + int(timeout * 1000) if timeout else 0  # 0: lifecycle's default
                ops.append(Advance(msg_id, seg, Event(kind, reason, until_ms=until)))
            for result in self.apply(ops):
                if isinstance(result, GatewayError):
                    raise result

    def _sweep(self, tx: _Tx, op: Sweep) -> SweepResult:
        cutoff = tx.now - int(self.cfg.retention_days * DAY_MS)
        purged = 0
        cur = tx.txn.cursor(db=tx.db[b"finals"])
        for key, _ in list(_take(cur, op.limit)):
            final_ms, msg_id = keys.split_time_key(bytes(key))
            if final_ms >= cutoff:
                break
            self._purge_message(tx, msg_id)
            tx.delete(b"finals", bytes(key))
            purged += 1
        events = self._trim_events(tx, cutoff, op.limit)
        other = self._trim_prefix_time(tx, b"idem_time", cutoff, op.limit, b"idem")
        early_cutoff = tx.now - int(self.cfg.early_receipt_seconds * 1000)
        other += self._trim_early_and_freq(tx, cutoff, early_cutoff, op.limit)
        expired = self._expire_early(tx, early_cutoff, op.limit)
        trimmed = self._trim_unmatched(tx, cutoff, op.limit)
        batches = self._trim_batches(tx, cutoff, op.limit)
        other += expired + trimmed + batches
        more = max(purged, events, expired, trimmed, batches) >= op.limit
        return SweepResult(purged, events, other, more)

    def _purge_message(self, tx: _Tx, msg_id: int) -> None:
        f = self._cached(tx, msg_id)
        if f is None:
            return
        for seg in f[F_SEGMENTS]:
            if seg[S_CARRIER_ID]:
                key = keys.text_pair(f[F_CARRIER], seg[S_CARRIER_ID])
                where = tx.get(b"carrier_ix", key)
                if where is not None and keys.split_seg_key(where)[0] == msg_id:
                    tx.delete(b"carrier_ix", key)
        tx.delete(b"recipient", keys.recipient_key(f[F_RECIPIENT], msg_id))
        if f[F_BATCH]:
            account, batch = f[F_ACCOUNT], f[F_BATCH]
            tx.delete(b"batch_ix", keys.batch_ix_key(account, batch, msg_id))
            for outcome in keys.OUTCOMES.values():
                tx.delete(b"batch_out", keys.batch_out_key(account, batch, outcome, msg_id))
        # Gone from the transaction's view too: a later op on it finds no message, and nothing puts it back.
        del tx.records[msg_id]
        tx.dirty.pop(msg_id, None)
        tx.delete(b"messages", keys.u64(msg_id))

    def _trim_events(self, tx: _Tx, cutoff: int, limit: int) -> int:
        cur = tx.txn.cursor(db=tx.db[b"events"])
        # The newest event always stays: the next start takes the event sequence from it, and a sequence
        # handed out again would hide new events from a subscriber whose cursor is past it.
        newest = bytes(cur.key()) if cur.last() else b""
        n = 0
        for key, value in list(_take(cur, limit)):
            if key == newest or records.unpack_event(bytes(value)).at_ms >= cutoff:
                break
            tx.delete(b"events", bytes(key))
            n += 1
        return n

    def _trim_prefix_time(self, tx: _Tx, db: bytes, cutoff: int, limit: int, target: bytes) -> int:
        cur = tx.txn.cursor(db=tx.db[db])
        n = 0
        for key, _ in list(_take(cur, limit)):
            if keys.from_u64(bytes(key[:8])) >= cutoff:
                break
            tx.delete(target, bytes(key[8:]))
            tx.delete(db, bytes(key))
            n += 1
        return n

    def _trim_early_and_freq(self, tx: _Tx, cutoff: int, early_cutoff: int, limit: int) -> int:
        # Both tables are small (early receipts wait seconds; windows are per recipient and short), so a
        # bounded scan from the start each sweep is enough. Early receipts normally leave by
        # _expire_early; this scan catches rows stored before the arrival-order index existed.
        n = 0
        cur = tx.txn.cursor(db=tx.db[b"early"])
        for key, _ in list(_take(cur, limit)):
            raw = tx.get(b"early", key)  # as the moves before it left it
            if raw is None:
                continue
            carrier, _, carrier_id = bytes(key).decode().partition("\0")
            entries = records.unpack_early(raw, carrier_id)
            n += self._to_unmatched(tx, carrier, [e for e in entries if e.at_ms < early_cutoff])
        cur = tx.txn.cursor(db=tx.db[b"freq"])  # windows of the fixed-window cap before caps: all stale
        for key, _ in list(_take(cur, limit)):
            if keys.from_u64(bytes(key[-8:])) < cutoff:
                tx.delete(b"freq", bytes(key))
                n += 1
        return n + self._trim_caps(tx, limit)

    def _trim_caps(self, tx: _Tx, limit: int) -> int:
        """Cap counters whose every accept time left its window, `limit` rows a sweep, resuming where the last
        sweep stopped (the table holds a row per recipient and rule: too many to scan whole each time)."""
        cur = tx.txn.cursor(db=tx.db[b"caps"])
        if not cur.set_range(self._caps_swept):
            self._caps_swept = b""
            return 0
        n = 0
        for _ in range(limit):
            counters = records.unpack_caps(bytes(cur.value()))
            live = {name: c for name, c in counters.items() if c[1] and c[1][-1] > tx.now - c[0]}
            if not live:
                cur.delete()  # and on to the next row
                n += 1
                moved = bool(cur.key())
            else:
                if len(live) < len(counters):
                    cur.put(cur.key(), records.pack_caps(live))
                moved = cur.next()
            if not moved:  # the end: the next sweep starts over
                self._caps_swept = b""
                return n
        self._caps_swept = bytes(cur.key())
        return n

    def _trim_batches(self, tx: _Tx, cutoff: int, limit: int) -> int:
        """The recipients (batch rows) of batches that ended before `cutoff` (every run sent, or stopped, or
        failed, and not changed since), then their definitions: `limit` rows a sweep, resuming where the last
        stopped. Their counters stay: a report of an old batch still reads them."""
        cur = tx.txn.cursor(db=tx.db[b"batch_defs"])
        if not cur.set_range(self._batches_swept):
            self._batches_swept = b""
            return 0
        n = 0
        while n < limit:
            key = bytes(cur.key())
            b = records.unpack_batch_def(bytes(cur.value()))
            if b.state in _ENDED_BATCH and b.updated_ms < cutoff:
                account, batch_id = key.decode().split("\0", 1)
                rows = tx.txn.cursor(db=tx.db[b"batch_rows"])
                prefix = keys.batch_prefix(account, batch_id)
                found = rows.set_range(prefix)
                while found and n < limit and bytes(rows.key()).startswith(prefix):
                    found = rows.delete()  # and on to the next row
                    n += 1
                if n >= limit:
                    self._batches_swept = key
                    return n
                cur.delete()
                n += 1
                moved = bool(cur.key())
            else:
                moved = cur.next()
            if not moved:
                self._batches_swept = b""
                return n
        self._batches_swept = bytes(cur.key())
        return n

    def _expire_early(self, tx: _Tx, cutoff: int, limit: int) -> int:
        """Move receipts that waited since before `cutoff` (StoreConfig.early_receipt_seconds) from the early
        table to the unmatched one, oldest first, at most `limit` arrival keys."""
        n = 0
        cur = tx.txn.cursor(db=tx.db[b"early_time"])
        for key, _ in list(_take(cur, limit)):
            at_ms, carrier, first = keys.split_timed_pair(bytes(key))
            if at_ms >= cutoff:
                break
            raw = tx.get(b"early", keys.text_pair(carrier, first))
            if raw is not None:
                stale = [e for e in records.unpack_early(raw, first) if e.at_ms < cutoff and e.keys[0] == first]
                n += self._to_unmatched(tx, carrier, stale)
            tx.delete(b"early_time", bytes(key))
        return n

    def _to_unmatched(self, tx: _Tx, carrier: str, gone: list[records.EarlyReceipt]) -> int:
        for e in gone:
            key = keys.timed_pair(e.at_ms, carrier, e.raw_id)
            tx.put(b"unmatched", key, records.pack_unmatched(carrier, e, tx.now))
        if gone:
            self._drop_early(tx, carrier, gone)
        return len(gone)

    def _trim_unmatched(self, tx: _Tx, cutoff: int, limit: int) -> int:
        n = 0
        cur = tx.txn.cursor(db=tx.db[b"unmatched"])
        for key, _ in list(_take(cur, limit)):
            if keys.from_u64(bytes(key[:8])) >= cutoff:
                break
            tx.delete(b"unmatched", bytes(key))
            n += 1
        return n

    # --- reading ------------------------------------------------------------------------------------

    def _read(self) -> lmdb.Transaction:
        """A read transaction (callers hold self._lock). When the writer process grew the map, LMDB
        refuses new transactions here until this process adopts the new size."""
        try:
            return self._env.begin(buffers=False)
        except lmdb.MapResizedError:
            self._env.set_mapsize(0)
            return self._env.begin(buffers=False)

    def get(self, msg_id: int) -> Message | None:
        with self._lock, self._read() as txn:
            raw = txn.get(keys.u64(msg_id), db=self._dbs[b"messages"])
        return records.unpack_message(_b(raw)) if raw is not None else None

    def get_many(self, msg_ids: Sequence[int]) -> list[Message | None]:
        """`get` of each id, in one read transaction (the scheduler reads a batch at a time)."""
        with self._lock, self._read() as txn:
            db = self._dbs[b"messages"]
            raw = [txn.get(keys.u64(i), db=db) for i in msg_ids]
        return [records.unpack_message(_b(r)) if r is not None else None for r in raw]

    def due(self, now_ms: int, after: bytes = b"", limit: int = 1000) -> list[DueEntry]:
        """Messages due by `now_ms`, in due order, after the cursor key `after` (streamed, never whole)."""
        out: list[DueEntry] = []
        with self._lock, self._read() as txn:
            cur = txn.cursor(db=self._dbs[b"due"])
            found = cur.set_range(after + b"\0") if after else cur.first()
            while found and len(out) < limit:
                key = _b(cur.key())
                due_ms, msg_id = keys.split_time_key(key)
                if due_ms > now_ms:
                    break
                out.append(DueEntry(key, due_ms, msg_id))
                found = cur.next()
        return out

    def next_deadline_ms(self) -> int | None:
        """The earliest deadline of a live message (store.Overdue ends it once passed), None if none."""
        with self._lock, self._read() as txn:
            cur = txn.cursor(db=self._dbs[b"deadline"])
            return keys.split_time_key(_b(cur.key()))[0] if cur.first() else None

    def next_due_ms(self) -> int | None:
        """When the earliest waiting message becomes due (for the scheduler's sleep)."""
        with self._lock, self._read() as txn:
            cur = txn.cursor(db=self._dbs[b"due"])
            return keys.split_time_key(_b(cur.key()))[0] if cur.first() else None

    def events(self, after_seq: int, limit: int = 1000) -> list[LogEvent]:
        """Event log entries with seq > after_seq (an upstream subscriber's cursor)."""
        with self._lock, self._read() as txn:
            cur = txn.cursor(db=self._dbs[b"events"])
            found = cur.set_range(keys.u64(after_seq + 1))
            out: list[LogEvent] = []
            while found and len(out) < limit:
                out.append(records.unpack_event(_b(cur.value())))
                found = cur.next()
        return out

    def event_rows(self, after_seq: int, limit: int = 1000) -> list[records.EventFields]:
        """`events()` as stored arrays (records.EventFields), for readers that convert them in bulk."""
        with self._lock, self._read() as txn:
            cur = txn.cursor(db=self._dbs[b"events"])
            if not cur.set_range(keys.u64(after_seq + 1)):
                return []
            raw = list(islice(cur.iternext(keys=False, values=True), limit))
        return [records.unpack_event_fields(_b(v)) for v in raw]

    def last_seq(self) -> int:
        return self._seq

    def now_ms(self) -> int:
        """The store's clock (the time of the next write transaction)."""
        return self._clock()

    def logged_seq(self) -> int:
        """The last event committed, read from the log itself: a reader may have read (and sent on) events
        the writer process committed before its reply taught `last_seq` of them."""
        with self._lock, self._read() as txn:
            seq = self._last_key_int(txn, b"events")
        self.observe_seq(seq)
        return self._seq

    def observe_seq(self, seq: int) -> None:
        """The writer process committed events up to `seq` (a reader store learns it from the reply)."""
        self._seq = max(self._seq, seq)

    def cursor(self, account: str) -> int:
        """The last event sequence the account acknowledged (0: never)."""
        return self.stored_cursor(account) or 0

    def early_receipts(self, since_ms: int, limit: int) -> list[tuple[str, records.EarlyReceipt]]:
        """Receipts waiting in the early table that arrived at or after `since_ms`, oldest first, at most
        `limit`, with their carrier (gateway.cluster looks them up in the shared receipt map again after a
        restart: some may be another node's)."""
        out: list[tuple[str, records.EarlyReceipt]] = []
        with self._lock, self._read() as txn:
            cur = txn.cursor(db=self._dbs[b"early_time"])
            if not cur.set_range(keys.u64(since_ms)):
                return out
            for key in cur.iternext(values=False):
                at_ms, carrier, first = keys.split_timed_pair(bytes(key))
                raw = txn.get(keys.text_pair(carrier, first), db=self._dbs[b"early"])
                if raw is not None:
                    out.extend((carrier, e) for e in records.unpack_early(_b(raw), first)
                               if e.at_ms == at_ms and e.keys[0] == first)  # fmt: skip
                if len(out) >= limit:
                    break
        return out

    def listings_since(self, since_ms: int) -> list[tuple[str, str, str, int, str, str]]:
        """Every opt-out and blacklist entry made at or after `since_ms`: (table "optout" or "blacklist",
        scope, number, at_ms, source, note). A whole scan of both tables: for gateway.cluster after a stop
        that left list changes unpublished (rare)."""
        out: list[tuple[str, str, str, int, str, str]] = []
        with self._lock, self._read() as txn:
            for table in ("optout", "blacklist"):
                for key, raw in txn.cursor(db=self._dbs[table.encode()]):
                    if not raw:
                        continue  # an entry from before records were kept: no time to compare
                    at_ms, source, note = records.unpack_listing(_b(raw))
                    if at_ms >= since_ms:
                        scope, sep, number = bytes(key).decode().partition("\0")
                        out.append((table, scope, number, at_ms, source, note) if sep else
                                   (table, "", scope, at_ms, source, note))  # fmt: skip
        return out

    def sent_part(self, carrier: str, carrier_ids: Sequence[str]) -> bool:
        """Whether a part this store sent to `carrier` was answered with one of `carrier_ids` (normalised,
        as Receipt candidates are)."""
        with self._lock, self._read() as txn:
            db = self._dbs[b"carrier_ix"]
            return any(txn.get(keys.text_pair(carrier, cid), db=db) is not None for cid in carrier_ids)

    def stored_cursor(self, name: str) -> int | None:
        """The cursor stored under `name`, None when none ever was (a stored 0 is 0)."""
        with self._lock, self._read() as txn:
            raw = txn.get(name.encode(), db=self._dbs[b"cursors"])
        return keys.from_u64(_b(raw)) if raw is not None else None

    def by_client_ref(self, account: str, client_ref: str) -> tuple[int, ...]:
        """Message ids the account submitted under `client_ref` (its idempotency key), or ()."""
        with self._lock, self._read() as txn:
            raw = txn.get(keys.text_pair(account, client_ref), db=self._dbs[b"idem"])
        return records.unpack_idem(_b(raw))[1] if raw is not None else ()

    def batch(self, account: str, batch_id: str) -> BatchCounters | None:
        """The counters of `account`'s batch (or one run of a recurring batch: "ID#2"), None if none."""
        with self._lock, self._read() as txn:
            raw = txn.get(keys.text_pair(account, batch_id), db=self._dbs[b"batches"])
        return records.unpack_batch(_b(raw)) if raw is not None else None

    def batch_ids(self, account: str, after: str = "", limit: int = 100) -> list[tuple[str, BatchCounters]]:
        """An account's batches (and runs) with counters, by id after `after`."""
        return [(k, records.unpack_batch(v)) for k, v in self._prefixed(b"batches", account, after, limit)]

    def batch_details(
        self, account: str, batch_id: str, outcome: str | None = None, after: int = 0, limit: int = 1000,
        reason: str | None = None,
    ) -> tuple[list[Message], int]:
        """A page of a batch's messages in id (acceptance) order after message id `after`: every one, or
        those that ended `outcome` (delivered, failed, refused: an index, so a page of failures of a batch
        of a million costs a page), or "waiting" (not ended: a scan of the batch); `reason` keeps those
        whose reason starts with it. Returns (page, the id to pass as `after` for the next; 0: no more)."""
        prefix = keys.batch_prefix(account, batch_id)
        waiting = outcome == "waiting"
        if outcome is not None and not waiting:
            prefix += bytes((keys.OUTCOMES[outcome],))
        db = self._dbs[b"batch_ix" if outcome is None or waiting else b"batch_out"]
        page: list[Message] = []
        with self._lock, self._read() as txn:
            cur = txn.cursor(db=db)
            found = cur.set_range(prefix + keys.u64(after + 1))
            while found and len(page) < limit:
                key = _b(cur.key())
                if not key.startswith(prefix) or len(key) != len(prefix) + 8:
                    break
                msg_id = keys.from_u64(key[-8:])
                raw = txn.get(key[-8:], db=self._dbs[b"messages"])
                found = cur.next()
                if raw is None:
                    continue
                m = records.unpack_message(_b(raw))
                if waiting and m.state.is_final:
                    continue
                if reason is not None and not m.reason.startswith(reason):
                    continue
                page.append(m)
                after = msg_id
            more = found and _b(cur.key()).startswith(prefix)
        return page, after if more else 0

    def balance(self, account: str) -> BalanceResult:
        with self._lock, self._read() as txn:
            raw = txn.get(account.encode(), db=self._dbs[b"balances"])
        if raw is None:
            return BalanceResult(account)
        available, reserved, charged = records.unpack_balance(_b(raw))
        return BalanceResult(account, available, reserved, charged, True)

    def statement(self, account: str, since_ms: int = 0, limit: int = 1000) -> list[records.StatementEntry]:
        prefix = account.encode() + b"\0"
        out: list[records.StatementEntry] = []
        with self._lock, self._read() as txn:
            cur = txn.cursor(db=self._dbs[b"statement"])
            found = cur.set_range(prefix + keys.u64(since_ms // 1000))
            while found and len(out) < limit and _b(cur.key()).startswith(prefix):
                out.append(records.unpack_statement(_b(cur.value())))
                found = cur.next()
        return out

    def template(self, account: str, template_id: str) -> records.Template | None:
        with self._lock, self._read() as txn:
            raw = txn.get(keys.text_pair(account, template_id), db=self._dbs[b"templates"])
        return records.unpack_template(_b(raw)) if raw is not None else None

    def templates(self, account: str) -> list[tuple[str, records.Template]]:
        return [(k, records.unpack_template(v)) for k, v in self._prefixed(b"templates", account, "", 10_000)]

    def batch_def(self, account: str, batch_id: str) -> records.BatchDef | None:
        with self._lock, self._read() as txn:
            raw = txn.get(keys.text_pair(account, batch_id), db=self._dbs[b"batch_defs"])
        return records.unpack_batch_def(_b(raw)) if raw is not None else None

    def batch_defs(self, account: str, after: str = "", limit: int = 100) -> list[tuple[str, records.BatchDef]]:
        """An account's batches by id, after id `after`."""
        return [(k, records.unpack_batch_def(v)) for k, v in self._prefixed(b"batch_defs", account, after, limit)]

    def _prefixed(self, db: bytes, account: str, after: str, limit: int) -> list[tuple[str, bytes]]:
        prefix = account.encode() + b"\0"
        out: list[tuple[str, bytes]] = []
        with self._lock, self._read() as txn:
            cur = txn.cursor(db=self._dbs[db])
            found = cur.set_range(prefix + after.encode() + (b"\0" if after else b""))
            while found and len(out) < limit:
                key = _b(cur.key())
                if not key.startswith(prefix):
                    break
                out.append((key[len(prefix):].decode(), _b(cur.value())))
                found = cur.next()
        return out

    def due_batches(self, now_ms: int, limit: int = 100) -> list[tuple[int, str, str]]:
        """(next_ms, account, batch id) of batches whose next run is due by `now_ms`, earliest first."""
        out: list[tuple[int, str, str]] = []
        with self._lock, self._read() as txn:
            cur = txn.cursor(db=self._dbs[b"batch_due"])
            found = cur.first()
            while found and len(out) < limit:
                key = _b(cur.key())
                at = keys.from_u64(key[:8])
                if at > now_ms:
                    break
                account, batch_id = key[8:].decode().split("\0", 1)
                out.append((at, account, batch_id))
                found = cur.next()
        return out

    def next_batch_ms(self) -> int:
        """When the earliest batch run is due (0: none)."""
        with self._lock, self._read() as txn:
            cur = txn.cursor(db=self._dbs[b"batch_due"])
            return keys.from_u64(_b(cur.key())[:8]) if cur.first() else 0

    def batch_rows(self, account: str, batch_id: str, first: int, limit: int) -> list[tuple[int, str, dict[str, str]]]:
        """(index, number, template values) of a batch's recipients from index `first`."""
        prefix = keys.batch_prefix(account, batch_id)
        out: list[tuple[int, str, dict[str, str]]] = []
        with self._lock, self._read() as txn:
            cur = txn.cursor(db=self._dbs[b"batch_rows"])
            found = cur.set_range(prefix + keys.u64(first))
            while found and len(out) < limit:
                key = _b(cur.key())
                if not key.startswith(prefix):
                    break
                number, values = records.unpack_batch_row(_b(cur.value()))
                out.append((keys.from_u64(key[-8:]), number, values))
                found = cur.next()
        return out

    def unmatched_receipts(self, after: bytes = b"", limit: int = 100) -> list[records.UnmatchedReceipt]:
        """Receipts no submit_sm_resp claimed in time, oldest first, from after the cursor `after` (the
        `key` of the last one read; b"": from the start)."""
        with self._lock, self._read() as txn:
            return _unmatched_rows(txn.cursor(db=self._dbs[b"unmatched"]), after, limit)

    def mo_parts(self) -> tuple[list[tuple[KeepMoPart, int]], int]:
        """Every long MO's part kept while its message is incomplete, with when it came (ms; the engine
        reloads them at start), and how many rows could not be read (skipped: one bad row must not stop a
        start)."""
        parts: list[tuple[KeepMoPart, int]] = []
        unreadable = 0
        with self._lock, self._read() as txn:
            for k, v in txn.cursor(db=self._dbs[b"mo_parts"]):
                try:
                    parts.append(records.unpack_mo_part(_b(k), _b(v)))
                except (CorruptRecord, ValueError, UnicodeDecodeError):
                    unreadable += 1
        return parts, unreadable

    def unmatched_count(self) -> int:
        """How many unmatched receipts the store keeps (until retention purges them)."""
        return self.count(b"unmatched")

    def find_segment(self, carrier: str, carrier_id: str) -> tuple[int, int] | None:
        with self._lock, self._read() as txn:
            raw = txn.get(keys.text_pair(carrier, carrier_id), db=self._dbs[b"carrier_ix"])
        return keys.split_seg_key(_b(raw)) if raw is not None else None

    def recent(self, number: str, limit: int = 20) -> list[int]:
        """Newest message ids sent to `number`."""
        prefix = number.encode() + b"\0"
        out: list[int] = []
        with self._lock, self._read() as txn:
            cur = txn.cursor(db=self._dbs[b"recipient"])
            found = (cur.set_range(prefix + b"\xff" * 8) and cur.prev()) or cur.last()
            while found and len(out) < limit and _b(cur.key()).startswith(prefix):
                out.append(keys.from_u64(_b(cur.key())[-8:]))
                found = cur.prev()
        return out

    def is_opted_out(self, number: str, account: str = "") -> bool:
        with self._lock, self._read() as txn:
            db = self._dbs[b"optout"]
            return any(txn.get(keys.text_pair(s, number), db=db) is not None for s in ("", account))

    def refusal(self, number: str, account: str, *, optout: bool) -> str:
        """What the stored lists say of sending `account` a message to `number` now: "blacklisted" (the
        gateway's or the account's list), "opted_out" (when `optout`: the account's or every account's), or
        "". The accept checks the same in its transaction; this is for a message that waited since."""
        dbs = self._dbs
        with self._lock, self._read() as txn:

            def get(db: bytes, key: bytes) -> bytes | None:
                raw = txn.get(key, db=dbs[db])
                return None if raw is None else bytes(raw)

            return _listed(get, number, account, "", (), optout=optout)[0]

    def opt_out(self, number: str, scope: str = "") -> tuple[int, str, str] | None:
        """When, how and with what words `number` opted out in `scope` ("" every account): (at_ms, source,
        note), (0, "", "") for an opt-out kept before they had records; None when it has not."""
        with self._lock, self._read() as txn:
            raw = txn.get(keys.text_pair(scope, number), db=self._dbs[b"optout"])
            return None if raw is None else records.unpack_listing(bytes(raw))

    def list_entries(self, name: str, scope: str, numbers: Sequence[str]) -> list[tuple[int, str, str] | None]:
        """`opt_out` (name "optout": the scope's entry, else the global one) or `blacklisted` (the scope's) of
        each number, in one read transaction."""
        optout = name == "optout"
        db = self._dbs[b"optout" if optout else b"blacklist"]
        out: list[tuple[int, str, str] | None] = []
        with self._lock, self._read() as txn:
            get = txn.get
            for n in numbers:
                raw = get(f"{scope}\0{n}".encode(), db=db)
                if raw is None and optout:
                    raw = get(f"\0{n}".encode(), db=db)  # an opt-out from every account counts for this one
                out.append(None if raw is None else records.unpack_listing(bytes(raw)))
        return out

    def list_page(self, name: str, scope: str, after: str, limit: int) -> list[tuple[str, tuple[int, str, str]]]:
        """One page of a scope of the opt-out ("optout") or blacklist table (a scope of its own, not the
        global list): (number, (at_ms, source, note)) in number order, the numbers after `after`."""
        db = self._dbs[b"optout" if name == "optout" else b"blacklist"]
        prefix = f"{scope}\0".encode()
        out: list[tuple[str, tuple[int, str, str]]] = []
        with self._lock, self._read() as txn:
            cur = txn.cursor(db=db)
            if not cur.set_range(prefix + after.encode() + b"\0" if after else prefix):
                return out
            for raw_key, value in cur:
                key = bytes(raw_key)
                if not key.startswith(prefix) or len(out) >= limit:
                    break
                out.append((key[len(prefix) :].decode(), records.unpack_listing(bytes(value))))
        return out

    def blacklisted(self, number: str, scope: str = "") -> tuple[int, str, str] | None:
        """`number`'s entry on the blacklist of `scope` ("", "account:NAME", "carrier:NAME"), as `opt_out`."""
        with self._lock, self._read() as txn:
            raw = txn.get(keys.blacklist_key(scope, number), db=self._dbs[b"blacklist"])
            return None if raw is None else records.unpack_listing(bytes(raw))

    # The generation lookups read (PORTED_CURRENT's value, None: no table) as of the snapshot with this
    # transaction id. A read transaction with the same id reads the same snapshot, so it needs no get; any
    # commit (a switch by the writer process, or any other write) gives the next one a new id, which reads
    # it again. Read and set under self._lock.
    _ported_seen: tuple[int, bytes | None] = (-1, None)

    def _ported_current(self, txn: lmdb.Transaction) -> bytes | None:
        """The current generation's key prefix in `txn`'s snapshot (None: no portability table)."""
        snapshot = txn.id()
        seen = self._ported_seen
        if seen[0] == snapshot:
            return seen[1]
        current: bytes | None = txn.get(keys.PORTED_CURRENT, db=self._ported_meta)  # type: ignore[assignment]
        self._ported_seen = (snapshot, current)
        return current

    def ported_network(self, e164: str) -> str | None:
        """The network a ported number (E.164 digits, no "+") moved to, in the current generation; None
        when it is not ported or there is no table. The generation and the row are read in one read
        transaction, so a switch is seen whole. On the accept path: one get (the generation is read again
        only when a commit happened since the last lookup), one key built."""
        with self._lock, self._read() as txn:
            current = self._ported_current(txn)
            if current is None or len(e164) > MAX_E164_DIGITS:
                return None
            # bytes, not buffers (see _read): no _b() call on the hot path.
            raw: bytes | None = txn.get(current + e164.encode(), db=self._ported)  # type: ignore[assignment]
        return None if raw is None else raw.decode()

    def ported_networks(self, numbers: Sequence[str]) -> list[str | None]:
        """`ported_network` of each number, in one read transaction (a submit's recipients together)."""
        with self._lock, self._read() as txn:
            current = self._ported_current(txn)
            if current is None:
                return [None] * len(numbers)
            get, db = txn.get, self._ported
            # bytes, not buffers (see _read)
            raw: list[bytes | None] = [
                get(current + n.encode(), db=db) if len(n) <= MAX_E164_DIGITS else None  # type: ignore[misc]
                for n in numbers
            ]
        return [None if r is None else r.decode() for r in raw]

    def ported_generation(self) -> int:
        """The generation lookups read (0: no portability table)."""
        with self._lock, self._read() as txn:
            raw = txn.get(keys.PORTED_CURRENT, db=self._ported_meta)
        return keys.from_u32(_b(raw)) if raw is not None else 0

    def ported_generations(self) -> tuple[int, ...]:
        """The generations that have rows, in order (the current one, and any an import is writing, one
        that never switched, or an old one not purged yet). One seek per generation."""
        found: list[int] = []
        with self._lock, self._read() as txn:
            cur = txn.cursor(db=self._ported)
            more = cur.first()
            while more:
                found.append(keys.from_u32(_b(cur.key())[:4]))
                more = found[-1] < keys.MAX_GENERATION and cur.set_range(keys.u32(found[-1] + 1))
        return tuple(found)

    def ported_next_generation(self) -> int:
        """The generation a new import writes: above the current one and any with rows (a crashed
        import's partial rows must not mix into the next import)."""
        return max(self.ported_generation(), *self.ported_generations(), 0) + 1

    def ported_count(self, generation: int | None = None, chunk: int = 100_000) -> int:
        """Rows of `generation` (default: the current one). Free when it is the only generation stored;
        otherwise a cursor walk in read transactions of `chunk` rows (for status and tests, not a hot
        path), which counts each chunk as it was when read."""
        gen = self.ported_generation() if generation is None else generation
        if not 1 <= gen <= keys.MAX_GENERATION:
            return 0
        prefix, total, after = keys.u32(gen), 0, keys.u32(gen)
        with self._lock, self._read() as txn:
            cur = txn.cursor(db=self._ported)
            if cur.first() and _b(cur.key())[:4] == prefix and cur.last() and _b(cur.key())[:4] == prefix:
                return int(txn.stat(self._ported)["entries"])  # its rows are all the rows
        while True:
            with self._lock, self._read() as txn:
                cur = txn.cursor(db=self._ported)
                if not cur.set_range(after):
                    return total
                rows = list(islice(cur.iternext(values=False), chunk))
            inside = sum(1 for k in rows if k[:4] == prefix)
            total += inside
            if inside < chunk:
                return total
            after = _b(rows[-1]) + b"\0"

    def count(self, db: bytes) -> int:
        with self._lock, self._read() as txn:
            return int(txn.stat(self._dbs[db])["entries"])

    def summary(self) -> dict[str, int]:
        """The store's size and what waits in it, from LMDB's own counts (O(1), no scan): the map and the
        bytes used of it, and the entries of the tables an operator asks about."""
        info, page = self._env.info(), self._env.stat()["psize"]
        with self._lock, self._read() as txn:
            entries = {name: int(txn.stat(self._dbs[db])["entries"]) for name, db in _SUMMARY_DBS}
        used = (int(info["last_pgno"]) + 1) * int(page)
        return {"map_bytes": int(info["map_size"]), "used_bytes": used, **entries}

    def iter_messages(self, chunk: int = 1000) -> Iterator[Message]:
        """Every message in id order, read in short transactions of `chunk` records."""
        after = b""
        while True:
            with self._lock, self._read() as txn:
                cur = txn.cursor(db=self._dbs[b"messages"])
                found = cur.set_range(after + b"\0") if after else cur.first()
                rows: list[tuple[bytes, bytes]] = []
                while found and len(rows) < chunk:
                    rows.append((_b(cur.key()), _b(cur.value())))
                    found = cur.next()
            if not rows:
                return
            after = rows[-1][0]
            yield from (records.unpack_message(v) for _, v in rows)

    def keys_of(self, db: bytes) -> set[bytes]:
        """Every key of a sub-database (for consistency checks on test-sized stores)."""
        with self._lock, self._read() as txn:
            return {bytes(k) for k in txn.cursor(db=self._dbs[db]).iternext(values=False)}

    def check(self) -> list[str]:
        """Problems where an index disagrees with the records (empty when consistent)."""
        due, inflight, finals, recip, carrier, deadline = set(), set(), set(), set(), {}, set()
        for m in self.iter_messages():
            if d := _due_of(m):
                due.add(keys.time_key(d, m.id))
            if d := _deadline_of(m):
                deadline.add(keys.time_key(d, m.id))
            inflight |= {keys.seg_key(m.id, s) for s in _inflight_of(m)}
            if m.final_ms:
                finals.add(keys.time_key(m.final_ms, m.id))
            recip.add(keys.recipient_key(m.recipient, m.id))
            for i, s in enumerate(m.segments):
                if s.carrier_id:
                    carrier[keys.text_pair(m.carrier, s.carrier_id)] = keys.seg_key(m.id, i)
        problems = [
            f"{name.decode()}: {len(want - have)} missing, {len(have - want)} extra"
            for name, want in ((b"due", due), (b"inflight", inflight), (b"finals", finals),
                               (b"recipient", recip), (b"carrier_ix", set(carrier)), (b"deadline", deadline))
            if want != (have := self.keys_of(name))
        ]  # fmt: skip
        with self._lock, self._read() as txn:
            for k, v in carrier.items():
                if txn.get(k, db=self._dbs[b"carrier_ix"]) != v:
                    problems.append(f"carrier_ix: {k!r} points elsewhere")
        return problems


_RECEIPT_KINDS = frozenset(
    {Ev.RECEIPT_DELIVERED, Ev.RECEIPT_UNDELIVERABLE, Ev.RECEIPT_EXPIRED, Ev.RECEIPT_ENROUTE}
)
# Every key part stays far below LMDB's 511-byte key limit, with room for the fixed-size suffixes.
MAX_KEY_PART_BYTES = 200


# The start of a receipt's text kept with it while it waits, for the unmatched table (its id, stat, err and
# dates fit in the first 120 octets of an Appendix B text).
UNMATCHED_TEXT_BYTES = 160
# Segments that wait for a receipt (lifecycle: submitted, or unknown after a response timeout).
_AWAITING = frozenset({int(State.SUBMITTED), int(State.UNKNOWN)})


def _claim(entries: list[records.EarlyReceipt], carrier_id: str) -> list[records.EarlyReceipt]:
    """The early receipts a submit_sm_resp with `carrier_id` takes from its row, in arrival order: those for
    which it is the best candidate of the row (the earliest in their keys). Several are one id's receipts
    (repeated, or an intermediate one and then the final one); the others wait for their own responses."""
    def rank(e: records.EarlyReceipt) -> int:
        return e.keys.index(carrier_id) if carrier_id in e.keys else len(e.keys)

    best = min(rank(e) for e in entries)
    return [e for e in entries if rank(e) == best]


# Parts of at most this many characters pass _check_lengths without a look (4 UTF-8 bytes a character at
# most): the hot ops test the length inline and call it only for longer ones.
_SHORT_PART = MAX_KEY_PART_BYTES // 4


def read_unmatched(
    path: str, after: bytes = b"", limit: int = 100
) -> tuple[int, list[records.UnmatchedReceipt]]:
    """(how many, the first `limit` after the cursor `after`) of the unmatched receipts in the store at
    `path`, read from another process than the gateway's (gatewayctl): LMDB serves readers in any process
    while its writer writes, so this opens the environment read-only and never takes the gateway's lock."""
    env = lmdb.open(path, readonly=True, max_dbs=len(keys.DB_NAMES) + 1, readahead=False, create=False)
    try:
        try:
            db = env.open_db(b"unmatched", create=False)
        except lmdb.NotFoundError:  # a store from before the table existed
            return 0, []
        with env.begin(buffers=False) as txn:
            return int(txn.stat(db)["entries"]), _unmatched_rows(txn.cursor(db=db), after, limit)
    finally:
        env.close()


def _unmatched_rows(cur: lmdb.Cursor, after: bytes, limit: int) -> list[records.UnmatchedReceipt]:
    out: list[records.UnmatchedReceipt] = []
    found = cur.set_range(after) if after else cur.first()
    if found and after and cur.key() == after:
        found = cur.next()
    while found and len(out) < limit:
        out.append(records.unpack_unmatched(_b(cur.key()), _b(cur.value())))
        found = cur.next()
    return out


# Portability rows: E.164 allows 15 digits (ITU-T E.164 6.1); network names are configuration names.
MAX_E164_DIGITS = 15
MAX_NETWORK_BYTES = 64


def _generation(generation: int, lowest: int) -> bytes:
    """A generation as its key prefix, refused (InvalidField) outside `lowest` .. keys.MAX_GENERATION."""
    if type(generation) is not int or not lowest <= generation <= keys.MAX_GENERATION:
        raise InvalidField(f"portability generation {generation!r} is not in {lowest}..{keys.MAX_GENERATION}")
    return keys.u32(generation)


def _ported_entries(op: PortedRows) -> tuple[dict[str, bytes], bool]:
    """Number -> network (b"" to delete) of each row, a number's last row winning, and whether any row
    deletes; InvalidField for the first invalid row (or generation), so nothing of the op is written.
    An import's chunk is checked as a whole (its numbers joined, its few networks once each); only a chunk
    with a bad row goes row by row, to name the first one."""
    _generation(op.generation, lowest=1)
    rows = op.rows
    if not rows:
        return {}, False
    try:
        encoded = {network: network.encode() for network in {network for _, network in rows}}
    except UnicodeEncodeError:  # a lone surrogate: raised where the row by row check meets it
        return _ported_row_by_row(op)
    numbers = [number for number, _ in rows]
    joined = "".join(numbers)
    if not (
        joined.isascii() and joined.isdigit() and min(map(len, numbers)) > 0
        and max(map(len, numbers)) <= MAX_E164_DIGITS
        and max(map(len, encoded.values())) <= MAX_NETWORK_BYTES
    ):  # fmt: skip
        return _ported_row_by_row(op)  # raises InvalidField
    return {number: encoded[network] for number, network in rows}, "" in encoded


def _ported_keys(prefix: bytes, numbers: list[str]) -> list[bytes]:
    """`prefix + number.encode()` of each number (ASCII digits), built in a few C calls: the numbers joined
    with the prefix between them, encoded once and split at a separator byte the prefix does not hold."""
    if not numbers:
        return []
    sep = next(b for b in b",;:/-" if b not in prefix)  # the prefix has 4 bytes: one of these 5 is free
    latin = prefix.decode("latin-1")
    return (latin + (chr(sep) + latin).join(numbers)).encode("latin-1").split(bytes((sep,)))


def _ported_row_by_row(op: PortedRows) -> tuple[dict[str, bytes], bool]:
    """_ported_entries one row at a time: InvalidField for the first invalid row."""
    entries: dict[str, bytes] = {}
    deletes = False
    for number, network in op.rows:
        if not (0 < len(number) <= MAX_E164_DIGITS and number.isascii() and number.isdigit()):
            raise InvalidField(f"ported number {number[:20]!r} is not 1-{MAX_E164_DIGITS} ASCII digits")
        value = network.encode()
        if len(value) > MAX_NETWORK_BYTES:
            raise InvalidField(f"network {network[:20]!r}... of {number} is over {MAX_NETWORK_BYTES} bytes")
        if not value:
            deletes = True
        entries[number] = value
    return entries, deletes


def _other_generation(cur: lmdb.Cursor, keep: bytes, after: bytes | None) -> bool:
    """Leave `cur` on a row of another generation than `keep` (its prefix), at or after where it is; False
    when there is none. `after` is the first key past `keep`'s rows (None when keep is the last one)."""
    key = cur.key()
    if not key:  # past the last row (a delete of the last row leaves the cursor there)
        return False
    if key[:4] != keep:
        return True
    return after is not None and cur.set_range(after)


def _expect_rev(raw: bytes | None, expect: int, unpack: Callable[[bytes], Any], what: str) -> Any:
    """The stored record if its revision is `expect` (0: none stored; -1: any), else WrongState: two writers
    that read the same revision cannot both write."""
    old = None if raw is None else unpack(raw)
    rev = 0 if old is None else old.rev
    if expect != -1 and rev != expect:
        if not expect:
            raise WrongState(f"{what} exists already")
        raise WrongState(f"{what} changed meanwhile (revision {rev}, not {expect})" if rev else f"no {what}")
    return old


def _check_lengths(*parts: str) -> None:
    for part in parts:
        # UTF-8 takes at most 4 bytes a character: most parts need no encode to pass.
        if len(part) * 4 > MAX_KEY_PART_BYTES and len(part.encode()) > MAX_KEY_PART_BYTES:
            raise InvalidField(f"{part[:20]!r}... is longer than {MAX_KEY_PART_BYTES} bytes")


def _listed(
    get: Callable[[bytes, bytes], bytes | None], number: str, account: str, message_class: str,
    route: tuple[str, ...], *, optout: bool,
) -> tuple[str, str, tuple[str, ...]]:
    """What the lists say of sending `account`'s message to `number`, through `get(table, key)` of a read or
    the accept's write transaction: (reason, detail, the route without the carriers that blacklist the
    number). In order: the gateway's and the account's blacklists, every carrier's, then (when `optout`)
    an opt-out from every account or this one. Reason "" when nothing refuses it."""
    if get(b"blacklist", number.encode()) is not None:
        return "blacklisted", "on the gateway's blacklist", route
    if get(b"blacklist", keys.blacklist_key("account:" + account, number)) is not None:
        return "blacklisted", f"on account {account}'s blacklist", route
    kept = tuple(c for c in route if get(b"blacklist", keys.blacklist_key("carrier:" + c, number)) is None)
    if route and not kept:
        return "blacklisted", f"on the blacklist of every carrier of its route ({', '.join(route)})", route
    if optout:
        for scope, whose in (("", "every account's"), (account, f"account {account}'s")):
            raw = get(b"optout", keys.text_pair(scope, number))
            if raw is not None:
                return "opted_out", _optout_detail(raw, whose, message_class), kept
    return "", "", kept


def _optout_detail(raw: bytes, whose: str, message_class: str) -> str:
    """Why an opted-out recipient is refused, for a person: whose messages, since when, how."""
    at_ms, source, note = records.unpack_listing(raw)
    how = f" by the reply {note!r}" if source.startswith("mo:") and note else f" ({source})" if source else ""
    when = time.strftime(" on %Y-%m-%d", time.gmtime(at_ms / 1000)) if at_ms else ""
    return f"opted out of {whose} {message_class} messages{when}{how}"


def _span(seconds: int) -> str:
    """A cap's window for a person: "1 day", "2 days", "6 hours", "90 seconds"."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"


# What an opt-out keeps of the MO that made it (its text, for a person asking why).
_MAX_NOTE = 160
_SUBMIT_OK = Ev.SUBMIT_OK
_DISPATCH = Ev.DISPATCH
# A receipt without a reason (most of them) needs no Event built: Event is an immutable NamedTuple.
_RECEIPT_EVENTS = {kind: Event(kind) for kind in _RECEIPT_KINDS}
_ACCEPTED = State.ACCEPTED
_NO_RECEIPT = Event(Ev.EXPIRE, "no_receipt")
_EXPIRED = Event(Ev.EXPIRE)
_QUEUED = State.QUEUED
_SUBMITTED = State.SUBMITTED
_DELIVERED = State.DELIVERED
_OUT_DELIVERED = keys.OUTCOMES["delivered"]
_OUT_FAILED = keys.OUTCOMES["failed"]
_OUT_REFUSED = keys.OUTCOMES["refused"]
# A batch's states in which rows may still be added (records.BatchDef).
_OPEN_BATCH = "draft"
# Batches whose definition and rows retention may remove once unchanged for retention_days.
_ENDED_BATCH = frozenset({"sent", "stopped", "failed"})
_SUBMITTING = State.SUBMITTING
_STATES = {int(s): s for s in State}


def _reason_of(segs: _Segs, state: State) -> str:
    """The reason of the first segment in `state` (the message's state, so there is one)."""
    for s in segs:
        if s[S_STATE] == state:
            reason: str = s[S_REASON]
            return reason
    raise ValueError(f"no segment in state {state.name}")


def _state_ranks() -> dict[int, int]:
    """Each state's rank in the order message_state picks by: a message is in the state of its lowest
    ranked segment. Derived from message_state itself, so the two cannot disagree."""

    def first(a: State, b: State) -> int:
        return -1 if message_state([a, b]) is a else 1

    return {int(s): rank for rank, s in enumerate(sorted(State, key=cmp_to_key(first)))}


_RANKS = _state_ranks()
_BY_RANK = sorted(State, key=lambda s: _RANKS[s])


def _state_of(segs: _Segs) -> State:
    """message_state of stored segments; one segment (most messages) names the message by itself."""
    if len(segs) == 1:
        return _STATES[segs[0][S_STATE]]
    ranks = _RANKS
    best = 99
    for s in segs:
        rank = ranks[s[S_STATE]]
        if rank < best:
            best = rank
    return _BY_RANK[best]


def _due_of_fields(segs: _Segs | None) -> int:
    """The due-index time of a stored segment list (0: not waiting); as _due_of."""
    if segs is None:
        return 0
    due = -1
    for s in segs:
        if s[S_STATE] in DUE_STATES and (due < 0 or s[S_DUE_MS] < due):
            due = s[S_DUE_MS]
    return due if due > 0 else 0


def _deadline_of_fields(expires_ms: int, segs: _Segs | None) -> int:
    """When a live message must end (0: never, or not live): the earliest receipt deadline of its submitted
    or unknown segments, and its validity while a segment still waits to be sent."""
    deadline = 0
    for s in segs or ():
        state = s[S_STATE]
        if state in AWAITING_STATES:
            t = s[S_DUE_MS]
        elif expires_ms and state in DUE_STATES:
            t = expires_ms
        else:
            continue
        if t and (not deadline or t < deadline):
            deadline = t
    # Up to the next whole second: the parts of a long message, answered milliseconds apart, then share one
    # key instead of moving it at every response and receipt (an index write each on the hot path).
    return -(-deadline // 1000) * 1000


def _deadline_of(msg: Message) -> int:
    return _deadline_of_fields(msg.expires_ms, records.message_fields(msg)[F_SEGMENTS])


def _inflight_of_fields(segs: _Segs | None) -> set[int]:
    if segs is None:
        return set()
    return {i for i, s in enumerate(segs) if s[S_STATE] == _SUBMITTING}


def _due_of(msg: Message | None) -> int:
    if msg is None:
        return 0
    dues = [s.due_ms for s in msg.segments if s.state in DUE_STATES]
    return min(dues) if dues else 0


def _inflight_of(msg: Message | None) -> set[int]:
    if msg is None:
        return set()
    return {i for i, s in enumerate(msg.segments) if s.state is State.SUBMITTING}


def _take(cur: lmdb.Cursor, n: int) -> Iterator[tuple[bytes, bytes]]:
    found = cur.first()
    while found and n > 0:
        yield _b(cur.key()), _b(cur.value())
        n -= 1
        found = cur.next()


def _b(value: bytes | memoryview) -> bytes:
    return value if isinstance(value, bytes) else bytes(value)


def _is_disk_full(err: lmdb.Error) -> bool:
    return getattr(err, "errno", None) == errno.ENOSPC or "No space left" in str(err)
