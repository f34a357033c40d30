"""What a foreign SMSC sends that ours never did (issue 11, tried against an SMSC this project did not write):
an MO whose UDH does not parse, long MOs across a restart, a response of the wrong kind."""

from __future__ import annotations

from pathlib import Path

import trio

from gateway.engine import EngineSettings
from gateway.smpp import pdu as P
from gateway.smpp.constants import EsmClass

from .harness import TEST_PREFIXES, running_gateway
from .test_survival import LIMIT, finals, numbers, poll_until, send, sim_config, two_carriers


async def mo_texts(client, n: int) -> list[str]:  # type: ignore[no-untyped-def]
    texts: list[str] = []
    sub = await client.subscribe(after=0, kinds=("mo",))
    async for event in sub:
        texts.append(event.text)
        if len(texts) == n:
            await sub.ack(event.seq)
            return texts
    raise AssertionError("the event stream ended")


def broken_udh_mo(udh: bytes) -> P.DeliverSm:
    return P.DeliverSm(
        source_addr="447700900001", destination_addr="ACME", esm_class=EsmClass.UDHI, short_message=udh + b"hi"
    )


async def test_an_mo_whose_udh_does_not_parse_is_refused_and_the_gateway_keeps_serving(tmp_path: Path) -> None:
    # A foreign SMSC's MO with esm_class UDHI and a header that overruns itself ended the gateway (exit 1),
    # and with it every other PDU of the same read. Now: ESME_RX_P_APPN for that one (the SMSC does not
    # redeliver it forever), logged with its octets; everything else goes on.
    with trio.fail_after(LIMIT):
        async with two_carriers(tmp_path, {"a": sim_config()}) as two, two.client() as client:
            sim = two.sims["a"]
            sim.inject_deliver(broken_udh_mo(b"\x0f\x00\x03\x05"))  # UDH length 15, 3 octets follow
            sim.inject_deliver(broken_udh_mo(b"\x05\x00\x05\x03\x02"))  # an IE that overruns the header
            sim.inject_deliver(P.DeliverSm(source_addr="447700900001", destination_addr="ACME", esm_class=0x40))
            sim.inject_mo("STOP please")
            assert await mo_texts(client, 1) == ["STOP please"]
            await poll_until(lambda: sim.stats()["mo_refused"] == 3)
            assert sim.stats()["mo_acked"] == 1
            assert two.running.engine.counters["inbound_refused"] == 3
            async with two.client() as other:  # one subscription per connection
                ids = await send(other, numbers(3))
                assert {e.kind for e in (await finals(other, ids)).values()} == {"delivered"}


def mo_part(seq: int, text: bytes, ref: int = 7, total: int = 2) -> P.DeliverSm:
    udh = bytes((5, 0, 3, ref, total, seq))  # TS 23.040 9.2.3.24.1: 8-bit reference concatenation
    return P.DeliverSm(
        source_addr="447700900001", destination_addr="ACME", esm_class=EsmClass.UDHI, short_message=udh + text
    )


async def test_a_long_mo_acknowledged_in_part_survives_a_restart(tmp_path: Path) -> None:
    # Part 1 was answered ESME_ROK and kept only in memory: after a restart the subscriber got
    # "part two [incomplete: parts [1] missing]". Now a part is durable before its deliver_sm_resp.
    with trio.fail_after(LIMIT):
        async with running_gateway(tmp_path) as gw:
            gw.sim.inject_deliver(mo_part(1, b"Please call me back "))
            await poll_until(lambda: gw.sim.stats()["mo_acked"] == 1)
        async with running_gateway(tmp_path) as gw, gw.client() as client:
            gw.sim.inject_deliver(mo_part(2, b"after six."))
            assert await mo_texts(client, 1) == ["Please call me back after six."]
            assert gw.running.engine.store.mo_parts() == ([], 0)  # gone with the whole message, in its write


async def test_a_long_mo_whose_other_parts_never_come_still_ends_after_a_restart(tmp_path: Path) -> None:
    # Kept parts wait again after a restart, and the reassembly timeout still ends the message: incomplete,
    # with what it has, and its parts leave the store in the same write.
    engine = EngineSettings(
        default_region="GB", test_prefixes=TEST_PREFIXES, scheduler_poll_seconds=0.1, mo_reassembly_timeout_seconds=0.4
    )
    with trio.fail_after(LIMIT):
        async with two_carriers(tmp_path, {"a": sim_config()}, engine=engine) as two:
            two.sims["a"].inject_deliver(mo_part(1, b"Only the first half ", ref=9, total=3))
            await poll_until(lambda: two.sims["a"].stats()["mo_acked"] == 1)
        async with two_carriers(tmp_path, {"a": sim_config()}, engine=engine) as two, two.client() as client:
            (text,) = await mo_texts(client, 1)
            assert text == "Only the first half  [incomplete: parts [2, 3] missing]"
            assert two.running.engine.store.mo_parts() == ([], 0)
