"""The lifecycle table: every (state, event) pair is a documented transition, a documented no-op, or a
typed error; random event sequences only move along the table."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.lifecycle import (
    FINAL_STATES,
    IGNORED,
    REASONS,
    RECEIPT_TIMEOUT_MS,
    TRANSITIONS,
    UPGRADES,
    Billed,
    Ev,
    Event,
    Ignored,
    InvalidReason,
    InvalidTransition,
    Segment,
    State,
    Upgraded,
    advance,
    carrier_rejected,
    is_reason,
    message_state,
    undeliverable,
)

ALL_PAIRS = list(itertools.product(State, Ev))
# A valid reason for the events that must name theirs.
REASON_FOR = {Ev.POLICY_REJECT: "opted_out", Ev.SUBMIT_REJECT: "carrier_rejected:ESME_RINVDSTADR",
              Ev.FAIL: "no_route"}  # fmt: skip


def event(kind: Ev, until_ms: int = 0) -> Event:
    return Event(kind, REASON_FOR.get(kind, ""), until_ms=until_ms)


def test_table_and_ignored_do_not_overlap() -> None:
    assert not set(TRANSITIONS) & IGNORED


@pytest.mark.parametrize(("state", "kind"), ALL_PAIRS, ids=lambda v: v.name)
def test_every_pair_is_a_transition_a_noop_or_a_typed_error(state: State, kind: Ev) -> None:
    record = Segment(state=state, reason="expired" if state.is_final else "")
    if (state, kind) in TRANSITIONS:
        new, _ = advance(record, event(kind, until_ms=99), now_ms=10)
        assert new.state is TRANSITIONS[(state, kind)]
        assert new.updated_ms == 10
    elif (state, kind) in IGNORED:
        new, effects = advance(record, Event(kind), now_ms=10)
        assert new == record
        assert effects == (Ignored(kind),)
    else:
        with pytest.raises(InvalidTransition) as info:
            advance(record, Event(kind), now_ms=10)
        assert (info.value.state, info.value.event) == (state, kind)


def test_only_upgrades_leave_a_final_state() -> None:
    leaving = {(s, e) for (s, e), t in TRANSITIONS.items() if s in FINAL_STATES and t is not s}
    assert leaving == set(UPGRADES)
    assert all(TRANSITIONS[pair] is State.DELIVERED for pair in UPGRADES)


def test_final_states_carry_a_documented_reason() -> None:
    for (state, kind), target in TRANSITIONS.items():
        if target.is_final:
            new, _ = advance(Segment(state=state), event(kind), now_ms=1)
            assert is_reason(new.reason), (state, kind, new.reason)


@pytest.mark.parametrize("kind", [Ev.POLICY_REJECT, Ev.FAIL])
def test_outcome_without_a_documented_reason_is_refused(kind: Ev) -> None:
    with pytest.raises(InvalidReason):
        advance(Segment(state=State.QUEUED), Event(kind), now_ms=1)
    with pytest.raises(InvalidReason):
        advance(Segment(state=State.QUEUED), Event(kind, reason="because"), now_ms=1)


def test_unknown_segment_that_expires_ends_expired_as_unknown_after_timeout() -> None:
    new, _ = advance(Segment(state=State.UNKNOWN), Event(Ev.EXPIRE), now_ms=1)
    assert (new.state, new.reason) == (State.EXPIRED, "unknown_after_timeout")


def test_unknown_segment_past_its_receipt_deadline_ends_expired_no_receipt() -> None:
    new, _ = advance(Segment(state=State.UNKNOWN), Event(Ev.EXPIRE, "no_receipt"), now_ms=1)
    assert (new.state, new.reason) == (State.EXPIRED, "no_receipt")


def test_submitted_and_unknown_segments_carry_a_receipt_deadline() -> None:
    submitting = Segment(state=State.SUBMITTING)
    new, _ = advance(submitting, Event(Ev.SUBMIT_OK, carrier_id="a1", until_ms=5_000), now_ms=1)
    assert (new.state, new.due_ms) == (State.SUBMITTED, 5_000)
    # An intermediate receipt keeps the deadline; an event that names none gets the default.
    again, _ = advance(new, Event(Ev.RECEIPT_ENROUTE), now_ms=2)
    assert again.due_ms == 5_000
    lost, _ = advance(submitting, Event(Ev.LOST), now_ms=10)
    assert (lost.state, lost.due_ms) == (State.UNKNOWN, 10 + RECEIPT_TIMEOUT_MS)
    done, _ = advance(new, Event(Ev.RECEIPT_DELIVERED), now_ms=3)
    assert done.due_ms == 0


def test_requeue_sends_again_without_a_duplicate_flag() -> None:
    new, _ = advance(Segment(state=State.SUBMITTING), Event(Ev.REQUEUE), now_ms=7)
    assert (new.state, new.possible_duplicate) == (State.QUEUED, False)
    resent, _ = advance(Segment(state=State.SUBMITTING), Event(Ev.RESEND), now_ms=7)
    assert (resent.state, resent.possible_duplicate) == (State.QUEUED, True)


def test_reason_helpers_produce_documented_codes() -> None:
    assert carrier_rejected("ESME_RINVDSTADR") == "carrier_rejected:ESME_RINVDSTADR"
    assert is_reason(carrier_rejected("0x00000458"))
    assert is_reason(undeliverable("001"))
    assert not is_reason("carrier_rejected:")
    assert not is_reason("made_up")
    assert all(is_reason(r) or r.endswith(":") for r in REASONS)


def test_delivrd_after_expired_upgrades_and_says_so() -> None:
    expired = Segment(state=State.EXPIRED, reason="expired")
    new, effects = advance(expired, Event(Ev.RECEIPT_DELIVERED), now_ms=5)
    assert (new.state, new.reason) == (State.DELIVERED, "delivered")
    assert effects == (Upgraded(State.EXPIRED),)


@pytest.mark.parametrize("kind", [Ev.RECEIPT_DELIVERED, Ev.RECEIPT_EXPIRED, Ev.RECEIPT_UNDELIVERABLE])
def test_receipt_after_delivered_is_ignored_and_counted(kind: Ev) -> None:
    delivered = Segment(state=State.DELIVERED, reason="delivered")
    new, effects = advance(delivered, Event(kind, reason="undeliverable:001"), now_ms=5)
    assert new is delivered
    assert effects == (Ignored(kind),)


def test_late_submit_response_after_timeout_recovers_the_carrier_id() -> None:
    lost, _ = advance(Segment(state=State.SUBMITTING), Event(Ev.LOST), now_ms=1)
    assert (lost.state, lost.reason) == (State.UNKNOWN, "unknown_after_timeout")
    late, effects = advance(lost, Event(Ev.SUBMIT_OK, carrier_id="abc"), now_ms=2)
    assert (late.state, late.carrier_id) == (State.SUBMITTED, "abc")
    assert effects == (Billed(),)


def test_resend_after_crash_is_flagged_possible_duplicate() -> None:
    sent, _ = advance(Segment(state=State.QUEUED), Event(Ev.DISPATCH, bind="b1", sequence=7), now_ms=1)
    assert (sent.bind, sent.sequence, sent.attempts) == ("b1", 7, 1)
    again, _ = advance(sent, Event(Ev.RESEND), now_ms=2)
    assert again.state is State.QUEUED
    assert again.possible_duplicate
    assert again.due_ms == 2


def test_retry_waits_until_the_back_off_time() -> None:
    sent = Segment(state=State.SUBMITTING)
    back, _ = advance(sent, Event(Ev.SUBMIT_RETRY, until_ms=5000), now_ms=1000)
    assert (back.state, back.due_ms) == (State.DEFERRED, 5000)


def test_carrier_rejection_keeps_the_status_in_the_reason() -> None:
    new, _ = advance(
        Segment(state=State.SUBMITTING), Event(Ev.SUBMIT_REJECT, carrier_rejected("ESME_RINVDSTADR")), 1
    )
    assert (new.state, new.reason) == (State.REJECTED, "carrier_rejected:ESME_RINVDSTADR")


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ((State.DELIVERED, State.DELIVERED), State.DELIVERED),
        ((State.DELIVERED, State.SUBMITTED), State.SUBMITTED),
        ((State.SUBMITTED, State.UNKNOWN), State.UNKNOWN),
        ((State.DELIVERED, State.EXPIRED), State.EXPIRED),
        ((State.UNDELIVERABLE, State.REJECTED), State.REJECTED),
        ((State.QUEUED, State.SUBMITTED), State.QUEUED),
    ],
)
def test_message_state_is_derived_from_segments(states: tuple[State, ...], expected: State) -> None:
    assert message_state(states) is expected


def test_message_without_segments_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one segment"):
        message_state(())


@settings(max_examples=300)
@given(st.lists(st.sampled_from(list(Ev)), max_size=30))
def test_random_event_sequences_move_only_along_the_table(kinds: list[Ev]) -> None:
    record = Segment()
    for i, kind in enumerate(kinds):
        before = record.state
        try:
            record, effects = advance(record, event(kind, until_ms=i), now_ms=i)
        except InvalidTransition:
            assert (before, kind) not in TRANSITIONS
            assert (before, kind) not in IGNORED
            continue
        pair = (before, kind)
        if pair in IGNORED:
            assert record.state is before
        else:
            assert record.state is TRANSITIONS[pair]
        if before.is_final and record.state is not before:
            assert pair in UPGRADES
            assert effects == (Upgraded(before),)
        if record.state.is_final:
            assert is_reason(record.reason)
