"""The simulator writes its submit_sm_resp and receipt deliver_sm as octets, without the codec (receipts.py):
every frame it sends must be, octet for octet, what the codec writes for the PDU the simulator used to build.

A raw ESME on a real socket (trio's virtual clock, a frozen wall clock for the Appendix B dates) sends a set of
submits covering every receipt rule, reads the raw stream, and compares each frame with `codec.encode` of the
reference PDU built here field by field, as the simulator built it before.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import trio
import trio.testing

from gateway.sim import IdFormat, ReceiptOutcome, ReceiptStyle, SimConfig, Simulator
from gateway.smpp import codec
from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandId, EsmClass, Tag
from gateway.smpp.constants import CommandStatus as S
from gateway.smpp.framing import Framer
from tests.integration.carriers.carrier_harness import PASSWORD, SIM_CONFIG, SYSTEM_ID, running_sim

WALL = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
DATE = "2311142213"  # SMPP 3.4 Appendix B: YYMMDDhhmm
# err 37 and 0x2525 put a '%' octet (0x25) in network_error_code; the receipt text is a %-template.
MIX = (
    ReceiptOutcome("DELIVRD", 0, 0.5),
    ReceiptOutcome("UNDELIV", 37, 0.3),
    ReceiptOutcome("EXPIRED", 0x2525, 0.1),
    ReceiptOutcome("REJECTD", 1234, 0.1),
)
CONFIGS = {
    "hex_ids_crossing_a_digit": replace(SIM_CONFIG, id_start=0xFFFF8),
    "decimal_ids_mix_faults_receipt_first": replace(
        SIM_CONFIG,
        id_format=IdFormat.DECIMAL,
        id_start=99_999_990,
        receipt_mix=MIX,
        receipt_before_response_rate=0.5,
        error_rate=0.2,
        error_status=S.ESME_RMSGQFUL,
    ),
    "response_and_receipt_delays": replace(
        SIM_CONFIG, id_start=1, receipt_mix=MIX, response_delay_seconds=0.5, receipt_delay_seconds=0.2
    ),
    "receipt_before_delayed_response": replace(
        SIM_CONFIG, id_start=1, receipt_mix=MIX, response_delay_seconds=0.5, receipt_before_response_rate=1.0
    ),
    "throttled": replace(SIM_CONFIG, id_start=1, throttle_tps=20),
    "every_receipt_style_hex_ids_destination_errors": replace(
        SIM_CONFIG,
        id_start=0xFFFF8,
        receipt_mix=MIX,
        receipt_styles=tuple((style, 1.0) for style in ReceiptStyle),
        destination_errors=(("44770090001", S.ESME_RSYSERR), ("4477009000", S.ESME_RINVDSTADR)),
    ),
    "every_receipt_style_decimal_ids_receipt_first": replace(
        SIM_CONFIG,
        id_format=IdFormat.DECIMAL,
        id_start=99_999_990,
        receipt_mix=MIX,
        receipt_styles=((ReceiptStyle.COMPACT, 2.0), (ReceiptStyle.FAILED, 1.0), (ReceiptStyle.PADDED, 1.0)),
        receipt_before_response_rate=0.5,
    ),
}


def submits() -> list[P.SubmitSm]:
    """Single parts, 8- and 16-bit reference UDH, SAR TLVs, odd UDH, '%' in text and sender, every
    registered_delivery, addresses with TON/NPI."""
    out = []
    for i in range(48):
        rd = (0, 1, 2)[i % 3]
        base = P.SubmitSm(
            source_addr=("50%OFF", "ACME", "4477009000000000000%")[i % 3],
            source_addr_ton=(5, 0, 1)[i % 3],
            source_addr_npi=(0, 0, 1)[i % 3],
            destination_addr=f"4477009{i:05d}",
            dest_addr_ton=1,
            dest_addr_npi=i % 2,
            registered_delivery=rd,
        )
        kind = i % 8
        if kind == 0:
            out.append(replace(base, short_message=b"100%% sure, message %d %%s" % i))
        elif kind == 1:
            out.append(replace(base, short_message=b"short"))
        elif kind == 2:
            for part in (1, 2):
                text = f"h\u00e9llo w\u00f6rld {i} "
                udh = bytes((5, 0, 3, i, 2, part))
                sm = udh + text.encode("utf-16-be") * 3
                out.append(replace(base, esm_class=EsmClass.UDHI, data_coding=8, short_message=sm))
        elif kind == 3:
            for part in (1, 2):
                sm = bytes((6, 8, 4, 1, i, 2, part)) + b"sixteen-bit reference part"
                out.append(replace(base, esm_class=EsmClass.UDHI, short_message=sm))
        elif kind == 4:
            for part in (1, 2):
                tlvs = ((Tag.SAR_MSG_REF_NUM, i), (Tag.SAR_TOTAL_SEGMENTS, 2), (Tag.SAR_SEGMENT_SEQNUM, part))
                out.append(replace(base, short_message=b"sar part %d" % part, tlvs=tlvs))
        elif kind == 5:
            out.append(replace(base, esm_class=EsmClass.UDHI, short_message=b""))
        elif kind == 6:
            sm = bytes((8, 0x24, 1, 0, 0, 3, i, 1, 1)) + b"another element first"
            out.append(replace(base, esm_class=EsmClass.UDHI, short_message=sm))
        else:
            out.append(replace(base, short_message=bytes(range(254))))
    return out


def reference_receipt(
    submit: P.SubmitSm, msg_id: str, outcome: ReceiptOutcome, style: ReceiptStyle = ReceiptStyle.TLV, value: int = 0
) -> P.DeliverSm:
    """The receipt as the simulator built it as a PDU: Appendix B text formatted from scratch (in the
    layout of `style`), 5.3.2 TLVs in the TLV style only. `value` is the number `msg_id` writes."""
    sm = submit.short_message
    start = 1 + sm[0] if submit.esm_class & EsmClass.UDHI and sm else 0
    failed = style is ReceiptStyle.FAILED
    dlvrd = "001" if outcome.stat == "DELIVRD" and not failed else "000"
    stat = "FAILED" if failed else outcome.stat
    err = (outcome.err or 1) if failed else outcome.err
    text_id = {
        ReceiptStyle.PADDED: msg_id.rjust(10, "0"),
        ReceiptStyle.DECIMAL: str(value),
        ReceiptStyle.COMPACT: f"{value:010d}",
    }.get(style, msg_id)
    if style is ReceiptStyle.COMPACT:
        text = (
            f"ID:{text_id} SUB:001 DLVRD:{dlvrd} SUBMITDATE:20{DATE} DONEDATE:20{DATE} "
            f"STAT:{stat} ERR:{err % 1000:03d} TEXT:"
        )
    else:
        text = (
            f"id:{text_id} sub:001 dlvrd:{dlvrd} submit date:{DATE} done date:{DATE} "
            f"stat:{stat} err:{err % 1000:03d} Text:"
        )
    tlvs: tuple[tuple[int, int | str | bytes], ...] = ()
    if style is ReceiptStyle.TLV:
        tlvs = (
            (Tag.RECEIPTED_MESSAGE_ID, msg_id),
            (Tag.MESSAGE_STATE, int(outcome.message_state)),
            (Tag.NETWORK_ERROR_CODE, bytes((3, (err >> 8) & 0xFF, err & 0xFF))),
        )
    return P.DeliverSm(
        source_addr_ton=submit.dest_addr_ton,
        source_addr_npi=submit.dest_addr_npi,
        source_addr=submit.destination_addr,
        dest_addr_ton=submit.source_addr_ton,
        dest_addr_npi=submit.source_addr_npi,
        destination_addr=submit.source_addr,
        esm_class=EsmClass.DELIVERY_RECEIPT,
        short_message=text.encode() + sm[start : start + 20],
        tlvs=tlvs,
    )


class WireEsme:
    """Raw octets in and out: frames as the simulator wrote them, each deliver_sm acknowledged unless held."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.framer = Framer()
        self.hold_acks = False

    async def frames(self) -> list[bytes]:
        data = await self.stream.receive_some(65536)
        assert data, "the simulator closed the connection"
        self.framer.feed(bytes(data))
        frames = list(self.framer.frames())
        acks = [
            codec.encode(P.DeliverSmResp(), codec.unpack_header(f, 0)[3])
            for f in frames
            if codec.unpack_header(f, 0)[1] == CommandId.DELIVER_SM and not self.hold_acks
        ]
        if acks:
            await self.stream.send_all(b"".join(acks))
        return frames


async def connect(sim: Simulator) -> tuple[WireEsme, list[bytes]]:
    """A bound raw ESME, and any frames that came with the bind_transceiver_resp."""
    assert sim.port is not None
    esme = WireEsme(await trio.open_tcp_stream("127.0.0.1", sim.port))
    await esme.stream.send_all(codec.encode(P.BindTransceiver(system_id=SYSTEM_ID, password=PASSWORD), 1))
    bound, *rest = await esme.frames()
    assert codec.decode(bound).command_status == 0
    return esme, rest


class Checker:
    """Compares each frame with the reference PDU's octets; receipts once every response is in (`finish`), as a
    receipt may come before the response that names its id."""

    def __init__(self, config: SimConfig, pdus: list[P.SubmitSm]) -> None:
        self.config = config
        self.by_seq = {seq: pdu for seq, pdu in enumerate(pdus, start=2)}
        self.by_id: dict[str, P.SubmitSm] = {}
        self.outcomes = {o.stat: o for o in config.receipt_mix}
        self.responses = 0
        self.receipt_frames: list[bytes] = []
        self.receipts: dict[str, bytes] = {}  # message_id -> the receipt's octets after the header

    def check(self, frame: bytes) -> None:
        pdu = codec.decode(frame)
        seq = pdu.sequence_number
        if isinstance(pdu, P.SubmitSmResp):
            self.responses += 1
            if pdu.command_status:
                allowed = {S.ESME_RTHROTTLED, self.config.error_status, *dict(self.config.destination_errors).values()}
                assert pdu.command_status in allowed
                expected = P.SubmitSmResp(sequence_number=seq, command_status=pdu.command_status)
                submit = self.by_seq[seq]
                for prefix, status in self.config.destination_errors:  # longest prefix first
                    if submit.destination_addr.startswith(prefix):
                        assert pdu.command_status == status
                        break
            else:
                expected = P.SubmitSmResp(sequence_number=seq, message_id=pdu.message_id)
                self.by_id[pdu.message_id] = self.by_seq[seq]
                assert not any(
                    self.by_seq[seq].destination_addr.startswith(p) for p, _ in self.config.destination_errors
                )
            assert frame == codec.encode(expected)
            return
        assert isinstance(pdu, P.DeliverSm)
        self.receipt_frames.append(frame)

    def finish(self) -> None:
        """Every receipt is the reference built from its submit in one of the configured styles; each accepted
        submit that asked for one (registered_delivery 1, or 2 on failure) got one."""
        base = 16 if self.config.id_format is IdFormat.HEX else 10
        styles = [style for style, _ in self.config.receipt_styles]
        for frame in self.receipt_frames:
            pdu = codec.decode(frame)
            assert isinstance(pdu, P.DeliverSm)
            candidates = [
                (
                    msg_id,
                    codec.encode(
                        reference_receipt(submit, msg_id, outcome, style, int(msg_id, base)), pdu.sequence_number
                    ),
                )
                for msg_id, submit in self.by_id.items()
                for style in styles
                for outcome in self.config.receipt_mix
            ]
            matches = {msg_id for msg_id, octets in candidates if octets == frame}
            assert len(matches) == 1, pdu.short_message
            (msg_id,) = matches
            submit = self.by_id[msg_id]
            failure = b"stat:DELIVRD" not in pdu.short_message and b"STAT:DELIVRD" not in pdu.short_message
            assert submit.registered_delivery == 1 or (submit.registered_delivery == 2 and failure)
            self.receipts.setdefault(msg_id, frame[16:])
        assert all(p.registered_delivery != 1 for i, p in self.by_id.items() if i not in self.receipts)


async def collect(sim: Simulator, esme: WireEsme, checker: Checker, responses: int) -> None:
    """Read until every response and every receipt the simulator sent or has waiting arrived, then check."""
    with trio.fail_after(120):
        while True:
            stats = sim.stats()
            if (
                checker.responses >= responses
                and stats["receipts_pending"] == 0
                and len(checker.receipt_frames) == stats["receipts_sent"]
            ):
                break
            with trio.move_on_after(5):
                for frame in await esme.frames():
                    checker.check(frame)
    checker.finish()


@pytest.mark.parametrize("name", list(CONFIGS))
async def test_every_frame_is_what_the_codec_writes_for_the_old_pdus(
    name: str, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = CONFIGS[name]
    pdus = submits()
    checker = Checker(config, pdus)
    async with running_sim(config) as sim:
        monkeypatch.setattr(sim._receipts, "_clock", lambda: WALL)
        esme, _ = await connect(sim)
        async with esme.stream:
            for seq, pdu in checker.by_seq.items():
                await esme.stream.send_all(codec.encode(pdu, seq))
                if config.throttle_tps and seq % 10 == 0:
                    await trio.sleep(0.3)  # let the bucket refill now and then
            await collect(sim, esme, checker, len(pdus))
            await trio.sleep(1)  # the last acks reach the simulator
        stats = sim.stats()
        assert checker.responses == stats["submits"] == len(pdus)
        assert len(checker.receipts) == stats["receipts_sent"] == stats["receipts_acked"]
        if name.startswith("decimal") or "destination_errors" in name:
            assert stats["errors_injected"] > 0
        if name == "throttled":
            assert stats["throttled"] > 0


async def test_unanswered_receipts_go_out_again_with_the_same_octets(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = replace(CONFIGS["decimal_ids_mix_faults_receipt_first"], error_rate=0.0)
    pdus = [p for p in submits() if p.registered_delivery == 1][:12]
    checker = Checker(config, pdus)
    async with running_sim(config) as sim:
        monkeypatch.setattr(sim._receipts, "_clock", lambda: WALL)
        esme, _ = await connect(sim)
        esme.hold_acks = True
        async with esme.stream:
            await esme.stream.send_all(b"".join(codec.encode(p, seq) for seq, p in checker.by_seq.items()))
            with trio.fail_after(60):
                while checker.responses < len(pdus) or len(checker.receipt_frames) < len(pdus):
                    for frame in await esme.frames():
                        checker.check(frame)
        checker.finish()
        first = dict(checker.receipts)
        assert len(first) == len(pdus)
        again, frames = await connect(sim)
        async with again.stream:
            with trio.fail_after(60):
                while len(frames) < len(pdus):
                    frames += await again.frames()
            await trio.sleep(1)
        resent = {str(codec.decode(f).tlv(Tag.RECEIPTED_MESSAGE_ID)): f[16:] for f in frames}
        assert resent == first
        stats = sim.stats()
        assert (stats["receipts_sent"], stats["receipts_acked"]) == (2 * len(pdus), len(pdus))


async def test_mo_deliver_sm_is_what_the_codec_writes(autojump_clock: trio.testing.MockClock) -> None:
    expected = [
        P.DeliverSm(
            source_addr_ton=1,
            source_addr_npi=1,
            source_addr="447700900123",
            destination_addr=SIM_CONFIG.mo_destination,
            short_message=b"STOP 100%",
        ),
        *(
            P.DeliverSm(
                source_addr_ton=1,
                source_addr_npi=1,
                source_addr=SIM_CONFIG.mo_source,
                destination_addr="ACME2",
                esm_class=EsmClass.UDHI,
                data_coding=8,
                short_message=bytes((5, 0, 3, 2, 2, part)) + ("\u00e9" * n).encode("utf-16-be"),
            )
            for part, n in ((1, 67), (2, 13))
        ),
    ]
    async with running_sim(SIM_CONFIG) as sim:
        esme, frames = await connect(sim)
        async with esme.stream:
            assert sim.inject_mo("STOP 100%", source="447700900123") == 1
            assert sim.inject_mo("\u00e9" * 80, destination="ACME2") == 2
            with trio.fail_after(10):
                while len(frames) < 3:
                    frames += await esme.frames()
    assert frames == [codec.encode(pdu, seq) for seq, pdu in enumerate(expected, start=1)]
