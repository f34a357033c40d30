"""The per-message fast paths read and write exactly what the checked paths do: equal objects for frames
the server sends, and for any other frame the same error (class, message, field) or the same reading."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio
import trio.testing
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.upstream.client import _EVENTS_PER_SCHEDULE_POINT, Subscription, UpstreamClient
from gateway.upstream.errors import UpstreamError
from gateway.upstream.frames import decode_payload, encode_frame
from gateway.upstream.schema import (
    MAX_RECIPIENTS,
    Event,
    EventKind,
    SubmitResult,
    SubmittedMessage,
    _checked_recipients,
    _compact,
    _event_checked,
    _parse_recipients,
    _submit_result_checked,
    event_frame,
    event_from_wire,
    result_map,
    submit_result_from_wire,
)
from gateway.upstream.session import ClientSession


def outcome(read: Callable[[], object]) -> tuple[str, object]:
    """What a reader makes of its input: the value (with the type of each field), or the error it raises."""
    try:
        value = read()
    except UpstreamError as err:
        return "error", (type(err), err.message, err.field)
    fields = value if isinstance(value, tuple) else (value,)
    return "value", (value, [type(field) for field in fields])


# Values of every msgpack type (and the Python ones a caller could pass), biased towards the right ones.
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.binary(max_size=4),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
TEXT_OR_ANY = st.one_of(st.text(max_size=12), ANY_VALUE)
KIND = st.one_of(st.sampled_from([*EventKind, "unknown"]), ANY_VALUE)
OPTIONAL_EVENT_KEYS = tuple(k for k in Event._fields[3:] if k != "possible_duplicate")


VALID_EVENT = st.builds(
    Event,
    seq=st.integers(min_value=0, max_value=2**64 - 1),
    kind=st.sampled_from(EventKind),
    at=st.floats(allow_nan=False, allow_infinity=False),
    **{key: st.one_of(st.none(), st.text(max_size=12)) for key in OPTIONAL_EVENT_KEYS},
    possible_duplicate=st.booleans(),
)


@st.composite
def faulty(draw: st.DrawFn, valid: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """A valid map with up to two of `keys` (or a new key) replaced by any value or left out."""
    wire = dict(valid)
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from([*keys, "extra"]))
        if draw(st.booleans()):
            wire.pop(key, None)
        else:
            wire[key] = draw(ANY_VALUE)
    return wire


@st.composite
def event_frames(draw: st.DrawFn) -> dict[str, Any]:
    return draw(faulty(event_frame(draw(VALID_EVENT)), Event._fields))


@given(event_frames())
@example({"type": "event", "seq": 1, "kind": "mo", "at": 3})
@example({"type": "event", "seq": 1, "kind": "mo"})
@example({"type": "event", "seq": True, "kind": "mo", "at": 1.0})
@example({"type": "event", "seq": 1, "kind": ["mo"], "at": 1.0})
@example({"type": "event", "seq": 1, "kind": "mo", "at": 1.0, "to": 5})
def test_event_fast_path_reads_any_frame_as_the_checked_path(frame: dict[str, Any]) -> None:
    assert outcome(lambda: event_from_wire(frame)) == outcome(lambda: _event_checked(frame))


@given(VALID_EVENT)
def test_event_as_the_server_sends_it_survives_the_wire_on_the_fast_path(event: Event) -> None:
    frame = decode_payload(encode_frame(event_frame(event))[4:])
    assert isinstance(frame, dict)
    read = event_from_wire(frame)
    assert read == event
    assert type(read) is Event
    assert read.kind is event.kind
    assert outcome(lambda: read) == outcome(lambda: _event_checked(frame))


SUBMITTED = st.builds(
    SubmittedMessage,
    to=st.text(max_size=12),
    message_id=st.text(max_size=12),
    state=st.sampled_from(["accepted", "scheduled", "rejected"]),
    reason=st.one_of(st.none(), st.sampled_from(["no_route", "opted_out"])),
    number=st.one_of(st.none(), st.text(alphabet="0123456789", min_size=1, max_size=15)),
)


@st.composite
def submit_results(draw: st.DrawFn) -> dict[str, Any]:
    result = SubmitResult(tuple(draw(st.lists(SUBMITTED, max_size=4))), draw(st.booleans()))
    wire = result_map(result)
    messages = wire["messages"]
    for _ in range(draw(st.integers(0, 2)) if messages else 0):
        index = draw(st.integers(0, len(messages) - 1))
        if draw(st.integers(0, 4)) == 0:
            messages[index] = draw(ANY_VALUE)
        elif isinstance(messages[index], dict):
            messages[index] = draw(faulty(messages[index], ("to", "message_id", "state", "reason", "number")))
    return draw(st.one_of(st.just(wire), faulty(wire, ("messages", "duplicate"))))


@given(submit_results())
@example({"messages": [{"to": "1", "message_id": "2", "state": 5}]})
@example({"messages": [{"to": "1", "message_id": "2", "state": None}]})
@example({"messages": [{"to": "1", "message_id": "2", "reason": 5}]})
@example({"messages": ({"to": "1", "message_id": "2"},)})
def test_submit_result_fast_path_reads_any_result_as_the_checked_path(body: dict[str, Any]) -> None:
    assert outcome(lambda: submit_result_from_wire(body)) == outcome(lambda: _submit_result_checked(body))


@given(st.lists(SUBMITTED, max_size=5), st.booleans())
def test_submit_result_map_is_the_generic_map_byte_for_byte(messages: list[SubmittedMessage], dup: bool) -> None:
    result = SubmitResult(tuple(messages), dup)
    generic = {
        "messages": [_compact({name: getattr(m, name) for name in SubmittedMessage.__slots__}) for m in messages],
        "duplicate": dup,
    }
    assert encode_frame(result_map(result)) == encode_frame(generic)
    wire = decode_payload(encode_frame(result_map(result))[4:])
    assert submit_result_from_wire(wire) == result


def _recipients_checked(value: object) -> tuple[str, ...]:
    """_parse_recipients as it was before its fast path: every item checked in turn."""
    if isinstance(value, list) and 1 <= len(value) <= MAX_RECIPIENTS:
        return _checked_recipients(value)
    return _parse_recipients({"to": value})


RECIPIENT = st.one_of(
    st.text(alphabet="0123456789", min_size=1, max_size=21).map(lambda s: "+" + s),
    st.text(alphabet="0123456789", min_size=1, max_size=21),
    st.text(alphabet="0123456789+,\n a٣", max_size=24),
    ANY_VALUE,
)


@given(st.one_of(st.lists(RECIPIENT, max_size=6), st.lists(RECIPIENT.filter(lambda v: isinstance(v, str)))))
def test_recipient_list_fast_check_refuses_and_accepts_as_the_item_check(value: list[Any]) -> None:
    assert outcome(lambda: _parse_recipients({"to": value})) == outcome(lambda: _recipients_checked(value))


def test_recipients_with_a_comma_inside_an_item_are_read_item_by_item() -> None:
    # The joined fast check must not take "1,2" for two numbers: the item check sees one entry, passed on to
    # the number check (which refuses it for that recipient alone), and a control character fails by name.
    outcome_fast = outcome(lambda: _parse_recipients({"to": ["+1555", "1,2"]}))
    assert outcome_fast == outcome(lambda: _checked_recipients(["+1555", "1,2"]))
    assert outcome_fast == ("value", (("+1555", "1,2"), [str, str]))
    refused = outcome(lambda: _parse_recipients({"to": ["+1555", "1\n2"]}))
    assert refused[0] == "error"
    assert refused[1][2] == "to[1]"  # type: ignore[index]


def test_session_reads_a_read_of_many_event_frames_in_order() -> None:
    session = ClientSession()
    events = [Event(i, EventKind.DELIVERED, 1.5 + i, message_id=str(i), to="+1555") for i in range(1, 301)]
    session.receive_data(b"".join(encode_frame(event_frame(e)) for e in events))
    read = []
    while (message := session.next_message()) is not None:
        read.append(message)
    assert read == events


# --- the subscription's queue -----------------------------------------------------------------------


def _subscription(window: int = 10_000) -> Subscription:
    client_stream, _server_stream = trio.testing.memory_stream_pair()
    return Subscription(UpstreamClient(client_stream), window)


async def test_subscription_yields_to_other_tasks_while_it_drains_a_full_queue() -> None:
    subscription = _subscription()
    events = [Event(i, EventKind.DELIVERED, 0.0) for i in range(1, 1001)]
    for event in events:
        assert subscription.offer(event)
    ticks = 0
    read = []

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        await trio.lowlevel.checkpoint()
        ticks = 0
        async for event in subscription:
            read.append(event)
            if len(read) == len(events):
                break
        nursery.cancel_scope.cancel()
    assert read == events
    assert ticks >= len(events) // _EVENTS_PER_SCHEDULE_POINT - 1


async def test_cancelled_iteration_takes_no_event_from_the_queue() -> None:
    subscription = _subscription()
    first, second = Event(1, EventKind.DELIVERED, 0.0), Event(2, EventKind.FAILED, 0.0)
    subscription.offer(first)
    subscription.offer(second)
    with trio.CancelScope() as scope:
        scope.cancel()
        await subscription.__anext__()
    assert scope.cancelled_caught
    assert await subscription.__anext__() == first
    assert await subscription.__anext__() == second


async def test_offer_refuses_when_the_queue_is_full_and_deliver_waits() -> None:
    subscription = _subscription(window=1)
    assert subscription.offer(Event(1, EventKind.DELIVERED, 0.0))
    assert not subscription.offer(Event(2, EventKind.DELIVERED, 0.0))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(subscription.deliver, Event(2, EventKind.DELIVERED, 0.0))
        assert (await subscription.__anext__()).seq == 1
        assert (await subscription.__anext__()).seq == 2
