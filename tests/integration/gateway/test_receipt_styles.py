"""Issue 11, defect 4: no receipt lost. The gateway runs against a simulator that writes its receipts in five
styles at once (TLVs; no TLVs with the id zero-padded, in decimal while the response gave hex, in the compact
upper-case layout with four-digit years, or `stat:FAILED`), some before their submit_sm_resp, and every
receipt must reach its message: each message ends delivered or failed, nothing waits in the early table and
nothing is left unmatched."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import trio

from gateway.sim.config import IdFormat as SimIdFormat
from gateway.sim.config import ReceiptOutcome, ReceiptStyle, SimConfig
from gateway.upstream import MessageClass, SubmitRequest

from .harness import SIM_PASSWORD, collect_final_events, running_gateway

MIX = (ReceiptOutcome("DELIVRD", 0, 0.8), ReceiptOutcome("UNDELIV", 11, 0.1), ReceiptOutcome("EXPIRED", 0, 0.1))


def _sim(**kw: object) -> SimConfig:
    return SimConfig(
        credentials=(("gw", SIM_PASSWORD),),
        id_format=SimIdFormat.HEX,
        seed=11,
        receipt_mix=MIX,
        receipt_styles=tuple((style, 1.0) for style in ReceiptStyle),
        **kw,  # type: ignore[arg-type]
    )


async def test_every_receipt_of_five_mixed_styles_is_matched(tmp_path: Path) -> None:
    # A quarter of the receipts go out before their submit_sm_resp, held 50 ms: they take the early path and
    # must be claimed by the response whatever form their id had.
    sim = _sim(receipt_before_response_rate=0.25, response_delay_seconds=0.05)
    total = 1000
    with trio.fail_after(180):
        async with running_gateway(tmp_path, sim_config=sim) as h, h.client() as client:
            ids: list[str] = []
            for start in range(0, total, 250):
                to = tuple(f"4477009{n:05d}" for n in range(start, start + 250))
                result = await client.submit(
                    SubmitRequest(
                        to=to, text="Your code is 482913", message_class=MessageClass.NOTIFICATION, sender="ACME"
                    )
                )
                ids.extend(m.message_id for m in result.messages)
            finals, _ = await collect_final_events(client, set(ids))
            assert set(finals) == set(ids)
            kinds = Counter(str(e.kind) for e in finals.values())
            reasons = Counter(e.reason for e in finals.values() if e.kind == "failed")
            # FAILED-style receipts fail their message with the receipt's err; the others follow the mix.
            assert kinds["delivered"] > total // 2
            assert reasons["undeliverable:001"] > 0
            assert set(reasons) <= {"undeliverable:001", "undeliverable:011", "expired"}
            engine = h.running.engine
            assert engine.counters["receipts_unparseable"] == 0
            assert engine.counters["receipts_early"] > 0
            store = engine.store
            assert store.count(b"early") == 0
            assert store.count(b"early_time") == 0
            assert store.unmatched_count() == 0
            assert h.sim.stats()["receipts_sent"] == total
