"""The simulator on the wire: receipts, faults, concatenation checks, MO injection, CLI configuration.

A raw sans-IO ESME session over a real socket drives it where byte order matters; smpplib (in a thread) is the
independent peer.
"""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import smpplib.client
import smpplib.consts
import trio
import trio.testing

from gateway.cli import build_parser, main
from gateway.errors import ConfigError
from gateway.sim import IdFormat, ReceiptOutcome, SimConfig, Simulator
from gateway.sim.cli import build_config
from gateway.sim.concat import ConcatChecker
from gateway.sim.receipts import Receipts
from gateway.smpp import pdu as P
from gateway.smpp.constants import EsmClass, MessageState, Tag
from gateway.smpp.session import Event, PduReceived, ResponseReceived, Session
from gateway.smpp.state import Role
from tests.integration.carriers.carrier_harness import (
    PASSWORD,
    SIM_CONFIG,
    SYSTEM_ID,
    running_pool,
    running_sim,
    submit,
    submit_all,
    take_inbound,
)

RECEIPT_TEXT = re.compile(
    rb"id:(\w+) sub:001 dlvrd:(\d{3}) submit date:\d{10} done date:\d{10} stat:(\w{7}) err:(\d{3}) Text:(.*)"
)


class RawEsme:
    """A sans-IO ESME session on a real socket; `events()` returns what one read brought."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.session = Session(Role.ESME)

    async def send(self, pdu: P.Pdu) -> int:
        seq = self.session.send_request(pdu, trio.current_time())
        await self.stream.send_all(self.session.data_to_send())
        return seq

    async def events(self) -> list[Event]:
        events = self.session.receive_data(await self.stream.receive_some(65536), trio.current_time())
        for event in events:
            if isinstance(event, PduReceived) and isinstance(event.pdu, P.DeliverSm):
                self.session.send_response(P.DeliverSmResp(sequence_number=event.pdu.sequence_number))
        await self.stream.send_all(self.session.data_to_send())
        return events

    async def collect(self, n: int) -> list[Event]:
        out: list[Event] = []
        while len(out) < n:
            out += [e for e in await self.events() if isinstance(e, PduReceived | ResponseReceived)]
        return out


@asynccontextmanager
async def raw_esme(sim: Simulator) -> AsyncIterator[RawEsme]:
    assert sim.port is not None
    async with await trio.open_tcp_stream("127.0.0.1", sim.port) as stream:
        esme = RawEsme(stream)
        await esme.send(P.BindTransceiver(system_id=SYSTEM_ID, password=PASSWORD))
        (bound,) = await esme.collect(1)
        assert isinstance(bound, ResponseReceived)
        assert bound.pdu.command_status == 0
        yield esme


def receipts(events: list[Event]) -> list[P.DeliverSm]:
    return [e.pdu for e in events if isinstance(e, PduReceived) and isinstance(e.pdu, P.DeliverSm)]


def responses(events: list[Event]) -> list[P.SubmitSmResp]:
    return [e.pdu for e in events if isinstance(e, ResponseReceived) and isinstance(e.pdu, P.SubmitSmResp)]


async def test_receipt_has_appendix_b_text_and_tlvs() -> None:
    with trio.fail_after(10):
        async with running_sim(replace(SIM_CONFIG, id_format=IdFormat.DECIMAL)) as sim, raw_esme(sim) as esme:
            for i in range(20):
                await esme.send(submit(i))
            events = await esme.collect(40)
            ids = [r.message_id for r in responses(events)]
            assert len(set(ids)) == 20
            assert all(i.isdigit() for i in ids)
            by_id = {r.tlv(Tag.RECEIPTED_MESSAGE_ID): r for r in receipts(events)}
            assert set(by_id) == set(ids)
            receipt = by_id[ids[0]]
            assert receipt.esm_class == EsmClass.DELIVERY_RECEIPT
            assert receipt.source_addr == "447700900000"
            assert receipt.destination_addr == "ACME"
            match = RECEIPT_TEXT.fullmatch(receipt.short_message)
            assert match is not None
            assert match.groups() == (ids[0].encode(), b"001", b"DELIVRD", b"000", b"message 0")
            assert receipt.tlv(Tag.MESSAGE_STATE) == MessageState.DELIVERED
            assert receipt.tlv(Tag.NETWORK_ERROR_CODE) == b"\x03\x00\x00"


async def test_receipt_mix_sets_state_and_error_code() -> None:
    config = replace(SIM_CONFIG, receipt_mix=(ReceiptOutcome("UNDELIV", 11, 1.0),))
    with trio.fail_after(10):
        async with running_sim(config) as sim, raw_esme(sim) as esme:
            await esme.send(submit(1))
            (receipt,) = receipts(await esme.collect(2))
            match = RECEIPT_TEXT.fullmatch(receipt.short_message)
            assert match is not None
            assert match.group(2, 3, 4) == (b"000", b"UNDELIV", b"011")
            assert receipt.tlv(Tag.MESSAGE_STATE) == MessageState.UNDELIVERABLE
            assert receipt.tlv(Tag.NETWORK_ERROR_CODE) == b"\x03\x00\x0b"


async def test_receipt_can_come_before_the_submit_response() -> None:
    with trio.fail_after(10):
        sim_config = replace(SIM_CONFIG, receipt_before_response_rate=1.0)
        async with running_sim(sim_config) as sim, raw_esme(sim) as esme:
            await esme.send(submit(1))
            first, second = await esme.collect(2)
            assert isinstance(first, PduReceived)
            assert isinstance(second, ResponseReceived)
            assert isinstance(second.pdu, P.SubmitSmResp)
            assert first.pdu.tlv(Tag.RECEIPTED_MESSAGE_ID) == second.pdu.message_id


async def test_responses_wait_for_the_configured_delay_and_receipts_can_go_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(60):
        sim_config = replace(SIM_CONFIG, receipt_before_response_rate=1.0, response_delay_seconds=5)
        async with running_sim(sim_config) as sim, raw_esme(sim) as esme:
            start = trio.current_time()
            await esme.send(submit(1))
            (receipt,) = await esme.collect(1)
            assert isinstance(receipt, PduReceived)
            assert trio.current_time() - start < 1
            (response,) = await esme.collect(1)
            assert isinstance(response, ResponseReceived)
            assert isinstance(response.pdu, P.SubmitSmResp)
            assert 5 <= trio.current_time() - start < 6
            assert receipt.pdu.tlv(Tag.RECEIPTED_MESSAGE_ID) == response.pdu.message_id


async def test_receipts_wait_for_the_configured_delay(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(60):
        sim_config = replace(SIM_CONFIG, receipt_delay_seconds=10)
        async with running_sim(sim_config) as sim, running_pool(sim.port or 0) as pool:
            start = trio.current_time()
            await submit_all(pool, [submit(1)])
            await take_inbound(pool, 1)
            assert 10 <= trio.current_time() - start < 11


async def test_no_receipt_unless_asked_and_failure_only_skips_delivered() -> None:
    with trio.fail_after(10):
        async with running_sim() as sim, raw_esme(sim) as esme:
            await esme.send(submit(1, receipt=False))
            await esme.send(submit(2, registered_delivery=2))
            await esme.send(submit(3))
            events = await esme.collect(4)
            assert len(responses(events)) == 3
            assert len(receipts(events)) == 1
            assert sim.stats()["receipts_sent"] == 1


def _udh_part(ref: int, total: int, seq: int, text: bytes) -> P.SubmitSm:
    # 3GPP TS 23.040 9.2.3.24.1: UDHL 5, IEI 0x00, IEDL 3, ref, total, seq.
    return submit(seq, receipt=False, esm_class=EsmClass.UDHI, short_message=bytes((5, 0, 3, ref, total, seq)) + text)


def _sar_part(ref: int, total: int, seq: int) -> P.SubmitSm:
    tlvs = ((Tag.SAR_MSG_REF_NUM, ref), (Tag.SAR_TOTAL_SEGMENTS, total), (Tag.SAR_SEGMENT_SEQNUM, seq))
    return submit(0, receipt=False, destination_addr="447700900777", tlvs=tlvs)


async def test_concatenation_is_checked_complete_incomplete_inconsistent() -> None:
    parts = [
        *[replace(_udh_part(1, 3, s, b"part"), destination_addr="447700900001") for s in (2, 1, 3)],
        *[_sar_part(300, 2, s) for s in (1, 2)],
        *[replace(_udh_part(2, 3, s, b"part"), destination_addr="447700900002") for s in (1, 2)],
        replace(_udh_part(3, 3, 1, b"part"), destination_addr="447700900003"),
        replace(_udh_part(3, 4, 2, b"part"), destination_addr="447700900003"),  # total changed
    ]
    with trio.fail_after(10):
        async with running_sim() as sim, raw_esme(sim) as esme:
            for pdu in parts:
                await esme.send(pdu)
            await esme.collect(len(parts))
            stats = sim.stats()
            assert (stats["concat_complete"], stats["concat_incomplete"], stats["concat_inconsistent"]) == (2, 1, 1)


async def test_injected_mo_single_and_concatenated(autojump_clock: trio.testing.MockClock) -> None:
    long_text = "".join(chr(ord("a") + i % 26) for i in range(200))
    with trio.fail_after(30):
        async with running_sim() as sim:
            async with running_pool(sim.port or 0) as pool:
                assert sim.inject_mo("STOP", source="447700900123") == 1
                assert sim.inject_mo(long_text) == 2
                assert sim.inject_mo("Grüße " * 20) == 2  # 120 UCS-2 characters: two parts of up to 67
                items = await take_inbound(pool, 5)
                single = items[0]
                assert (single.message, single.pdu.source_addr, single.pdu.esm_class) == (b"STOP", "447700900123", 0)
                first, second = (item.message for item in items[1:3])
                assert first[:5] == second[:5] == bytes((5, 0, 3, first[3], 2))
                assert (first[5], second[5]) == (1, 2)
                assert (first[6:] + second[6:]).decode("ascii") == long_text
                ucs2 = items[3:]
                assert {item.pdu.data_coding for item in ucs2} == {8}
                assert b"".join(item.message[6:] for item in ucs2).decode("utf-16-be") == "Grüße " * 20
                assert all(item.pdu.esm_class == EsmClass.UDHI for item in items[1:])
                await trio.sleep(1)
            assert sim.stats()["mo_acked"] == 5


async def test_periodic_mo(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(100):
        sim_config = replace(SIM_CONFIG, mo_interval_seconds=10)
        async with running_sim(sim_config) as sim, running_pool(sim.port or 0) as pool:
            items = await take_inbound(pool, 3)
            assert [i.message for i in items] == [b"periodic MO 1", b"periodic MO 2", b"periodic MO 3"]


def _smpplib_session(port: int, n: int) -> tuple[list[str], list[str]]:
    """An independent ESME: bind transceiver, submit n with receipts, read until every receipt is in."""
    client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
    sent_ids: list[str] = []
    receipt_ids: list[str] = []
    client.set_message_sent_handler(lambda pdu: sent_ids.append(pdu.message_id.decode()))
    client.set_message_received_handler(lambda pdu: receipt_ids.append(pdu.receipted_message_id.decode()))
    client.connect()
    try:
        client.bind_transceiver(system_id=SYSTEM_ID, password=PASSWORD)
        for i in range(n):
            client.send_message(
                source_addr_ton=smpplib.consts.SMPP_TON_ALNUM,
                source_addr="ACME",
                dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
                destination_addr=f"44770090{i:04d}",
                short_message=b"hello from smpplib",
                registered_delivery=True,
            )
        while len(sent_ids) < n or len(receipt_ids) < n:
            client.read_once()
        client.unbind()
    finally:
        client.disconnect()
    return sent_ids, receipt_ids


async def test_smpplib_binds_submits_and_acknowledges_receipts() -> None:
    with trio.fail_after(20):
        async with running_sim() as sim:
            assert sim.port is not None
            sent_ids, receipt_ids = await trio.to_thread.run_sync(_smpplib_session, sim.port, 5)
            assert len(set(sent_ids)) == 5
            assert sorted(receipt_ids) == sorted(sent_ids)
            # smpplib answered every deliver_sm before its unbind, and the simulator reads in order.
            stats = sim.stats()
            assert (stats["binds"], stats["submits_ok"], stats["receipts_acked"]) == (1, 5, 5)


def test_cli_reads_toml_and_options_override(tmp_path: Path) -> None:
    path = tmp_path / "sim.toml"
    path.write_text(
        '[sim]\nport = 3000\nid_format = "decimal"\nthrottle_tps = 50\nreceipt_mix = "DELIVRD:0.8,UNDELIV/1:0.2"\n'
        '[sim.credentials]\nshop = "pw1"\n',
        encoding="utf-8",
    )
    args = build_parser().parse_args(["sim", "--config", str(path), "--throttle-tps", "75", "--port", "0"])
    config, host, port = build_config(args)
    assert (host, port) == ("127.0.0.1", 0)
    assert config.throttle_tps == 75
    assert config.id_format is IdFormat.DECIMAL
    assert config.credentials == (("shop", "pw1"),)
    assert config.receipt_mix == (ReceiptOutcome("DELIVRD", 0, 0.8), ReceiptOutcome("UNDELIV", 1, 0.2))


def test_cli_reports_every_bad_option_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('colour = "blue"\nreceipt_mix = "NOPE:1"\nwindow = "x"\n', encoding="utf-8")
    args = build_parser().parse_args(["sim", "--config", str(path)])
    with pytest.raises(ConfigError) as info:
        build_config(args)
    assert {key for _, key, _ in info.value.problems} == {"colour", "receipt_mix", "window"}


def test_counters_dump_as_json() -> None:
    sim = Simulator(SimConfig())
    sim.counters.submits = 3
    assert '"submits": 3' in sim.counters.to_json()
    assert "submits                3" in sim.counters.render()


def test_gateway_sim_exits_2_on_a_bad_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--receipt-mix", "BOGUS:1", "--port", "0"]) == 2
    assert "receipt_mix" in capsys.readouterr().err


def test_receipt_dates_follow_the_clock_minute_by_minute() -> None:
    # The prepared receipt text is cached per UTC minute (Appendix B dates are YYMMDDhhmm): a receipt built
    # later must still carry the date of when it was built.
    now = [1_700_000_000.0]  # 2023-11-14 22:13:20 UTC
    receipts = Receipts(SIM_CONFIG.receipt_mix, random.Random(1), clock=lambda: now[0])
    pdu = submit(1)

    def dates() -> tuple[bytes, bytes]:
        built = receipts.build(pdu, b"1a")
        assert built is not None
        match = re.search(rb"submit date:(\d{10}) done date:(\d{10})", built)
        assert match is not None
        return match.group(1), match.group(2)

    assert dates() == (b"2311142213", b"2311142213")
    now[0] += 39.9  # 22:13:59.9, same minute
    assert dates() == (b"2311142213", b"2311142213")
    now[0] += 0.1  # 22:14:00
    assert dates() == (b"2311142214", b"2311142214")
    now[0] += 86_400 * 40  # forty days on
    assert dates() == (b"2312242214", b"2312242214")
    now[0] -= 3_600  # the wall clock stepped back an hour
    assert dates() == (b"2312242114", b"2312242114")


@pytest.mark.parametrize(
    ("udh", "complete"),
    [
        (lambda seq: bytes((5, 0, 3, 9, 2, seq)), 1),  # 8-bit reference (3GPP TS 23.040 9.2.3.24.1)
        (lambda seq: bytes((6, 8, 4, 1, 9, 2, seq)), 1),  # 16-bit reference (9.2.3.24.8)
        (lambda seq: bytes((8, 0x24, 1, 0, 0, 3, 9, 2, seq)), 1),  # another element before it
        (lambda seq: bytes((5, 0, 3, 9, 2, 1)), 0),  # the same part twice: inconsistent
    ],
)
def test_concatenation_headers_are_read_in_every_udh_layout(udh: Callable[[int], bytes], complete: int) -> None:
    checker = ConcatChecker()
    for seq in (1, 2):
        checker.feed(SYSTEM_ID, submit(0, esm_class=EsmClass.UDHI, short_message=udh(seq) + b"part"))
    assert (checker.complete, checker.inconsistent, checker.incomplete) == (complete, 1 - complete, 0)
