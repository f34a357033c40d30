"""The pure frame codec: whole frames out of any chunking, length faults reported, never silent."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.upstream.errors import BadFrame, FrameTooLarge
from gateway.upstream.frames import FrameDecoder, FrameEvent, FrameFault, RawFrame, decode_payload, encode_frame

MAX = 64


def drain(decoder: FrameDecoder) -> list[FrameEvent]:
    events = []
    while (event := decoder.next_event()) is not None:
        events.append(event)
    return events


def summary(events: list[FrameEvent]) -> list[object]:
    return [e.payload if isinstance(e, RawFrame) else (type(e.error).__name__, e.fatal) for e in events]


def feed(stream: bytes, cuts: list[int], max_frame: int = MAX) -> list[FrameEvent]:
    decoder = FrameDecoder(max_frame, skip_limit_bytes=4 * max_frame)
    events: list[FrameEvent] = []
    start = 0
    for cut in [*sorted(cuts), len(stream)]:
        decoder.receive_data(stream[start:cut])
        events += drain(decoder)
        start = max(start, cut)
    return events


# A stream of frames: ordinary ones, empty ones, and oversize ones that must be skipped whole.
payloads = st.lists(
    st.one_of(st.binary(min_size=0, max_size=MAX), st.binary(min_size=MAX + 1, max_size=3 * MAX)),
    max_size=12,
)


@given(payloads, st.data())
def test_any_chunking_yields_the_same_frames(frames: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(struct.pack(">I", len(p)) + p for p in frames)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=30))
    assert summary(feed(stream, cuts)) == summary(feed(stream, []))
    expected = [p if 0 < len(p) <= MAX else ("BadFrame" if not p else "FrameTooLarge", False) for p in frames]
    assert summary(feed(stream, cuts)) == expected


@given(st.lists(st.binary(min_size=1, max_size=MAX), max_size=20))
def test_byte_by_byte_feeding_yields_every_frame(frames: list[bytes]) -> None:
    stream = b"".join(struct.pack(">I", len(p)) + p for p in frames)
    assert summary(feed(stream, list(range(len(stream))))) == frames


def test_oversize_frame_is_skipped_without_buffering_it() -> None:
    decoder = FrameDecoder(MAX, skip_limit_bytes=10 * MAX)
    decoder.receive_data(struct.pack(">I", 5 * MAX) + b"x" * 10)
    [fault] = drain(decoder)
    assert isinstance(fault, FrameFault)
    assert isinstance(fault.error, FrameTooLarge)
    assert not fault.fatal
    decoder.receive_data(b"x" * (5 * MAX - 10 - 1))
    assert decoder.buffered_bytes == 0
    decoder.receive_data(b"x" + encode_frame({"op": "ping"}))
    [frame] = drain(decoder)
    assert isinstance(frame, RawFrame)
    assert decode_payload(frame.payload) == {"op": "ping"}


def test_length_beyond_the_skip_limit_is_fatal_and_the_decoder_stops() -> None:
    decoder = FrameDecoder(MAX, skip_limit_bytes=4 * MAX)
    decoder.receive_data(b"HELO\r\n" + encode_frame({"op": "ping"}))
    [fault] = drain(decoder)
    assert isinstance(fault, FrameFault)
    assert fault.fatal
    decoder.receive_data(encode_frame({"op": "ping"}))
    assert drain(decoder) == []


def test_encode_frame_prefixes_the_payload_length() -> None:
    frame = encode_frame({"op": "ping", "id": 1})
    assert struct.unpack(">I", frame[:4])[0] == len(frame) - 4
    assert decode_payload(frame[4:]) == {"op": "ping", "id": 1}


@pytest.mark.parametrize("payload", [b"\xc1", b"\x92\x01", b"\x01\x02", b"\xa2\xff\xfe", b"\x81\x90\x01"])
def test_payload_that_is_not_one_msgpack_object_is_bad_frame(payload: bytes) -> None:
    with pytest.raises(BadFrame):
        decode_payload(payload)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=20,
    )
)
def test_encode_then_decode_round_trips(value: object) -> None:
    frame = encode_frame(value)
    decoder = FrameDecoder(len(frame))
    decoder.receive_data(frame)
    [event] = drain(decoder)
    assert isinstance(event, RawFrame)
    assert decode_payload(event.payload) == value
