"""A broken stream and queued submits taken back: the session's side of a carrier bind's faults."""

from __future__ import annotations

import struct

import pytest

from gateway.errors import FrameError
from gateway.smpp import codec
from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandId, CommandStatus
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
