"""MO reassembly, pure: parts in (any order, duplicated, interleaved), whole messages out.

Parts are keyed by (source, destination, reference, total), the identity TS 23.040 9.2.3.24.1 gives a
concatenated message; the caller passes `now` (seconds, any monotonic clock) and calls `expire(now)`
from its own timer. A message whose parts stop arriving comes out of `expire` marked incomplete with
the text it has, so nothing a subscriber sent is lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.segmenting.decode import decode_text
from gateway.smpp.constants import EsmClass, Tag

Tlvs = tuple[tuple[int, int | str | bytes], ...]
_Key = tuple[str, str, int, int]


@dataclass(frozen=True, slots=True)
class MoPart:
    """One received deliver_sm's text and, if it is part of a long message, its place in it."""

    source: str
    destination: str
    text: str
    data_coding: int
    ref: int | None = None
    total: int = 1
    seq: int = 1


@dataclass(frozen=True, slots=True)
class MoMessage:
    """A reassembled message. `complete` is False when it expired with `missing` parts (1-based)."""

    source: str
    destination: str
    text: str
    data_coding: int
    parts: int
    complete: bool = True
    missing: tuple[int, ...] = ()
    ref: int | None = None  # the concatenation reference of a long message


@dataclass(slots=True)
class _Pending:
    first_seen: float
    parts: dict[int, MoPart] = field(default_factory=dict)


def mo_part(
    source: str,
    destination: str,
    short_message: bytes,
    data_coding: int,
    esm_class: int,
    tlvs: Tlvs = (),
    *,
    default_is_gsm: bool = True,
) -> MoPart:
    """Build an MoPart from deliver_sm fields: UDH concatenation (8/16-bit) or SAR TLVs, and
    message_payload when present (SMPP 3.4 5.3.2.32: it replaces short_message)."""
    tags = dict(tlvs)
    payload = tags.get(Tag.MESSAGE_PAYLOAD)
    data = payload if isinstance(payload, bytes) else short_message
    decoded = decode_text(data, data_coding, default_is_gsm=default_is_gsm, udhi=bool(esm_class & EsmClass.UDHI))
    concat = decoded.udh.concat if decoded.udh else None
    if concat is not None:
        return MoPart(source, destination, decoded.text, data_coding, concat.ref, concat.total, concat.seq)
    ref, total, seq = (tags.get(t) for t in (Tag.SAR_MSG_REF_NUM, Tag.SAR_TOTAL_SEGMENTS, Tag.SAR_SEGMENT_SEQNUM))
    if isinstance(ref, int) and isinstance(total, int) and isinstance(seq, int):
        return MoPart(source, destination, decoded.text, data_coding, ref, total, seq)
    return MoPart(source, destination, decoded.text, data_coding)


def _join(texts: list[str]) -> str:
    # A UCS-2 sender may cut a surrogate pair across parts; joining the halves and re-reading them
    # makes the character whole again. Lone halves that stay lone become U+FFFD.
    return "".join(texts).encode("utf-16-be", "surrogatepass").decode("utf-16-be", "replace")


class Reassembler:
    """Collects parts until a message is whole or `timeout_seconds` after its first part."""

    __slots__ = ("_done", "_pending", "max_pending", "timeout_seconds")

    def __init__(self, timeout_seconds: float = 300.0, *, max_pending: int = 100_000) -> None:
        self.timeout_seconds = timeout_seconds
        self.max_pending = max_pending  # bounded: a flood of first parts cannot grow memory without end
        self._pending: dict[_Key, _Pending] = {}
        self._done: dict[_Key, float] = {}  # recently completed, so a late duplicate is not a new message

    def add(self, part: MoPart, now: float) -> list[MoMessage]:
        """Add a part; returns the message it completes (or a single-part message), else [] (plus the
        oldest pending message, incomplete, when `max_pending` is reached). Call `expire` regularly."""
        if part.ref is None or part.total <= 1 or not 1 <= part.seq <= part.total:
            return [MoMessage(part.source, part.destination, _join([part.text]), part.data_coding, 1)]
        key = (part.source, part.destination, part.ref, part.total)
        if key in self._done and now - self._done[key] <= self.timeout_seconds:
            return []  # a duplicate of a part of a message already delivered
        evicted: list[MoMessage] = []
        if key not in self._pending and len(self._pending) >= self.max_pending:
            # Full: the oldest message goes out early, marked incomplete (dicts keep insertion order).
            oldest = next(iter(self._pending))
            evicted.append(self._message(oldest, self._pending.pop(oldest), complete=False))
        pending = self._pending.setdefault(key, _Pending(now))
        pending.parts.setdefault(part.seq, part)  # the first copy wins; duplicates are dropped
        if len(pending.parts) < part.total:
            return evicted
        del self._pending[key]
        self._done[key] = now
        return [*evicted, self._message(key, pending, complete=True)]

    def expire(self, now: float) -> list[MoMessage]:
        """Messages whose first part is older than the timeout, oldest first, marked incomplete."""
        late = sorted((p.first_seen, k) for k, p in self._pending.items() if now - p.first_seen >= self.timeout_seconds)
        out = [self._message(key, self._pending.pop(key), complete=False) for _, key in late]
        self._done = {k: t for k, t in self._done.items() if now - t <= self.timeout_seconds}
        return out

    def holds(self, part: MoPart) -> bool:
        """Whether `part` waits here for the rest of its message (it was new, and did not complete it)."""
        pending = self._pending.get((part.source, part.destination, part.ref or 0, part.total))
        return pending is not None and pending.parts.get(part.seq) is part

    @property
    def pending(self) -> int:
        """Messages waiting for parts."""
        return len(self._pending)

    @staticmethod
    def _message(key: _Key, pending: _Pending, *, complete: bool) -> MoMessage:
        source, destination, ref, total = key
        parts = [pending.parts[s] for s in sorted(pending.parts)]
        missing = tuple(s for s in range(1, total + 1) if s not in pending.parts)
        text = _join([p.text for p in parts])
        return MoMessage(source, destination, text, parts[0].data_coding, total, complete, missing, ref)
