"""Message and segment lifecycle: the states, the one transition table, and `advance()`.

A segment (one submit_sm on the wire) moves through the states below; a message's state is derived from its
segments' states by `message_state()`. Before the engine splits a message it has one segment (index 0) that
stands for the whole text; the store replaces it with the real parts when the message is dispatched.

    accepted --schedule--> queued --dispatch--> submitting --submit_ok--> submitted --receipt--> final
       |  \\--defer--> deferred --schedule--/       |  \\--lost--> unknown --submit_ok (late)--/
       |                                          |  \\--resend (recovery, at-least-once)--> queued
       |                                          |  \\--requeue (never written)--> queued
       \\--policy_reject / cancel / expire / fail  \\--submit_retry--> deferred (back-off)
                                                    \\--submit_reject--> rejected

Every message ends. A segment waiting for something outside the gateway has a deadline in `due_ms`, so the
store's due index brings it back to the scheduler when it passes: a waiting segment its due time, a
submitted or unknown one its receipt deadline (the SUBMIT_OK or LOST event's `until_ms`, the carrier's
receipt timeout, else `RECEIPT_TIMEOUT_MS`), after which the engine ends it with EXPIRE and `no_receipt`.

Final states are delivered, undeliverable, expired, rejected, failed and cancelled. A final state stays final
except for the documented receipt upgrades (`UPGRADES`): a carrier that reported EXPIRED or UNDELIVERABLE
and later reports DELIVRD is believed, because a handset acknowledgement cannot be invented. A receipt that
repeats the state it would produce, or one older than a delivery (out of order), is ignored and counted
(`IGNORED`). Every (state, event) pair not in `TRANSITIONS` or `IGNORED` raises `InvalidTransition`.
POLICY_REJECT, SUBMIT_REJECT and FAIL must carry a reason from the list below (else `InvalidReason`); the
other final events imply theirs (delivered, expired, cancelled, undeliverable:unknown).

Reason codes (`REASONS`) are the only strings a final state carries; two are parameterised:

    delivered               the handset received it (receipt DELIVRD)
    opted_out               the recipient asked not to receive messages from this account
    blacklisted             the number is on the operator's blacklist
    frequency_capped        the recipient already got the allowed number of messages in the window
    content_blocked         every carrier of the recipient's route blocks a word of the text
    content_banned          the text holds a banned word (compliance.banned_words)
    signature_missing       the account's texts must carry a signature 【Brand】 and this one has none
    signature_invalid       the signature breaks a rule (length, reserved name, symbol, not approved)
    optout_missing          a text of this class must offer an opt-out and the account appends none
    invalid_number          the number cannot be normalised to a routable E.164 number
    no_route                no carrier route covers the number
    insufficient_balance    the account's balance cannot reserve the parts the message needs
    template_variable_missing  the recipient has no value for a variable of the batch's template
    template_bad_value      a recipient's value holds a symbol templates may not carry, or is too long
    outside_window          held for the send window (a submit answer's reason, with state scheduled);
                            one whose validity ends first ends expired
    carrier_rejected:<st>   submit_sm_resp with a permanent command_status (SMPP 3.4 5.1.3), e.g.
                            carrier_rejected:ESME_RINVDSTADR or carrier_rejected:0x00000458
    undeliverable:<err>     receipt UNDELIV/REJECTD/DELETED/UNKNOWN with the receipt's err: field (SMPP 3.4
                            Appendix B), e.g. undeliverable:001
    expired                 validity passed (gateway side or receipt EXPIRED)
    unknown_after_timeout   no submit_sm_resp before the deadline or the link dropped, and the validity
                            ended without a late response
    retries_exhausted       every retry of a temporary error failed
    cancelled               cancelled by the upstream app
    no_receipt              the carrier took it (or may have) but no receipt came within its receipt timeout
    internal_error          the gateway could not handle this message (a bug, a bad stored record); logged
                            once with the message id, the daemon kept serving
    message_too_long        no carrier of the recipient's route can send the text in its part limit
    not_encodable           no carrier of the recipient's route has an encoding for the text
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from gateway.errors import GatewayError

REASONS: tuple[str, ...] = (
    "delivered",
    "opted_out",
    "blacklisted",
    "frequency_capped",
    "content_blocked",
    "content_banned",
    "signature_missing",
    "signature_invalid",
    "optout_missing",
    "invalid_number",
    "no_route",
    "insufficient_balance",
    "template_variable_missing",
    "template_bad_value",
    "outside_window",
    "carrier_rejected:",
    "undeliverable:",
    "expired",
    "unknown_after_timeout",
    "retries_exhausted",
    "cancelled",
    "no_receipt",
    "internal_error",
    "message_too_long",
    "not_encodable",
)
"""Every reason code; entries ending in ':' take a parameter (see the module docstring)."""

# Reasons a policy may refuse a recipient with at accept time.
POLICY_REASONS = frozenset(
    {
        "opted_out", "blacklisted", "frequency_capped", "content_blocked", "content_banned", "signature_missing",
        "signature_invalid", "optout_missing", "invalid_number", "no_route", "message_too_long", "not_encodable",
        "insufficient_balance", "template_variable_missing", "template_bad_value",
    }
)  # fmt: skip


def is_reason(reason: str) -> bool:
    """True for a documented reason code (parameterised ones need a non-empty parameter)."""
    if reason in _PLAIN_REASONS:  # the common case (every receipt's "delivered") in one probe
        return True
    for known in REASONS:
        if known.endswith(":"):
            if reason.startswith(known) and len(reason) > len(known):
                return True
        elif reason == known:
            return True
    return False


_PLAIN_REASONS = frozenset(r for r in REASONS if not r.endswith(":"))


def carrier_rejected(status_name: str) -> str:
    """`carrier_rejected:ESME_RINVDSTADR` from a status name (`gateway.smpp.constants.status_name`)."""
    return f"carrier_rejected:{status_name}"


def undeliverable(err: str) -> str:
    """`undeliverable:001` from the receipt's err: field."""
    return f"undeliverable:{err or 'unknown'}"


class State(IntEnum):
    """Segment (and derived message) states. Values are stored: never renumber."""

    ACCEPTED = 1
    DEFERRED = 2
    QUEUED = 3
    SUBMITTING = 4
    SUBMITTED = 5
    UNKNOWN = 6
    DELIVERED = 7
    UNDELIVERABLE = 8
    EXPIRED = 9
    REJECTED = 10
    FAILED = 11
    CANCELLED = 12

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset(
    {State.DELIVERED, State.UNDELIVERABLE, State.EXPIRED, State.REJECTED, State.FAILED, State.CANCELLED}
)
# States that wait in the due-time index for the scheduler.
DUE_STATES = frozenset({State.ACCEPTED, State.DEFERRED, State.QUEUED})
# States that wait for the carrier (a receipt, or a late response): they are in the due index too, at their
# receipt deadline, so that a message whose receipt never comes still ends.
AWAITING_STATES = frozenset({State.SUBMITTED, State.UNKNOWN})
# The receipt deadline when an event names none (recovery, stores written before deadlines existed).
RECEIPT_TIMEOUT_MS = 72 * 3600 * 1000


class Ev(IntEnum):
    """Event kinds that move a segment. Values are stored in the event log: never renumber."""

    SCHEDULE = 1  # due: a new message or a deferred one whose time came
    DEFER = 2  # wait for a send window or a schedule time
    DISPATCH = 3  # submit_sm written on a bind
    SUBMIT_OK = 4  # submit_sm_resp ESME_ROK with a message_id
    SUBMIT_RETRY = 5  # submit_sm_resp with a temporary status: back-off
    SUBMIT_REJECT = 6  # submit_sm_resp with a permanent status
    LOST = 7  # response timeout, link drop, or recovery in at-most-once mode
    RESEND = 8  # recovery in at-least-once mode: send again, flagged as a possible duplicate
    RECEIPT_DELIVERED = 9
    RECEIPT_UNDELIVERABLE = 10
    RECEIPT_EXPIRED = 11
    RECEIPT_ENROUTE = 12  # intermediate receipt (ENROUTE, ACCEPTD): no state change
    POLICY_REJECT = 13
    CANCEL = 14
    EXPIRE = 15  # validity passed on the gateway side
    FAIL = 16  # no route left, retries exhausted, an internal error
    REQUEUE = 17  # taken for a carrier but never written (link lost, handed back): send again, no duplicate


S, E = State, Ev
_PENDING = (S.ACCEPTED, S.DEFERRED, S.QUEUED)

TRANSITIONS: dict[tuple[State, Ev], State] = {
    **{(s, E.SCHEDULE): S.QUEUED for s in _PENDING},
    **{(s, E.DEFER): S.DEFERRED for s in _PENDING},
    (S.QUEUED, E.DISPATCH): S.SUBMITTING,
    (S.SUBMITTING, E.SUBMIT_OK): S.SUBMITTED,
    # A late submit_sm_resp after the timeout: the carrier has the message, we now know its id.
    (S.UNKNOWN, E.SUBMIT_OK): S.SUBMITTED,
    (S.SUBMITTING, E.SUBMIT_RETRY): S.DEFERRED,
    (S.SUBMITTING, E.SUBMIT_REJECT): S.REJECTED,
    (S.UNKNOWN, E.SUBMIT_REJECT): S.REJECTED,
    (S.SUBMITTING, E.LOST): S.UNKNOWN,
    (S.SUBMITTING, E.RESEND): S.QUEUED,
    (S.SUBMITTING, E.REQUEUE): S.QUEUED,
    (S.SUBMITTED, E.RECEIPT_DELIVERED): S.DELIVERED,
    (S.SUBMITTED, E.RECEIPT_UNDELIVERABLE): S.UNDELIVERABLE,
    (S.SUBMITTED, E.RECEIPT_EXPIRED): S.EXPIRED,
    (S.SUBMITTED, E.RECEIPT_ENROUTE): S.SUBMITTED,
    **{(s, E.POLICY_REJECT): S.REJECTED for s in _PENDING},
    **{(s, E.CANCEL): S.CANCELLED for s in _PENDING},
    **{(s, E.EXPIRE): S.EXPIRED for s in _PENDING},
    # The carrier took it (or may have) but no receipt came within its receipt timeout: report expired.
    (S.SUBMITTED, E.EXPIRE): S.EXPIRED,
    (S.UNKNOWN, E.EXPIRE): S.EXPIRED,
    # FAIL from submitted only for internal_error: a message the gateway cannot handle any more.
    **{(s, E.FAIL): S.FAILED for s in (*_PENDING, S.SUBMITTING, S.UNKNOWN, S.SUBMITTED)},
    # Documented receipt upgrades out of a final state (see UPGRADES).
    (S.EXPIRED, E.RECEIPT_DELIVERED): S.DELIVERED,
    (S.UNDELIVERABLE, E.RECEIPT_DELIVERED): S.DELIVERED,
}

UPGRADES = frozenset({(S.EXPIRED, E.RECEIPT_DELIVERED), (S.UNDELIVERABLE, E.RECEIPT_DELIVERED)})
"""The only transitions that leave a final state."""

_RECEIPTS = (E.RECEIPT_DELIVERED, E.RECEIPT_UNDELIVERABLE, E.RECEIPT_EXPIRED, E.RECEIPT_ENROUTE)
IGNORED: frozenset[tuple[State, Ev]] = frozenset(
    {
        # Duplicates and out-of-order receipts after a final receipt: no change, counted.
        *((S.DELIVERED, e) for e in _RECEIPTS),
        (S.UNDELIVERABLE, E.RECEIPT_UNDELIVERABLE),
        (S.UNDELIVERABLE, E.RECEIPT_EXPIRED),
        (S.UNDELIVERABLE, E.RECEIPT_ENROUTE),
        (S.EXPIRED, E.RECEIPT_EXPIRED),
        (S.EXPIRED, E.RECEIPT_UNDELIVERABLE),
        (S.EXPIRED, E.RECEIPT_ENROUTE),
        # A receipt for a message we gave up on or that was rejected: nothing to change.
        *((S.FAILED, e) for e in _RECEIPTS),
        *((S.REJECTED, e) for e in _RECEIPTS),
        # A part stopped (failed) because another part was refused: its late NOT_SENT changes nothing.
        (S.FAILED, E.REQUEUE),
        (S.CANCELLED, E.REQUEUE),
        (S.EXPIRED, E.REQUEUE),
        # A second submit_sm_resp for the same segment (carrier retransmission).
        (S.SUBMITTED, E.SUBMIT_OK),
    }
)
"""Pairs that are accepted without a state change and reported as `Ignored`."""

del S, E

# Reasons implied by the event; POLICY_REJECT, SUBMIT_REJECT and FAIL must name theirs.
_DEFAULT_REASON: dict[Ev, str] = {
    Ev.RECEIPT_DELIVERED: "delivered",
    Ev.RECEIPT_EXPIRED: "expired",
    Ev.RECEIPT_UNDELIVERABLE: "undeliverable:unknown",
    Ev.EXPIRE: "expired",
    Ev.CANCEL: "cancelled",
}


class InvalidTransition(GatewayError):
    """An event that the table does not allow in the segment's state."""

    def __init__(self, state: State, event: Ev) -> None:
        super().__init__(f"event {event.name} is not allowed in state {state.name}")
        self.state = state
        self.event = event


class InvalidReason(GatewayError):
    """A final outcome without a reason code from REASONS."""

    def __init__(self, event: Ev, reason: str) -> None:
        super().__init__(f"event {event.name} needs a documented reason code, got {reason!r}")
        self.event = event
        self.reason = reason


# Event and Segment are NamedTuples, not frozen dataclasses: the store builds several per receipt, and a
# frozen dataclass pays an object.__setattr__ per field (measured: 2 us against 0.4 us for Segment).
class Event(NamedTuple):
    """One thing that happened to a segment. `reason` for final outcomes, `carrier_id`, `bind`,
    `sequence` and `until_ms` where the kind needs them."""

    kind: Ev
    reason: str = ""
    carrier_id: str = ""
    bind: str = ""
    sequence: int = 0
    until_ms: int = 0


class Segment(NamedTuple):
    """A segment's lifecycle record (the store keeps it inside the message record)."""

    state: State = State.ACCEPTED
    reason: str = ""
    carrier_id: str = ""
    bind: str = ""
    sequence: int = 0
    attempts: int = 0
    possible_duplicate: bool = False
    updated_ms: int = 0
    due_ms: int = 0


@dataclass(frozen=True, slots=True)
class Ignored:
    """Effect: a duplicate or out-of-order event was accepted without a change (count it)."""

    event: Ev


@dataclass(frozen=True, slots=True)
class Upgraded:
    """Effect: a final state was upgraded by a later receipt (see UPGRADES)."""

    from_state: State


@dataclass(frozen=True, slots=True)
class Billed:
    """Effect: the carrier accepted this segment (one billed segment)."""


Effect = Ignored | Upgraded | Billed


def _steps() -> dict[tuple[State, Ev], tuple[State | None, tuple[Effect, ...]]]:
    """TRANSITIONS, IGNORED and UPGRADES folded into one lookup: (target, effects); target None for an
    ignored pair. advance() runs on every submit_sm_resp and receipt, so one dict probe, not three."""
    steps: dict[tuple[State, Ev], tuple[State | None, tuple[Effect, ...]]] = {}
    for (state, kind), target in TRANSITIONS.items():
        effects: tuple[Effect, ...] = ()
        if (state, kind) in UPGRADES:
            effects = (Upgraded(state),)
        elif kind is Ev.SUBMIT_OK:
            effects = (Billed(),)
        steps[state, kind] = (target, effects)
    for state, kind in IGNORED:  # IGNORED wins over TRANSITIONS, as it is checked first
        steps[state, kind] = (None, (Ignored(kind),))
    return steps


_STEPS = _steps()


def advance(record: Segment, event: Event, now_ms: int) -> tuple[Segment, tuple[Effect, ...]]:
    """Apply `event` to `record` at `now_ms`; raise InvalidTransition for a pair not in the table and
    InvalidReason for a final outcome whose reason is not in REASONS."""
    step = _STEPS.get((record.state, event.kind))
    if step is None:
        raise InvalidTransition(record.state, event.kind)
    target, effects = step
    if target is None:
        return record, effects
    return _apply(record, target, event, now_ms), effects


# Enum members as module globals: a global load is several times cheaper than Ev.X on an enum class.
_DISPATCH, _SUBMIT_OK, _LOST, _RESEND = Ev.DISPATCH, Ev.SUBMIT_OK, Ev.LOST, Ev.RESEND
_BACKOFF = (Ev.DEFER, Ev.SUBMIT_RETRY)
_DEADLINE_EVENTS = (Ev.SUBMIT_OK, Ev.LOST)
_SUBMITTED, _UNKNOWN = State.SUBMITTED, State.UNKNOWN


def _apply(record: Segment, target: State, event: Event, now_ms: int) -> Segment:
    # Built field by field (not dataclasses.replace, which costs microseconds the store's hot path lacks).
    kind = event.kind
    reason = record.reason
    if target in FINAL_STATES:
        reason = _final_reason(record, event)
    elif kind is _LOST:
        reason = event.reason or "unknown_after_timeout"
    carrier_id = event.carrier_id if kind is _SUBMIT_OK else record.carrier_id
    bind, sequence, attempts = record.bind, record.sequence, record.attempts
    if kind is _DISPATCH:
        bind, sequence, attempts = event.bind, event.sequence, attempts + 1
    due_ms = 0
    if kind in _BACKOFF:
        due_ms = event.until_ms
    elif kind is _RESEND and event.until_ms:
        due_ms = event.until_ms  # an unanswered submit, sent again after a back-off
    elif target is _SUBMITTED or target is _UNKNOWN:
        # The receipt deadline: set when the segment starts waiting, kept while it waits (ENROUTE).
        if kind in _DEADLINE_EVENTS or not record.due_ms:
            due_ms = event.until_ms or now_ms + RECEIPT_TIMEOUT_MS
        else:
            due_ms = record.due_ms
    elif target in DUE_STATES:
        # Keep the due time a waiting segment already has: its due-index key stays put, so a scheduler
        # streaming the index by cursor never meets the same message twice.
        due_ms = record.due_ms if record.state in DUE_STATES and record.due_ms else now_ms
    # At-least-once recovery: the carrier may already have it; the resend says so (SMPP 3.4 has no
    # standard flag, the engine maps it to the carrier's convention or a log line).
    duplicate = record.possible_duplicate or kind is _RESEND
    return Segment(target, reason, carrier_id, bind, sequence, attempts, duplicate, now_ms, due_ms)


def _final_reason(record: Segment, event: Event) -> str:
    if event.kind is Ev.EXPIRE and record.state is State.UNKNOWN:
        # We never learnt whether the carrier took it (TS 23.040 gives no way to ask without its id).
        reason = event.reason or "unknown_after_timeout"
        if not is_reason(reason):
            raise InvalidReason(event.kind, reason)
        return reason
    reason = event.reason or _DEFAULT_REASON.get(event.kind, "")
    if not is_reason(reason):
        raise InvalidReason(event.kind, reason)
    return reason


# Order used to derive a message's state: the least advanced live segment wins; when every segment is
# final, the message is delivered only if all are, else the worst outcome (rejected first) names it.
_LIVE_ORDER = (
    State.ACCEPTED,
    State.DEFERRED,
    State.QUEUED,
    State.SUBMITTING,
    State.UNKNOWN,
    State.SUBMITTED,
)
_FINAL_ORDER = (
    State.REJECTED,
    State.UNDELIVERABLE,
    State.EXPIRED,
    State.FAILED,
    State.CANCELLED,
    State.DELIVERED,
)


def message_state(states: tuple[State, ...] | list[State]) -> State:
    """A message's state from its segments' states (at least one)."""
    present = set(states)
    for state in _LIVE_ORDER:
        if state in present:
            return state
    for state in _FINAL_ORDER:
        if state in present:
            return state
    raise ValueError("a message has at least one segment")


def message_reason(segments: tuple[Segment, ...] | list[Segment]) -> str:
    """The reason of the segment whose state names the message."""
    state = message_state([s.state for s in segments])
    for seg in segments:
        if seg.state is state:
            return seg.reason
    return ""
