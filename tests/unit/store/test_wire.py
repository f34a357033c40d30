"""The writer process's wire format: every operation, result and error the store knows crosses it and comes
back as the same value (enums as their members), and nonsense is refused as a WireFormatError."""

from __future__ import annotations

import msgpack
import pytest

from gateway.errors import GatewayError, StoreError
from gateway.lifecycle import Ev, Event, InvalidReason, InvalidTransition, State
from gateway.smpp.errors import StoreFull
from gateway.store import wire
from gateway.store.ops import (
    Advance,
    AdvanceResult,
    BalanceResult,
    BatchRows,
    CapCheck,
    Done,
    ForgetEarly,
    KeepMoPart,
    Mo,
    Op,
    Outcome,
    Overdue,
    PortedPurge,
    PortedPurged,
    PortedRows,
    PortedSwitch,
    Prepare,
    PrepareResult,
    PutBatch,
    PutTemplate,
    Receipt,
    ReceiptResult,
    Recipient,
    Reroute,
    Result,
    SetBlacklist,
    SetCursor,
    SetOptOut,
    Submit,
    SubmitResult,
    Sweep,
    SweepResult,
    TopUp,
)
from gateway.store.store import InvalidField, UnknownMessage, WrongState

NOW = 1_800_000_123_456

RECIPIENTS = (
    Recipient("+447700900001"),
    Recipient("+447700900002", reject="opted_out"),
    Recipient("+447700900003", defer_until_ms=NOW + 60_000),
    Recipient("+447700900004", route=("carA",), text="Hi Ann, your code is 1234", parts=2),
)

# At least one of every type in wire.OP_TYPES (checked below), with every field away from its default.
OPS: list[Op] = [
    Submit(
        "acme",
        "notification",
        "ACME",
        "h\u00e9llo \U0001f600",
        RECIPIENTS,
        receipt=False,
        client_ref="ref-1",
        batch="b-7",
        schedule_ms=NOW + 1000,
        expires_ms=NOW + 86_400_000,
        check_optout=False,
        caps=(CapCheck("all-day", "*", 86400, 3), CapCheck("seller", "acme\0ACME", 172800, 1, give_back=False)),
    ),
    Submit("acme", "marketing", "ACME", "no cap", RECIPIENTS),
    Prepare(42, "carA", 3, concat=True, dispatch_bind="carA-1"),
    Prepare(43, "carB", 1),
    Advance(42, 2, Event(Ev.SUBMIT_RETRY, "", "cid-9", "carA-1", 77, NOW + 30_000)),
    Advance(42, 0, Event(Ev.DISPATCH, bind="carA-2", sequence=12)),
    Advance(42, None, Event(Ev.FAIL, "retries_exhausted")),
    Receipt("carA", "cid-9", Ev.RECEIPT_UNDELIVERABLE, "undeliverable:001"),
    Receipt("carA", "cid-10", Ev.RECEIPT_DELIVERED),
    Mo("acme", "carA", "+447700900001", "12345", "STOP"),
    Mo("acme", "carA", "447700900001", "ACME", "a long reply", ref=300, parts=3),
    KeepMoPart("carA", "447700900001", "ACME", 300, 3, 2, "reply part two", 8),
    SetOptOut("+447700900001", scope="acme", opted_out=False),
    SetOptOut("+447700900002"),
    SetBlacklist("+447700900003", listed=False),
    SetCursor("acme", 9_000_000_000),
    Sweep(500),
    Reroute(42, "carA", "carrier_rejected:ESME_RSYSERR"),
    Overdue(100),
    PortedRows(7, (("8613800138000", "cmcc"), ("8613900139000", ""), ("447700900001", "r\u00e9seau"))),
    PortedRows(1, ()),
    PortedSwitch(7),
    PortedSwitch(0),
    PortedPurge(7, 50_000),
    TopUp("acme", 10_000, "invoice 42"),
    TopUp("acme", unlimited=True),
    PutTemplate("acme", "welcome", 0, b"\x93\x01\xa1x\xc2"),
    PutBatch("acme", "spring", 3, b"\x91\x01"),
    BatchRows("acme", "spring", 1000, (b"\x93\x01\xa2+1\x80", b"\x93\x01\xa2+2\x80")),
    ForgetEarly("carA", "cid-9"),
]

RESULTS: list[Result] = [
    SubmitResult(
        (
            Outcome(1, State.ACCEPTED),
            Outcome(2, State.REJECTED, "opted_out"),
            Outcome(4, State.REJECTED, "frequency_capped", "rule all-day: at most 3 in 1 day"),
            Outcome(3, State.DEFERRED),
        ),
        duplicate=True,
    ),
    SubmitResult((Outcome(4, State.ACCEPTED),)),
    PrepareResult(42, 65535),
    AdvanceResult(42, State.SUBMITTED, ignored=True, early_receipt_applied=True),
    AdvanceResult(43, State.QUEUED),
    AdvanceResult(44, State.SUBMITTED, early_receipt_applied=True),
    AdvanceResult(45, State.SUBMITTED, ignored=True),
    ReceiptResult(matched=False, early=True),
    ReceiptResult(True, 42, 2, State.DELIVERED, ignored=True),
    ReceiptResult(True, 42, 1, State.SUBMITTED),
    ReceiptResult(True, 43, 1, State.DELIVERED, ended=State.DELIVERED),
    ReceiptResult(True, 44, 1, State.UNDELIVERABLE, ended=State.FAILED),
    ReceiptResult(True, 46, 0, State.DELIVERED, early=True),
    ReceiptResult(True, 47, 0),
    SweepResult(10, 20, 3, True),
    Done(),
    Done(17),
    PortedPurged(50_000, True),
    PortedPurged(0, False),
    BalanceResult("acme", 9_000, 600, 400, True),
    BalanceResult("free"),
]


def test_every_op_type_is_covered() -> None:
    assert {type(op) for op in OPS} == set(wire.OP_TYPES)
    assert {type(r) for r in RESULTS} == set(wire.RESULT_TYPES)


@pytest.mark.parametrize("op", OPS, ids=lambda op: type(op).__name__)
def test_op_survives_the_round_trip(op: Op) -> None:
    now_ms, ops = wire.unpack_request(wire.pack_request(NOW, [op]))
    assert now_ms == NOW
    assert ops == [op]
    assert type(ops[0]) is type(op)


def test_a_group_keeps_its_order() -> None:
    now_ms, ops = wire.unpack_request(wire.pack_request(NOW, OPS))
    assert now_ms == NOW
    assert ops == OPS


def test_an_empty_group_round_trips() -> None:
    assert wire.unpack_request(wire.pack_request(0, [])) == (0, [])


def test_decoded_events_and_states_are_enum_members() -> None:
    ops = wire.unpack_request(wire.pack_request(NOW, OPS))[1]
    advance = ops[4]
    receipt = ops[7]
    assert isinstance(advance, Advance)
    assert isinstance(receipt, Receipt)
    assert advance.event.kind is Ev.SUBMIT_RETRY
    assert isinstance(advance.event, Event)
    assert receipt.kind is Ev.RECEIPT_UNDELIVERABLE

    results = wire.unpack_reply(wire.pack_reply(1, RESULTS))[1]
    assert isinstance(results, list)
    submit, advanced, receipt_result = results[0], results[3], results[8]
    assert isinstance(submit, SubmitResult)
    assert [o.state for o in submit.outcomes] == [State.ACCEPTED, State.REJECTED, State.REJECTED, State.DEFERRED]
    assert submit.outcomes[2].detail == "rule all-day: at most 3 in 1 day"
    assert all(type(o.state) is State for o in submit.outcomes)
    assert isinstance(advanced, AdvanceResult)
    assert advanced.state is State.SUBMITTED
    assert isinstance(receipt_result, ReceiptResult)
    assert receipt_result.state is State.DELIVERED


def test_submit_recipients_and_cap_are_values_again() -> None:
    (first, second) = wire.unpack_request(wire.pack_request(NOW, OPS[:2]))[1]
    assert isinstance(first, Submit)
    assert isinstance(second, Submit)
    assert first.recipients == RECIPIENTS
    assert isinstance(first.recipients, tuple)
    assert all(type(r) is Recipient for r in first.recipients)
    assert first.caps == (CapCheck("all-day", "*", 86400, 3), CapCheck("seller", "acme\0ACME", 172800, 1, False))
    assert all(type(c) is CapCheck for c in first.caps)
    assert second.caps == ()


@pytest.mark.parametrize("result", RESULTS, ids=lambda r: type(r).__name__)
def test_result_survives_the_round_trip(result: Result) -> None:
    seq, results = wire.unpack_reply(wire.pack_reply(123_456_789, [result]))
    assert seq == 123_456_789
    assert results == [result]
    assert isinstance(results, list)
    assert type(results[0]) is type(result)


def test_receipt_result_without_a_state_keeps_none() -> None:
    results = wire.unpack_reply(wire.pack_reply(0, [ReceiptResult(matched=False, early=True)]))[1]
    assert isinstance(results, list)
    (only,) = results
    assert isinstance(only, ReceiptResult)
    assert only.state is None
    assert only.early


ERRORS: list[GatewayError] = [
    UnknownMessage("no message 42"),
    InvalidField("value too long for a key: 'xxx'"),
    WrongState("message 42 is SUBMITTED: cannot prepare 2 parts"),
    StoreFull("store map is full"),
]


@pytest.mark.parametrize("err", ERRORS, ids=lambda e: type(e).__name__)
def test_per_op_store_error_comes_back_as_the_same_class(err: GatewayError) -> None:
    seq, results = wire.unpack_reply(wire.pack_reply(7, [Done(1), err, Done(2)]))
    assert seq == 7
    assert isinstance(results, list)
    assert results[0] == Done(1)
    assert results[2] == Done(2)
    back = results[1]
    assert type(back) is type(err)
    assert str(back) == str(err)


def test_invalid_transition_keeps_state_and_event() -> None:
    err = InvalidTransition(State.DELIVERED, Ev.DISPATCH)
    results = wire.unpack_reply(wire.pack_reply(0, [err]))[1]
    assert isinstance(results, list)
    (back,) = results
    assert isinstance(back, InvalidTransition)
    assert back.state is State.DELIVERED
    assert back.event is Ev.DISPATCH
    assert str(back) == str(err)


def test_invalid_reason_keeps_event_and_reason() -> None:
    err = InvalidReason(Ev.SUBMIT_REJECT, "because")
    results = wire.unpack_reply(wire.pack_reply(0, [err]))[1]
    assert isinstance(results, list)
    (back,) = results
    assert isinstance(back, InvalidReason)
    assert back.event is Ev.SUBMIT_REJECT
    assert back.reason == "because"
    assert str(back) == str(err)


def test_full_store_refusing_the_group_comes_back_as_store_full() -> None:
    seq, failure = wire.unpack_reply(wire.pack_failure(55, StoreFull("disk is full")))
    assert seq == 55
    assert type(failure) is StoreFull
    assert str(failure) == "disk is full"


def test_store_error_refusing_the_group_comes_back_as_group_failed() -> None:
    seq, failure = wire.unpack_reply(wire.pack_failure(56, StoreError("MDB_PANIC")))
    assert seq == 56
    assert isinstance(failure, wire.GroupFailed)
    assert isinstance(failure, StoreError)
    assert "MDB_PANIC" in str(failure)


def test_a_bug_in_the_worker_comes_back_as_worker_crashed() -> None:
    seq, failure = wire.unpack_reply(wire.pack_failure(57, RuntimeError("boom")))
    assert seq == 57
    assert isinstance(failure, wire.WorkerCrashed)
    assert not isinstance(failure, StoreError)  # not a refusal the writer may hand to one caller
    assert "boom" in str(failure)


def test_a_bug_without_a_message_is_still_named() -> None:
    failure = wire.unpack_reply(wire.pack_failure(0, KeyError()))[1]
    assert isinstance(failure, wire.WorkerCrashed)
    assert "KeyError" in str(failure)


BAD_REQUESTS = [
    b"",
    b"\xc1",  # never used in msgpack
    b"\x92\x01",  # an array of two with one element
    wire.pack_request(NOW, OPS[:1]) + b"\x00",  # trailing bytes
    msgpack.packb(17),
    msgpack.packb({"now_ms": NOW, "ops": []}),
    msgpack.packb([NOW]),
    msgpack.packb([NOW, [[len(wire.OP_TYPES)]]]),  # a tag no type has
    msgpack.packb([NOW, [["Submit"]]]),
    msgpack.packb([NOW, [[8]]]),  # Sweep without its limit
    msgpack.packb([NOW, [[8, 1, 2]]]),  # Sweep with a field too many
    msgpack.packb([NOW, [[2, 42, 0, [999]]]]),  # Advance with an event kind that does not exist
    msgpack.packb([NOW, [[2, 42, 0, [4, "", "cid"]]]]),  # Advance with an event cut short
    msgpack.packb([NOW, [[2, 42, 0, [4, "", "cid", "", 0, 0, 0]]]]),  # ... or one field too long
    msgpack.packb([NOW, [[3, "carA", "cid", 999, ""]]]),  # Receipt likewise
    msgpack.packb([NOW, [[0, "acme"]]]),  # Submit cut short
    msgpack.packb([NOW, [[12, 1]]]),  # PortedRows without its rows
    msgpack.packb([NOW, [[12, 1, [["8613800138000", "cmcc"]], 2]]]),  # ... or with a field too many
    msgpack.packb([NOW, [[12, 1, [["8613800138000"]]]]]),  # a row that is not a pair
    msgpack.packb([NOW, [[12, 1, [["8613800138000", "cmcc", "x"]]]]]),
    msgpack.packb([NOW, [[12, 1, 5]]]),  # rows that are not a list
    msgpack.packb([NOW, [[14, 1]]]),  # PortedPurge without its limit
]


@pytest.mark.parametrize("data", BAD_REQUESTS)
def test_bad_request_frame_is_a_wire_format_error(data: bytes) -> None:
    with pytest.raises(wire.WireFormatError):
        wire.unpack_request(data)


BAD_REPLIES = [
    b"",
    b"\xc1",
    wire.pack_reply(1, [Done()]) + b"\x00",
    msgpack.packb(17),
    msgpack.packb([1]),
    msgpack.packb([1, None]),  # a failure without its kind
    msgpack.packb([1, None, "StoreFull"]),  # ... or its message
    msgpack.packb([1, [[len(wire.RESULT_TYPES)]]]),
    msgpack.packb([1, [[2, 42, 999, False, False]]]),  # AdvanceResult with a state that does not exist
    msgpack.packb([1, [[2, 42, 999]]]),  # ... likewise in its short form
    msgpack.packb([1, [[2, 42, 5, False]]]),  # neither the short nor the full form
    msgpack.packb([1, [[3, 42, 0, 999]]]),  # a short ReceiptResult with a state that does not exist
    msgpack.packb([1, [[3, True, 42, 0]]]),  # neither the short nor the full form
    msgpack.packb([1, [[0, [[1, 999, ""]], False]]]),  # an Outcome likewise
    msgpack.packb([1, [[wire.ERROR, "InvalidTransition", 999, 1]]]),
    msgpack.packb([1, [[wire.ERROR, "UnknownMessage"]]]),  # an error without its message
    msgpack.packb([1, [[5, 1, 2]]]),  # Done with a field too many
    msgpack.packb([1, [[6, 1]]]),  # PortedPurged without `more`
]


@pytest.mark.parametrize("data", BAD_REPLIES)
def test_bad_reply_frame_is_a_wire_format_error(data: bytes) -> None:
    with pytest.raises(wire.WireFormatError):
        wire.unpack_reply(data)


def test_negative_op_tag_is_a_wire_format_error() -> None:
    # Tags are positions in OP_TYPES, so no sender writes a negative one; Python indexing from the end
    # must not turn [-1, 10] into Sweep(10).
    with pytest.raises(wire.WireFormatError):
        wire.unpack_request(msgpack.packb([NOW, [[-1, 10]]]))


def test_negative_result_tag_is_a_wire_format_error() -> None:
    with pytest.raises(wire.WireFormatError):
        wire.unpack_reply(msgpack.packb([1, [[-1, 10]]]))


def test_per_op_error_of_a_kind_this_side_does_not_know_is_a_store_error_naming_it() -> None:
    results = wire.unpack_reply(msgpack.packb([1, [[wire.ERROR, "NewerError", "what happened"]]]))[1]
    assert isinstance(results, list)
    (back,) = results
    assert type(back) is StoreError
    assert str(back) == "NewerError: what happened"


def test_usual_segment_results_cross_in_their_short_form() -> None:
    # Every segment's submit_sm_resp and receipt cross once each: their usual outcome leaves its defaults out.
    reply = msgpack.unpackb(
        wire.pack_reply(0, [AdvanceResult(42, State.SUBMITTED), ReceiptResult(True, 42, 1, State.DELIVERED)])
    )
    assert reply == [0, [[2, 42, int(State.SUBMITTED)], [3, 42, 1, int(State.DELIVERED)]]]


def test_ported_rows_are_pairs_again() -> None:
    rows = (("8613800138000", "cmcc"), ("8613900139000", ""))
    (op,) = wire.unpack_request(wire.pack_request(NOW, [PortedRows(3, rows)]))[1]
    assert isinstance(op, PortedRows)
    assert op.rows == rows
    assert type(op.rows) is tuple
    assert all(type(row) is tuple for row in op.rows)
