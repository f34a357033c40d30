"""Request validation names the field at fault; results and events survive the wire both ways."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.smpp.errors import MessageTooLong, NotEncodable, StoreFull
from gateway.upstream.auth import Credentials
from gateway.upstream.errors import (
    ErrorCode,
    InvalidNumber,
    InvalidRequest,
    TextTooLong,
    UnknownOp,
    UpstreamError,
    error_from_wire,
    upstream_error_for,
)
from gateway.upstream.schema import (
    Envelope,
    Event,
    EventKind,
    ListAction,
    ListName,
    ListRequest,
    MessageClass,
    MessageStatus,
    Op,
    SubmitRequest,
    SubmitResult,
    SubmittedMessage,
    event_frame,
    event_from_wire,
    parse_request,
    request_body,
    result_frame,
    statuses_from_wire,
    submit_result_from_wire,
)


def submit(**fields: Any) -> dict[str, Any]:
    frame = {"op": "submit", "id": 1, "to": "+447700900123", "text": "hi", "class": "marketing", "sender": "Shop"}
    frame.update(fields)
    return {k: v for k, v in frame.items() if v is not None}


def test_submit_request_parses_with_defaults() -> None:
    envelope = parse_request(submit(to=["+447700900123", "447700900124"], client_ref="r1"))
    assert envelope == Envelope(
        1,
        Op.SUBMIT,
        SubmitRequest(("+447700900123", "447700900124"), "hi", MessageClass.MARKETING, "Shop", client_ref="r1"),
    )


@given(
    st.builds(
        SubmitRequest,
        to=st.lists(st.from_regex(r"\+?[0-9]{1,20}", fullmatch=True), min_size=1, max_size=5).map(tuple),
        text=st.text(min_size=1, max_size=200),
        message_class=st.sampled_from(MessageClass),
        sender=st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,10}", fullmatch=True),
        schedule_at=st.none() | st.floats(0, 4e9),
        validity_seconds=st.none() | st.integers(1, 86400),
        receipt=st.booleans(),
        client_ref=st.none() | st.text(min_size=1, max_size=64),
        batch_id=st.none() | st.text(min_size=1, max_size=64),
    )
)
def test_what_the_client_sends_the_server_parses_back(request: SubmitRequest) -> None:
    body = request_body(request) | {"op": "submit", "id": 9}
    assert parse_request(body) == Envelope(9, Op.SUBMIT, request)


@pytest.mark.parametrize(
    "request_",
    [
        ListRequest(ListName.OPTOUT, ListAction.ADD, ("+447911123456", "07911 123456")),
        ListRequest(ListName.BLACKLIST, ListAction.CHECK, ("447911123456",)),
        ListRequest(ListName.OPTOUT, ListAction.PAGE, after="447911123456", limit=500),
        ListRequest(ListName.BLACKLIST, ListAction.PAGE, after="", limit=1000),
    ],
)
def test_a_lists_request_the_client_sends_the_server_parses_back(request_: ListRequest) -> None:
    body = request_body(request_) | {"op": "lists", "id": 3}
    assert parse_request(body) == Envelope(3, Op.LISTS, request_)


@pytest.mark.parametrize(
    ("frame", "error", "field"),
    [
        (submit(to="12\t34"), InvalidNumber, "to"),
        (submit(to=["+1", "+" + "1" * 64]), InvalidNumber, "to[1]"),
        (submit(to=["+1", ""]), InvalidNumber, "to[1]"),
        (submit(to=[]), InvalidRequest, "to"),
        (submit(to=["+1"] * 1001), InvalidRequest, "to"),
        (submit(to=[1]), InvalidRequest, "to[0]"),
        (submit(sender="TwelveChars!"), InvalidNumber, "sender"),
        (submit(sender="   "), InvalidNumber, "sender"),
        (submit(sender=None), InvalidRequest, "sender"),
        (submit(text=""), InvalidRequest, "text"),
        (submit(text=b"hi"), InvalidRequest, "text"),
        (submit(text="x" * 10_001), TextTooLong, "text"),
        (submit(**{"class": "promo"}), InvalidRequest, "class"),
        (submit(validity_seconds=0), InvalidRequest, "validity_seconds"),
        (submit(validity_seconds=True), InvalidRequest, "validity_seconds"),
        (submit(schedule_at="tomorrow"), InvalidRequest, "schedule_at"),
        (submit(client_ref="r" * 65), InvalidRequest, "client_ref"),
        (submit(colour="red"), InvalidRequest, "colour"),
        (submit(id=-1), InvalidRequest, "id"),
        (submit(id=True), InvalidRequest, "id"),
        (submit(op="send"), UnknownOp, "op"),
        ({"op": "lists", "id": 1, "list": "whitelist", "action": "add", "numbers": ["1"]}, InvalidRequest, "list"),
        ({"op": "lists", "id": 1, "list": "optout", "action": "purge", "numbers": ["1"]}, InvalidRequest, "action"),
        ({"op": "lists", "id": 1, "list": "optout", "action": "add"}, InvalidRequest, "numbers"),
        ({"op": "lists", "id": 1, "list": "optout", "action": "add", "numbers": ["1"] * 1001}, InvalidRequest,
         "numbers"),
        ({"op": "lists", "id": 1, "list": "optout", "action": "add", "numbers": ["1\n"]}, InvalidNumber,
         "numbers[0]"),
        ({"op": "lists", "id": 1, "list": "optout", "action": "add", "numbers": ["1"], "limit": 5}, InvalidRequest,
         "limit"),
        ({"op": "lists", "id": 1, "list": "optout", "action": "page", "numbers": ["1"]}, InvalidRequest, "numbers"),
        ({"op": "lists", "id": 1, "list": "optout", "action": "page", "limit": 10_001}, InvalidRequest, "limit"),
        ({"op": "status", "id": 1, "message_id": "m1", "client_ref": "r"}, InvalidRequest, "message_id"),
        ({"op": "hello", "id": 1, "version": 1, "account": "shop"}, InvalidRequest, "secret"),
        ({"op": "subscribe", "id": 1, "window": 0}, InvalidRequest, "window"),
    ],
)
def test_invalid_requests_name_the_field(frame: dict[str, Any], error: type[UpstreamError], field: str) -> None:
    with pytest.raises(error) as raised:
        parse_request(frame)
    assert type(raised.value) is error
    assert raised.value.field == field


def test_alphanumeric_and_numeric_senders_are_accepted() -> None:
    for sender in ("Shop", "My Shop-1", "+15550001", "12345678901234567890"):
        body = parse_request(submit(sender=sender)).body
        assert isinstance(body, SubmitRequest)
        assert body.sender == sender


def test_results_and_events_round_trip_through_the_wire_maps() -> None:
    result = SubmitResult((SubmittedMessage("+1", "m1"), SubmittedMessage("+2", "m2")), duplicate=True)
    assert submit_result_from_wire(result_frame(1, result)["result"]) == result
    statuses = (MessageStatus("m1", "+1", "failed", 2, "ESME_RINVDSTADR", "c1", "r", None, 1.5, 2.5),)
    assert statuses_from_wire(result_frame(2, statuses)["result"]) == statuses
    event = Event(2**64 - 1, EventKind.FAILED, 3.0, message_id="m1", reason="expired")
    frame = event_frame(event)
    assert "text" not in frame  # absent fields are left out, not sent as nil
    assert event_from_wire(frame) == event


def test_error_codes_map_both_ways() -> None:
    for code in ErrorCode:
        assert error_from_wire(code, "m", "f").code == code
    assert error_from_wire("brand_new", "m").code == "brand_new"
    assert upstream_error_for(StoreFull("x")).code == ErrorCode.STORE_FULL  # type: ignore[union-attr]
    assert upstream_error_for(NotEncodable("🙂", 3, "gsm7")).code == ErrorCode.NOT_ENCODABLE  # type: ignore[union-attr]
    assert upstream_error_for(MessageTooLong(12, 10)).code == ErrorCode.TOO_LONG  # type: ignore[union-attr]
    assert upstream_error_for(KeyError("x")) is None


def test_credentials_check_account_and_secret() -> None:
    credentials = Credentials({"shop": "s3cret", "bank": b"other"})
    assert credentials.check("shop", "s3cret")
    assert credentials.check("bank", "other")
    assert not credentials.check("shop", "s3cre")
    assert not credentials.check("shop", "other")
    assert not credentials.check("nobody", "s3cret")
