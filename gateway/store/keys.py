"""Key layout: every integer is big-endian so LMDB's byte order is numeric (time) order.

Sub-databases and their keys (values are in records.py):

    messages    id(8)                                   -> message record (segments inline)
    carrier_ix  carrier \\0 normalised carrier id         -> id(8) seg(2)
    early       carrier \\0 candidate carrier id          -> early receipts (a list: each receipt is
                                                                   listed under every candidate key of its id)
    early_time  at_ms(8) carrier \\0 first candidate      -> b""   (early receipts in arrival order, so the
                                                                   sweep moves the stale ones to unmatched)
    unmatched   at_ms(8) carrier \\0 raw receipt id       -> unmatched receipt record (no response came)
    due         due_ms(8) id(8)                          -> b""   (new, deferred, retry back-off)
    deadline    deadline_ms(8) id(8)                     -> b""   (when a live message must end: its
                                                                   validity while waiting, its receipt
                                                                   deadline while submitted or unknown)
    inflight    id(8) seg(2)                             -> b""   (segments in "submitting")
    recipient   number \\0 id(8)                          -> b""
    finals      final_ms(8) id(8)                        -> b""   (retention order)
    batches     account \0 batch id                      -> batch counters (a recurring batch's later runs:
                                                                   batch id #run)
    events      seq(8)                                   -> event record
    optout      scope \\0 number  (scope "" = all)        -> opt-out record (when, source, note; b"" before)
    blacklist   number (every message), or               -> b"" or a blacklist record (when, source)
                scope \\0 number (account:NAME, carrier:NAME)
    freq        number \\0 window_start_ms(8)             -> count(4)   (no longer written; swept away)
    caps        number                                   -> cap record: per counter (rule \\0 scope) its window and
                                                                   the accept times it counts (all of a number's
                                                                   counters in one row: one read, one write a
                                                                   recipient)
    idem        account \\0 client reference              -> idempotency record
    idem_time   created_ms(8) account \\0 reference       -> b""
    concat      destination                              -> last reference(2)
    ported      generation(4) E.164 digits (ascii)       -> network name utf-8 (number portability)
    ported_meta b"current"                               -> generation(4) the lookups read (0: no table)

Portability generations: an import (a full replace) writes every row under a generation no reader uses,
chunk by chunk, then one op switches `current` to it, and the other generations are purged in bounded
chunks. A lookup reads `current` and its row in one read transaction, so it sees one table or the other,
never a mix.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

_U64 = struct.Struct(">Q")
_U64U64 = struct.Struct(">QQ")
_U64U16 = struct.Struct(">QH")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")

DB_NAMES = (
    b"messages",
    b"carrier_ix",
    b"early",
    b"due",
    b"inflight",
    b"recipient",
    b"finals",
    b"batches",
    b"events",
    b"optout",
    b"blacklist",
    b"freq",
    b"idem",
    b"idem_time",
    b"concat",
    b"cursors",  # account -> u64 event sequence the account's subscriber acknowledged
    b"deadline",
    b"early_time",
    b"unmatched",
    b"mo_parts",  # a long MO's parts received and acknowledged while it waits for the rest (ops.KeepMoPart)
    b"ported",  # number portability rows, by generation (ops.PortedRows)
    b"ported_meta",  # the current portability generation (ops.PortedSwitch)
    b"caps",  # frequency-cap counters (ops.CapCheck)
    b"balances",  # account -> records.pack_balance (no row: unlimited)
    b"statement",  # account \0 second(8) -> records.StatementEntry (what moved in that second)
    b"templates",  # account \0 template id -> records.Template
    b"batch_defs",  # account \0 batch id -> records.BatchDef
    b"batch_due",  # next_ms(8) account \0 batch id -> b"" (a batch's next run)
    b"batch_rows",  # account \0 batch id \0 index(8) -> records.pack_batch_row
    b"batch_ix",  # account \0 counters id \0 message id(8) -> b"" (every message of a batch run)
    b"batch_out",  # account \0 counters id \0 outcome(1) message id(8) -> b"" (ended: keys.OUTCOMES)
)

# Message ids: milliseconds since EPOCH_MS in the top 42 bits (139 years), a counter in the low 22 bits
# (4 million ids per millisecond), so ids sort by creation time and fit a signed 64-bit integer downstream.
EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
COUNTER_BITS = 22


# The struct's own bound method: no Python frame per key (a receipt builds several).
u64: Callable[[int], bytes] = _U64.pack


def from_u64(b: bytes) -> int:
    return int(_U64.unpack(b)[0])


def u16(n: int) -> bytes:
    return _U16.pack(n)


def from_u16(b: bytes) -> int:
    return int(_U16.unpack(b)[0])


def u32(n: int) -> bytes:
    return _U32.pack(n)


def from_u32(b: bytes) -> int:
    return int(_U32.unpack(b)[0])


# due / finals key (ms, msg_id): time first so a cursor walks in time order.
time_key: Callable[[int, int], bytes] = _U64U64.pack


def split_time_key(key: bytes) -> tuple[int, int]:
    ms, msg_id = _U64U64.unpack(key)
    return int(ms), int(msg_id)


# inflight key and carrier_ix value (msg_id, segment).
seg_key: Callable[[int, int], bytes] = _U64U16.pack


# Its inverse, the struct's own method too: a receipt splits the carrier_ix value it found.
split_seg_key: Callable[[bytes], tuple[int, int]] = _U64U16.unpack


# Portability: the meta key holding the current generation, and the generation's bounds (a u32).
PORTED_CURRENT = b"current"
MAX_GENERATION = 0xFFFF_FFFF


def ported_key(generation: int, e164: str) -> bytes:
    """`generation(4) digits`: a generation's rows sit together, in number order."""
    return _U32.pack(generation) + e164.encode()


def text_pair(a: str, b: str) -> bytes:
    """`a \\0 b`: the NUL cannot occur in an account, carrier name or number, so prefixes do not collide."""
    # One encode of the joined text: UTF-8 of a concatenation is the concatenation of the UTF-8s.
    return f"{a}\0{b}".encode()


def mo_part_key(source: str, destination: str, ref: int, total: int, seq: int) -> bytes:
    """`source \0 destination \0` then the concatenation reference (u16), part count and part number
    (u8 each): TS 23.040 9.2.3.24.1's identity of a part, so a long MO's parts sit together."""
    return f"{source}\0{destination}\0".encode() + bytes((ref >> 8 & 0xFF, ref & 0xFF, total & 0xFF, seq & 0xFF))


def timed_pair(ms: int, a: str, b: str) -> bytes:
    """`ms(8) a \\0 b`: early_time and unmatched keys, in time order."""
    return _U64.pack(ms) + f"{a}\0{b}".encode()


def split_timed_pair(key: bytes) -> tuple[int, str, str]:
    a, _, b = key[8:].decode().partition("\0")
    return int(_U64.unpack(key[:8])[0]), a, b


def recipient_key(number: str, msg_id: int) -> bytes:
    return number.encode() + b"\0" + _U64.pack(msg_id)


def cap_counter(rule: str, scope: str) -> str:
    """`rule \\0 scope`: which counter of a number's cap record a rule and scope count in."""
    return f"{rule}\0{scope}"


def blacklist_key(scope: str, number: str) -> bytes:
    """The number alone for the global list (as before lists had scopes), else `scope \\0 number`."""
    return f"{scope}\0{number}".encode() if scope else number.encode()


def id_time_ms(msg_id: int) -> int:
    return (msg_id >> COUNTER_BITS) + EPOCH_MS


class IdClock:
    """Hands out time-ordered 64-bit message ids, strictly increasing even if the wall clock steps back."""

    def __init__(self, last_id: int = 0) -> None:
        self._last = last_id

    def next(self, now_ms: int | None = None) -> int:
        ms = int(time.time() * 1000) if now_ms is None else now_ms
        candidate = max(ms - EPOCH_MS, 0) << COUNTER_BITS
        self._last = max(candidate, self._last + 1)
        return self._last


# A batch message's outcome in the batch_out index (a report's details filter by it).
OUTCOMES = {"delivered": 1, "failed": 2, "refused": 3}


def batch_prefix(account: str, batch: str) -> bytes:
    """`account \\0 batch \\0`: the rows, messages or outcomes of one batch (run) sit together."""
    return f"{account}\0{batch}\0".encode()


def batch_ix_key(account: str, batch: str, msg_id: int) -> bytes:
    return batch_prefix(account, batch) + _U64.pack(msg_id)


def batch_out_key(account: str, batch: str, outcome: int, msg_id: int) -> bytes:
    return batch_prefix(account, batch) + bytes((outcome,)) + _U64.pack(msg_id)


def batch_row_key(account: str, batch: str, index: int) -> bytes:
    return batch_prefix(account, batch) + _U64.pack(index)


def statement_key(account: str, at_ms: int) -> bytes:
    """One row a second: `account \\0 second(8)`."""
    return account.encode() + b"\0" + _U64.pack(at_ms // 1000)
