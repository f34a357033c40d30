"""The engine's pure decisions: what a carrier's answer to a submit_sm does to the segment."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.carriers.jobs import OutcomeKind, SubmitOutcome
from gateway.engine import plan
from gateway.engine.settings import ErrorClasses
from gateway.lifecycle import Ev, Event
from gateway.segmenting import RouteEncoding, segment
from gateway.smpp import codec
from gateway.smpp.constants import CommandStatus
from gateway.smpp.errors import SegmentingError
from gateway.smpp.msgid import CarrierIdFormats, IdBase, IdFormat
from gateway.store import Message, Recovery
from tests.unit.segmenting.seg_helpers import routes, texts

HEX = CarrierIdFormats(response=IdFormat(base=IdBase.HEX), receipt=IdFormat(base=IdBase.DECIMAL))
REF = plan.SegmentRef(message_id=7, segment=1, message_class="marketing", attempts=2)
NOW = 1_800_000_000_000


def _outcome(kind: OutcomeKind, **kw: object) -> SubmitOutcome:
    return SubmitOutcome(context=REF, kind=kind, carrier="uk", bind="trx1", **kw)  # type: ignore[arg-type]


def _event(outcome: SubmitOutcome, recovery: Recovery = Recovery.AT_LEAST_ONCE, max_attempts: int = 3) -> Event:
    return plan.outcome_event(
        outcome, REF, now_ms=NOW, ids=HEX, recovery=recovery, max_attempts=max_attempts,
        backoff_min_seconds=1.0, backoff_max_seconds=60.0,
    )  # fmt: skip


def test_accepted_submit_is_indexed_by_the_id_as_its_receipt_will_name_it() -> None:
    accepted = _outcome(OutcomeKind.ACCEPTED, message_id="00FF", sequence_number=42)
    event = _event(accepted)
    # The hex response id 00FF and a decimal receipt id 255 must meet on one key.
    assert event == Event(Ev.SUBMIT_OK, carrier_id=HEX.receipt_key("255"), bind="trx1", sequence=42)
    assert plan.accepted_event(accepted, HEX) == event  # the engine's shortcut for accepted outcomes


def test_temporary_error_retries_with_backoff_until_the_attempts_run_out() -> None:
    busy = _outcome(OutcomeKind.REJECTED, status=int(CommandStatus.ESME_RMSGQFUL))
    assert _event(busy) == Event(Ev.SUBMIT_RETRY, until_ms=NOW + 2_000)  # second attempt: 2 x 1 s
    assert _event(busy, max_attempts=2) == Event(Ev.FAIL, "retries_exhausted")


@pytest.mark.parametrize("status", [CommandStatus.ESME_RSYSERR, CommandStatus.ESME_RSUBMITFAIL])
def test_carrier_side_error_moves_a_movable_message_on_at_once(status: CommandStatus) -> None:
    movable = REF._replace(movable=True)
    outcome = SubmitOutcome(context=movable, kind=OutcomeKind.REJECTED, carrier="uk", bind="b", status=int(status))
    event = plan.outcome_event(
        outcome, movable, now_ms=NOW, ids=HEX, recovery=Recovery.AT_LEAST_ONCE, max_attempts=3,
        backoff_min_seconds=1.0, backoff_max_seconds=60.0,
    )  # fmt: skip
    assert event == Event(Ev.SUBMIT_RETRY, until_ms=NOW)  # due now: the scheduler sends it elsewhere
    assert plan.moves_on(outcome, movable, ErrorClasses())
    # Not movable (a part already accepted here, or no other carrier): back-off on the same carrier.
    assert _event(_outcome(OutcomeKind.REJECTED, status=int(status))) == Event(Ev.SUBMIT_RETRY, until_ms=NOW + 2_000)
    assert not plan.moves_on(_outcome(OutcomeKind.REJECTED, status=int(status)), REF, ErrorClasses())


def test_error_lists_are_per_carrier_and_unlisted_codes_are_permanent() -> None:
    errors = ErrorClasses(retry=(0x400,), next_carrier=(0x401,), permanent=(0x08,))
    assert plan.error_class(0x400, errors) == "retry"
    assert plan.error_class(0x401, errors) == "next_carrier"
    assert plan.error_class(0x08, errors) == "permanent"
    assert plan.error_class(0x4FF, errors) == "permanent"
    with pytest.raises(ValueError, match="also in"):
        ErrorClasses(retry=(0x08,), next_carrier=(0x08,))


def test_accepted_and_lost_segments_carry_the_carriers_receipt_deadline() -> None:
    accepted = _outcome(OutcomeKind.ACCEPTED, message_id="00FF")
    assert plan.accepted_event(accepted, HEX, NOW + 5_000).until_ms == NOW + 5_000
    lost = plan.outcome_event(
        _outcome(OutcomeKind.UNKNOWN), REF, now_ms=NOW, ids=HEX, recovery=Recovery.AT_MOST_ONCE, max_attempts=3,
        backoff_min_seconds=1.0, backoff_max_seconds=60.0, receipt_deadline_ms=NOW + 7_000,
    )  # fmt: skip
    assert (lost.kind, lost.until_ms) == (Ev.LOST, NOW + 7_000)


def test_permanent_error_fails_the_segment_with_the_status_as_reason() -> None:
    bad = _outcome(OutcomeKind.REJECTED, status=int(CommandStatus.ESME_RINVDSTADR))
    event = _event(bad)
    assert event.kind is Ev.SUBMIT_REJECT
    assert "ESME_RINVDSTADR" in event.reason


@pytest.mark.parametrize(
    ("kind", "recovery", "expected"),
    [
        # Never left: always safe to send again, and no possible duplicate.
        (OutcomeKind.NOT_SENT, Recovery.AT_MOST_ONCE, Event(Ev.REQUEUE)),
        # Written, unanswered (attempt 2 of 3): sent again after the attempt's back-off, not at once.
        (OutcomeKind.UNKNOWN, Recovery.AT_LEAST_ONCE, Event(Ev.RESEND, until_ms=NOW + 2_000)),
        (OutcomeKind.UNKNOWN, Recovery.AT_MOST_ONCE, Event(Ev.LOST, "unknown_after_timeout")),
    ],
)
def test_unanswered_submits_follow_the_class_recovery(kind: OutcomeKind, recovery: Recovery, expected: Event) -> None:
    assert _event(_outcome(kind, reason="response timeout"), recovery) == expected


def test_an_unanswered_submit_is_not_resent_past_the_attempt_limit() -> None:
    # An SMSC that never answers usably would otherwise get the same message again and again, each time a
    # possible duplicate on the handset: after the last attempt it waits for a receipt instead.
    last = _event(_outcome(OutcomeKind.UNKNOWN, reason="unreadable response"), Recovery.AT_LEAST_ONCE, max_attempts=2)
    assert (last.kind, last.reason) == (Ev.LOST, "unknown_after_timeout")
    waits = [
        plan.outcome_event(
            _outcome(OutcomeKind.UNKNOWN), plan.SegmentRef(7, 0, "notification", attempts), now_ms=NOW, ids=HEX,
            recovery=Recovery.AT_LEAST_ONCE, max_attempts=5, backoff_min_seconds=1.0, backoff_max_seconds=60.0,
        ).until_ms - NOW
        for attempts in (1, 2, 3, 4)
    ]  # fmt: skip
    assert waits == sorted(waits)
    assert waits[0] >= 1_000
    assert waits[-1] <= 60_000


# --- submit_sm octets straight from a message part ---------------------------------------------------------

_SENDERS = st.one_of(
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 .-_&", min_size=1, max_size=11),
    st.text("0123456789", min_size=1, max_size=20),
    st.text("0123456789", min_size=1, max_size=20).map(lambda d: "+" + d),
)


@settings(max_examples=300)
@given(
    sender=_SENDERS,
    recipient=st.text("0123456789", min_size=1, max_size=20),
    text=texts,
    route=routes,
    expires_ms=st.sampled_from([0, NOW, NOW + 86_400_123]),
    receipt=st.booleans(),
    want=st.booleans(),
    ref=st.integers(0, 255),
)
def test_submit_sm_body_is_what_the_codec_writes_for_the_pdu(
    sender: str, recipient: str, text: str, route: RouteEncoding, expires_ms: int, receipt: bool, want: bool,
    ref: int,
) -> None:  # fmt: skip
    # The engine sends these octets instead of building and encoding each submit_sm: an SMSC must not be able
    # to tell the difference, for every sender kind, validity, receipt flag, encoding and split method.
    try:
        parts = segment(text, route, ref=ref)
    except SegmentingError:
        return
    msg = _message(sender, recipient, text, expires_ms=expires_ms, receipt=receipt)
    for part in parts:
        body = plan.submit_sm_body(msg, part, want_receipt=want)
        assert body == codec.encode(plan.submit_sm(msg, part, want_receipt=want), 7)[16:]


def test_submit_sm_body_leaves_what_the_codec_refuses_to_the_pdu_path() -> None:
    part = segment("hello", RouteEncoding())[0]
    assert plan.submit_sm_body(_message("ACME", "4" * 21, "hello"), part, want_receipt=True) is None
    assert plan.submit_sm_body(_message("1" * 21, "447700900001", "hello"), part, want_receipt=True) is None


def _message(sender: str, recipient: str, text: str, *, expires_ms: int = 0, receipt: bool = True) -> Message:
    return Message(
        id=1, account="acme", batch="", message_class="notification", sender=sender, recipient=recipient,
        text=text, receipt=receipt, client_ref="", created_ms=NOW, expires_ms=expires_ms, segments=(),
    )  # fmt: skip
