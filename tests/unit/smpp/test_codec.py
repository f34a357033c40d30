"""The codec: round trips for every PDU, the exact statuses for malformed input, and framing."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.smpp import codec
from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandStatus, Tag
from gateway.smpp.errors import DecodeError, EncodeError, FrameError
from gateway.smpp.framing import Framer

from .strategies import any_pdu, pdus_of


@pytest.mark.parametrize("cls", P.PDU_CLASSES, ids=lambda c: c.__name__)
@given(data=st.data())
def test_every_pdu_type_round_trips(cls: type[P.Pdu], data: st.DataObject) -> None:
    pdu = data.draw(pdus_of(cls))
    wire = codec.encode(pdu)
    assert struct.unpack(">I", wire[:4])[0] == len(wire)
    assert codec.decode(wire) == pdu


@given(st.lists(any_pdu, min_size=1, max_size=8), st.data())
def test_framing_gives_the_same_pdus_however_the_stream_is_chunked(
    pdus: list[P.Pdu], data: st.DataObject
) -> None:
    stream = b"".join(codec.encode(p) for p in pdus)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    framer = Framer()
    got: list[P.Pdu] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        framer.feed(stream[start:cut])
        start = cut
        got.extend(codec.decode(f) for f in framer.frames())
    assert got == pdus
    assert framer.buffered == 0


@given(st.binary(max_size=400))
def test_random_bytes_raise_only_decode_errors(raw: bytes) -> None:
    framer = Framer()
    framer.feed(raw)
    try:
        frames = framer.frames()
    except FrameError:
        return
    for frame in frames:
        status = _decode_status(frame)
        assert status is None or status != CommandStatus.ESME_ROK


def _decode_status(frame: bytes) -> int | None:
    """None when the frame decodes, else the command_status of the DecodeError (any other error fails)."""
    try:
        codec.decode(frame)
    except DecodeError as err:
        return err.command_status
    return None


@given(any_pdu, st.data())
def test_mutated_valid_pdus_decode_or_raise_decode_error(pdu: P.Pdu, data: st.DataObject) -> None:
    wire = bytearray(codec.encode(pdu))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(4, len(wire) - 1)) if len(wire) > 4 else 0
        wire[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()) and len(wire) > 16:
        cut = data.draw(st.integers(16, len(wire)))
        wire = wire[:cut]
        wire[0:4] = struct.pack(">I", len(wire))
    status = _decode_status(bytes(wire))
    assert status is None or status != CommandStatus.ESME_ROK


def _submit(**kw: object) -> P.SubmitSm:
    base: dict[str, object] = {"source_addr": "ACME", "destination_addr": "447700900123", "short_message": b"hi"}
    base.update(kw)
    return P.SubmitSm(sequence_number=11, **base)  # type: ignore[arg-type]


def _field_offset(frame: bytes, nul_count: int) -> int:
    """Offset just after the nth NUL of the body."""
    o = 16
    for _ in range(nul_count):
        o = frame.index(0, o) + 1
    return o


def test_unknown_command_id_is_rinvcmdid_with_sequence() -> None:
    with pytest.raises(DecodeError) as info:
        codec.decode(codec.pack_header(16, 0x00000777, 0, 99))
    assert info.value.command_status == CommandStatus.ESME_RINVCMDID
    assert info.value.sequence_number == 99


def test_length_mismatch_is_rinvcmdlen() -> None:
    wire = codec.encode(_submit())
    with pytest.raises(DecodeError) as info:
        codec.decode(wire + b"\x00")
    assert info.value.command_status == CommandStatus.ESME_RINVCMDLEN


@pytest.mark.parametrize(
    ("field", "status"),
    [
        ("service_type", CommandStatus.ESME_RINVSERTYP),
        ("source_addr", CommandStatus.ESME_RINVSRCADR),
        ("destination_addr", CommandStatus.ESME_RINVDSTADR),
    ],
)
def test_overlong_address_fields_get_their_own_status(field: str, status: CommandStatus) -> None:
    # Build the bytes by hand: our encoder refuses to produce them.
    values = {"service_type": b"", "source_addr": b"ACME", "destination_addr": b"447700900123"}
    values[field] = b"9" * 40
    body = (
        values["service_type"] + b"\x00\x05\x00" + values["source_addr"] + b"\x00\x01\x01"
        + values["destination_addr"] + b"\x00" + b"\x00\x00\x00" + b"\x00\x00" + b"\x00\x00\x00\x00" + b"\x02hi"
    )
    frame = codec.pack_header(16 + len(body), 4, 0, 5) + body
    with pytest.raises(DecodeError) as info:
        codec.decode(frame)
    assert info.value.command_status == status
    assert info.value.sequence_number == 5


def test_sm_length_past_the_end_is_rinvmsglen() -> None:
    wire = bytearray(codec.encode(_submit()))
    sm_length_at = len(wire) - 3  # b"\x02hi"
    wire[sm_length_at] = 200
    with pytest.raises(DecodeError) as info:
        codec.decode(bytes(wire))
    assert info.value.command_status == CommandStatus.ESME_RINVMSGLEN


def test_bad_schedule_time_is_rinvsched() -> None:
    wire = bytearray(codec.encode(_submit(schedule_delivery_time="0123456789012345")))
    start = _field_offset(bytes(wire), 3) + 3
    wire[start + 5 : start + 17] = b"\x00" + b"X" * 11  # 5 characters, then junk
    with pytest.raises(DecodeError) as info:
        codec.decode(bytes(wire))
    assert info.value.command_status == CommandStatus.ESME_RINVSCHED


def test_truncated_tlv_is_rinvoptparstream() -> None:
    wire = codec.encode(_submit(tlvs=((Tag.USER_MESSAGE_REFERENCE, 7),)))
    cut = wire[:-3]
    frame = struct.pack(">I", len(cut)) + cut[4:]
    with pytest.raises(DecodeError) as info:
        codec.decode(frame)
    assert info.value.command_status == CommandStatus.ESME_RINVOPTPARSTREAM


def test_known_tlv_with_wrong_length_is_rinvparlen() -> None:
    # sar_msg_ref_num is 2 octets (5.3.2.22); send 3.
    body_tlv = struct.pack(">HH", Tag.SAR_MSG_REF_NUM, 3) + b"\x00\x01\x02"
    wire = codec.encode(_submit()) + body_tlv
    frame = struct.pack(">I", len(wire)) + wire[4:]
    with pytest.raises(DecodeError) as info:
        codec.decode(frame)
    assert info.value.command_status == CommandStatus.ESME_RINVTLVLEN


def test_unknown_tlvs_are_kept_and_reemitted_unchanged() -> None:
    vendor = struct.pack(">HH", 0x1401, 5) + b"\x01\x02\x03\x04\x05"
    wire = codec.encode(_submit()) + vendor
    frame = struct.pack(">I", len(wire)) + wire[4:]
    pdu = codec.decode(frame)
    assert pdu.tlv(0x1401) == b"\x01\x02\x03\x04\x05"
    assert codec.encode(pdu) == frame


def test_typed_tlv_values() -> None:
    pdu = _submit(
        tlvs=(
            (Tag.SAR_MSG_REF_NUM, 0xBEEF),
            (Tag.RECEIPTED_MESSAGE_ID, "ab12"),
            (Tag.MESSAGE_PAYLOAD, b"x" * 1000),
            (Tag.NETWORK_ERROR_CODE, b"\x03\x00\x01"),
        )
    )
    wire = codec.encode(pdu)
    assert struct.pack(">HHH", Tag.SAR_MSG_REF_NUM, 2, 0xBEEF) in wire
    assert struct.pack(">HH", Tag.RECEIPTED_MESSAGE_ID, 5) + b"ab12\x00" in wire
    assert codec.decode(wire) == pdu


def test_error_submit_sm_resp_has_no_body_and_decodes_either_way() -> None:
    wire = codec.encode(P.SubmitSmResp(sequence_number=4, command_status=CommandStatus.ESME_RTHROTTLED))
    assert len(wire) == 16
    # Some SMSCs send the (empty) message_id anyway; both forms decode.
    with_body = codec.pack_header(17, 0x80000004, CommandStatus.ESME_RTHROTTLED, 4) + b"\x00"
    assert codec.decode(with_body).command_status == CommandStatus.ESME_RTHROTTLED


@pytest.mark.parametrize(
    ("pdu", "status"),
    [
        (_submit(source_addr="1" * 21), CommandStatus.ESME_RINVSRCADR),
        (_submit(destination_addr="é"), CommandStatus.ESME_RINVDSTADR),
        (_submit(short_message=b"x" * 255), CommandStatus.ESME_RINVMSGLEN),
        (_submit(esm_class=256), CommandStatus.ESME_RINVESMCLASS),
        (_submit(validity_period="1"), CommandStatus.ESME_RINVEXPIRY),
    ],
)
def test_encoder_refuses_what_does_not_fit_with_a_status(pdu: P.Pdu, status: CommandStatus) -> None:
    with pytest.raises(EncodeError) as info:
        codec.encode(pdu)
    assert info.value.command_status == status


def test_framer_rejects_impossible_length_before_buffering_the_body() -> None:
    framer = Framer(max_command_length=1024)
    framer.feed(struct.pack(">I", 10_000_000))
    with pytest.raises(FrameError) as info:
        framer.frames()
    assert info.value.command_status == CommandStatus.ESME_RINVCMDLEN
    framer = Framer()
    framer.feed(struct.pack(">IIII", 8, 4, 0, 1))
    with pytest.raises(FrameError):
        framer.frames()


def test_framer_many_pdus_per_feed() -> None:
    stream = b"".join(codec.encode(P.EnquireLink(), seq) for seq in range(1, 501))
    framer = Framer()
    framer.feed(stream + stream[:7])
    frames = framer.frames()
    assert [codec.decode(f).sequence_number for f in frames] == list(range(1, 501))
    assert framer.buffered == 7


def test_submit_multi_lists() -> None:
    pdu = P.SubmitMulti(
        source_addr="ACME",
        dest_addresses=(P.DestAddress(1, 1, "447700900001"), P.DistributionList("friends")),
        short_message=b"hello",
    )
    assert codec.decode(codec.encode(pdu)) == pdu
    resp = P.SubmitMultiResp(
        message_id="m1", unsuccess_smes=(P.UnsuccessSme(1, 1, "447700900001", CommandStatus.ESME_RINVDSTADR),)
    )
    assert codec.decode(codec.encode(resp)) == resp


@pytest.mark.parametrize("value", [b"5F2A", b"5F2A\x00", b"5F2A\x00\x00\x00"], ids=["no NUL", "one NUL", "padded"])
def test_receipted_message_id_is_read_with_or_without_its_nul(value: bytes) -> None:
    # SMPP 3.4 5.3.1 makes the NUL part of a C-Octet String TLV; many SMSCs leave it out. Refused, the
    # deliver_sm got 0xC4 and its receipt could never get in.
    pdu = codec.encode(P.DeliverSm(source_addr="447700900123", destination_addr="ACME", esm_class=0x04), 9)
    tlv = struct.pack(">HH", Tag.RECEIPTED_MESSAGE_ID, len(value)) + value
    frame = struct.pack(">I", len(pdu) + len(tlv)) + pdu[4:] + tlv
    decoded = codec.decode(frame)
    assert isinstance(decoded, P.DeliverSm)
    assert decoded.tlv(Tag.RECEIPTED_MESSAGE_ID) == "5F2A"
