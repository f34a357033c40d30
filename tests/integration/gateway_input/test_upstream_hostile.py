"""The upstream socket survives any request (issue 11), end to end: the daemon as an operator runs it (a
subprocess on the config file) is sent a schedule_at that overflowed the store's time keys and cursors past
the log, answers each with invalid_request, logs no traceback, stays up and keeps serving. Client references
and normalised numbers through the real engine and store, in this process."""

from __future__ import annotations

import math
from pathlib import Path

import trio

from gateway.sim.config import SimConfig
from tests.integration.gateway_input.helpers import (
    ACCOUNT,
    SECRET,
    SIM_PASSWORD,
    SIM_SYSTEM_ID,
    RawConnection,
    WatchedSimulator,
    daemon,
    running_gateway,
    submit,
    write_config,
)

U64_MAX = 2**64 - 1


def assert_invalid(reply: dict[str, object], ident: int, field: str) -> None:
    assert (reply["type"], reply["id"], reply["code"], reply.get("field")) == (
        "error", ident, "invalid_request", field,
    ), reply  # fmt: skip
    assert not reply.get("fatal"), reply


async def test_daemon_refuses_overflowing_schedule_at_and_u64_cursors_and_keeps_serving(tmp_path: Path) -> None:
    sim = WatchedSimulator(SimConfig(credentials=((SIM_SYSTEM_ID, SIM_PASSWORD),)))
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            config = write_config(tmp_path, await nursery.start(sim.serve, "127.0.0.1", 0))
            socket_path = tmp_path / "gw.sock"
            async with daemon(config, tmp_path / "gateway.log") as gateway:
                await gateway.wait_until_serving(socket_path, ACCOUNT, SECRET)
                async with RawConnection.open(socket_path) as conn:
                    await conn.hello()
                    # 1.8e16 s is past what milliseconds in a u64 time key hold: it killed the store writer.
                    for ident, value in enumerate([1.8e16, 1e308, math.nan, math.inf, -math.inf, U64_MAX], 10):
                        await conn.send(submit(ident, schedule_at=value))
                        assert_invalid(await conn.answer(ident), ident, "schedule_at")
                    await conn.send({"op": "ack", "id": 20, "seq": U64_MAX})
                    assert_invalid(await conn.answer(20), 20, "seq")
                    await conn.send({"op": "subscribe", "id": 21, "after": U64_MAX})
                    assert_invalid(await conn.answer(21), 21, "after")
                    served = await conn.assert_serving(22)
                    # A cursor past the newest event is refused too: stored, it would hide what comes next.
                    await conn.send({"op": "ack", "id": 23, "seq": 2**63 - 1})
                    assert_invalid(await conn.answer(23), 23, "seq")
                    await sim.wait_for_submits(1)

                # The account's subscriptions still work: a resuming subscriber gets the message's events.
                async with RawConnection.open(socket_path) as conn:
                    await conn.hello()
                    await conn.send({"op": "subscribe", "id": 2})
                    granted = await conn.answer(2)
                    assert granted["result"]["after"] == 0, granted
                    event = await conn.receive()
                    assert event is not None
                    (message,) = served["result"]["messages"]
                    assert (event["type"], event["message_id"]) == ("event", message["message_id"]), event
                    await conn.send({"op": "ack", "id": 3, "seq": event["seq"]})
                    assert (await conn.answer(3))["result"] == {"seq": event["seq"]}
                gateway.assert_running()
                assert "Traceback" not in gateway.log()
            nursery.cancel_scope.cancel()


async def test_client_ref_resend_is_a_duplicate_and_another_request_is_a_conflict(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with running_gateway(tmp_path) as gateway, RawConnection.open(gateway.socket_path) as conn:
            await conn.hello()
            await conn.send(submit(2, to=["+447700900001", "07700900002"], client_ref="otp-1"))
            first = await conn.answer(2)
            await conn.send(submit(3, to=["+447700900001", "07700900002"], client_ref="otp-1"))
            again = await conn.answer(3)
            await conn.send(submit(4, to=["+447700900003"], client_ref="otp-1"))
            other_number = await conn.answer(4)
            await conn.send(submit(5, to=["+447700900001", "07700900002"], text="other", client_ref="otp-1"))
            other_text = await conn.answer(5)
            await conn.assert_serving(6)
    assert first["result"]["duplicate"] is False
    assert again["result"]["duplicate"] is True
    # The first submit's messages, each in its state now (docs/protocol.md: "each recipient's current state").
    same = ("to", "message_id", "number")
    assert [{k: m[k] for k in same} for m in again["result"]["messages"]] == [
        {k: m[k] for k in same} for m in first["result"]["messages"]
    ]
    assert {m["state"] for m in again["result"]["messages"]} <= {"accepted", "queued", "submitted", "delivered"}
    for refused in (other_number, other_text):
        assert (refused["type"], refused["code"], refused["field"]) == ("error", "client_ref_conflict", "client_ref")


async def test_submit_result_names_the_normalised_number_beside_the_number_as_given(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with running_gateway(tmp_path) as gateway, RawConnection.open(gateway.socket_path) as conn:
            await conn.hello()
            await conn.send(submit(2, to=["+447700900001", "07700900002", "+0123"]))
            reply = await conn.answer(2)
            given, national, invalid = reply["result"]["messages"]
            await conn.send({"op": "status", "id": 3, "message_id": given["message_id"]})
            status = await conn.answer(3)
    assert (given["to"], given["number"]) == ("+447700900001", "447700900001")
    assert (national["to"], national["number"]) == ("07700900002", "447700900002")
    assert status["result"]["messages"][0]["to"] == "447700900001"
    assert (invalid["state"], invalid["reason"]) == ("rejected", "invalid_number")
    assert "number" not in invalid  # nothing to normalise it to
