"""The SMPP server face on the wire: an upstream application binds to the gateway as an SMPP 3.4 ESME.

smpplib (an SMPP implementation that is not ours, blocking, so run in a worker thread) is the upstream
application; where byte-exact control matters (UDH parts, SAR, windows, unanswered deliver_sm) our own sans-IO
`Session` in the ESME role talks over a real socket. Every assertion is about what the ESME sees on the wire
(command_status, message ids, deliver_sm) or what the carrier (the simulator) was sent.
"""

from __future__ import annotations

import functools
import re
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.gsm
import trio

from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandStatus as S
from gateway.smpp.constants import DataCoding, EsmClass, MessageState, Tag
from gateway.smpp.session import PduReceived, ResponseReceived, Session, SessionConfig
from gateway.smpp.state import Role

from .smpp_harness import PASSWORD, SYSTEM_ID, record_submits, running_simulator, smpp_gateway

T = TypeVar("T")

# SMPP 3.4 Appendix B, as the gateway writes it (smpp_core.receipt_pdu).
RECEIPT_TEXT = re.compile(
    r"id:(?P<id>\S+) sub:(?P<sub>\d{3}) dlvrd:(?P<dlvrd>\d{3}) submit date:\d{10} done date:\d{10} "
    r"stat:(?P<stat>\w{7}) err:(?P<err>\d{3}) text:"
)
# A thread cannot be cancelled: every blocking loop of the smpplib client ends by itself after this long.
THREAD_DEADLINE = 30.0


# --- text, independent of the gateway's own codecs ---------------------------------------------------

_GSM_TABLE = smpplib.gsm.GSM_CHARACTER_TABLE  # smpplib's GSM 03.38 table (0x80+: the 0x1B escapes)


def gsm7(text: str) -> bytes:
    """GSM 03.38, one septet per octet (SMPP data_coding 0 unpacked), by smpplib's table."""
    return bytes(smpplib.gsm.gsm_encode(text))


def gsm7_text(data: bytes) -> str:
    out: list[str] = []
    escaped = False
    for octet in data:
        if escaped:
            out.append(_GSM_TABLE[octet + 0x80])
            escaped = False
        elif octet == 0x1B:
            escaped = True
        else:
            out.append(_GSM_TABLE[octet])
    return "".join(out)


def text_of(data: bytes, data_coding: int) -> str:
    if data_coding == DataCoding.DEFAULT:
        return gsm7_text(data)
    if data_coding == DataCoding.UCS2:
        return data.decode("utf-16-be")
    if data_coding == DataCoding.IA5:
        return data.decode("ascii")
    assert data_coding == DataCoding.LATIN1, data_coding
    return data.decode("latin-1")


def carrier_texts(submits: Sequence[P.SubmitSm]) -> dict[str, list[str]]:
    """The texts the carrier was sent, per destination: concatenated parts (UDH IEI 0x00 / 0x08 or SAR
    TLVs, 3GPP TS 23.040 9.2.3.24) joined in their sequence before decoding (a UCS-2 surrogate pair may be
    cut between parts)."""
    groups: dict[tuple[str, int], dict[int, tuple[int, bytes]]] = defaultdict(dict)
    singles: dict[str, list[str]] = defaultdict(list)
    for pdu in submits:
        data = pdu.short_message or pdu.tlv(Tag.MESSAGE_PAYLOAD) or b""
        assert isinstance(data, bytes)
        concat = None
        if pdu.esm_class & EsmClass.UDHI:
            udh, data = data[1 : 1 + data[0]], data[1 + data[0] :]
            i = 0
            while i + 1 < len(udh):
                iei, ie = udh[i], udh[i + 2 : i + 2 + udh[i + 1]]
                if iei == 0x00:
                    concat = (ie[0], ie[1], ie[2])
                elif iei == 0x08:
                    concat = ((ie[0] << 8) | ie[1], ie[2], ie[3])
                i += 2 + udh[i + 1]
        elif isinstance(pdu.tlv(Tag.SAR_MSG_REF_NUM), int):
            ref, total, seq = (
                pdu.tlv(t) for t in (Tag.SAR_MSG_REF_NUM, Tag.SAR_TOTAL_SEGMENTS, Tag.SAR_SEGMENT_SEQNUM)
            )
            assert isinstance(ref, int)
            assert isinstance(total, int)
            assert isinstance(seq, int)
            concat = (ref, total, seq)
        if concat is None:
            singles[pdu.destination_addr].append(text_of(data, pdu.data_coding))
        else:
            groups[(pdu.destination_addr, concat[0])][concat[2]] = (pdu.data_coding, data)
    for (destination, _), parts in groups.items():
        codings = {dc for dc, _ in parts.values()}
        assert len(codings) == 1, f"parts to {destination} in several data_codings"
        joined = b"".join(parts[s][1] for s in sorted(parts))
        singles[destination].append(text_of(joined, codings.pop()))
    return dict(singles)


def carrier_parts(submits: Sequence[P.SubmitSm], destination: str) -> int:
    return sum(1 for pdu in submits if pdu.destination_addr == destination)


def cut(data: bytes, size: int, *, unit: int = 1) -> list[bytes]:
    """User data in parts of at most `size` octets; a GSM escape (0x1B) is never left at a part's end."""
    parts: list[bytes] = []
    while data:
        n = min(size, len(data))
        if unit == 1 and n < len(data) and data[n - 1] == 0x1B:
            n -= 1
        parts.append(data[:n])
        data = data[n:]
    return parts


def receipt_fields(short_message: bytes) -> dict[str, str]:
    match = RECEIPT_TEXT.fullmatch(short_message.decode("ascii"))
    assert match is not None, short_message
    return match.groupdict()


# --- smpplib, the independent upstream ------------------------------------------------------------------


@dataclass
class Resp:
    command: str
    status: int
    message_id: str
    message_state: int | None = None


class Upstream:
    """smpplib as the upstream application. Its calls block: `await up.run(up.method, ...)` runs one in a
    worker thread (never two at once); each reading loop ends by itself after THREAD_DEADLINE."""

    def __init__(self, port: int, *, answer: int = 0) -> None:
        self.client = smpplib.client.Client("127.0.0.1", port, timeout=0.2, allow_unknown_opt_params=True)
        self.resps: dict[int, Resp] = {}  # by sequence number
        self.delivers: list[Any] = []  # smpplib deliver_sm PDUs, each answered with `answer`
        self.answer = answer
        c = self.client
        c.set_message_sent_handler(self._on_resp)
        c.set_query_resp_handler(self._on_resp)
        c.set_message_received_handler(self._on_deliver)
        c.set_error_pdu_handler(lambda pdu: None)  # an error status is a Resp like any other

    def _on_resp(self, pdu: Any) -> None:
        raw_id = getattr(pdu, "message_id", None) or b""
        state = getattr(pdu, "message_state", None)
        self.resps[pdu.sequence] = Resp(pdu.command, int(pdu.status), raw_id.decode(), state)

    def _on_deliver(self, pdu: Any) -> int:
        self.delivers.append(pdu)
        return self.answer

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await trio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    # --- blocking (call through `run`) ---

    def bind(self, kind: str = "transceiver", system_id: str = SYSTEM_ID, password: str = PASSWORD) -> int:
        """Connect and bind; the bind_resp's command_status (0: bound)."""
        self.client.connect()
        self.client._socket.settimeout(5)  # a refused bind is answered after auth_failure_delay_seconds
        try:
            getattr(self.client, f"bind_{kind}")(system_id=system_id, password=password)
        except smpplib.exceptions.PDUError as err:
            return int(err.args[1])
        self.client._socket.settimeout(0.2)  # read_once comes back often enough to check its deadline
        return 0

    def submit(self, destination: str, short_message: bytes = b"", **fields: Any) -> int:
        pdu = self.client.send_message(
            source_addr_ton=smpplib.consts.SMPP_TON_ALNUM, source_addr="ACME",
            dest_addr_ton=smpplib.consts.SMPP_TON_INTL, dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
            destination_addr=destination, short_message=short_message,
            **{"registered_delivery": 1, **fields},
        )  # fmt: skip
        return int(pdu.sequence)

    def query(self, message_id: str) -> int:
        pdu = self.client.query_message(message_id=message_id, source_addr_ton=5, source_addr_npi=0,
                                        source_addr="ACME")  # fmt: skip
        return int(pdu.sequence)

    def read_until(self, done: Callable[[], bool], seconds: float = THREAD_DEADLINE) -> None:
        deadline = time.monotonic() + seconds
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.resps)} responses, {len(self.delivers)} deliver_sm")
            self.client.read_once()

    def read_for(self, seconds: float) -> None:
        """Read (and answer) whatever comes for `seconds`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.client.read_once()

    def unbind(self) -> None:
        self.client.unbind()
        self.client.disconnect()

    def drop(self) -> None:
        """Close the socket without unbind: an application that crashed."""
        self.client.disconnect()

    # --- reading what came ---

    def answered(self, seqs: Iterable[int]) -> Callable[[], bool]:
        wanted = set(seqs)
        return lambda: wanted <= self.resps.keys()

    def receipts(self) -> list[Any]:
        return [d for d in self.delivers if d.esm_class & EsmClass.DELIVERY_RECEIPT]

    def receipt_ids(self) -> list[str]:
        return [d.receipted_message_id.decode() for d in self.receipts()]


@asynccontextmanager
async def upstream(port: int, kind: str = "transceiver", **kw: Any) -> AsyncIterator[Upstream]:
    up = Upstream(port, **kw)
    status = await up.run(up.bind, kind)
    assert status == 0, f"bind_{kind}: {S(status).name}"
    try:
        yield up
    finally:
        if up.client.state != smpplib.consts.SMPP_CLIENT_STATE_CLOSED:
            await up.run(up.drop)


# --- our own sans-IO session, for byte-exact control --------------------------------------------------


@dataclass
class RawEsme:
    """A sans-IO ESME `Session` on a real socket. `pump` reads once; deliver_sm are answered with `answer`
    unless it is None (left unanswered)."""

    stream: trio.SocketStream
    session: Session = field(
        default_factory=lambda: Session(Role.ESME, SessionConfig(window=100_000, enquire_link_interval_seconds=0))
    )
    responses: dict[int, P.Pdu] = field(default_factory=dict)
    delivers: list[P.DeliverSm] = field(default_factory=list)
    answer: int | None = 0

    async def send(self, *pdus: P.Pdu) -> list[int]:
        seqs = [self.session.send_request(p, trio.current_time()) for p in pdus]
        await self.stream.send_all(self.session.data_to_send())
        return seqs

    async def pump(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise EOFError("the gateway closed the connection")
        for event in self.session.receive_data(data, trio.current_time()):
            if isinstance(event, ResponseReceived):
                self.responses[event.request.sequence_number] = event.pdu
            elif isinstance(event, PduReceived) and isinstance(event.pdu, P.DeliverSm):
                self.delivers.append(event.pdu)
                if self.answer is not None:
                    self.session.send_response(
                        P.DeliverSmResp(sequence_number=event.pdu.sequence_number, command_status=self.answer)
                    )
        out = self.session.data_to_send()
        if out:
            await self.stream.send_all(out)

    async def wait(self, seqs: Sequence[int]) -> list[P.Pdu]:
        while not set(seqs) <= self.responses.keys():
            await self.pump()
        return [self.responses[s] for s in seqs]

    async def request(self, pdu: P.Pdu) -> P.Pdu:
        (resp,) = await self.wait(await self.send(pdu))
        return resp

    async def wait_delivers(self, n: int) -> list[P.DeliverSm]:
        while len(self.delivers) < n:
            await self.pump()
        return self.delivers

    def receipts(self) -> list[P.DeliverSm]:
        return [d for d in self.delivers if d.esm_class & EsmClass.DELIVERY_RECEIPT]


@asynccontextmanager
async def raw_esme(port: int, bind: type[P.Pdu] = P.BindTransceiver) -> AsyncIterator[RawEsme]:
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        esme = RawEsme(stream)
        resp = await esme.request(bind(system_id=SYSTEM_ID, password=PASSWORD))  # type: ignore[call-arg]
        assert resp.command_status == S.ESME_ROK
        yield esme


def submit_pdu(
    destination: str, data: bytes, *, data_coding: int = 0, receipt: bool = True, **changes: Any
) -> P.SubmitSm:
    return P.SubmitSm(
        source_addr_ton=5, source_addr="ACME", dest_addr_ton=1, dest_addr_npi=1, destination_addr=destination,
        data_coding=data_coding, short_message=data, registered_delivery=1 if receipt else 0, **changes,
    )  # fmt: skip


def status_of(pdu: P.Pdu) -> str:
    return S(pdu.command_status).name


# --- 1. single texts ------------------------------------------------------------------------------------

SINGLE_TEXTS = {
    # destination: (text, data_coding)
    "447700900101": ("Hi @home: £5 off {today} [only] ~ €3 | ÄÖÑÜ äöñü ß", 0),
    "447700900102": ("Plain ASCII, IA5: 0123456789 #$%&", 1),
    "447700900103": ("Café crème ¿qué? £3 © ® ½ ÿ", 3),
    "447700900104": ("Привет, мир 👋 — ok ✓ 🇬🇧", 8),
}


_PYTHON_CODECS: dict[int, str] = {DataCoding.IA5: "ascii", DataCoding.LATIN1: "latin-1", DataCoding.UCS2: "utf-16-be"}


def _encode(text: str, data_coding: int) -> bytes:
    return gsm7(text) if data_coding == DataCoding.DEFAULT else text.encode(_PYTHON_CODECS[data_coding])


async def test_single_texts_in_every_alphabet_get_ids_and_one_delivered_receipt_each(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with smpp_gateway(tmp_path, auth_failure_delay_seconds=0.01) as (h, port):
            carrier = record_submits(h.sim)
            async with upstream(port) as up:
                seqs = {
                    await up.run(up.submit, dest, _encode(text, dc), data_coding=dc): dest
                    for dest, (text, dc) in SINGLE_TEXTS.items()
                }
                await up.run(up.read_until, lambda: len(up.resps) == 4 and len(up.receipts()) == 4)
                await up.run(up.unbind)
    ids = {}
    for seq, dest in seqs.items():
        resp = up.resps[seq]
        assert (resp.command, resp.status) == ("submit_sm_resp", 0)
        assert resp.message_id
        ids[resp.message_id] = dest
    assert len(ids) == 4
    for receipt in up.receipts():
        msg_id = receipt.receipted_message_id.decode()
        assert receipt.esm_class == EsmClass.DELIVERY_RECEIPT
        assert receipt.message_state == MessageState.DELIVERED
        fields = receipt_fields(receipt.short_message)
        assert (fields["id"], fields["sub"], fields["dlvrd"], fields["stat"], fields["err"]) == (
            msg_id, "001", "001", "DELIVRD", "000",
        )  # fmt: skip
        assert receipt.source_addr.decode() == ids[msg_id]  # from the handset it was sent to
        assert receipt.destination_addr == b"ACME"  # to the sender of the submit
    assert sorted(up.receipt_ids()) == sorted(ids)
    assert carrier_texts(carrier) == {dest: [text] for dest, (text, _) in SINGLE_TEXTS.items()}


async def test_data_coding_0_is_latin1_for_an_account_whose_default_alphabet_is_latin1(tmp_path: Path) -> None:
    text = "Grüße aus Köln, £5 ¿sí?"
    with trio.fail_after(30):
        async with smpp_gateway(tmp_path, account_default_alphabet="latin1") as (h, port):
            carrier = record_submits(h.sim)
            async with raw_esme(port) as esme:
                resp = await esme.request(submit_pdu("447700900111", text.encode("latin-1"), data_coding=0))
                assert status_of(resp) == "ESME_ROK"
                (receipt,) = await esme.wait_delivers(1)
                assert receipt.tlv(Tag.RECEIPTED_MESSAGE_ID) == resp.message_id  # type: ignore[attr-defined]
    assert carrier_texts(carrier) == {"447700900111": [text]}


# --- 2. long messages -----------------------------------------------------------------------------------

LONG_GSM = "Long {GSM} text with €uro and [brackets]. " + "The quick brown fox jumps over the lazy dog. " * 8


def long_ucs2(units_before_emoji: int) -> str:
    """A UCS-2 text whose emoji (a surrogate pair) is cut between part 1 and part 2."""
    return "ع" * units_before_emoji + "😀" + " Ελληνικά και العربية 🎉" * 8


def long_parts(method: str, destination: str, text: str, data_coding: int, ref: int) -> list[P.SubmitSm]:
    """The parts of a long message as an ESME that splits it itself sends them (3GPP TS 23.040 9.2.3.24.1
    and .8, SMPP 3.4 5.3.2.22-24); user data cut at the octet, so a surrogate pair may be cut too."""
    udh_len = {"udh8": 6, "udh16": 7, "sar": 0}[method]
    size = 140 - udh_len if data_coding == DataCoding.UCS2 else 160 - udh_len * 8 // 7 - 1
    if data_coding == DataCoding.UCS2:
        size -= size % 2
    chunks = cut(_encode(text, data_coding), size)
    total = len(chunks)
    parts = []
    for seq, chunk in enumerate(chunks, 1):
        if method == "udh8":
            pdu = submit_pdu(destination, bytes((5, 0, 3, ref & 0xFF, total, seq)) + chunk,
                             data_coding=data_coding, esm_class=EsmClass.UDHI)  # fmt: skip
        elif method == "udh16":
            pdu = submit_pdu(destination, bytes((6, 8, 4, ref >> 8, ref & 0xFF, total, seq)) + chunk,
                             data_coding=data_coding, esm_class=EsmClass.UDHI)  # fmt: skip
        else:
            sar = ((Tag.SAR_MSG_REF_NUM, ref), (Tag.SAR_TOTAL_SEGMENTS, total), (Tag.SAR_SEGMENT_SEQNUM, seq))
            pdu = submit_pdu(destination, chunk, data_coding=data_coding, tlvs=sar)
        parts.append(pdu)
    return parts


def ucs2_split_at(method: str) -> int:
    """How many UTF-16 units part 1 of `method` holds but one: the emoji's high surrogate goes last."""
    return (140 - {"udh8": 6, "udh16": 7, "sar": 0}[method]) // 2 - 1


async def eventually(check: Callable[[], bool], seconds: float) -> None:
    """Poll `check` (the simulator's counters, which have no event to wait on) until true or `seconds`."""
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await trio.sleep(0.05)


async def quiet_for(esme: RawEsme, seconds: float) -> None:
    """Read (and answer) whatever comes for `seconds`: a duplicate would show in esme.delivers."""
    with trio.move_on_after(seconds):
        while True:
            await esme.pump()


@pytest.mark.parametrize("alphabet", ["gsm7", "ucs2"])
@pytest.mark.parametrize("method", ["udh8", "udh16", "sar"])
async def test_long_message_parts_share_one_id_and_get_one_receipt(tmp_path: Path, method: str, alphabet: str) -> None:
    # Two long messages to one handset, each in parts sent the last first: the gateway orders them by
    # their sequence number. UCS-2 cuts its emoji (a surrogate pair) between part 1 and part 2.
    dc = DataCoding.DEFAULT if alphabet == "gsm7" else DataCoding.UCS2
    texts = [LONG_GSM, LONG_GSM[::-1]] if alphabet == "gsm7" else [long_ucs2(ucs2_split_at(method))] * 2
    dest = "447700900201"
    with trio.fail_after(30):
        # Parts that never complete a message are refused after 5 s: a failure shows as statuses, not a hang.
        async with smpp_gateway(tmp_path, reassembly_timeout_seconds=5) as (h, port):
            carrier = record_submits(h.sim)
            async with raw_esme(port) as esme:
                seqs = []
                for ref, text in enumerate(texts, start=300):
                    parts = long_parts(method, dest, text, dc, ref)
                    assert len(parts) >= 3
                    seqs.append(await esme.send(parts[-1], *parts[:-1]))
                ids = []
                for part_seqs in seqs:
                    resps = await esme.wait(part_seqs)
                    assert [status_of(r) for r in resps] == ["ESME_ROK"] * len(resps)
                    part_ids = {r.message_id for r in resps}  # type: ignore[attr-defined]
                    assert len(part_ids) == 1, "every part is answered with the same message id"
                    ids.append(part_ids.pop())
                assert ids[0] != ids[1]
                await esme.wait_delivers(2)
                await quiet_for(esme, 0.5)
    receipts = esme.receipts()
    assert sorted(r.tlv(Tag.RECEIPTED_MESSAGE_ID) for r in receipts) == sorted(ids)  # type: ignore[type-var]
    for receipt in receipts:
        fields = receipt_fields(receipt.short_message)
        # One receipt per message however many parts it took (docs/smpp_server.md).
        assert (fields["sub"], fields["dlvrd"], fields["stat"]) == ("001", "001", "DELIVRD")
    assert carrier_parts(carrier, dest) >= 6  # and the carrier had it in parts again
    assert sorted(carrier_texts(carrier)[dest]) == sorted(texts)


async def test_long_message_in_message_payload_gets_one_id_and_one_receipt(tmp_path: Path) -> None:
    ucs2 = long_ucs2(40)
    with trio.fail_after(30):
        async with smpp_gateway(tmp_path) as (h, port):
            carrier = record_submits(h.sim)
            async with raw_esme(port) as esme:
                payload = ((Tag.MESSAGE_PAYLOAD, gsm7(LONG_GSM)),)
                by_submit = submit_pdu("447700900211", b"", tlvs=payload)
                ucs2_payload = ((Tag.MESSAGE_PAYLOAD, ucs2.encode("utf-16-be")),)
                by_submit_ucs2 = submit_pdu("447700900212", b"", data_coding=DataCoding.UCS2, tlvs=ucs2_payload)
                by_data_sm = P.DataSm(source_addr_ton=5, source_addr="ACME", dest_addr_ton=1, dest_addr_npi=1,
                                      destination_addr="447700900213", registered_delivery=1,
                                      data_coding=DataCoding.UCS2, tlvs=ucs2_payload)  # fmt: skip
                resps = await esme.wait(await esme.send(by_submit, by_submit_ucs2, by_data_sm))
                assert [type(r).__name__ for r in resps] == ["SubmitSmResp", "SubmitSmResp", "DataSmResp"]
                assert [status_of(r) for r in resps] == ["ESME_ROK"] * 3
                ids = [r.message_id for r in resps]  # type: ignore[attr-defined]
                assert len(set(ids)) == 3
                await esme.wait_delivers(3)
                await quiet_for(esme, 0.5)
    assert sorted(r.tlv(Tag.RECEIPTED_MESSAGE_ID) for r in esme.receipts()) == sorted(ids)  # type: ignore[type-var]
    assert carrier_texts(carrier) == {
        "447700900211": [LONG_GSM], "447700900212": [ucs2], "447700900213": [ucs2],
    }  # fmt: skip
    assert carrier_parts(carrier, "447700900211") >= 3


async def test_submit_multi_answers_one_id_and_lists_the_refused_destinations(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with smpp_gateway(tmp_path) as (h, port), raw_esme(port) as esme:
            carrier = record_submits(h.sim)
            multi = P.SubmitMulti(
                source_addr_ton=5, source_addr="ACME", registered_delivery=1, short_message=b"to several",
                dest_addresses=(P.DestAddress(1, 1, "447700900221"), P.DestAddress(1, 1, "999"),
                                P.DestAddress(1, 1, "447700900222")),
            )  # fmt: skip
            resp = await esme.request(multi)
            assert isinstance(resp, P.SubmitMultiResp)
            assert status_of(resp) == "ESME_ROK"
            assert resp.message_id
            assert [(u.address, S(u.error_status_code).name) for u in resp.unsuccess_smes] == [
                ("999", "ESME_RINVDSTADR")
            ]
            await esme.wait_delivers(2)
            await quiet_for(esme, 0.5)
    assert len(esme.receipts()) == 2
    assert resp.message_id in {r.tlv(Tag.RECEIPTED_MESSAGE_ID) for r in esme.receipts()}
    assert carrier_texts(carrier) == {"447700900221": ["to several"], "447700900222": ["to several"]}


# --- 3, 4. receivers: receipts on another bind, MO -----------------------------------------------------


async def test_receipts_of_submits_on_a_transmitter_come_on_the_receiver_bind(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with (
            smpp_gateway(tmp_path) as (_, port),
            upstream(port, "transmitter") as tx,
            upstream(port, "receiver") as rx,
        ):
            seqs = [await tx.run(tx.submit, f"44770090030{i}", b"receipt elsewhere %d" % i) for i in range(5)]
            await tx.run(tx.read_until, tx.answered(seqs))
            await rx.run(rx.read_until, lambda: len(rx.receipts()) == 5)
            await tx.run(tx.read_for, 0.3)  # nothing is due on the transmitter
            await rx.run(rx.read_for, 0.3)
            await tx.run(tx.unbind)
            await rx.run(rx.unbind)
    ids = [tx.resps[s].message_id for s in seqs]
    assert [tx.resps[s].status for s in seqs] == [0] * 5
    assert sorted(rx.receipt_ids()) == sorted(ids)
    assert len(rx.delivers) == 5
    assert tx.delivers == []


async def test_mo_to_the_account_address_reaches_a_receiver_as_deliver_sm(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with smpp_gateway(tmp_path) as (h, port), upstream(port, "receiver") as rx:
            assert h.sim.inject_mo("STOP", source="447700900123", destination="ACME") == 1
            assert h.sim.inject_mo("Grüße, 你好 👋", source="447700900124", destination="ACME") == 1
            await rx.run(rx.read_until, lambda: len(rx.delivers) == 2)
            await rx.run(rx.unbind)
    stop, hello = rx.delivers
    assert (stop.esm_class, stop.source_addr, stop.destination_addr) == (0, b"447700900123", b"ACME")
    assert text_of(stop.short_message, stop.data_coding) == "STOP"
    assert (hello.esm_class, hello.source_addr) == (0, b"447700900124")
    assert text_of(hello.short_message, hello.data_coding) == "Grüße, 你好 👋"
    # The carrier had its deliver_sm_resp only once the MO was stored.
    assert h.sim.stats()["mo_acked"] == 2


# --- 5. query_sm, cancel_sm -----------------------------------------------------------------------------


async def test_query_sm_says_delivered_and_an_unknown_id_gets_rinvmsgid(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with smpp_gateway(tmp_path) as (_, port), upstream(port) as up:
            seq = await up.run(up.submit, "447700900501", b"query me")
            await up.run(up.read_until, lambda: len(up.receipts()) == 1)
            msg_id = up.resps[seq].message_id
            delivered = await up.run(up.query, msg_id)
            unknown = await up.run(up.query, "999999999999")
            await up.run(up.read_until, up.answered([delivered, unknown]))
            await up.run(up.unbind)
    assert up.receipt_ids() == [msg_id]
    answer = up.resps[delivered]
    assert (answer.command, answer.status, answer.message_id) == ("query_sm_resp", 0, msg_id)
    assert answer.message_state == MessageState.DELIVERED
    assert (up.resps[unknown].command, up.resps[unknown].status) == ("query_sm_resp", S.ESME_RINVMSGID)


async def test_cancel_sm_of_a_scheduled_message_deletes_it_and_of_a_delivered_one_gets_rcancelfail(
    tmp_path: Path,
) -> None:
    with trio.fail_after(30):
        async with smpp_gateway(tmp_path) as (h, port), raw_esme(port) as esme:
            carrier = record_submits(h.sim)
            # SMPP 3.4 7.1.1.2: relative time, one day from now.
            later = submit_pdu("447700900511", b"tomorrow", schedule_delivery_time="000001000000000R")
            now = submit_pdu("447700900512", b"right now")
            later_resp, now_resp = await esme.wait(await esme.send(later, now))
            assert (status_of(later_resp), status_of(now_resp)) == ("ESME_ROK", "ESME_ROK")
            later_id, now_id = later_resp.message_id, now_resp.message_id  # type: ignore[attr-defined]
            (receipt,) = await esme.wait_delivers(1)
            assert receipt.tlv(Tag.RECEIPTED_MESSAGE_ID) == now_id

            def query(msg_id: str) -> P.QuerySm:
                return P.QuerySm(message_id=msg_id, source_addr_ton=5, source_addr="ACME")

            scheduled = await esme.request(query(later_id))
            assert isinstance(scheduled, P.QuerySmResp)
            assert (status_of(scheduled), scheduled.message_state) == ("ESME_ROK", MessageState.ENROUTE)
            cancelled = await esme.request(P.CancelSm(message_id=later_id, source_addr_ton=5, source_addr="ACME"))
            assert (type(cancelled), status_of(cancelled)) == (P.CancelSmResp, "ESME_ROK")
            deleted = await esme.request(query(later_id))
            assert isinstance(deleted, P.QuerySmResp)
            assert (status_of(deleted), deleted.message_state) == ("ESME_ROK", MessageState.DELETED)
            assert deleted.final_date  # a final state has its date
            too_late = await esme.request(P.CancelSm(message_id=now_id, source_addr_ton=5, source_addr="ACME"))
            assert (type(too_late), status_of(too_late)) == (P.CancelSmResp, "ESME_RCANCELFAIL")
            unknown = await esme.request(P.CancelSm(message_id="999999999999", source_addr="ACME"))
            assert status_of(unknown) == "ESME_RINVMSGID"
    assert [pdu.destination_addr for pdu in carrier] == ["447700900512"]  # the cancelled one never left


# --- 6. binds -----------------------------------------------------------------------------------------


async def bind_status(port: int, kind: str = "transceiver", system_id: str = SYSTEM_ID,
                      password: str = PASSWORD) -> tuple[int, Upstream]:  # fmt: skip
    """A bind attempt by smpplib: its bind_resp status, and the client (bound when the status is 0)."""
    up = Upstream(port)
    return await up.run(up.bind, kind, system_id, password), up


async def test_wrong_password_gets_rinvpaswd_and_unknown_system_id_gets_rinvsysid(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with smpp_gateway(tmp_path, auth_failure_delay_seconds=0.3) as (_, port):
            start = trio.current_time()
            wrong, up1 = await bind_status(port, password="nope")
            assert trio.current_time() - start >= 0.3  # a guess costs the guesser time
            unknown, up2 = await bind_status(port, system_id="nobody")
            right, up3 = await bind_status(port)
            for up in (up1, up2):
                await up.run(up.drop)
            await up3.run(up3.unbind)
    assert S(wrong) is S.ESME_RINVPASWD
    assert S(unknown) is S.ESME_RINVSYSID
    assert right == 0


async def test_after_lockout_failures_even_the_right_password_gets_rbindfail(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with smpp_gateway(tmp_path, auth_failure_delay_seconds=0.01, lockout_failures=3) as (_, port):
            statuses = []
            for system_id, password in [(SYSTEM_ID, "bad1"), ("nobody", PASSWORD), (SYSTEM_ID, "bad3"),
                                        (SYSTEM_ID, PASSWORD)]:  # fmt: skip
                status, up = await bind_status(port, system_id=system_id, password=password)
                statuses.append(S(status).name)
                await up.run(up.drop)
    assert statuses == ["ESME_RINVPASWD", "ESME_RINVSYSID", "ESME_RINVPASWD", "ESME_RBINDFAIL"]


async def test_a_bind_type_the_account_does_not_allow_gets_rbindfail(tmp_path: Path) -> None:
    with trio.fail_after(30):
        gateway = smpp_gateway(tmp_path, auth_failure_delay_seconds=0.01, account_bind_types=("receiver",))
        async with gateway as (_, port):
            statuses = {}
            for kind in ("transmitter", "transceiver", "receiver"):
                status, up = await bind_status(port, kind)
                statuses[kind] = S(status).name
                await up.run(up.unbind if status == 0 else up.drop)
    assert statuses == {"transmitter": "ESME_RBINDFAIL", "transceiver": "ESME_RBINDFAIL", "receiver": "ESME_ROK"}


async def test_one_bind_over_max_binds_gets_rbindfail_until_one_unbinds(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with smpp_gateway(tmp_path, auth_failure_delay_seconds=0.01, account_max_binds=2) as (_, port):
            first, up1 = await bind_status(port, "transmitter")
            second, up2 = await bind_status(port, "receiver")
            third, up3 = await bind_status(port, "transceiver")
            await up3.run(up3.drop)
            await up1.run(up1.unbind)  # its unbind_resp read: the slot is free
            again, up4 = await bind_status(port, "transceiver")
            await up4.run(up4.unbind if again == 0 else up4.drop)
            await up2.run(up2.unbind)
    assert [S(s).name for s in (first, second, third, again)] == ["ESME_ROK", "ESME_ROK", "ESME_RBINDFAIL", "ESME_ROK"]


# --- 7. throttling ------------------------------------------------------------------------------------


async def test_a_burst_over_the_account_tps_gets_rthrottled_for_the_excess(tmp_path: Path) -> None:
    tps = 5
    with trio.fail_after(30):
        async with smpp_gateway(tmp_path, account_tps=tps) as (_, port), upstream(port, "transmitter") as up:

            def burst() -> tuple[list[int], float]:
                start = time.monotonic()
                seqs = [up.submit(f"4477009006{i:02d}", b"burst %d" % i, registered_delivery=0) for i in range(20)]
                up.read_until(up.answered(seqs))
                return seqs, time.monotonic() - start

            seqs, elapsed = await up.run(burst)
            await up.run(up.unbind)
    statuses = Counter(S(up.resps[s].status).name for s in seqs)
    assert set(statuses) == {"ESME_ROK", "ESME_RTHROTTLED"}
    # A second's worth may come at once (burst = tps), then tps a second.
    assert tps <= statuses["ESME_ROK"] <= tps + tps * elapsed
    assert all(up.resps[s].message_id for s in seqs if up.resps[s].status == 0)


async def test_submits_over_the_bind_window_get_rthrottled_at_once(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with smpp_gateway(tmp_path, account_window=2) as (_, port), raw_esme(port) as esme:
            # Ten in one write, none of their answers read first: two fill the window, eight are over it.
            pdus = [submit_pdu(f"4477009007{i:02d}", b"window %d" % i, receipt=False) for i in range(10)]
            resps = await esme.wait(await esme.send(*pdus))
            statuses = Counter(status_of(r) for r in resps)
            assert statuses == {"ESME_ROK": 2, "ESME_RTHROTTLED": 8}
            # Answered, the window is free again.
            again = await esme.request(submit_pdu("447700900799", b"after", receipt=False))
            assert status_of(again) == "ESME_ROK"


# --- 8. refusals ------------------------------------------------------------------------------------------

OPTED_OUT = "447700900801"


async def refusals(tmp_path: Path, **server: Any) -> tuple[list[str], RawEsme, str]:
    """An invalid number, an opted-out one (the account sends marketing), then one that goes: the statuses,
    the session (with every deliver_sm it had), and the id of the one that went."""
    with trio.fail_after(30):
        gateway = smpp_gateway(tmp_path, account_message_class="marketing", **server)
        async with gateway as (h, port), raw_esme(port) as esme:
            async with h.client() as client:
                await client.lists("optout", "add", [OPTED_OUT])
            refused = await esme.wait(await esme.send(
                submit_pdu("999", b"Sale! Reply STOP to opt out"),
                submit_pdu(OPTED_OUT, b"Sale! Reply STOP to opt out"),
            ))  # fmt: skip
            taken = await esme.request(submit_pdu("447700900802", b"Sale! Reply STOP to opt out"))
            assert status_of(taken) == "ESME_ROK"
            await esme.wait_delivers(1)
            await quiet_for(esme, 1.0)  # a receipt for a refused submit would come before this one's
    return [status_of(r) for r in refused], esme, taken.message_id  # type: ignore[attr-defined]


async def test_invalid_and_opted_out_destinations_are_refused_and_get_no_receipt(tmp_path: Path) -> None:
    statuses, esme, taken = await refusals(tmp_path)
    assert statuses == ["ESME_RINVDSTADR", "ESME_RSUBMITFAIL"]
    assert [r.tlv(Tag.RECEIPTED_MESSAGE_ID) for r in esme.delivers] == [taken]


async def test_an_opted_out_destination_gets_the_configured_refused_status(tmp_path: Path) -> None:
    statuses, esme, taken = await refusals(tmp_path, refused_status="ESME_RX_R_APPN")
    assert statuses == ["ESME_RINVDSTADR", "ESME_RX_R_APPN"]
    assert [r.tlv(Tag.RECEIPTED_MESSAGE_ID) for r in esme.delivers] == [taken]


async def test_a_number_that_sent_stop_is_refused_on_its_next_marketing_submit(tmp_path: Path) -> None:
    number = "447700900811"
    with trio.fail_after(30):
        gateway = smpp_gateway(tmp_path, account_message_class="marketing")
        async with gateway as (h, port), raw_esme(port) as esme:
            h.sim.inject_mo("STOP", source=number, destination="ACME")
            (mo,) = await esme.wait_delivers(1)  # stored, and the opt-out with it
            assert (mo.source_addr, mo.short_message) == (number, b"STOP")
            refused = await esme.request(submit_pdu(number, b"Sale! Reply STOP to opt out"))
            assert status_of(refused) == "ESME_RSUBMITFAIL"
            await quiet_for(esme, 1.0)
    assert len(esme.delivers) == 1


# --- 9. receipts held while no receiver is bound --------------------------------------------------------


async def test_receipts_missed_while_disconnected_come_once_each_on_rebind(tmp_path: Path) -> None:
    delay = 1.0
    with trio.fail_after(40):
        async with (
            running_simulator(receipt_delay_seconds=delay) as simulator,
            smpp_gateway(tmp_path, simulator=simulator) as (h, port),
        ):
            first = Upstream(port)
            assert await first.run(first.bind) == 0
            early = [await first.run(first.submit, f"4477009009{i:02d}", b"early %d" % i) for i in range(5)]
            await first.run(first.read_until, lambda: len(first.receipts()) == 5)
            # Ten more, answered; then the application dies without unbind, before their receipts come.
            late = [await first.run(first.submit, f"4477009009{i:02d}", b"late %d" % i) for i in range(10, 20)]
            await first.run(first.read_until, first.answered(late))
            await first.run(first.drop)
            # The carrier's receipts reach the gateway while no one is bound.
            await eventually(lambda: h.sim.stats()["receipts_acked"] >= 15, 10)
            assert h.sim.stats()["receipts_acked"] == 15
            async with upstream(port, "receiver") as second:
                await second.run(second.read_until, lambda: len(second.receipts()) >= 10)
                await second.run(second.read_for, 1.0)  # and nothing after them
                await second.run(second.unbind)
    submitted = [first.resps[s].message_id for s in early + late]
    assert len(set(submitted)) == 15
    assert sorted(first.receipt_ids()) == sorted(first.resps[s].message_id for s in early)
    assert sorted(second.receipt_ids()) == sorted(first.resps[s].message_id for s in late)
    seen = Counter(first.receipt_ids() + second.receipt_ids())
    assert set(seen) == set(submitted)
    assert set(seen.values()) == {1}


async def test_receipts_left_unanswered_at_disconnect_come_again_on_rebind(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with smpp_gateway(tmp_path) as (_, port):
            async with raw_esme(port) as careless:
                careless.answer = None  # reads its deliver_sm, never answers them
                resps = await careless.wait(await careless.send(
                    *(submit_pdu(f"4477009009{i:02d}", b"unanswered %d" % i) for i in range(50, 55))
                ))  # fmt: skip
                ids = sorted(r.message_id for r in resps)  # type: ignore[attr-defined]
                await careless.wait_delivers(5)
            async with raw_esme(port, P.BindReceiver) as careful:
                await careful.wait_delivers(5)
                await quiet_for(careful, 1.0)
    assert sorted(r.tlv(Tag.RECEIPTED_MESSAGE_ID) for r in careless.delivers) == ids  # type: ignore[type-var]
    assert sorted(r.tlv(Tag.RECEIPTED_MESSAGE_ID) for r in careful.delivers) == ids  # type: ignore[type-var]


async def test_a_receipt_answered_with_an_error_comes_again_after_redeliver_seconds(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with smpp_gateway(tmp_path, redeliver_seconds=0.5) as (_, port), raw_esme(port) as esme:
            esme.answer = S.ESME_RX_T_APPN  # SMPP 3.4 5.1.3: temporary, try later
            resp = await esme.request(submit_pdu("447700900960", b"try again"))
            await esme.wait_delivers(1)
            refused_at = trio.current_time()
            esme.answer = S.ESME_ROK
            await esme.wait_delivers(2)
            again_after = trio.current_time() - refused_at
            await quiet_for(esme, 1.0)  # taken this time: not sent a third time
    assert again_after >= 0.5
    msg_id = resp.message_id  # type: ignore[attr-defined]
    assert [r.tlv(Tag.RECEIPTED_MESSAGE_ID) for r in esme.delivers] == [msg_id, msg_id]


async def test_receipts_that_came_while_no_receiver_was_bound_survive_a_gateway_restart(tmp_path: Path) -> None:
    with trio.fail_after(40):
        async with running_simulator() as simulator:
            async with smpp_gateway(tmp_path, simulator=simulator) as (h, port), upstream(port, "transmitter") as tx:
                seqs = [await tx.run(tx.submit, f"4477009009{i:02d}", b"kept %d" % i) for i in range(70, 75)]
                await tx.run(tx.read_until, tx.answered(seqs))
                await eventually(lambda: h.sim.stats()["receipts_acked"] >= 5, 10)
                assert h.sim.stats()["receipts_acked"] == 5  # the gateway has them, stored
                await tx.run(tx.unbind)
            # Stopped, started again on the same store: the receipts wait there for a receiver.
            async with smpp_gateway(tmp_path, simulator=simulator) as (_, port), upstream(port, "receiver") as rx:
                await rx.run(rx.read_until, lambda: len(rx.receipts()) >= 5)
                await rx.run(rx.read_for, 0.5)
                await rx.run(rx.unbind)
    assert sorted(rx.receipt_ids()) == sorted(tx.resps[s].message_id for s in seqs)


# --- 10. end to end -----------------------------------------------------------------------------------


def flood(up: Upstream, n: int, window: int, seconds: float) -> float:
    """Submit n messages keeping at most `window` unanswered, reading (and answering) as it goes, until
    every submit_sm_resp and every receipt is in; the seconds it took."""
    start = time.monotonic()
    deadline = start + seconds
    sent = 0
    while len(up.resps) < n or len(up.delivers) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{sent} sent, {len(up.resps)} answered, {len(up.delivers)} receipts")
        if sent < n and sent - len(up.resps) < window:
            up.submit(f"4477{sent:08d}", b"Your code is %06d" % sent)
            sent += 1
        else:
            up.client.read_once()
    return time.monotonic() - start


async def test_ten_thousand_messages_over_one_bind_each_receipt_matches_one_id(tmp_path: Path) -> None:
    n = 10_000
    with trio.fail_after(90):
        async with smpp_gateway(tmp_path) as (h, port), upstream(port) as up:
            took = await up.run(flood, up, n, 100, 80.0)
            await up.run(up.read_for, 0.5)  # and nothing more
            await up.run(up.unbind)
    print(f"{n} messages and their receipts in {took:.1f} s")
    statuses = Counter(r.status for r in up.resps.values())
    assert statuses == {0: n}
    ids = Counter(r.message_id for r in up.resps.values())
    assert len(ids) == n
    receipts = Counter(up.receipt_ids())
    assert set(receipts) == set(ids)
    assert set(receipts.values()) == {1}
    assert len(up.delivers) == n
    assert h.sim.stats()["submits_ok"] == n
