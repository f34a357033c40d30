"""The engine's pure decisions: what a carrier's answer to a submit_sm does to the segment."""

from __future__ import annotations

import pytest

from gateway.carriers.jobs import OutcomeKind, SubmitOutcome
from gateway.engine import plan
from gateway.lifecycle import Ev, Event
from gateway.smpp.constants import CommandStatus
from gateway.smpp.msgid import CarrierIdFormats, IdBase, IdFormat
from gateway.store import Recovery

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


def test_permanent_error_fails_the_segment_with_the_status_as_reason() -> None:
    bad = _outcome(OutcomeKind.REJECTED, status=int(CommandStatus.ESME_RINVDSTADR))
    event = _event(bad)
    assert event.kind is Ev.SUBMIT_REJECT
    assert "ESME_RINVDSTADR" in event.reason


@pytest.mark.parametrize(
    ("kind", "recovery", "expected"),
    [
        (OutcomeKind.NOT_SENT, Recovery.AT_MOST_ONCE, Event(Ev.RESEND)),  # never left: always safe to resend
        (OutcomeKind.UNKNOWN, Recovery.AT_LEAST_ONCE, Event(Ev.RESEND)),
        (OutcomeKind.UNKNOWN, Recovery.AT_MOST_ONCE, Event(Ev.LOST, "unknown_after_timeout")),
    ],
)
def test_unanswered_submits_follow_the_class_recovery(kind: OutcomeKind, recovery: Recovery, expected: Event) -> None:
    assert _event(_outcome(kind, reason="response timeout"), recovery) == expected
