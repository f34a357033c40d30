"""Every number a client sends is checked against its documented range (docs/protocol.md, "Numeric ranges")
before anything reaches the engine or the store; unauthenticated requests learn nothing; map keys are str."""

from __future__ import annotations

import math
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from gateway.upstream.errors import BadFrame, InvalidRequest, NotAuthenticated, UnknownOp, UpstreamError
from gateway.upstream.faults import MAX_CAUSES, FaultLog
from gateway.upstream.frames import decode_request
from gateway.upstream.schema import (
    MAX_SCHEDULE_AT,
    MAX_SEQ,
    Ack,
    SubmitRequest,
    Subscribe,
    parse_request,
)

U64_MAX = 2**64 - 1


def submit(**fields: Any) -> dict[str, Any]:
    frame = {"op": "submit", "id": 1, "to": "+447700900123", "text": "hi", "class": "marketing", "sender": "Shop"}
    frame.update(fields)
    return frame


def refused(frame: dict[str, Any], *, authenticated: bool = True) -> UpstreamError:
    with pytest.raises(UpstreamError) as raised:
        parse_request(frame, authenticated=authenticated)
    return raised.value


@pytest.mark.parametrize(
    "value",
    [math.nan, math.inf, -math.inf, 1e308, 1.8e16, U64_MAX, -1, -0.5, MAX_SCHEDULE_AT + 1, -(2**63)],
    ids=["nan", "inf", "-inf", "1e308", "1.8e16", "u64-max", "-1", "-0.5", "after-9999", "i64-min"],
)
def test_schedule_at_out_of_range_gets_invalid_request_naming_the_range(value: float) -> None:
    error = refused(submit(schedule_at=value))
    assert (type(error), error.field) == (InvalidRequest, "schedule_at")
    assert str(MAX_SCHEDULE_AT) in error.message


@pytest.mark.parametrize("value", [0, 0.0, 1_767_225_600, 1_767_225_600.25, MAX_SCHEDULE_AT, float(MAX_SCHEDULE_AT)])
def test_schedule_at_in_range_is_taken_as_float_seconds(value: float) -> None:
    body = parse_request(submit(schedule_at=value)).body
    assert isinstance(body, SubmitRequest)
    assert body.schedule_at == float(value)
    assert isinstance(body.schedule_at, float)


@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**63), U64_MAX))
def test_any_schedule_at_is_refused_or_fits_the_stores_millisecond_keys(value: float) -> None:
    try:
        body = parse_request(submit(schedule_at=value)).body
    except InvalidRequest as err:
        field = err.field
        body = None
    if body is None:
        assert field == "schedule_at"
        return
    assert isinstance(body, SubmitRequest)
    assert body.schedule_at is not None
    assert 0 <= int(body.schedule_at * 1000) < 2**64


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        ({"op": "subscribe", "id": 1, "after": U64_MAX}, "after"),
        ({"op": "subscribe", "id": 1, "after": MAX_SEQ + 1}, "after"),
        ({"op": "subscribe", "id": 1, "after": -1}, "after"),
        ({"op": "subscribe", "id": 1, "after": 1.0}, "after"),
        ({"op": "subscribe", "id": 1, "window": 2**32}, "window"),
        ({"op": "subscribe", "id": 1, "window": -5}, "window"),
        ({"op": "ack", "id": 1, "seq": U64_MAX}, "seq"),
        ({"op": "ack", "id": 1, "seq": MAX_SEQ + 1}, "seq"),
        ({"op": "ack", "id": 1, "seq": math.nan}, "seq"),
        ({"op": "ack", "id": 1, "seq": True}, "seq"),
        ({"op": "hello", "id": 1, "version": U64_MAX, "account": "a", "secret": "s"}, "version"),
        ({"op": "hello", "id": 1, "version": -1, "account": "a", "secret": "s"}, "version"),
        (submit(validity_seconds=U64_MAX), "validity_seconds"),
        (submit(validity_seconds=30 * 86400 + 1), "validity_seconds"),
        (submit(validity_seconds=86400.0), "validity_seconds"),
        (submit(id=U64_MAX), "id"),
    ],
)
def test_integer_out_of_range_gets_invalid_request_naming_the_field(frame: dict[str, Any], field: str) -> None:
    error = refused(frame)
    assert (type(error), error.field) == (InvalidRequest, field)


def test_cursors_take_the_largest_signed_64_bit_value() -> None:
    assert parse_request({"op": "ack", "id": 1, "seq": MAX_SEQ}).body == Ack(MAX_SEQ)
    assert parse_request({"op": "subscribe", "id": 1, "after": MAX_SEQ}).body == Subscribe(MAX_SEQ)
    assert MAX_SEQ + 1 < 2**64  # the store reads events from after + 1, packed as u64


@pytest.mark.parametrize(
    "frame",
    [
        {"op": "submit", "id": 4},
        {"op": "submit", "id": 4, "schedule_at": math.nan, "colour": "red"},
        {"op": "ack", "id": 4, "seq": U64_MAX},
        {"op": "subscribe", "id": 4, "after": -1},
        {"op": "status", "id": 4, "message_id": "m", "client_ref": "r"},
        {"op": "launch", "id": 4},
        {"id": 4},
        {"op": 7, "id": 4},
    ],
)
def test_any_request_but_hello_before_hello_gets_not_authenticated(frame: dict[str, Any]) -> None:
    error = refused(frame, authenticated=False)
    assert type(error) is NotAuthenticated


def test_hello_before_hello_is_still_validated() -> None:
    error = refused({"op": "hello", "id": 1, "version": 1, "account": "shop"}, authenticated=False)
    assert (type(error), error.field) == (InvalidRequest, "secret")
    assert type(refused({"op": "launch", "id": 1})) is UnknownOp


@pytest.mark.parametrize(
    "obj",
    [
        {b"op": "ping", "id": 1},
        {"op": "ping", "id": 1, b"op": "submit"},
        {"op": "subscribe", "id": 1, "kinds": [{b"k": 1}]},
        {"op": "ping", "id": 1, "x": {"y": [[{1: 2}]]}},
    ],
    ids=["bin-key", "bin-key-beside-str", "nested-in-list", "int-key-deep"],
)
def test_non_string_map_key_anywhere_is_bad_frame(obj: dict[Any, Any]) -> None:
    payload = msgpack.packb(obj, use_bin_type=True)
    with pytest.raises(BadFrame):
        decode_request(payload)


def test_deeply_nested_request_is_checked_without_recursion() -> None:
    value: Any = "leaf"
    for _ in range(500):
        value = [{"k": value}]
    obj = decode_request(msgpack.packb({"op": "ping", "id": 1, "x": value}))
    assert isinstance(obj, dict)


def fail_at_one_place(n: int) -> Exception:
    try:
        raise KeyError(n)
    except KeyError as err:
        return err


def fail_at_another_place() -> Exception:
    try:
        int("not a number")
    except ValueError as err:
        return err
    raise AssertionError


def test_fault_log_keeps_one_traceback_per_cause_and_a_count_after() -> None:
    faults = FaultLog(repeat_log_seconds=60)
    with capture_logs() as logs:
        for i in range(1000):
            faults.report(fail_at_one_place(i), now=i * 0.01, op="submit")
        faults.report(fail_at_another_place(), now=10.0, op="status")
        faults.report(fail_at_one_place(0), now=61.0, op="submit")
    first = [e for e in logs if e["event"] == "upstream_request_failed"]
    again = [e for e in logs if e["event"] == "upstream_request_failed_again"]
    assert len(first) == 2  # one per place, each with its traceback
    assert all(e["exc_info"] is not None for e in first)
    assert [e["times"] for e in again] == [1000]  # then a count, once a minute at most
    assert faults.statistics().failures == 1002
    assert faults.statistics().causes == 2


def test_fault_log_stays_bounded_whatever_the_causes() -> None:
    faults = FaultLog()
    with capture_logs() as logs:
        for n in range(MAX_CAUSES * 3):
            try:
                exec(compile("\n" * n + "raise ValueError()", "gen.py", "exec"), {})
            except ValueError as err:
                faults.report(err, now=0.0)
    assert faults.statistics().causes == MAX_CAUSES + 1
    assert len(logs) == MAX_CAUSES + 1
