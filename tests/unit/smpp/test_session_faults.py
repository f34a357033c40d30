"""A broken stream and queued submits taken back: the session's side of a carrier bind's faults."""

from __future__ import annotations

import struct

import pytest

from gateway.smpp import codec
from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandId, CommandStatus
from gateway.smpp.errors import FrameError
from gateway.smpp.framing import Framer
from gateway.smpp.session import LinkDead, PduReceived, Rejected, ResponseReceived, Session, StateChanged
from gateway.smpp.state import Role, State

_HEADER = struct.Struct(">IIII")
BAD = _HEADER.pack(8, CommandId.SUBMIT_SM, 0, 0x1234)  # command_length 8: under the 16-octet header
NACK = _HEADER.pack(16, CommandId.GENERIC_NACK, CommandStatus.ESME_RINVCMDLEN, 0x1234)


def _submit(i: int) -> P.SubmitSm:
    return P.SubmitSm(source_addr="ACME", destination_addr=f"4477009{i:05d}", short_message=b"hello")


def test_whole_pdus_before_an_impossible_length_come_out_first() -> None:
    framer = Framer()
    good = codec.encode(P.EnquireLink(), 7)
    framer.feed(good + BAD)
    assert framer.frames() == [good]
    assert framer.failed
    with pytest.raises(FrameError) as info:
        framer.frames()
    assert (info.value.command_status, info.value.sequence_number) == (CommandStatus.ESME_RINVCMDLEN, 0x1234)
    assert not framer.failed


def test_bind_resp_and_a_bad_length_in_one_read_binds_then_queues_generic_nack() -> None:
    esme = Session(Role.ESME)
    seq = esme.send_request(P.BindTransceiver(system_id="acme", password="pw"), 0.0)
    esme.data_to_send()
    events = esme.receive_data(codec.encode(P.BindTransceiverResp(system_id="smsc"), seq) + BAD, 0.0)
    assert [type(e) for e in events] == [ResponseReceived, StateChanged, Rejected, LinkDead]
    dead = events[-1]
    assert isinstance(dead, LinkDead)
    assert dead.flush
    assert esme.state is State.BOUND_TRX
    # SMPP 3.4 4.3: generic_nack, ESME_RINVCMDLEN, the sequence number of the unreadable PDU.
    assert esme.data_to_send() == NACK


def test_nothing_after_an_impossible_length_is_read() -> None:
    smsc = Session(Role.SMSC)
    smsc.receive_data(BAD, 0.0)
    assert smsc.data_to_send() == NACK
    assert smsc.receive_data(codec.encode(P.BindTransceiver(system_id="acme", password="pw"), 1), 0.0) == []
    assert smsc.data_to_send() == b""


def test_withdraw_takes_back_queued_submits_and_leaves_the_rest_in_order() -> None:
    esme = Session(Role.ESME)
    esme.send_request(P.BindTransceiver(system_id="acme", password="pw"), 0.0)
    smsc = Session(Role.SMSC)
    (bind,) = smsc.receive_data(esme.data_to_send(), 0.0)
    assert isinstance(bind, PduReceived)
    smsc.send_response(P.BindTransceiverResp(sequence_number=bind.pdu.sequence_number, system_id="smsc"))
    esme.receive_data(smsc.data_to_send(), 0.0)
    written = esme.send_request(_submit(0), 0.0, context="written")
    esme.data_to_send()
    queued = [esme.send_request(_submit(i), 0.0, context=f"queued{i}") for i in (1, 2)]
    esme.send_request(P.EnquireLink(), 0.0)
    deliver = P.DeliverSm(sequence_number=queued[0], source_addr="447700900001", short_message=b"hi")
    esme.acknowledge(deliver)  # a response whose sequence number happens to equal a queued submit's
    esme.send_encoded(CommandId.SUBMIT_SM, codec.encode(_submit(3), 1)[16:], 0.0, context="queued3")
    assert esme.in_flight == 4
    taken = esme.withdraw(CommandId.SUBMIT_SM)
    assert [req.context for req in taken] == ["queued1", "queued2", "queued3"]
    assert esme.in_flight == 1
    assert {req.sequence_number for req in esme.outstanding()} == {written, taken[0].sequence_number + 2}
    framer = Framer()
    framer.feed(esme.data_to_send())
    assert [type(codec.decode(frame)) for frame in framer.frames()] == [P.EnquireLink, P.DeliverSmResp]
    assert esme.withdraw(CommandId.SUBMIT_SM) == []


def _bound_esme() -> Session:
    esme = Session(Role.ESME)
    seq = esme.send_request(P.BindTransceiver(system_id="acme", password="pw"), 0.0)
    esme.receive_data(codec.encode(P.BindTransceiverResp(system_id="smsc"), seq), 0.0)
    esme.data_to_send()
    return esme


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"5F2A\x00\x00\x1d", "three stray octets where a TLV header would be"),
        (b"5F2A\x00\x04\x27\x00\x09\x01", "a TLV whose length runs past the end"),
        (b"5F2A", "the message_id without its NUL at the end of the PDU"),
    ],
)
def test_a_submit_sm_resp_with_a_sloppy_tail_is_an_answer_not_an_unknown(body: bytes, why: str) -> None:
    # Refused, the response would leave an accepted submit "unknown": resent as a possible duplicate, or
    # never reported. Its message_id and status are whole, so it answers the submit; the rest is dropped.
    esme = _bound_esme()
    seq = esme.send_request(_submit(1), 0.0)
    esme.data_to_send()
    frame = _HEADER.pack(16 + len(body), CommandId.SUBMIT_SM_RESP, 0, seq) + body
    with pytest.raises(Exception):  # noqa: B017, PT011 - the strict decoder refuses it, whatever the message
        codec.decode(frame)
    events = esme.receive_data(frame, 0.0)
    assert [type(e).__name__ for e in events] == ["ResponseRepaired", "ResponseReceived"], why
    answer = events[1]
    assert isinstance(answer, ResponseReceived)
    assert isinstance(answer.pdu, P.SubmitSmResp)
    assert (answer.pdu.message_id, answer.pdu.command_status) == ("5F2A", 0)
    assert esme.in_flight == 0
    assert esme.data_to_send() == b""  # nothing to answer: it was a response


def test_a_response_whose_message_id_is_unreadable_stays_unreadable() -> None:
    esme = _bound_esme()
    seq = esme.send_request(_submit(1), 0.0)
    body = b"\xff\xfe\x00"  # not ASCII: no id to match a receipt with
    events = esme.receive_data(_HEADER.pack(16 + len(body), CommandId.SUBMIT_SM_RESP, 0, seq) + body, 0.0)
    assert [type(e).__name__ for e in events] == ["ResponseUnreadable"]
    assert codec.salvage_response(_HEADER.pack(16 + len(body), CommandId.SUBMIT_SM, 0, seq) + body) is None


def test_a_response_of_another_kind_is_no_answer_and_its_request_stays_in_flight() -> None:
    # An SMSC answered a submit with an enquire_link_resp under the submit's sequence number: counted as a
    # refusal, the message moved to the next carrier though the first one may have taken it.
    esme = _bound_esme()
    seq = esme.send_request(_submit(1), 0.0)
    esme.data_to_send()
    events = esme.receive_data(codec.encode(P.EnquireLinkResp(), seq), 0.0)
    assert [type(e).__name__ for e in events] == ["UnexpectedResponse"]
    assert esme.in_flight == 1
    events = esme.receive_data(codec.encode(P.SubmitSmResp(message_id="77"), seq), 0.0)
    assert [type(e).__name__ for e in events] == ["ResponseReceived"]
    assert esme.in_flight == 0
    # A generic_nack under its number is an answer (SMPP 3.4 4.3).
    seq = esme.send_request(_submit(2), 0.0)
    events = esme.receive_data(codec.encode(P.GenericNack(command_status=0x08), seq), 0.0)
    assert [type(e).__name__ for e in events] == ["ResponseReceived"]
