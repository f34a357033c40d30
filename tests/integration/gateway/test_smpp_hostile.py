"""A hostile upstream ESME against a running gateway's SMPP face (docs/smpp_server.md): malformed and
unframable PDUs, requests out of turn, a connection that never binds, a long message whose last part never
comes, a flood of submits never read, garbage after a bind, a client that leaves mid-submit. Each is
answered on the wire with a named status (or a clean close), and the gateway still binds and submits after.

Raw octets go over a real socket (a `Framer` reads what comes back); a well-behaved ESME is the sans-IO
`Session(Role.ESME)` on a socket, as tests/integration/sim/test_simulator.py drives one.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import trio

from gateway.smpp import codec
from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandId, EsmClass, Tag
from gateway.smpp.constants import CommandStatus as S
from gateway.smpp.framing import Framer
from gateway.smpp.session import PduReceived, ResponseReceived, Session
from gateway.smpp.state import Role
from tests.integration.gateway.smpp_harness import PASSWORD, SYSTEM_ID, smpp_gateway

LIMIT = 30


# --- a raw wire ---------------------------------------------------------------------------------------


class Raw:
    """Octets out as they are; what comes back cut into PDUs, deliver_sm answered ESME_ROK."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.framer = Framer()
        self.pending: list[P.Pdu] = []
        self.eof = False

    async def write(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def send(self, pdu: P.Pdu, seq: int) -> None:
        await self.write(codec.encode(pdu, seq))

    async def _read(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            self.eof = True
            return
        self.framer.feed(data)
        answers = b""
        for frame in self.framer.frames():
            pdu = codec.decode(frame)
            if isinstance(pdu, P.DeliverSm):
                answers += codec.encode(P.DeliverSmResp(), pdu.sequence_number)
            elif isinstance(pdu, P.EnquireLink):
                answers += codec.encode(P.EnquireLinkResp(), pdu.sequence_number)
            self.pending.append(pdu)
        if answers:
            await self.stream.send_all(answers)

    async def next(self) -> P.Pdu | None:
        """The next PDU the gateway sends; None once it closed the connection."""
        while not self.pending:
            if self.eof:
                return None
            await self._read()
        return self.pending.pop(0)

    async def answer(self, seq: int) -> P.Pdu:
        """The next PDU that is not an enquire_link or deliver_sm: the answer to `seq`, checked."""
        while True:
            pdu = await self.next()
            assert pdu is not None, f"closed before the answer to {seq}"
            if not isinstance(pdu, P.EnquireLink | P.DeliverSm):
                assert pdu.sequence_number == seq, pdu
                return pdu

    async def closed(self) -> list[P.Pdu]:
        """Everything the gateway sends until it closes the connection."""
        out = []
        while (pdu := await self.next()) is not None:
            out.append(pdu)
        return out


@asynccontextmanager
async def raw(port: int) -> AsyncIterator[Raw]:
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        yield Raw(stream)


@asynccontextmanager
async def raw_bound(port: int) -> AsyncIterator[Raw]:
    """A transmitter bind: receipts go to the receivers a test opens, never to this one."""
    async with raw(port) as wire:
        await wire.send(P.BindTransmitter(system_id=SYSTEM_ID, password=PASSWORD), 1)
        resp = await wire.answer(1)
        assert S(resp.command_status) is S.ESME_ROK
        yield wire


def submit(n: int = 1, **changes: object) -> P.SubmitSm:
    pdu = P.SubmitSm(source_addr="ACME", destination_addr=f"4477009{n:05d}", short_message=b"hostile %d" % n)
    return replace(pdu, **changes)  # type: ignore[arg-type]


def frame(command_id: int, seq: int, body: bytes = b"", *, length: int | None = None) -> bytes:
    """A PDU by hand: header (command_length as given, else the true one) and body."""
    return struct.pack(">IIII", 16 + len(body) if length is None else length, command_id, 0, seq) + body


def status(pdu: P.Pdu | None) -> S:
    assert pdu is not None, "the gateway closed the connection instead of answering"
    return S(pdu.command_status)


# --- a well-behaved ESME --------------------------------------------------------------------------------


class Esme:
    """A sans-IO ESME session on a socket: responses by sequence number, receipts answered and kept."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.session = Session(Role.ESME)
        self.responses: dict[int, P.Pdu] = {}
        self.delivered: list[P.DeliverSm] = []

    async def send(self, pdu: P.Pdu) -> int:
        seq = self.session.send_request(pdu, trio.current_time())
        await self.stream.send_all(self.session.data_to_send())
        return seq

    async def _read(self) -> None:
        data = await self.stream.receive_some(65536)
        assert data, "the gateway closed a well-behaved ESME's connection"
        for event in self.session.receive_data(data, trio.current_time()):
            if isinstance(event, ResponseReceived):
                self.responses[event.pdu.sequence_number] = event.pdu
            elif isinstance(event, PduReceived) and isinstance(event.pdu, P.DeliverSm):
                self.delivered.append(event.pdu)
                self.session.send_response(P.DeliverSmResp(sequence_number=event.pdu.sequence_number))
        await self.stream.send_all(self.session.data_to_send())

    async def response(self, seq: int) -> P.Pdu:
        while seq not in self.responses:
            await self._read()
        return self.responses.pop(seq)

    async def receipt(self, message_id: str) -> P.DeliverSm:
        while True:
            for pdu in self.delivered:
                if pdu.tlv(Tag.RECEIPTED_MESSAGE_ID) == message_id:
                    return pdu
            await self._read()


@asynccontextmanager
async def esme(port: int) -> AsyncIterator[Esme]:
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        client = Esme(stream)
        resp = await client.response(await client.send(P.BindTransceiver(system_id=SYSTEM_ID, password=PASSWORD)))
        assert S(resp.command_status) is S.ESME_ROK
        yield client


async def assert_still_serving(port: int) -> None:
    """A new ESME binds, submits with a receipt asked, is answered ESME_ROK and gets its receipt."""
    async with esme(port) as client:
        resp = await client.response(await client.send(submit(99, registered_delivery=1)))
        assert isinstance(resp, P.SubmitSmResp)
        assert status(resp) is S.ESME_ROK
        assert resp.message_id
        receipt = await client.receipt(resp.message_id)
        assert receipt.esm_class & EsmClass.DELIVERY_RECEIPT


# --- out of turn --------------------------------------------------------------------------------------


async def test_submit_before_bind_gets_rinvbndsts(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with smpp_gateway(tmp_path) as (_, port):
            async with raw(port) as wire:
                await wire.send(submit(), 7)
                resp = await wire.answer(7)
                assert isinstance(resp, P.SubmitSmResp)
                assert status(resp) is S.ESME_RINVBNDSTS
                # Still open and unbound: a bind now works.
                await wire.send(P.BindTransmitter(system_id=SYSTEM_ID, password=PASSWORD), 8)
                assert status(await wire.answer(8)) is S.ESME_ROK
            await assert_still_serving(port)


async def test_unknown_command_id_gets_generic_nack_rinvcmdid_and_the_bind_stays(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with smpp_gateway(tmp_path) as (_, port), raw_bound(port) as wire:
            for cid in (0x0000_0077, 0x0001_0000, 0x8000_0077):
                await wire.write(frame(cid, 41, b"\x00\x01\x02"))
                nack = await wire.answer(41)
                assert isinstance(nack, P.GenericNack)
                assert status(nack) is S.ESME_RINVCMDID
            await wire.send(submit(), 42)
            assert status(await wire.answer(42)) is S.ESME_ROK
            await assert_still_serving(port)


async def test_receiver_bind_that_submits_gets_rinvbndsts(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with smpp_gateway(tmp_path) as (_, port), raw(port) as wire:
            await wire.send(P.BindReceiver(system_id=SYSTEM_ID, password=PASSWORD), 1)
            assert status(await wire.answer(1)) is S.ESME_ROK
            await wire.send(submit(), 2)
            resp = await wire.answer(2)
            assert isinstance(resp, P.SubmitSmResp)
            assert status(resp) is S.ESME_RINVBNDSTS


async def test_second_bind_on_a_bound_connection_gets_ralybnd(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with smpp_gateway(tmp_path) as (_, port), raw_bound(port) as wire:
            await wire.send(P.BindTransmitter(system_id=SYSTEM_ID, password=PASSWORD), 2)
            resp = await wire.answer(2)
            assert isinstance(resp, P.BindTransmitterResp)
            assert status(resp) is S.ESME_RALYBND
            await wire.send(submit(), 3)
            assert status(await wire.answer(3)) is S.ESME_ROK


async def test_unsolicited_responses_are_ignored_and_the_bind_stays(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with smpp_gateway(tmp_path) as (_, port), raw_bound(port) as wire:
            await wire.send(P.DeliverSmResp(), 555)
            await wire.send(P.SubmitSmResp(message_id="x"), 556)
            await wire.send(P.GenericNack(command_status=S.ESME_RSYSERR), 557)
            await wire.send(submit(), 558)
            assert status(await wire.answer(558)) is S.ESME_ROK


# --- malformed PDUs -------------------------------------------------------------------------------------


async def test_truncated_submit_body_gets_its_own_response_with_an_error(tmp_path: Path) -> None:
    whole = codec.encode(submit(1), 0)
    with trio.fail_after(LIMIT):
        async with smpp_gateway(tmp_path) as (_, port), raw_bound(port) as wire:
            # The header's length is true, the body stops inside short_message: sm_length runs past the end.
            body = whole[16:-3]
            await wire.write(frame(CommandId.SUBMIT_SM, 10, body))
            resp = await wire.answer(10)
            assert isinstance(resp, P.SubmitSmResp)
            assert status(resp) is S.ESME_RINVMSGLEN
            # The body stops inside service_type, before its NUL.
            await wire.write(frame(CommandId.SUBMIT_SM, 11, b"CMT"))
            resp = await wire.answer(11)
            assert isinstance(resp, P.SubmitSmResp)
            assert status(resp) is S.ESME_RINVCMDLEN
            # A submit_sm with no body at all.
            await wire.write(frame(CommandId.SUBMIT_SM, 12))
            resp = await wire.answer(12)
            assert isinstance(resp, P.SubmitSmResp)
            assert status(resp) is S.ESME_RINVCMDLEN
            # A source_addr over 21 octets names its own status.
            long_source = whole[16:17] + b"\x01\x01" + b"4" * 30 + b"\x00" + whole[16 + 1 + 2 + 5 :]
            await wire.write(frame(CommandId.SUBMIT_SM, 13, long_source))
            resp = await wire.answer(13)
            assert status(resp) is S.ESME_RINVSRCADR
            await wire.send(submit(2), 14)
            assert status(await wire.answer(14)) is S.ESME_ROK
            await assert_still_serving(port)


async def test_bad_tlv_lengths_get_the_submit_response_with_their_status(tmp_path: Path) -> None:
    whole = codec.encode(submit(1), 0)
    cases = [
        # sar_msg_ref_num is 2 octets (SMPP 3.4 5.3.2.22): 3 is a bad length.
        (struct.pack(">HH", Tag.SAR_MSG_REF_NUM, 3) + b"\x00\x01\x02", S.ESME_RINVPARLEN),
        # A TLV whose length runs past the end of the PDU.
        (struct.pack(">HH", Tag.MESSAGE_PAYLOAD, 400) + b"abc", S.ESME_RINVOPTPARSTREAM),
        # Half a TLV header.
        (b"\x04", S.ESME_RINVOPTPARSTREAM),
    ]
    with trio.fail_after(LIMIT):
        async with smpp_gateway(tmp_path) as (_, port), raw_bound(port) as wire:
            for seq, (tail, want) in enumerate(cases, start=20):
                await wire.write(frame(CommandId.SUBMIT_SM, seq, whole[16:] + tail))
                resp = await wire.answer(seq)
                assert isinstance(resp, P.SubmitSmResp)
                assert status(resp) is want, tail
            await wire.send(submit(2), 30)
            assert status(await wire.answer(30)) is S.ESME_ROK


async def test_short_message_and_message_payload_together_get_rinvparlen(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with smpp_gateway(tmp_path) as (_, port), raw_bound(port) as wire:
            await wire.send(submit(1, tlvs=((Tag.MESSAGE_PAYLOAD, b"also this"),)), 5)
            assert status(await wire.answer(5)) is S.ESME_RINVPARLEN
            await wire.send(submit(1, short_message=b""), 6)
            assert status(await wire.answer(6)) is S.ESME_RINVMSGLEN


async def test_a_60_kb_message_payload_gets_rinvmsglen(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with smpp_gateway(tmp_path) as (_, port), raw_bound(port) as wire:
            await wire.send(submit(1, short_message=b"", tlvs=((Tag.MESSAGE_PAYLOAD, b"x" * 60_000),)), 5)
            assert status(await wire.answer(5)) is S.ESME_RINVMSGLEN
            await wire.send(submit(2), 6)
            assert status(await wire.answer(6)) is S.ESME_ROK


async def test_udh_longer_than_the_user_data_gets_an_error_answer_and_the_bind_stays(tmp_path: Path) -> None:
    bad_udhs = [
        b"\x09\x00\x03\x01",  # UDHL 9 with 3 octets after it
        b"\x05\x00\x07\x01\x02\x01abc",  # an IE whose length runs past the header
    ]
    with trio.fail_after(LIMIT):
        async with smpp_gateway(tmp_path) as (_, port), raw_bound(port) as wire:
            for seq, data in enumerate(bad_udhs, start=3):
                await wire.send(submit(1, esm_class=EsmClass.UDHI, short_message=data), seq)
                resp = await wire.answer(seq)
                assert isinstance(resp, P.SubmitSmResp)
                assert status(resp) in (S.ESME_RSUBMITFAIL, S.ESME_RINVESMCLASS, S.ESME_RINVMSGLEN)
            await wire.send(submit(2), 9)
            assert status(await wire.answer(9)) is S.ESME_ROK


async def test_malformed_submit_multi_and_bind_fields_get_their_own_statuses(tmp_path: Path) -> None:
    multi = codec.encode(P.SubmitMulti(source_addr="ACME", dest_addresses=(P.DestAddress(1, 1, "447700900001"),),
                                       short_message=b"hi"), 0)  # fmt: skip
    head = 16 + 1 + 2 + len(b"ACME\x00")  # service_type NUL, source ton/npi, source_addr
    with trio.fail_after(LIMIT):
        async with smpp_gateway(tmp_path) as (_, port):
            async with raw(port) as wire:
                # A system_id of 40 octets (16 at most, SMPP 3.4 4.1.1).
                await wire.write(frame(CommandId.BIND_TRANSMITTER, 1, b"x" * 40 + b"\x00pw\x00\x00\x34\x00\x00\x00"))
                resp = await wire.answer(1)
                assert isinstance(resp, P.BindTransmitterResp)
                assert status(resp) is S.ESME_RINVSYSID
                await wire.send(P.BindTransmitter(system_id=SYSTEM_ID, password=PASSWORD), 2)
                assert status(await wire.answer(2)) is S.ESME_ROK
                # number_of_dests says 3, one follows; then a dest_flag that is neither 1 nor 2.
                for seq, dests in ((3, b"\x03" + multi[head + 1 : head + 1 + 16]), (4, b"\x01\x09")):
                    body = multi[16:head] + dests + multi[head + 1 + 16 :]
                    await wire.write(frame(CommandId.SUBMIT_MULTI, seq, body))
                    resp = await wire.answer(seq)
                    assert isinstance(resp, P.SubmitMultiResp)
                    assert status(resp) is S.ESME_RINVNUMDESTS
                await wire.write(multi[:12] + struct.pack(">I", 5) + multi[16:])
                resp = await wire.answer(5)
                assert isinstance(resp, P.SubmitMultiResp)
                assert status(resp) is S.ESME_ROK
            await assert_still_serving(port)


async def test_query_and_cancel_of_ids_that_are_no_message_get_rinvmsgid(tmp_path: Path) -> None:
    ids = ["", "abc", "9" * 64, str(1 << 64), "-1", "0x10", " 1", "1" * 20]
    with trio.fail_after(LIMIT):
        async with smpp_gateway(tmp_path) as (_, port), raw_bound(port) as wire:
            seq = 100
            for message_id in ids:
                for pdu in (P.QuerySm(message_id=message_id), P.CancelSm(message_id=message_id)):
                    seq += 1
                    await wire.send(pdu, seq)
                    resp = await wire.answer(seq)
                    assert isinstance(resp, P.QuerySmResp | P.CancelSmResp)
                    assert status(resp) is S.ESME_RINVMSGID, (message_id, resp)
            await wire.send(submit(2), 999)
            assert status(await wire.answer(999)) is S.ESME_ROK


async def test_command_length_below_16_gets_generic_nack_rinvcmdlen_then_close(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with smpp_gateway(tmp_path) as (_, port):
            async with raw_bound(port) as wire:
                await wire.write(frame(CommandId.SUBMIT_SM, 33, b"\x00" * 8, length=8))
                (nack,) = await wire.closed()
                assert isinstance(nack, P.GenericNack)
                assert status(nack) is S.ESME_RINVCMDLEN
                assert nack.sequence_number == 33
            await assert_still_serving(port)


async def test_absurd_command_length_gets_generic_nack_rinvcmdlen_then_close(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with smpp_gateway(tmp_path) as (_, port):
            for length in (0xFFFF_FFFF, 64 * 1024 + 1):
                async with raw_bound(port) as wire:
                    await wire.write(frame(CommandId.SUBMIT_SM, 34, b"\x00" * 40, length=length))
                    (nack,) = await wire.closed()
                    assert isinstance(nack, P.GenericNack)
                    assert status(nack) is S.ESME_RINVCMDLEN
            await assert_still_serving(port)


async def test_unframable_stream_before_bind_is_closed_cleanly(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with smpp_gateway(tmp_path) as (_, port):
            async with raw(port) as wire:
                await wire.write(b"GET / HTTP/1.1\r\nHost: gateway\r\n\r\n")
                # "GET " is a command_length of 1.2 GB: nothing after it can be framed.
                said = await wire.closed()
                assert [(type(p), status(p)) for p in said] in ([], [(P.GenericNack, S.ESME_RINVCMDLEN)])
            await assert_still_serving(port)


async def test_garbage_after_a_valid_bind_gets_nacked_and_the_gateway_serves_on(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with smpp_gateway(tmp_path) as (_, port):
            async with raw_bound(port) as wire:
                # Garbage that happens to frame: a plausible length, a command_id nobody knows.
                await wire.write(b"\x00\x00\x00\x14\xde\xad\xbe\xef\x00\x00\x00\x00\x00\x00\x00\x09\xff\xfe\xfd\xfc")
                nack = await wire.answer(9)
                assert isinstance(nack, P.GenericNack)
                assert status(nack) is S.ESME_RINVCMDID
                await wire.send(submit(1), 10)
                assert status(await wire.answer(10)) is S.ESME_ROK
                # Garbage that cannot frame: the link ends.
                await wire.write(b"\xde\xad\xbe\xef" * 16)
                said = await wire.closed()
                assert [(type(p), status(p)) for p in said] == [(P.GenericNack, S.ESME_RINVCMDLEN)]
            await assert_still_serving(port)


# --- connections that misbehave ---------------------------------------------------------------------------


async def test_connection_that_never_binds_is_closed_after_bind_timeout(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with smpp_gateway(tmp_path, bind_timeout_seconds=0.5) as (_, port):
            async with raw(port) as silent, raw(port) as slow:
                start = trio.current_time()
                # One says nothing; one sends half a bind and stalls (a slowloris).
                await slow.write(codec.encode(P.BindTransmitter(system_id=SYSTEM_ID, password=PASSWORD), 1)[:10])
                assert await silent.closed() == []
                assert await slow.closed() == []
                assert 0.4 <= trio.current_time() - start < 5
            # Fifty at once, and a real ESME is served meanwhile.
            async with trio.open_nursery() as nursery:
                for _ in range(50):
                    nursery.start_soon(_stays_silent_until_closed, port)
                await assert_still_serving(port)
            await assert_still_serving(port)


async def _stays_silent_until_closed(port: int) -> None:
    async with raw(port) as wire:
        assert await wire.closed() == []


async def test_bound_esme_that_stops_answering_enquire_link_is_closed(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with smpp_gateway(tmp_path, enquire_link_seconds=1.0, response_timeout_seconds=0.5) as (_, port):
            async with raw(port) as wire:
                await wire.send(P.BindTransmitter(system_id=SYSTEM_ID, password=PASSWORD), 1)
                # Read the bind_resp, then half a PDU and silence: the enquire_link goes unanswered.
                data = await wire.stream.receive_some(65536)
                assert S(codec.decode(data).command_status) is S.ESME_ROK
                await wire.write(codec.encode(submit(1), 2)[:20])
                start = trio.current_time()
                while await wire.stream.receive_some(65536):
                    pass
                assert 1.0 <= trio.current_time() - start < 5
            await assert_still_serving(port)


async def test_idle_bound_esme_is_probed_with_enquire_link_and_stays_bound_when_it_answers(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with smpp_gateway(tmp_path, enquire_link_seconds=1.0) as (_, port), raw_bound(port) as wire:
            start = trio.current_time()
            probe = await wire.next()  # nothing sent since the bind_resp
            assert isinstance(probe, P.EnquireLink)
            assert 0.9 <= trio.current_time() - start < 5
            again = await wire.next()  # answered (by Raw): the link stays, and is probed again
            assert isinstance(again, P.EnquireLink)
            await wire.send(submit(1), 50)
            assert status(await wire.answer(50)) is S.ESME_ROK


async def test_client_that_disconnects_mid_submit_leaves_the_gateway_serving(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with smpp_gateway(tmp_path) as (_, port):
            # Half a submit, then gone.
            async with raw_bound(port) as wire:
                await wire.write(codec.encode(submit(1), 2)[:25])
            # Whole submits, then gone before the answers.
            async with raw_bound(port) as wire:
                await wire.write(b"".join(codec.encode(submit(n), n) for n in range(2, 50)))
            # Two parts of a three-part message, then gone: the held parts are forgotten.
            async with raw_bound(port) as wire:
                for seq in (1, 2):
                    udh = bytes((5, 0, 3, 77, 3, seq))
                    await wire.send(submit(3, esm_class=EsmClass.UDHI, short_message=udh + b"part"), 10 + seq)
            # Submits, an unbind before their answers, then gone.
            async with raw_bound(port) as wire:
                submits = b"".join(codec.encode(submit(n), n) for n in range(2, 20))
                await wire.write(submits + frame(CommandId.UNBIND, 20))
            # Half a bind, then gone.
            async with raw(port) as wire:
                await wire.write(codec.encode(P.BindTransceiver(system_id=SYSTEM_ID, password=PASSWORD), 1)[:30])
            await assert_still_serving(port)
            await assert_still_serving(port)


async def test_client_that_writes_and_never_reads_stops_being_read(tmp_path: Path) -> None:
    # Its answers (ESME_RTHROTTLED, mostly) wait in the gateway's memory until it reads them: the gateway must
    # stop reading it once they pile up (back-pressure), not hold them without bound.
    chunk = b"".join(codec.encode(submit(n % 1000), n) for n in range(2, 1002))
    with trio.fail_after(LIMIT):
        async with smpp_gateway(tmp_path) as (h, port):
            smpp = h.running.smpp
            assert smpp is not None
            async with raw_bound(port) as wire, trio.open_nursery() as nursery:

                async def write_forever() -> None:
                    while True:
                        await wire.write(chunk)

                nursery.start_soon(write_forever)
                await trio.sleep(4.0)
                held = smpp.statistics().throttled
                await trio.sleep(3.0)
                assert smpp.statistics().throttled == held, "still reading a client that reads nothing"
                nursery.cancel_scope.cancel()
            await assert_still_serving(port)


async def test_long_message_without_its_last_part_gets_rsubmitfail_for_held_parts(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with smpp_gateway(tmp_path, reassembly_timeout_seconds=1.0) as (_, port), raw_bound(port) as wire:
            start = trio.current_time()
            for seq in (1, 3):  # part 2 of 3 never comes
                udh = bytes((5, 0, 3, 42, 3, seq))
                await wire.send(submit(5, esm_class=EsmClass.UDHI, short_message=udh + b"part %d" % seq), seq)
            # SAR parts too: 1 of 2 only.
            sar = ((Tag.SAR_MSG_REF_NUM, 4242), (Tag.SAR_TOTAL_SEGMENTS, 2), (Tag.SAR_SEGMENT_SEQNUM, 1))
            await wire.send(submit(6, tlvs=sar), 7)
            answers = {}
            for _ in range(3):
                pdu = await wire.next()
                assert pdu is not None
                answers[pdu.sequence_number] = status(pdu)
            assert answers == {1: S.ESME_RSUBMITFAIL, 3: S.ESME_RSUBMITFAIL, 7: S.ESME_RSUBMITFAIL}
            assert 1.0 <= trio.current_time() - start < 5
            # The connection is fine: a whole long message now is answered for each part.
            for seq in (1, 2):
                udh = bytes((5, 0, 3, 43, 2, seq))
                await wire.send(submit(5, esm_class=EsmClass.UDHI, short_message=udh + b"part %d" % seq), 20 + seq)
            first, second = await wire.answer(21), await wire.answer(22)
            assert (status(first), status(second)) == (S.ESME_ROK, S.ESME_ROK)
            assert isinstance(first, P.SubmitSmResp)
            assert isinstance(second, P.SubmitSmResp)
            assert first.message_id == second.message_id != ""


# --- a flood ----------------------------------------------------------------------------------------------

FLOOD = 5_000


async def test_flood_of_submits_is_answered_each_and_another_esme_is_served_meanwhile(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with smpp_gateway(tmp_path, account_window=100) as (_, port):
            answers: dict[int, S] = {}
            written, served = trio.Event(), trio.Event()

            async def flood() -> None:
                async with raw_bound(port) as wire:
                    pdus = [codec.encode(submit(n % 1000), n) for n in range(2, FLOOD + 2)]
                    for i in range(0, FLOOD, 500):
                        await wire.write(b"".join(pdus[i : i + 500]))
                    written.set()
                    # Not a byte read until the other ESME was served: the answers pile up at the gateway.
                    await served.wait()
                    while len(answers) < FLOOD:
                        pdu = await wire.next()
                        assert pdu is not None, f"closed after {len(answers)} answers"
                        if isinstance(pdu, P.EnquireLink):
                            continue
                        assert isinstance(pdu, P.SubmitSmResp)
                        assert pdu.sequence_number not in answers, "answered twice"
                        answers[pdu.sequence_number] = status(pdu)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood)
                await written.wait()
                await assert_still_serving(port)
                served.set()
            assert set(answers) == set(range(2, FLOOD + 2))
            assert set(answers.values()) <= {S.ESME_ROK, S.ESME_RTHROTTLED}
            assert S.ESME_ROK in answers.values()
            await assert_still_serving(port)


async def test_receipt_a_receiver_never_answers_goes_to_a_receiver_that_does(tmp_path: Path) -> None:
    server = smpp_gateway(tmp_path, response_timeout_seconds=0.5, redeliver_seconds=0.1, enquire_link_seconds=1.0)
    with trio.fail_after(10):
        async with server as (_, port), raw(port) as mute:
            await mute.send(P.BindReceiver(system_id=SYSTEM_ID, password=PASSWORD), 1)
            assert status(await mute.answer(1)) is S.ESME_ROK
            async with raw_bound(port) as sender:
                await sender.send(submit(1, registered_delivery=1), 2)
                resp = await sender.answer(2)
                assert isinstance(resp, P.SubmitSmResp)
                assert status(resp) is S.ESME_ROK
            # The only receiver gets the receipt and never answers it.
            data = await mute.stream.receive_some(65536)
            first = codec.decode(data[: struct.unpack(">I", data[:4])[0]])
            assert isinstance(first, P.DeliverSm)
            assert first.tlv(Tag.RECEIPTED_MESSAGE_ID) == resp.message_id
            # A receiver that answers binds. The mute one answers neither the receipt nor the enquire_link
            # that follows: it is closed, and the receipt goes to the one that answers.
            async with esme(port) as good:
                receipt = await good.receipt(resp.message_id)
                assert receipt.esm_class & EsmClass.DELIVERY_RECEIPT
