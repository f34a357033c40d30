"""An in-memory `UpstreamBackend` for the upstream socket tests: a test double that keeps the promises of
the real engine (idempotent client_ref, cancel only before submission, per-account event log with a stored
cursor, errors from the other cores), without a store or carriers.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import trio

from gateway.smpp.errors import NotEncodable, StoreFull
from gateway.upstream import (
    AdminRequest,
    AdminResult,
    CancelResult,
    ClientRefConflict,
    Event,
    EventKind,
    InvalidRequest,
    ListAction,
    ListEntry,
    ListRequest,
    ListResult,
    MessageQuery,
    MessageStatus,
    NotCancellable,
    NotFound,
    PreviewRequest,
    PreviewResult,
    SubmitRequest,
    SubmitResult,
    SubmittedMessage,
)

# 3GPP TS 23.038 6.2.1: the GSM 7-bit default alphabet (ESC at 0x1B left out) and its extension table,
# whose characters take an escape septet and so count two.
GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = "\f^{}\\[~]|€"
CANCELLABLE = frozenset({"accepted", "scheduled"})


def gsm_septets(text: str) -> int | None:
    """Septets the text takes in GSM 7-bit, or None if a character is outside both tables."""
    total = 0
    for char in text:
        if char in GSM_BASIC:
            total += 1
        elif char in GSM_EXTENSION:
            total += 2
        else:
            return None
    return total


@dataclass
class Record:
    account: str
    status: MessageStatus


@dataclass
class AccountLog:
    seqs: list[int] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    cursor: int = 0


class MemoryBackend:
    def __init__(
        self,
        *,
        gsm_only_accounts: frozenset[str] = frozenset(),
        capacity: int = 1_000_000,
        submit_delay_seconds: float = 0.0,
    ) -> None:
        self.gsm_only_accounts = gsm_only_accounts
        self.capacity = capacity
        self.submit_delay_seconds = submit_delay_seconds
        self.records: dict[str, Record] = {}
        # (account, client_ref) -> (the request's recipients, sender and text; the first result)
        self.refs: dict[tuple[str, str], tuple[tuple[object, ...], SubmitResult]] = {}
        self.logs: dict[str, AccountLog] = {}
        self.gate: trio.Event | None = None
        self.in_submit = 0
        self.max_in_submit = 0
        self.fail_next_with: Exception | None = None
        self._ids = itertools.count(1)
        self._seq = itertools.count(1)
        self.last_seq = 0
        # (account, list name) -> numbers on it, as sent (this backend reads no numbering plan).
        self.listed: dict[tuple[str, str], set[str]] = {}
        self._changed = trio.Event()
        self._submit_progress = trio.Event()

    # --- UpstreamBackend ----------------------------------------------------------------------------

    async def submit(self, account: str, request: SubmitRequest) -> SubmitResult:
        self._count_in_submit(+1)
        try:
            await self._slow_down(request)
            return self._accept(account, request)
        finally:
            self._count_in_submit(-1)

    async def wait_in_submit(self, count: int) -> None:
        """Wait until `count` submits are inside the backend at once."""
        while self.in_submit < count:
            await self._submit_progress.wait()

    async def status(self, account: str, query: MessageQuery) -> Sequence[MessageStatus]:
        await trio.lowlevel.checkpoint()
        return [record.status for record in self._find(account, query)]

    async def cancel(self, account: str, query: MessageQuery) -> CancelResult:
        await trio.lowlevel.checkpoint()
        records = [r for r in self._find(account, query) if r.status.state in CANCELLABLE]
        if not records:
            raise NotCancellable("already submitted to a carrier", field="message_id")
        for record in records:
            record.status = replace(record.status, state="cancelled", updated_at=trio.current_time())
        return CancelResult(tuple(record.status.message_id for record in records))

    async def account(self, account: str, request: AdminRequest) -> AdminResult:
        await trio.lowlevel.checkpoint()
        return AdminResult({"account": account, "command": request.command})

    async def lists(self, account: str, request: ListRequest) -> ListResult:
        await trio.lowlevel.checkpoint()
        on = self.listed.setdefault((account, str(request.list)), set())
        if request.action is ListAction.PAGE:
            after = request.after or ""
            page = sorted(n for n in on if n > after)[: request.limit or 1000]
            return ListResult(tuple(ListEntry(n, n, True) for n in page))
        if request.action is ListAction.ADD:
            on.update(request.numbers)
        elif request.action is ListAction.REMOVE:
            on.difference_update(request.numbers)
        return ListResult(tuple(ListEntry(n, n, n in on) for n in request.numbers))

    async def preview(self, account: str, request: PreviewRequest) -> PreviewResult:
        await trio.lowlevel.checkpoint()
        septets = gsm_septets(request.text)
        if septets is not None:
            return _parts("gsm7", septets, 160, 153)
        self._check_encodable(account, request.text)
        return _parts("ucs2", len(request.text.encode("utf-16-le")) // 2, 70, 67)

    async def read_events(
        self, account: str, after_seq: int, limit: int, kinds: frozenset[EventKind] | None = None
    ) -> Sequence[Event]:
        await trio.lowlevel.checkpoint()
        return self._after(account, after_seq, kinds)[:limit]

    async def wait_events(self, account: str, after_seq: int, kinds: frozenset[EventKind] | None = None) -> None:
        while not self._after(account, after_seq, kinds):
            await self._changed.wait()

    def _after(self, account: str, after_seq: int, kinds: frozenset[EventKind] | None) -> list[Event]:
        log = self.logs.get(account, AccountLog())
        events = log.events[bisect.bisect_right(log.seqs, after_seq) :]
        return events if kinds is None else [e for e in events if e.kind in kinds]

    async def ack_events(self, account: str, seq: int) -> None:
        await trio.lowlevel.checkpoint()
        if seq > self.last_seq:
            raise InvalidRequest(f"seq {seq} is past the last event ({self.last_seq})", field="seq")
        log = self.logs.setdefault(account, AccountLog())
        log.cursor = max(log.cursor, seq)

    async def event_cursor(self, account: str) -> int:
        await trio.lowlevel.checkpoint()
        return self.logs.get(account, AccountLog()).cursor

    async def last_event_seq(self) -> int:
        await trio.lowlevel.checkpoint()
        return self.last_seq

    # --- what the engine would do later ---------------------------------------------------------------

    def emit(self, account: str, kind: EventKind, message_id: str | None = None, **extra: Any) -> Event:
        event = Event(next(self._seq), kind, trio.current_time(), message_id=message_id, **extra)
        self.last_seq = event.seq
        log = self.logs.setdefault(account, AccountLog())
        log.seqs.append(event.seq)
        log.events.append(event)
        self._changed.set()
        self._changed = trio.Event()
        return event

    def _count_in_submit(self, delta: int) -> None:
        self.in_submit += delta
        self.max_in_submit = max(self.max_in_submit, self.in_submit)
        self._submit_progress.set()
        self._submit_progress = trio.Event()

    def set_state(self, message_id: str, state: str) -> None:
        record = self.records[message_id]
        record.status = replace(record.status, state=state)

    # --- internals ----------------------------------------------------------------------------------

    async def _slow_down(self, request: SubmitRequest) -> None:
        if self.fail_next_with is not None:
            error, self.fail_next_with = self.fail_next_with, None
            raise error
        if self.gate is not None:
            await self.gate.wait()
        # Tests make answers finish out of order with a per-request delay carried in the batch id.
        delay = float(request.batch_id) if request.batch_id else self.submit_delay_seconds
        await trio.sleep(delay)

    def _accept(self, account: str, request: SubmitRequest) -> SubmitResult:
        key = (account, request.client_ref) if request.client_ref else None
        same = (request.to, request.sender, request.text)
        if key is not None and key in self.refs:
            first, result = self.refs[key]
            if first != same:
                raise ClientRefConflict("client_ref was used for another request", field="client_ref")
            return replace(result, duplicate=True)
        self._check_encodable(account, request.text)
        if len(self.records) + len(request.to) > self.capacity:
            raise StoreFull("store is full")
        messages = []
        for to in request.to:
            message_id = f"m{next(self._ids)}"
            state = "scheduled" if request.schedule_at is not None else "accepted"
            now = trio.current_time()
            status = MessageStatus(message_id, to, state, client_ref=request.client_ref, created_at=now, updated_at=now)
            self.records[message_id] = Record(account, status)
            messages.append(SubmittedMessage(to, message_id))
        result = SubmitResult(tuple(messages))
        if key is not None:
            self.refs[key] = (same, result)
        return result

    def _check_encodable(self, account: str, text: str) -> None:
        if account in self.gsm_only_accounts:
            for position, char in enumerate(text):
                if gsm_septets(char) is None:
                    raise NotEncodable(char, position, "gsm7")

    def _find(self, account: str, query: MessageQuery) -> list[Record]:
        if query.message_id is not None:
            record = self.records.get(query.message_id)
            found = [record] if record is not None and record.account == account else []
        else:
            found = [
                r for r in self.records.values() if r.account == account and r.status.client_ref == query.client_ref
            ]
        if not found:
            raise NotFound("no such message", field="message_id" if query.message_id else "client_ref")
        return found


def _parts(encoding: str, units: int, single: int, multi: int) -> PreviewResult:
    # 3GPP TS 23.040 9.2.3.24.1: the 6-byte concatenation UDH leaves 153 septets or 67 UCS-2 characters.
    per_part = single if units <= single else multi
    parts = max(1, math.ceil(units / per_part))
    return PreviewResult(encoding, parts, units, parts * per_part - units, per_part)
