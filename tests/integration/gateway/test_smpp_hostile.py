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
async def raw_bound(port: int, bind: type[P.BindTransmitter | P.BindTransceiver] = P.BindTransceiver) -> AsyncIterator[Raw]:
    async with raw(port) as wire:
        await wire.send(bind(system_id=SYSTEM_ID, password=PASSWORD), 1)
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
