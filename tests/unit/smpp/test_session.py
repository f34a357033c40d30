"""An ESME session and an SMSC session back to back in memory (h11's ConnectionPair idea)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.smpp import codec
from gateway.smpp import pdu as P
from gateway.smpp.constants import MAX_SEQUENCE, CommandId, CommandStatus
from gateway.smpp.errors import ProtocolError, WindowFull
from gateway.smpp.session import (
    Event,
    LinkDead,
    PduReceived,
    Rejected,
    RequestExpired,
    ResponseReceived,
    Session,
    SessionConfig,
    StateChanged,
    UnexpectedResponse,
)
from gateway.smpp.state import Role, State


class Pair:
    def __init__(self, config: SessionConfig | None = None) -> None:
        self.esme = Session(Role.ESME, config)
        self.smsc = Session(Role.SMSC, config)
        self.now = 0.0

    def to_smsc(self) -> list[Event]:
        return self.smsc.receive_data(self.esme.data_to_send(), self.now)

    def to_esme(self) -> list[Event]:
        return self.esme.receive_data(self.smsc.data_to_send(), self.now)

    def bind(self, cls: type[P.BindTransmitter | P.BindReceiver | P.BindTransceiver] = P.BindTransceiver) -> None:
        self.esme.send_request(cls(system_id="acme", password="pw"), self.now)
        (ev,) = self.to_smsc()
        assert isinstance(ev, PduReceived)
        resp = P.RESPONSE_FOR[ev.pdu.command_id]
        assert issubclass(resp, P.BindTransmitterResp | P.BindReceiverResp | P.BindTransceiverResp)
        self.smsc.send_response(resp(sequence_number=ev.pdu.sequence_number, system_id="sim"))
        events = self.to_esme()
        assert any(isinstance(e, StateChanged) for e in events)


def _submit(i: int = 0) -> P.SubmitSm:
    return P.SubmitSm(source_addr="ACME", destination_addr=f"4477009{i:05d}", short_message=b"hello")


def test_bind_submit_receipt_unbind_round_trip() -> None:
    pair = Pair()
    pair.bind()
    assert pair.esme.state is State.BOUND_TRX
    assert pair.smsc.state is State.BOUND_TRX
    seq = pair.esme.send_request(_submit(), pair.now, context="seg-1")
    (ev,) = pair.to_smsc()
    assert isinstance(ev, PduReceived)
    assert ev.pdu == replace(_submit(), sequence_number=seq)
    pair.smsc.send_response(P.SubmitSmResp(sequence_number=seq, message_id="abc123"))
    (resp,) = pair.to_esme()
    assert isinstance(resp, ResponseReceived)
    assert resp.request.context == "seg-1"
    assert isinstance(resp.pdu, P.SubmitSmResp)
    assert resp.pdu.message_id == "abc123"
    assert pair.esme.in_flight == 0
    # The SMSC pushes a receipt; the ESME app answers it.
    dseq = pair.smsc.send_request(P.DeliverSm(esm_class=0x04, short_message=b"id:abc123 stat:DELIVRD"), 0.0)
    (dev,) = pair.to_esme()
    assert isinstance(dev, PduReceived)
    assert isinstance(dev.pdu, P.DeliverSm)
    pair.esme.send_response(P.DeliverSmResp(sequence_number=dev.pdu.sequence_number))
    (dresp,) = pair.to_smsc()
    assert isinstance(dresp, ResponseReceived)
    assert dresp.request.sequence_number == dseq
    # Unbind handshake: the SMSC session answers by itself and closes.
    pair.esme.send_request(P.Unbind(), pair.now)
    assert _state(pair.esme) is State.UNBINDING
    pair.to_smsc()
    assert _state(pair.smsc) is State.CLOSED
    pair.to_esme()
    assert _state(pair.esme) is State.CLOSED


def _state(session: Session) -> State:
    return session.state


def test_submit_before_bind_gets_rinvbndsts_on_the_wire() -> None:
    smsc = Session(Role.SMSC)
    events = smsc.receive_data(codec.encode(_submit(), 9), 0.0)
    assert isinstance(events[0], Rejected)
    resp = codec.decode(smsc.data_to_send())
    assert isinstance(resp, P.SubmitSmResp)
    assert resp.sequence_number == 9
    assert resp.command_status == CommandStatus.ESME_RINVBNDSTS


def test_esme_may_not_submit_before_bind() -> None:
    esme = Session(Role.ESME)
    with pytest.raises(ProtocolError) as info:
        esme.send_request(_submit(), 0.0)
    assert info.value.command_status == CommandStatus.ESME_RINVBNDSTS


def test_submit_on_receiver_bind_is_refused_both_ways() -> None:
    pair = Pair()
    pair.bind(P.BindReceiver)
    with pytest.raises(ProtocolError):
        pair.esme.send_request(_submit(), 0.0)
    pair.smsc.receive_data(codec.encode(_submit(), 5), 0.0)
    resp = codec.decode(pair.smsc.data_to_send())
    assert resp.command_status == CommandStatus.ESME_RINVBNDSTS


def test_second_bind_gets_ralybnd() -> None:
    pair = Pair()
    pair.bind()
    pair.smsc.receive_data(codec.encode(P.BindTransmitter(system_id="x"), 77), 0.0)
    resp = codec.decode(pair.smsc.data_to_send())
    assert isinstance(resp, P.BindTransmitterResp)
    assert resp.command_status == CommandStatus.ESME_RALYBND


def test_failed_bind_leaves_esme_open() -> None:
    pair = Pair()
    pair.esme.send_request(P.BindTransmitter(system_id="acme", password="bad"), 0.0)
    (ev,) = pair.to_smsc()
    assert isinstance(ev, PduReceived)
    pair.smsc.send_response(
        P.BindTransmitterResp(sequence_number=ev.pdu.sequence_number, command_status=CommandStatus.ESME_RINVPASWD)
    )
    (resp,) = pair.to_esme()
    assert isinstance(resp, ResponseReceived)
    assert resp.pdu.command_status == CommandStatus.ESME_RINVPASWD
    assert pair.esme.state is State.OPEN
    assert pair.smsc.state is State.OPEN


def test_window_full_raises_and_frees_on_response() -> None:
    pair = Pair(SessionConfig(window=3))
    pair.bind()
    seqs = [pair.esme.send_request(_submit(i), 0.0) for i in range(3)]
    with pytest.raises(WindowFull):
        pair.esme.send_request(_submit(9), 0.0)
    # enquire_link does not take a window slot.
    pair.esme.send_request(P.EnquireLink(), 0.0)
    pair.smsc.send_response(P.SubmitSmResp(sequence_number=seqs[1], message_id="x"))
    pair.to_esme()
    assert pair.esme.window_free == 1
    pair.esme.send_request(_submit(10), 0.0)


def test_expired_requests_come_back_as_events_and_late_response_is_unexpected() -> None:
    pair = Pair(SessionConfig(response_timeout_seconds=5, enquire_link_interval_seconds=0))
    pair.bind()
    seq = pair.esme.send_request(_submit(), 10.0, context="k")
    assert pair.esme.next_deadline() == 15.0
    assert pair.esme.tick(14.9) == []
    (ev,) = pair.esme.tick(15.0)
    assert isinstance(ev, RequestExpired)
    assert ev.request.context == "k"
    assert pair.esme.in_flight == 0
    pair.smsc.send_response(P.SubmitSmResp(sequence_number=seq, message_id="late"))
    (late,) = pair.to_esme()
    assert isinstance(late, UnexpectedResponse)


def test_answered_requests_do_not_pile_up_and_unanswered_ones_still_expire() -> None:
    # Thousands of submits a second, each answered at once, all inside one response timeout: the session's
    # deadline bookkeeping must stay the size of what is in flight (it held every answered entry until its
    # deadline, 30 s of traffic), and the few never answered must still expire, in order, on time.
    pair = Pair(SessionConfig(window=10, response_timeout_seconds=30, enquire_link_interval_seconds=0))
    pair.bind()
    unanswered = []
    for i in range(5000):
        now = i / 1000  # 5 s of traffic at 1,000/s
        seq = pair.esme.send_request(_submit(i), now, context=i)
        if i % 1000 == 0:
            unanswered.append(seq)
            continue
        pair.smsc.receive_data(pair.esme.data_to_send(), now)
        pair.smsc.send_response(P.SubmitSmResp(sequence_number=seq, message_id=str(i)))
        pair.esme.receive_data(pair.smsc.data_to_send(), now)
    assert pair.esme.in_flight == 5
    assert len(pair.esme._deadlines) <= 2 * 5 + 64 + 1
    assert pair.esme.next_deadline() == 30.0
    expired = pair.esme.tick(34.5)
    assert [e.request.context for e in expired if isinstance(e, RequestExpired)] == [0, 1000, 2000, 3000, 4000]
    assert pair.esme.in_flight == 0


@pytest.mark.parametrize("status", [0, CommandStatus.ESME_RX_T_APPN, CommandStatus.ESME_RSYSERR])
def test_acknowledge_writes_the_same_octets_as_the_response_pdu(status: int) -> None:
    # The gateway answers each receipt with acknowledge(); the SMSC must read exactly the response it would
    # get from send_response(DeliverSmResp(...)) / (DataSmResp(...)).
    pair = Pair()
    pair.bind()
    deliver = P.DeliverSm(source_addr="447700900001", destination_addr="ACME", short_message=b"id:1 stat:DELIVRD")
    data = P.DataSm(source_addr="447700900001", destination_addr="ACME")
    for request, response in ((deliver, P.DeliverSmResp), (data, P.DataSmResp)):
        pair.smsc.send_request(request, 0.0)
        (received,) = pair.to_esme()
        assert isinstance(received, PduReceived)
        assert isinstance(received.pdu, P.DeliverSm | P.DataSm)
        pair.esme.acknowledge(received.pdu, status)
        wire = pair.esme.data_to_send()
        expected = codec.encode(response(sequence_number=received.pdu.sequence_number, command_status=status))
        assert wire == expected
        (answered,) = pair.smsc.receive_data(wire, 0.0)
        assert isinstance(answered, ResponseReceived)
        assert answered.pdu.command_status == status


def test_send_encoded_writes_and_tracks_what_send_request_and_send_response_do() -> None:
    # The simulator writes its receipts and submit_sm_resp as octets: the peer must read the same bytes, and
    # the sender must track the request (window, deadline, context, expiry) as send_request would.
    deliver = P.DeliverSm(source_addr="447700900001", destination_addr="ACME", short_message=b"id:1 stat:DELIVRD")
    body = codec.encode(deliver)[16:]
    config = SessionConfig(window=2, enquire_link_interval_seconds=0)
    by_pdu, by_octets = Pair(config), Pair(config)
    for pair in (by_pdu, by_octets):
        pair.bind()
    first = by_pdu.smsc.send_request(deliver, 5.0, context="r1")
    assert by_octets.smsc.send_encoded(CommandId.DELIVER_SM, body, 5.0, context="r1", pdu=deliver) == first
    assert by_octets.smsc.send_encoded(CommandId.DELIVER_SM, body, 5.0, context="r2") == first + 1
    by_pdu.smsc.send_request(deliver, 5.0, context="r2")
    assert by_octets.smsc.data_to_send() == by_pdu.smsc.data_to_send()
    with pytest.raises(WindowFull):
        by_octets.smsc.send_encoded(CommandId.DELIVER_SM, body, 5.0)
    assert [(r.sequence_number, r.command_id, r.deadline, r.context) for r in by_octets.smsc.outstanding()] == [
        (r.sequence_number, r.command_id, r.deadline, r.context) for r in by_pdu.smsc.outstanding()
    ]
    assert [r.pdu for r in by_octets.smsc.outstanding()] == [deliver, None]
    assert by_octets.smsc.next_deadline() == by_pdu.smsc.next_deadline() == 35.0
    (expired, _) = by_octets.smsc.tick(35.0)
    assert isinstance(expired, RequestExpired)
    assert expired.request.context == "r1"
    # A response: the request's sequence number, the state rules of send_response.
    by_octets.smsc.send_encoded(CommandId.SUBMIT_SM_RESP, b"5f3a\x00", 0.0, sequence_number=7)
    assert by_octets.smsc.data_to_send() == codec.encode(P.SubmitSmResp(sequence_number=7, message_id="5f3a"))
    with pytest.raises(ProtocolError):
        Session(Role.SMSC).send_encoded(CommandId.DELIVER_SM, body, 0.0)
    with pytest.raises(ProtocolError):
        Session(Role.SMSC).send_encoded(CommandId.SUBMIT_SM_RESP, b"\x00", 0.0, sequence_number=1)


def test_idle_link_sends_enquire_link_and_silent_peer_is_dead() -> None:
    pair = Pair(SessionConfig(enquire_link_interval_seconds=30, response_timeout_seconds=10))
    pair.bind()
    assert pair.esme.next_deadline() == 30.0
    assert pair.esme.tick(30.0) == []
    probe = codec.decode(pair.esme.data_to_send())
    assert isinstance(probe, P.EnquireLink)
    (dead,) = pair.esme.tick(40.0)
    assert isinstance(dead, LinkDead)


def test_enquire_link_is_answered_by_the_session() -> None:
    pair = Pair(SessionConfig(enquire_link_interval_seconds=30))
    pair.bind()
    pair.now = 31.0
    pair.esme.tick(31.0)
    assert pair.to_smsc() == []
    (ev,) = pair.to_esme()
    assert isinstance(ev, ResponseReceived)
    assert ev.request.command_id == CommandId.ENQUIRE_LINK


def test_unknown_command_id_gets_generic_nack_with_rinvcmdid() -> None:
    smsc = Session(Role.SMSC)
    raw = codec.pack_header(16, 0x00000999, 0, 42)
    (ev,) = smsc.receive_data(raw, 0.0)
    assert isinstance(ev, Rejected)
    nack = codec.decode(smsc.data_to_send())
    assert isinstance(nack, P.GenericNack)
    assert (nack.sequence_number, nack.command_status) == (42, CommandStatus.ESME_RINVCMDID)


def test_malformed_submit_gets_its_response_with_the_field_status() -> None:
    pair = Pair()
    pair.bind()
    frame = bytearray(codec.encode(_submit(), 3))
    # Overwrite the source address's NUL and what follows with letters: source_addr becomes too long
    # (a NUL still follows further on, so the PDU is not merely truncated).
    start = 16 + 1 + 2
    frame[start : start + 25] = b"A" * 25
    pair.smsc.receive_data(bytes(frame), 0.0)
    resp = codec.decode(pair.smsc.data_to_send())
    assert isinstance(resp, P.SubmitSmResp)
    assert resp.command_status == CommandStatus.ESME_RINVSRCADR


def test_impossible_length_kills_the_link_with_generic_nack() -> None:
    smsc = Session(Role.SMSC)
    events = smsc.receive_data(b"\x00\x00\x00\x05" + b"\x00" * 12, 0.0)
    assert isinstance(events[-1], LinkDead)
    nack = codec.decode(smsc.data_to_send())
    assert nack.command_status == CommandStatus.ESME_RINVCMDLEN


def test_sequence_numbers_wrap_and_skip_outstanding() -> None:
    pair = Pair()
    pair.bind()
    pair.esme._next_seq = MAX_SEQUENCE
    first = pair.esme.send_request(_submit(), 0.0)
    second = pair.esme.send_request(_submit(), 0.0)
    assert (first, second) == (MAX_SEQUENCE, 1)  # 1 went to the bind, already answered: reusable
    pair.esme._next_seq = MAX_SEQUENCE
    third = pair.esme.send_request(_submit(), 0.0)
    assert third == 2  # MAX_SEQUENCE and 1 still in flight, skipped


def test_close_hands_back_everything_in_flight() -> None:
    pair = Pair()
    pair.bind()
    for i in range(5):
        pair.esme.send_request(_submit(i), 0.0, context=i)
    lost = pair.esme.close()
    assert sorted(r.context for r in lost) == [0, 1, 2, 3, 4]
    assert pair.esme.state is State.CLOSED
