"""At debug level each message's writes and each PDU are logged; at info, none of them (gateway/debuglog.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from structlog.testing import capture_logs

from gateway import debuglog
from gateway.upstream import MessageClass, SubmitRequest

from .harness import collect_final_events, running_gateway


@pytest.mark.parametrize("level", ["debug", "info"])
async def test_per_message_and_per_pdu_detail_only_at_debug(tmp_path: Path, level: str) -> None:
    debuglog.set_level(level)
    try:
        with trio.fail_after(30), capture_logs() as logs:
            async with running_gateway(tmp_path) as h, h.client() as client:
                result = await client.submit(
                    SubmitRequest(("447700900001", "447700900002"), "hi", MessageClass.NOTIFICATION, "ACME")
                )
                ids = {m.message_id for m in result.messages}
                await collect_final_events(client, ids)
    finally:
        debuglog.set_level("info")
    writes = [e for e in logs if e["event"] == "store_write"]
    pdus = [e for e in logs if e["event"] in ("pdu_in", "pdu_out")]
    if level == "info":
        assert writes == []
        assert pdus == []
        return
    # Every message's way: accepted (one submit of two), prepared, answered, its receipt.
    for message_id in ids:
        mine = [e for e in writes if str(e.get("message_id")) == message_id]
        assert [e["op"] for e in mine if e["op"] == "Submit"] == ["Submit"]
        assert {"Prepare", "Advance"} <= {e["op"] for e in mine}
        # Its receipt: a Receipt write that matched it, or (when the simulator's deliver_sm came before its
        # submit_sm_resp was applied) the answer's Advance that ended it from the early receipt.
        assert any(e["op"] == "Receipt" or e.get("result") == "delivered" for e in mine), mine
        assert "submit_ok" in {e.get("change") for e in mine}
    assert sum(1 for e in pdus if e["event"] == "pdu_out") >= 2
    assert any(e["command"] == "SubmitSmResp" for e in pdus if e["event"] == "pdu_in")
    assert any(e["command"] == "DeliverSm" for e in pdus if e["event"] == "pdu_in")
