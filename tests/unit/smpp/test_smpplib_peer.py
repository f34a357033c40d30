"""smpplib as an independent SMPP implementation: our bytes parse there, theirs parse here, same values."""

from __future__ import annotations

from typing import Any

import pytest
import smpplib.smpp
from hypothesis import given
from hypothesis import strategies as st

from gateway.smpp import codec
from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandStatus, Tag


class _Client:
    """smpplib's parser asks its client for sequence numbers; it has no other use here."""

    def next_sequence(self) -> int:
        return 1


def theirs(data: bytes) -> Any:
    return smpplib.smpp.parse_pdu(data, client=_Client())


def make_theirs(name: str, sequence: int, **fields: Any) -> bytes:
    pdu = smpplib.smpp.make_pdu(name, client=_Client(), **fields)
    pdu.sequence = sequence
    data: bytes = pdu.generate()
    return data


# smpplib writes an int field of value 0 as one NUL octet whatever its width, and reads C strings as bytes.
_digits = st.text("0123456789", min_size=1, max_size=20)
_alnum = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=11)


@given(
    seq=st.integers(1, 0x7FFFFFFF),
    src=_alnum,
    dst=_digits,
    esm=st.integers(0, 255),
    dc=st.sampled_from([0, 3, 4, 8]),
    reg=st.integers(0, 3),
    sm=st.binary(max_size=254),
    ref=st.integers(1, 0xFFFF),
)
def test_our_submit_sm_parses_in_smpplib(
    seq: int, src: str, dst: str, esm: int, dc: int, reg: int, sm: bytes, ref: int
) -> None:
    ours = P.SubmitSm(
        sequence_number=seq,
        source_addr_ton=5,
        source_addr=src,
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr=dst,
        esm_class=esm,
        data_coding=dc,
        registered_delivery=reg,
        short_message=sm,
        tlvs=((Tag.USER_MESSAGE_REFERENCE, ref),),
    )
    got = theirs(codec.encode(ours))
    assert got.command == "submit_sm"
    assert got.sequence == seq
    assert got.source_addr == src.encode()
    assert got.destination_addr == dst.encode()
    assert (got.source_addr_ton, got.dest_addr_ton, got.dest_addr_npi) == (5, 1, 1)
    assert got.esm_class == esm
    assert got.data_coding == dc
    assert got.registered_delivery == reg
    assert (got.short_message or b"") == sm
    assert got.user_message_reference == ref


@given(
    seq=st.integers(1, 0x7FFFFFFF),
    src=_digits,
    dst=_alnum,
    sm=st.binary(max_size=254),
    dc=st.sampled_from([0, 8]),
)
def test_smpplib_deliver_sm_decodes_here(seq: int, src: str, dst: str, sm: bytes, dc: int) -> None:
    data = make_theirs(
        "deliver_sm",
        seq,
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr=src,
        dest_addr_ton=5,
        destination_addr=dst,
        esm_class=0x04,
        data_coding=dc,
        short_message=sm,
        receipted_message_id="0A1B2C",
        message_state=2,
    )
    ours = codec.decode(data)
    assert isinstance(ours, P.DeliverSm)
    assert ours.sequence_number == seq
    assert (ours.source_addr, ours.destination_addr) == (src, dst)
    assert ours.esm_class == 0x04
    assert ours.data_coding == dc
    assert ours.short_message == sm
    assert ours.tlv(Tag.RECEIPTED_MESSAGE_ID) == "0A1B2C"
    assert ours.tlv(Tag.MESSAGE_STATE) == 2
    # And what we would send back for it parses in smpplib.
    resp = theirs(codec.encode(P.DeliverSmResp(sequence_number=seq)))
    assert (resp.command, resp.sequence, resp.status) == ("deliver_sm_resp", seq, 0)


@given(seq=st.integers(1, 0x7FFFFFFF), src=_alnum, dst=_digits, sm=st.binary(min_size=1, max_size=254))
def test_smpplib_submit_sm_decodes_here(seq: int, src: str, dst: str, sm: bytes) -> None:
    data = make_theirs(
        "submit_sm",
        seq,
        source_addr_ton=5,
        source_addr=src,
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr=dst,
        registered_delivery=1,
        data_coding=8,
        short_message=sm,
    )
    ours = codec.decode(data)
    assert isinstance(ours, P.SubmitSm)
    assert (ours.sequence_number, ours.source_addr, ours.destination_addr) == (seq, src, dst)
    assert (ours.registered_delivery, ours.data_coding, ours.short_message) == (1, 8, sm)


@pytest.mark.parametrize("name", ["bind_transmitter", "bind_receiver", "bind_transceiver"])
def test_binds_both_ways(name: str) -> None:
    data = make_theirs(name, 7, system_id="acme", password="secret", system_type="GW", interface_version=0x34)
    ours = codec.decode(data)
    assert isinstance(ours, P.BindTransmitter | P.BindReceiver | P.BindTransceiver)
    assert (ours.system_id, ours.password, ours.system_type) == ("acme", "secret", "GW")
    assert ours.interface_version == 0x34
    back = theirs(codec.encode(ours))
    assert back.command == name
    assert (back.system_id, back.password, back.system_type) == (b"acme", b"secret", b"GW")
    resp_cls = P.RESPONSE_FOR[ours.command_id]
    assert issubclass(resp_cls, P.BindTransmitterResp | P.BindReceiverResp | P.BindTransceiverResp)
    resp = theirs(codec.encode(resp_cls(sequence_number=7, system_id="SMSC")))
    assert (resp.command, resp.sequence, resp.system_id) == (f"{name}_resp", 7, b"SMSC")


def test_submit_sm_resp_both_ways() -> None:
    resp = theirs(codec.encode(P.SubmitSmResp(sequence_number=3, message_id="5F3A0001")))
    assert (resp.command, resp.sequence, resp.message_id) == ("submit_sm_resp", 3, b"5F3A0001")
    ours = codec.decode(make_theirs("submit_sm_resp", 9, message_id="12345"))
    assert isinstance(ours, P.SubmitSmResp)
    assert (ours.sequence_number, ours.message_id) == (9, "12345")
    err = theirs(codec.encode(P.SubmitSmResp(sequence_number=4, command_status=CommandStatus.ESME_RTHROTTLED)))
    assert err.status == CommandStatus.ESME_RTHROTTLED


@pytest.mark.parametrize(("name", "cls"), [("enquire_link", P.EnquireLink), ("unbind", P.Unbind)])
def test_link_pdus_both_ways(name: str, cls: type[P.Pdu]) -> None:
    ours = codec.decode(make_theirs(name, 21))
    assert type(ours) is cls
    assert ours.sequence_number == 21
    back = theirs(codec.encode(cls(sequence_number=22)))
    assert (back.command, back.sequence) == (name, 22)
    resp_cls = P.RESPONSE_FOR[cls.command_id]
    resp = theirs(codec.encode(resp_cls(sequence_number=22)))
    assert (resp.command, resp.sequence) == (f"{name}_resp", 22)
    assert type(codec.decode(make_theirs(f"{name}_resp", 23))) is resp_cls
