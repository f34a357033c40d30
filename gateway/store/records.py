"""Every stored value, packed and unpacked here and nowhere else: msgpack arrays whose first item is the
schema version, so a future version can read old records (never pickle)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import Any, NamedTuple

import msgpack

from gateway.errors import StoreError
from gateway.lifecycle import Ev, Segment, State, message_reason, message_state
from gateway.store.ops import KeepMoPart

VERSION = 1


class CorruptRecord(StoreError):
    """A stored value that this version cannot read."""


class Message(NamedTuple):
    """One recipient of one submit, with its segments (one placeholder segment until it is split).

    A NamedTuple rather than a frozen dataclass: it is unpacked, rebuilt and packed on every receipt, and
    tuple construction is several times cheaper than a frozen dataclass's per-field __setattr__."""

    id: int
    account: str
    batch: str
    message_class: str
    sender: str
    recipient: str
    text: str
    receipt: bool
    client_ref: str
    created_ms: int
    # Absolute time after which it must not be sent (0: none).
    expires_ms: int
    segments: tuple[Segment, ...]
    carrier: str = ""
    concat_ref: int = 0
    final_ms: int = 0
    # Events already logged for this message (REPORTED_* bits), so a retry never logs "submitted" twice.
    reported: int = 0
    # The carriers it left, in order, each with why: ((carrier, reason), ...); reason a reason code or
    # "no_bind" (handed back: no bound transmitter in time). Records written before the trail have none.
    trail: tuple[tuple[str, str], ...] = ()
    # The carriers to try, in order, as the route table chose them when the message was accepted (routes
    # reloaded later apply to new messages). Records written before routes were stored have none: the
    # engine asks the route table of the day.
    route: tuple[str, ...] = ()
    # The frequency-cap counters (keys.cap_counter) its accept took a slot of, to give back if it ends failed.
    caps: tuple[str, ...] = ()
    # Parts reserved from its account's balance and not yet charged (delivered) or released (ended).
    reserved: int = 0

    @property
    def possible_duplicate(self) -> bool:
        """A segment was sent again after a crash or a lost link: the carrier may have it twice."""
        return any(s.possible_duplicate for s in self.segments)

    @property
    def state(self) -> State:
        return message_state([s.state for s in self.segments])

    @property
    def reason(self) -> str:
        return message_reason(self.segments)


REPORTED_SUBMITTED = 1


class EventKind(IntEnum):
    """Event log entries upstream apps subscribe to. Stored: never renumber."""

    SUBMITTED = 1
    DELIVERED = 2
    FAILED = 3
    MO = 4


class LogEvent(NamedTuple):
    """One event log entry. A NamedTuple: every event is unpacked once per subscriber that reads it."""

    seq: int
    at_ms: int
    kind: EventKind
    account: str
    message_id: int = 0
    batch: str = ""
    client_ref: str = ""
    # The recipient for message events; the handset (source_addr) for MO.
    number: str = ""
    # The sender for message events; the short code or long number it was sent to for MO.
    address: str = ""
    reason: str = ""
    text: str = ""
    carrier: str = ""
    # The message was (or may have been) sent twice: Message.possible_duplicate when logged.
    possible_duplicate: bool = False


@dataclass(frozen=True, slots=True)
class BatchCounters:
    """A batch's live counters, kept in the same transactions as its messages (a report reads them, never
    scans). `failed` counts accepted messages that ended failed by reason; `failed_at` the same by carrier
    and reason ("carrier\x1freason": a report maps carrier codes to categories per carrier); `refused`
    recipients refused at accept by reason; `ended_submitted` messages a carrier took that have ended
    (so submitted - ended_submitted wait for a receipt); `ended` accepted messages that have ended."""

    targeted: int = 0
    valid: int = 0
    submitted: int = 0
    delivered: int = 0
    failed: Mapping[str, int] = field(default_factory=dict)
    billed: int = 0
    refused: Mapping[str, int] = field(default_factory=dict)
    failed_at: Mapping[str, int] = field(default_factory=dict)
    ended: int = 0
    ended_submitted: int = 0
    # Parts delivered: what an account with a balance is charged (billed counts the parts carriers took).
    charged: int = 0

    @property
    def waiting_receipt(self) -> int:
        return self.submitted - self.ended_submitted

    @property
    def in_progress(self) -> int:
        """Accepted and not ended: queued, scheduled, at a carrier or waiting for a receipt."""
        return self.valid - self.ended


@dataclass(frozen=True, slots=True)
class EarlyReceipt:
    """A receipt that arrived before its submit_sm_resp (SMPP allows the two to race), or one nothing
    matched yet. `keys` are its candidate carrier-id keys, best first (the early table lists it under each);
    `raw_id` the id as the receipt wrote it; `text` the start of its text, kept for the unmatched table."""

    kind: Ev
    reason: str
    at_ms: int
    raw_id: str = ""
    keys: tuple[str, ...] = ()
    text: bytes = b""


@dataclass(frozen=True, slots=True)
class UnmatchedReceipt:
    """A receipt that no submit_sm_resp claimed within the store's early_receipt_seconds: kept for the
    operator (Store.unmatched_receipts), purged by retention. `key` is the cursor to read on after."""

    key: bytes
    carrier: str
    raw_id: str
    kind: Ev
    reason: str
    at_ms: int
    expired_ms: int
    text: bytes
    keys: tuple[str, ...] = ()


_MESSAGE_INDEX = {name: i for i, name in enumerate(Message._fields)}
_STATES = {int(s): s for s in State}
_EVENT_KINDS = {int(k): k for k in EventKind}


def evolve(msg: Message, **changes: Any) -> Message:
    """`msg._replace(**changes)` at half its cost (the store's hot path calls it per op)."""
    values = list(msg)
    for name, value in changes.items():
        values[_MESSAGE_INDEX[name]] = value
    return Message._make(values)


_local = threading.local()


def _pack(obj: Any) -> bytes:
    # msgpack.packb builds a Packer per call; one per thread (Packer is not thread-safe) saves a
    # microsecond per record on the writer's hot path.
    packer = getattr(_local, "packer", None)
    if packer is None:
        packer = _local.packer = msgpack.Packer(use_bin_type=True)
    return packer.pack(obj)  # type: ignore[no-any-return]


def _unpack(data: bytes, what: str) -> list[Any]:
    try:
        # raw=False and use_list=True are msgpack 1.x's defaults; spelling them out costs keyword parsing
        # on every record read.
        obj = msgpack.unpackb(data, strict_map_key=False)
    except (ValueError, msgpack.ExtraData) as err:
        raise CorruptRecord(f"{what}: not msgpack") from err
    if not isinstance(obj, list) or not obj or obj[0] != VERSION:
        raise CorruptRecord(f"{what}: unknown schema version")
    return obj


def _seg(f: list[Any]) -> Segment:
    f[0] = _STATES[f[0]]
    return Segment._make(f)


def pack_message(m: Message) -> bytes:
    return _pack(message_fields(m))


def unpack_message(data: bytes) -> Message:
    f = _unpack(data, "message")
    segs = tuple(_seg(s) for s in f[12])
    f[12] = segs
    if len(f) == _FIELDS_V1_0:
        return Message._make([*f[1:_FIELDS_V1_0], (), (), (), 0])
    f[F_TRAIL] = tuple((str(c), str(r)) for c, r in f[F_TRAIL])
    if len(f) == _FIELDS_V1_1:
        return Message._make([*f[1:_FIELDS_V1_1], (), (), 0])
    f[F_ROUTE] = tuple(str(c) for c in f[F_ROUTE])
    if len(f) == _FIELDS_V1_2:
        return Message._make([*f[1:_FIELDS_V1_2], (), 0])
    f[F_CAPS] = tuple(str(k) for k in f[F_CAPS])
    if len(f) == _FIELDS_V1_3:
        return Message._make([*f[1:_FIELDS_V1_3], 0])
    return Message._make(f[1:_FIELDS])


# The message record as the store's write path handles it: the stored msgpack array itself, version 1,
# `[VERSION, *Message fields]` with each segment an array of Segment's fields (its state as the int).
# The writer changes one or two fields per receipt or submit_sm_resp; editing the array in place and
# packing it again skips building a Message, its Segments and the pack-time copies (half the op's cost).
MessageFields = list[Any]
F_ID = 1
F_ACCOUNT = 2
F_BATCH = 3
F_SENDER = 5
F_RECIPIENT = 6
F_CLIENT_REF = 9
F_CREATED_MS = 10
F_EXPIRES_MS = 11
F_SEGMENTS = 12
F_CARRIER = 13
F_CONCAT_REF = 14
F_FINAL_MS = 15
F_REPORTED = 16
F_TRAIL = 17
F_ROUTE = 18
F_CAPS = 19
F_RESERVED = 20
# Version 1 records had 17 entries until the trail was added at the end, 18 until the route was, 19 until
# the caps were, 20 until the reserved parts were: all five are read, the longest written.
_FIELDS_V1_0 = 17
_FIELDS_V1_1 = 18
_FIELDS_V1_2 = 19
_FIELDS_V1_3 = 20
_FIELDS = 21
# Segment array positions (Segment's field order).
S_STATE = 0
S_REASON = 1
S_CARRIER_ID = 2
S_DUPLICATE = 6
S_DUE_MS = 8


def message_fields(m: Message) -> MessageFields:
    """`m` as its stored array (msgpack packs the IntEnum states as their ints)."""
    f = [VERSION, *m]
    f[F_SEGMENTS] = [list(s) for s in m.segments]
    return f


def unpack_message_fields(data: bytes) -> MessageFields:
    """The stored array of a message record, version checked; segments stay arrays with int states."""
    f = _unpack(data, "message")
    n = len(f)
    if n != _FIELDS:
        if n not in (_FIELDS_V1_0, _FIELDS_V1_1, _FIELDS_V1_2, _FIELDS_V1_3):
            raise CorruptRecord("message: wrong number of fields")
        f.extend([[]] * (_FIELDS - 1 - n))
        f.append(0)
    return f


def pack_message_fields(f: MessageFields) -> bytes:
    return _pack(f)


def segment_of(s: list[Any]) -> Segment:
    """One stored segment array as a Segment (for lifecycle.advance)."""
    return Segment(_STATES[s[0]], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8])


def pack_event(e: LogEvent) -> bytes:
    return pack_event_fields(
        e.seq, e.at_ms, e.kind, e.account, e.message_id, e.batch, e.client_ref, e.number, e.address,
        e.reason, e.text, e.carrier, e.possible_duplicate,
    )  # fmt: skip


def pack_event_fields(
    seq: int, at_ms: int, kind: EventKind, account: str, message_id: int = 0, batch: str = "",
    client_ref: str = "", number: str = "", address: str = "", reason: str = "", text: str = "",
    carrier: str = "", possible_duplicate: bool = False,
) -> bytes:  # fmt: skip
    """LogEvent's fields packed without building the object (the per-receipt hot path). msgpack packs
    the IntEnum kind as its int (int subclasses are ints to it unless strict_types). Events logged before
    possible_duplicate existed have one entry less; readers take it as False."""
    return _pack(
        [VERSION, seq, at_ms, kind, account, message_id, batch, client_ref, number, address, reason, text,
         carrier, possible_duplicate]
    )  # fmt: skip


def unpack_event(data: bytes) -> LogEvent:
    f = _unpack(data, "event")
    f[3] = _EVENT_KINDS[f[3]]
    return LogEvent._make(f[1:14])


# The stored event array, `[VERSION, *LogEvent fields]` with the kind as its int: readers that turn events
# straight into something else (the upstream frames) skip building a LogEvent.
EventFields = list[Any]
E_SEQ = 1
E_AT_MS = 2
E_KIND = 3
E_ACCOUNT = 4
E_MESSAGE_ID = 5
E_BATCH = 6
E_CLIENT_REF = 7
E_NUMBER = 8
E_ADDRESS = 9
E_REASON = 10
E_TEXT = 11
E_CARRIER = 12
E_DUPLICATE = 13  # absent from events logged before it existed: read it with event_duplicate()


def event_duplicate(f: EventFields) -> bool:
    return len(f) > E_DUPLICATE and bool(f[E_DUPLICATE])


def unpack_event_fields(data: bytes) -> EventFields:
    f = _unpack(data, "event")
    if len(f) != 14 and len(f) != 13:  # 13: logged before possible_duplicate existed
        raise CorruptRecord("event: wrong number of fields")
    return f


def pack_batch(b: BatchCounters) -> bytes:
    return _pack([
        VERSION, b.targeted, b.valid, b.submitted, b.delivered, dict(b.failed), b.billed, dict(b.refused),
        dict(b.failed_at), b.ended, b.ended_submitted, b.charged,
    ])  # fmt: skip


def unpack_batch(data: bytes) -> BatchCounters:
    """Counters written before refusals were counted apart (7 entries) read with those fields zero."""
    f = _unpack(data, "batch")
    if len(f) == 7:
        return BatchCounters(f[1], f[2], f[3], f[4], dict(f[5]), f[6])
    return BatchCounters(f[1], f[2], f[3], f[4], dict(f[5]), f[6], dict(f[7]), dict(f[8]), f[9], f[10], f[11])


# --- balances ---------------------------------------------------------------------------------------------

def pack_balance(available: int, reserved: int, charged: int) -> bytes:
    return _pack([VERSION, available, reserved, charged])


def unpack_balance(data: bytes) -> list[int]:
    """[available, reserved, charged]"""
    f = _unpack(data, "balance")
    return [int(f[1]), int(f[2]), int(f[3])]


@dataclass(frozen=True, slots=True)
class StatementEntry:
    """What moved in one account's balance within one second (one row a second at most): parts reserved by
    accepted messages, charged for delivered parts, released by messages that ended without them, added by
    top-ups (negative: taken back), with the top-up's note."""

    at_ms: int
    reserved: int = 0
    charged: int = 0
    released: int = 0
    topped_up: int = 0
    note: str = ""


def pack_statement(e: StatementEntry) -> bytes:
    return _pack([VERSION, e.at_ms, e.reserved, e.charged, e.released, e.topped_up, e.note])


def unpack_statement(data: bytes) -> StatementEntry:
    f = _unpack(data, "statement")
    return StatementEntry(f[1], f[2], f[3], f[4], f[5], f[6])


# --- templates and batch definitions ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Template:
    """A message template of an account: `text` with {variables}; state draft, pending, approved or
    rejected (`reason` says why); `official` templates need no approval. `rev` counts its writes."""

    text: str
    message_class: str
    state: str
    reason: str = ""
    official: bool = False
    created_ms: int = 0
    updated_ms: int = 0
    rev: int = 0


def pack_template(t: Template) -> bytes:
    return _pack([VERSION, t.text, t.message_class, t.state, t.reason, t.official, t.created_ms, t.updated_ms, t.rev])


def unpack_template(data: bytes) -> Template:
    f = _unpack(data, "template")
    return Template(*f[1:9])


@dataclass(frozen=True, slots=True)
class BatchDef:
    """A batch as the platform created it: a template (its id) or a text, recipients kept by index
    (batch rows), when it runs (`every` once/daily/weekly/monthly from `start_ms` to `end_ms` in
    `time_zone`; start 0: as soon as it is sent) and how far it got: `state` draft, pending (scheduled),
    sending, sent (every run expanded; done or failed once its messages end), stopped; `runs` runs begun,
    `cursor` the next row of the current run to submit, `next_ms` when the next run starts (0: none)."""

    message_class: str
    sender: str
    text: str = ""
    template: str = ""
    every: str = "once"
    start_ms: int = 0
    end_ms: int = 0
    time_zone: str = "UTC"
    validity_seconds: int = 0
    receipt: bool = True
    state: str = "draft"
    reason: str = ""
    recipients: int = 0
    runs: int = 0
    cursor: int = 0
    next_ms: int = 0
    created_ms: int = 0
    updated_ms: int = 0
    stopped_ms: int = 0
    rev: int = 0


_BATCH_DEF_NAMES = tuple(f.name for f in fields(BatchDef))
_BATCH_DEF_FIELDS = len(_BATCH_DEF_NAMES)


def pack_batch_def(b: BatchDef) -> bytes:
    return _pack([VERSION, *(getattr(b, name) for name in _BATCH_DEF_NAMES)])


def unpack_batch_def(data: bytes) -> BatchDef:
    f = _unpack(data, "batch")
    if len(f) != _BATCH_DEF_FIELDS + 1:
        raise CorruptRecord("batch: wrong number of fields")
    return BatchDef(*f[1:])


def pack_batch_row(number: str, values: Mapping[str, str]) -> bytes:
    return _pack([VERSION, number, dict(values)])


def unpack_batch_row(data: bytes) -> tuple[str, dict[str, str]]:
    f = _unpack(data, "batch row")
    if len(f) != 3 or not isinstance(f[1], str) or not isinstance(f[2], dict):
        raise CorruptRecord("batch row: wrong shape")
    return f[1], f[2]


def pack_early(entries: Sequence[EarlyReceipt]) -> bytes:
    """An early-table row: every early receipt listed under one carrier-id key (usually one; two receipts
    whose candidate keys meet share the row, so neither overwrites the other)."""
    return _pack([VERSION, [[int(r.kind), r.reason, r.at_ms, r.raw_id, list(r.keys), r.text] for r in entries]])


def unpack_early(data: bytes, carrier_id: str) -> list[EarlyReceipt]:
    """The receipts of an early-table row under key `carrier_id`. A row written before receipts had
    candidate keys ([VERSION, kind, reason, at_ms]) is one receipt with that key alone."""
    f = _unpack(data, "early receipt")
    if len(f) == _EARLY_FIELDS_V1_0:
        return [EarlyReceipt(Ev(f[1]), f[2], f[3], carrier_id, (carrier_id,))]
    return [EarlyReceipt(Ev(k), reason, at, raw, tuple(ks), bytes(text)) for k, reason, at, raw, ks, text in f[1]]


_EARLY_FIELDS_V1_0 = 4


def pack_unmatched(carrier: str, r: EarlyReceipt, expired_ms: int) -> bytes:
    return _pack([VERSION, carrier, r.raw_id, int(r.kind), r.reason, r.at_ms, expired_ms, r.text, list(r.keys)])


def unpack_unmatched(key: bytes, data: bytes) -> UnmatchedReceipt:
    f = _unpack(data, "unmatched receipt")
    return UnmatchedReceipt(key, f[1], f[2], Ev(f[3]), f[4], f[5], f[6], bytes(f[7]), tuple(f[8]))


def pack_mo_part(carrier: str, text: str, data_coding: int, received_ms: int) -> bytes:
    return _pack([VERSION, carrier, text, data_coding, received_ms])


def unpack_mo_part(key: bytes, data: bytes) -> tuple[KeepMoPart, int]:
    """The part as it was kept, and when (ms), from its key (keys.mo_part_key) and value (pack_mo_part)."""
    source, destination, tail = bytes(key).split(b"\0", 2)
    if len(tail) != 4:
        raise CorruptRecord(f"MO part key {bytes(key)!r}")
    fields = _unpack(data, "MO part")
    if len(fields) != 5:
        raise CorruptRecord(f"MO part: {len(fields)} fields")
    _, carrier, text, data_coding, received_ms = fields
    part = KeepMoPart(
        carrier, source.decode(), destination.decode(), tail[0] << 8 | tail[1], tail[2], tail[3], text, data_coding
    )
    return part, received_ms


def pack_listing(at_ms: int, source: str, note: str = "") -> bytes:
    """An opt-out or blacklist entry: when, how ("mo:CARRIER", "api", "import") and what it said."""
    return _pack([VERSION, at_ms, source, note])


def unpack_listing(data: bytes) -> tuple[int, str, str]:
    """(at_ms, source, note); an entry stored before entries had records (b"") is (0, "", "")."""
    if not data:
        return 0, "", ""
    f = _unpack(data, "list entry")
    return int(f[1]), str(f[2]), str(f[3])


CapCounters = dict[str, list[Any]]
"""A number's frequency-cap counters: counter (keys.cap_counter) -> [window_ms, [accept times, ascending]]."""


def pack_caps(counters: CapCounters) -> bytes:
    return _pack([VERSION, counters])


def unpack_caps(data: bytes) -> CapCounters:
    f = _unpack(data, "cap counters")
    if len(f) != 2 or not isinstance(f[1], dict):
        raise CorruptRecord("cap counters: wrong shape")
    return f[1]


def pack_idem(created_ms: int, ids: tuple[int, ...], fingerprint: bytes = b"") -> bytes:
    """An idempotency record: when, the message ids, and the fingerprint of the request (request_fingerprint)
    so that a resend can be told from another request under the same reference."""
    return _pack([VERSION, created_ms, list(ids), fingerprint])


def unpack_idem(data: bytes) -> tuple[int, tuple[int, ...]]:
    f = _unpack(data, "idempotency key")
    return f[1], tuple(f[2])


def idem_fingerprint(data: bytes) -> bytes:
    """The request fingerprint of an idempotency record; b"" for one written before fingerprints were kept."""
    f = _unpack(data, "idempotency key")
    return bytes(f[3]) if len(f) > 3 else b""


def request_fingerprint(sender: str, text: str, numbers: Sequence[str]) -> bytes:
    """What makes two submits the same request: sender, text and the (normalised) recipients, in order."""
    return hashlib.blake2b(_pack([sender, text, list(numbers)]), digest_size=16).digest()
