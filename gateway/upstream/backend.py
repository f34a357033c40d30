"""What the upstream server needs from the engine: the `UpstreamBackend` protocol.

The server validates frames and authenticates; every operation is then delegated here, with the
authenticated account. A method may raise an `UpstreamError` subclass (gateway.upstream.errors), or a
`StoreFull` / `NotEncodable` / `MessageTooLong` from the other cores; the server answers with the matching
error frame. Any other exception is answered as `internal` and logged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gateway.upstream.schema import (
    AdminRequest,
    AdminResult,
    CancelResult,
    EncodedEvent,
    Event,
    EventKind,
    ListRequest,
    ListResult,
    MessageQuery,
    MessageStatus,
    PreviewRequest,
    PreviewResult,
    SubmitRequest,
    SubmitResult,
)


class UpstreamBackend(Protocol):
    async def submit(self, account: str, request: SubmitRequest) -> SubmitResult:
        """Accept a message for every recipient; return only after the store committed them.

        The same `client_ref` from the same account twice returns the first call's message ids with
        `duplicate=True` and stores nothing new.
        """
        ...

    async def status(self, account: str, query: MessageQuery) -> Sequence[MessageStatus]:
        """The account's messages with this id or client reference; raise `NotFound` for none."""
        ...

    async def cancel(self, account: str, query: MessageQuery) -> CancelResult:
        """Cancel messages not yet submitted to a carrier: `NotFound`, or `NotCancellable` if none could."""
        ...

    async def preview(self, account: str, request: PreviewRequest) -> PreviewResult:
        """Encoding and part count the text would take; `NotEncodable` / `MessageTooLong` if it can't go."""
        ...

    async def read_events(
        self, account: str, after_seq: int, limit: int, kinds: frozenset[EventKind] | None = None
    ) -> Sequence[Event | EncodedEvent]:
        """Up to `limit` of the account's events with seq > after_seq, in increasing seq order (as `Event`s,
        or already encoded as frames); only those of `kinds` when given."""
        ...

    async def wait_events(self, account: str, after_seq: int, kinds: frozenset[EventKind] | None = None) -> None:
        """Return once the account has an event (of `kinds`, when given) with seq > after_seq (at once if it
        has one already)."""
        ...

    async def ack_events(self, account: str, seq: int) -> None:
        """Store the account's cursor: events up to seq are consumed. A lower seq than stored is a no-op.

        A seq past the last event in the log (of any account) is refused with `InvalidRequest` (field
        `seq`), never stored: a cursor ahead of the log would hide every event logged up to it.
        """
        ...

    async def lists(self, account: str, request: ListRequest) -> ListResult:
        """Add, remove or check numbers on one of the account's lists (opt-out, blacklist), or read a page of
        it in number order. Each number is read as `submit` reads a recipient; one that is no number gets
        its entry with reason invalid_number, the others are changed (durably, before the answer)."""
        ...

    async def account(self, account: str, request: AdminRequest) -> AdminResult:
        """The account's own batches (made, sent, stopped, reported), templates and balance: the admin
        commands `batch`, `template` and `balance` for this account only (docs/protocol.md, `account`)."""
        ...

    async def event_cursor(self, account: str) -> int:
        """The account's stored cursor (0 if it never acknowledged), where a resuming subscriber starts."""
        ...

    async def last_event_seq(self) -> int:
        """The newest event's seq in the log (of any account); 0 when there is none."""
        ...


class AdminBackend(Protocol):
    """The operator's commands, served on the admin socket only (docs/admin.md)."""

    async def admin(self, account: str | None, request: AdminRequest) -> AdminResult:
        """Run one command; `account` is the one the hello named (None: the operator's own "*")."""
        ...
