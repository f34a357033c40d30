"""What several gateway nodes share, as values [pure]: config, key names, scripts and formats.

Each node keeps its own LMDB store as its durable queue and message record; nothing acknowledged depends on
Valkey being up. What the nodes must share lives in Valkey under `key_prefix` (docs/scaling.md):

    {p}:optout          hash  scope \\0 number -> listing   every node's opt-outs, checked at accept
    {p}:blacklist       hash  scope \\0 number -> listing   blacklists ("", "account:NAME", "carrier:NAME")
    {p}:lists           stream of list changes               each node copies them into its own store
    {p}:cap:RULE\\0SCOPE\\0NUMBER  sorted set of accept times a frequency cap's sliding window, every node's
    {p}:r:CARRIER\\0ID   string -> node                       the receipt map: who sent the part with this id
    {p}:handover:NODE   stream of receipts                   receipts other nodes received for NODE's parts
                                                             (and "taken" notices for NODE's orphans)
    {p}:orphans         stream of receipts                   receipts no node mapped: offered to every node
    {p}:tps:CARRIER:SEC counter; {p}:tpsn:CARRIER zset       a carrier account's TPS budget, per second
    {p}:node:NODE       string -> run token, with a TTL       the one running node of that name (`CLAIM`)
    {p}:probe:NODE      string, with a TTL                    written when a node looks whether Valkey is back

The suppression check and the caps run in one server-side script per group of recipients (`CHECK`): all of a
recipient's caps must have room before any counts it, so two nodes accepting at once cannot both pass a cap of
one. The scripts address keys they build themselves, so the shared Valkey is a primary (with replicas or
Sentinel for availability), not a Valkey Cluster.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgpack

from gateway.config import limits
from gateway.lifecycle import Ev

VERSION = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    """[cluster]: this node's name and the Valkey (or Redis) the nodes share. Without the table the gateway is
    one node and connects to nothing."""

    # Unique among the nodes: receipts for this node's messages are handed to it under this name.
    node: str
    valkey_host: str = "127.0.0.1"
    valkey_port: int = field(default=6379, metadata=limits(1, 65535))
    valkey_db: int = field(default=0, metadata=limits(0, 15))
    # The password (Valkey's requirepass or an ACL user's), from the environment or a file, never the TOML.
    valkey_username: str = ""
    valkey_password_env: str | None = None
    valkey_password_file: str | None = None
    key_prefix: str = "gw"
    # One call to Valkey that takes longer counts as Valkey unreachable.
    timeout_seconds: float = field(default=1.0, metadata=limits(0.01, 60.0))
    # While Valkey is unreachable, how often it is tried again.
    retry_seconds: float = field(default=1.0, metadata=limits(0.05, 300.0))
    # Classes refused for now (retryable: "overloaded", ESME_RTHROTTLED) while Valkey is unreachable: their
    # opt-outs and caps cannot be checked against the other nodes. The others go out with this node's checks.
    hold_classes: tuple[str, ...] = ("marketing", "notification")
    # How many nodes share each carrier's account_tps: while Valkey is unreachable a node sends 1/nodes of it.
    nodes: int = field(default=2, metadata=limits(1, 1000))
    # How long a part's entry in the receipt map lives; 0: its carrier's receipt_timeout_seconds.
    receipt_map_seconds: float = field(default=0.0, metadata=limits(0.0, 90 * 86400.0))
    # A receipt no node had claimed yet (it came before its submit_sm_resp was mapped) is looked up again
    # for this long.
    late_receipt_seconds: float = field(default=600.0, metadata=limits(1.0, 86400.0))
    # One still unmapped after this long is offered to every node: the node whose store sent its part takes it
    # (its map entry was lost: Valkey's data, or a node that stopped while its entries waited for Valkey).
    orphan_seconds: float = field(default=10.0, metadata=limits(0.1, 86400.0))
    # List changes kept in the stream for nodes that were away; one further behind copies the lists whole.
    lists_stream_length: int = field(default=1_000_000, metadata=limits(1000, None))
    # Map entries, list changes and late receipts kept in memory while Valkey is unreachable.
    backlog: int = field(default=200_000, metadata=limits(1000, None))
    # A receipt handed to another node is acknowledged to the carrier once Valkey has written it to its
    # append-only file (WAITAOF); off only for a Valkey without one (receipts in flight die with it).
    handover_fsync: bool = True

    def mistakes(self) -> list[tuple[str, str]]:
        found = []
        if not self.node or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in self.node) or len(
            self.node
        ) > 64:  # it names this node's Valkey connection too, which takes ASCII only
            found.append(("node", "a name of 1-64 ASCII letters, digits, '-', '_' or '.', unique among the nodes"))
        if not self.key_prefix or any(c in self.key_prefix for c in " \0"):
            found.append(("key_prefix", "a non-empty prefix without spaces"))
        if self.valkey_password_env and self.valkey_password_file:
            found.append(("valkey_password_env", "set valkey_password_env or valkey_password_file, not both"))
        return found

    def held(self, message_class: str) -> bool:
        """Whether a message of this class waits (is refused for now) while Valkey is unreachable."""
        return message_class in self.hold_classes


# --- keys ---------------------------------------------------------------------------------------------


class Keys:
    """The key names under one prefix."""

    __slots__ = ("blacklist", "lists", "optout", "orphans", "prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.optout = f"{prefix}:optout"
        self.blacklist = f"{prefix}:blacklist"
        self.lists = f"{prefix}:lists"
        self.orphans = f"{prefix}:orphans"

    def handover(self, node: str) -> str:
        return f"{self.prefix}:handover:{node}"

    def node(self, node: str) -> str:
        return f"{self.prefix}:node:{node}"

    def probe(self, node: str) -> str:
        return f"{self.prefix}:probe:{node}"

    def receipt(self, carrier: str, carrier_id: str) -> str:
        return f"{self.prefix}:r:{carrier}\0{carrier_id}"

    def tps(self, carrier: str) -> tuple[str, str]:
        return f"{self.prefix}:tps:{carrier}", f"{self.prefix}:tpsn:{carrier}"


def list_field(scope: str, number: str) -> str:
    """A list entry's field in the shared hashes: `scope \\0 number` (scope "" for every account)."""
    return f"{scope}\0{number}"


# --- list changes ------------------------------------------------------------------------------------


def _pack(fields: list[Any]) -> bytes:
    packed: bytes = msgpack.packb(fields)
    return packed


_T = TypeVar("_T")


def _fields(raw: Any, at_least: int, what: str, *, versioned: bool = True) -> list[Any]:
    """A stored entry's fields; ValueError (never another error: the loops skip what they cannot read and go
    on) for anything else: another format, another version, bytes that are not msgpack."""
    try:
        f = msgpack.unpackb(raw)
    except Exception as err:  # msgpack raises several types for bytes that are not msgpack
        raise ValueError(f"not {what}: {raw!r:.80}") from err
    if not isinstance(f, list) or len(f) < at_least or (versioned and f[0] != VERSION):
        raise ValueError(f"not {what}: {raw!r:.80}")
    return f


def _read(raw: bytes, what: str, build: Callable[[], _T]) -> _T:
    """build() from fields of the wrong type (None for a number, a number for a list) is a ValueError."""
    try:
        return build()
    except (TypeError, ValueError) as err:
        raise ValueError(f"not {what}: {raw!r:.80} ({err})") from err


@dataclass(frozen=True, slots=True)
class ListChange:
    """An opt-out or blacklist entry set (`present`) or removed, as one node made it and every node copies."""

    table: str  # "optout" or "blacklist"
    number: str
    scope: str
    present: bool
    source: str = ""
    note: str = ""
    at_ms: int = 0
    node: str = ""


def pack_change(c: ListChange) -> bytes:
    return _pack([VERSION, c.table, c.number, c.scope, c.present, c.source, c.note, c.at_ms, c.node])


def unpack_change(raw: bytes) -> ListChange:
    """Raises ValueError for an entry this version cannot read."""
    f = _fields(raw, 9, "a list change")
    if f[1] not in ("optout", "blacklist"):
        raise ValueError(f"not a list change: {raw[:60]!r}")
    return _read(raw, "a list change", lambda: ListChange(
        f[1], str(f[2]), str(f[3]), bool(f[4]), str(f[5]), str(f[6]), int(f[7]), str(f[8])))  # fmt: skip


def pack_listing(at_ms: int, source: str, note: str) -> bytes:
    """A list entry's value in the shared hashes (the store keeps its own copy in its own format)."""
    return _pack([VERSION, at_ms, source, note])


def unpack_listing(raw: bytes) -> tuple[int, str, str]:
    """Raises ValueError for a value this version cannot read."""
    f = _fields(raw, 4, "a listing", versioned=False)
    return _read(raw, "a listing", lambda: (int(f[1]), str(f[2]), str(f[3])))


# --- receipts handed over -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandedReceipt:
    """A receipt one node received for a part another node sent: what the owner's store needs to match it
    (store.ops.Receipt's fields), and who received it."""

    carrier: str
    carrier_id: str
    kind: Ev
    reason: str
    alternatives: tuple[str, ...]
    raw_id: str
    text: bytes
    via: str


def pack_receipt(r: HandedReceipt) -> bytes:
    return _pack(
        [VERSION, r.carrier, r.carrier_id, int(r.kind), r.reason, list(r.alternatives), r.raw_id, r.text, r.via]
    )


def unpack_receipt(raw: bytes) -> HandedReceipt:
    """Raises ValueError for an entry this version cannot read."""
    f = _fields(raw, 9, "a handed-over receipt")
    try:
        kind = Ev(f[3])
    except (TypeError, ValueError) as err:
        raise ValueError(f"unknown receipt kind {f[3]!r}") from err
    if not isinstance(f[5], list | tuple) or not isinstance(f[7], bytes):
        raise ValueError(f"not a handed-over receipt: {raw[:60]!r}")
    return _read(raw, "a handed-over receipt", lambda: HandedReceipt(
        str(f[1]), str(f[2]), kind, str(f[4]), tuple(map(str, f[5])), str(f[6]), f[7], str(f[8])))  # fmt: skip


def pack_forget(carrier: str, carrier_id: str) -> bytes:
    """A notice in a node's handover stream: the early receipt it offered to every node was taken."""
    return _pack([VERSION, carrier, carrier_id])


def unpack_forget(raw: bytes) -> tuple[str, str]:
    """Raises ValueError for a notice this version cannot read."""
    f = _fields(raw, 3, "a notice")
    return str(f[1]), str(f[2])


# --- stream ids as store cursors ------------------------------------------------------------------------

# A stream id "ms-seq" as one integer the store's cursors hold (64 bits), in the same order: 42 bits of ms
# last past the year 2100, 21 bits of seq allow two million entries a millisecond.
_SEQ_BITS = 21


def stream_cursor(stream_id: str | bytes) -> int:
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    ms, _, seq = text.partition("-")
    return (int(ms) << _SEQ_BITS) | min(int(seq or 0), (1 << _SEQ_BITS) - 1)


def stream_id(cursor: int) -> str:
    return f"{cursor >> _SEQ_BITS}-{cursor & ((1 << _SEQ_BITS) - 1)}"


# --- the check at accept --------------------------------------------------------------------------------

# ARGV: prefix, member prefix, then per group of recipients (one submit): account, check_optout ("1"/"0"),
# caps count, per cap: rule, scope, window_ms, limit; then the numbers count and the numbers. Returns one
# integer a recipient, in order: 0 may go (its caps counted), 1 the gateway's blacklist, 2 the account's
# blacklist, 3 opted out of every account's, 4 opted out of the account's, 10 + i its cap i (0-based) is full.
# Opt-out order as the store's (store._listed). Few calls a recipient (each redis.call costs more than the
# command it runs): one HMGET a list, and a cap's set trimmed only when it holds `limit` entries (fewer cannot
# fill it; the key expires a window after its last entry).
CHECK = """
local p = ARGV[1]
local member = ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local bl, oo = p .. ':blacklist', p .. ':optout'
local out = {}
local i = 3
local n = 0
local nargs = #ARGV
while i <= nargs do
  local account, optout, ncaps = ARGV[i], ARGV[i + 1] == '1', tonumber(ARGV[i + 2])
  i = i + 3
  local caps = {}
  for c = 1, ncaps do
    local prefix = p .. ':cap:' .. ARGV[i] .. '\\0' .. ARGV[i + 1] .. '\\0'
    caps[c] = {prefix, tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])}
    i = i + 4
  end
  local count = tonumber(ARGV[i])
  i = i + 1
  local bl_account, oo_account = 'account:' .. account .. '\\0', account .. '\\0'
  for _ = 1, count do
    local number = ARGV[i]
    i = i + 1
    n = n + 1
    local verdict = 0
    local b = redis.call('HMGET', bl, '\\0' .. number, bl_account .. number)
    if b[1] then verdict = 1
    elseif b[2] then verdict = 2
    elseif optout then
      local o = redis.call('HMGET', oo, '\\0' .. number, oo_account .. number)
      if o[1] then verdict = 3
      elseif o[2] then verdict = 4
      end
    end
    if verdict == 0 then
      for c = 0, ncaps - 1 do
        local cap = caps[c + 1]
        local key = cap[1] .. number
        if redis.call('ZCARD', key) >= cap[3] then
          redis.call('ZREMRANGEBYSCORE', key, '-inf', now - cap[2])
          if redis.call('ZCARD', key) >= cap[3] then
            verdict = 10 + c
            break
          end
        end
      end
    end
    if verdict == 0 then
      for _, cap in ipairs(caps) do
        local key = cap[1] .. number
        redis.call('ZADD', key, now, member .. ':' .. n)
        redis.call('PEXPIRE', key, cap[2])
      end
    end
    out[n] = verdict
  end
end
return out
"""

LISTED = {1: "blacklisted", 2: "blacklisted", 3: "opted_out", 4: "opted_out"}


@dataclass(frozen=True, slots=True)
class CapRule:
    rule: str
    scope: str
    window_seconds: int
    limit: int


def check_args(groups: list[tuple[str, bool, tuple[CapRule, ...], list[str]]]) -> list[str | int]:
    """CHECK's ARGV after the prefix and member, for groups of (account, check opt-out, caps, numbers)."""
    out: list[str | int] = []
    for account, optout, caps, numbers in groups:
        out += [account, "1" if optout else "0", len(caps)]
        for c in caps:
            out += [c.rule, c.scope, c.window_seconds * 1000, c.limit]
        out.append(len(numbers))
        out += numbers
    return out


def verdict(code: int, account: str, message_class: str, caps: tuple[CapRule, ...]) -> tuple[str, str]:
    """CHECK's answer for one recipient as (reason, detail for a person); ("", "") when it may go."""
    if code == 0:
        return "", ""
    if code == 1:
        return "blacklisted", "on the gateway's blacklist"
    if code == 2:
        return "blacklisted", f"on account {account}'s blacklist"
    if code == 3:
        return "opted_out", f"opted out of every account's {message_class} messages (on another node)"
    if code == 4:
        return "opted_out", f"opted out of account {account}'s {message_class} messages (on another node)"
    cap = caps[code - 10] if 0 <= code - 10 < len(caps) else None
    if cap is None:
        return "frequency_capped", "a frequency cap, counted across the nodes"
    return "frequency_capped", f"rule {cap.rule}: at most {cap.limit} in {cap.window_seconds} s, across the nodes"


# --- one running node a name ---------------------------------------------------------------------------

# KEYS: the name's key. ARGV: this run's token, the claim's TTL in ms. Claims (or keeps) the name for this run
# and returns "", or returns the token of the other run that holds it. A running node renews its claim every
# third of the TTL; a node killed holds its name for at most the TTL.
CLAIM = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return holder end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ''
"""

# KEYS: the name's key. ARGV: this run's token. Lets the name go at a clean stop (only if this run holds it).
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""


def claim_ttl_ms(timeout_seconds: float) -> int:
    """How long a node's claim on its name lives unrenewed: three renewals (each may take the timeout)."""
    return max(3000, math.ceil(timeout_seconds * 3000))


# --- a carrier account's TPS budget ----------------------------------------------------------------------

# KEYS: receipt-map keys. ARGV: the node, then each key's TTL in ms (0: the entry goes). In order, in one
# call: a chunk of map writes costs the client one command instead of one per part.
MAP = """
for i, key in ipairs(KEYS) do
  local ttl = tonumber(ARGV[i + 1])
  if ttl > 0 then
    redis.call('SET', key, ARGV[1], 'PX', ttl)
  else
    redis.call('DEL', key)
  end
end
return #KEYS
"""


# KEYS: the per-second counter prefix, the asking-nodes set. ARGV: node, tokens wanted, the account's TPS,
# ticks a second. Grants at most the rest of this second's budget, and at most this node's share of a tick
# (the nodes that asked within the last second share it), so the nodes' binds together never exceed the
# carrier's count for any second, and none bursts a second's worth at once. Returns {granted, ms into the
# second} on Valkey's clock, so every node counts the same seconds.
TPS = """
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now = sec * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 1000)
redis.call('PEXPIRE', KEYS[2], 5000)
local nodes = redis.call('ZCARD', KEYS[2])
local limit, ticks = tonumber(ARGV[3]), tonumber(ARGV[4])
local share = math.max(1, math.ceil(limit / nodes / ticks))
local key = KEYS[1] .. ':' .. sec
local used = tonumber(redis.call('GET', key) or '0')
local grant = math.min(tonumber(ARGV[2]), share, limit - used)
if grant > 0 then
  redis.call('INCRBY', key, grant)
  redis.call('EXPIRE', key, 5)
else
  grant = 0
end
return {grant, now % 1000}
"""

TICKS_PER_SECOND = 10


def tps_want(budget_rate: float, used: int, starved: bool) -> int:
    """Tokens a node asks for its next tick: a full tick's worth when its binds waited on the budget or used
    most of the last grant, else what it used and a little more (an idle node asks for nothing)."""
    full = max(1, math.ceil(budget_rate / TICKS_PER_SECOND))
    if starved:
        return full
    return min(full, used + max(1, used // 2)) if used else 0


def unpack_int_list(raw: Any) -> list[int]:
    """A script's integer array as ints (a RESP3 client may hand back a tuple)."""
    return [int(x) for x in raw]
