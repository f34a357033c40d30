"""Bad input against the whole gateway (issue 6, "Tests"): each fault gets the error code docs/protocol.md
documents for it, and the server keeps serving: a valid submit afterwards is accepted and reaches the
carrier. The gateway runs in this process from a real config file, over a real Unix socket."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from gateway.upstream import (
    InvalidNumber,
    MessageClass,
    SubmitRequest,
    TextNotEncodable,
    TextTooLong,
    open_unix_client,
)
from tests.integration.gateway_input.helpers import (
    ACCOUNT,
    MAX_FRAME_BYTES,
    MAX_PARTS,
    SECRET,
    Harness,
    RawConnection,
    frame,
    running_gateway,
    submit,
)

CHINESE = "你好世界 这条短信不能用GSM字母发送"
# docs/protocol.md, "status": the states a client may take as final.
DOCUMENTED_FINAL_STATES = {"delivered", "failed", "expired", "cancelled"}
# 3GPP TS 23.038 / 23.040: a concatenated GSM 7-bit part carries 153 septets.
GSM_PER_PART = 153


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Harness]:
    with trio.fail_after(30):
        async with running_gateway(tmp_path) as harness:
            yield harness


async def wait_for_carrier(harness: Harness, submits: int) -> None:
    """Until the simulator has accepted `submits` submit_sm: the gateway is still sending, not just answering."""
    with trio.fail_after(10):
        await harness.sim.wait_for_submits(submits)


def assert_error(reply: dict[str, object], code: str, *, ident: int | None, field: str | None = None) -> None:
    assert reply["type"] == "error", reply
    assert reply["code"] == code, reply
    assert reply["id"] == ident, reply
    assert isinstance(reply["message"], str)
    assert reply["message"], reply
    if field is not None:
        assert reply.get("field") == field, reply
    assert not reply.get("fatal", False), reply


# --- frames -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\xc1", id="reserved-byte"),
        pytest.param(b"\x82\xa2op", id="truncated-map"),
        pytest.param(b"\x80\x80", id="trailing-bytes"),
        pytest.param(b"\x93\x01\x02\x03", id="array-not-map"),
        pytest.param(b"\x81\x01\xa2op", id="non-string-key"),
        pytest.param(b"\x81\xa2op\xa2\xff\xfe", id="invalid-utf8"),
    ],
)
async def test_malformed_frame_gets_bad_frame_and_the_connection_keeps_serving(
    gateway: Harness, payload: bytes
) -> None:
    with trio.fail_after(10):
        async with RawConnection.open(gateway.socket_path) as conn:
            assert (await conn.hello())["type"] == "result"
            await conn.send_bytes(struct.pack(">I", len(payload)) + payload)
            reply = await conn.receive()
            assert reply is not None
            assert_error(reply, "bad_frame", ident=None)
            await conn.assert_serving(2)
        await wait_for_carrier(gateway, 1)


async def test_oversize_frame_is_skipped_with_frame_too_large_and_the_stream_stays_in_step(gateway: Harness) -> None:
    with trio.fail_after(10):
        async with RawConnection.open(gateway.socket_path) as conn:
            await conn.hello()
            # A valid map, just too big: the server must skip exactly its payload, not parse it.
            big = submit(7, text="x" * (MAX_FRAME_BYTES + 100))
            data = frame(big)
            assert len(data) - 4 > MAX_FRAME_BYTES
            # Sent with the next valid request in the same write: the stream must stay in step.
            await conn.send_bytes(data + frame(submit(8, text="after the big one")))
            reply = await conn.receive()
            assert reply is not None
            assert_error(reply, "frame_too_large", ident=None)
            after = await conn.answer(8)
            assert after["type"] == "result", after
            await conn.assert_serving(9)


async def test_implausible_length_is_fatal_but_the_server_keeps_serving_others(gateway: Harness) -> None:
    with trio.fail_after(10):
        async with RawConnection.open(gateway.socket_path) as conn:
            await conn.hello()
            # Text typed at the port: "GET " read as a length is far over 16 x max_frame_bytes.
            await conn.send_bytes(b"GET / HTTP/1.1\r\n\r\n")
            reply = await conn.receive()
            assert reply is not None
            assert reply["type"] == "error", reply
            assert reply["code"] == "frame_too_large"
            assert reply.get("fatal") is True, reply
            assert await conn.receive() is None, "the connection must close right after the fatal error"
        async with RawConnection.open(gateway.socket_path) as conn:
            await conn.hello()
            await conn.assert_serving(2)
        await wait_for_carrier(gateway, 1)


# --- requests ---------------------------------------------------------------------------------------


async def test_unknown_operation_gets_unknown_op_naming_the_field(gateway: Harness) -> None:
    with trio.fail_after(10):
        async with RawConnection.open(gateway.socket_path) as conn:
            await conn.hello()
            await conn.send({"op": "send_everything", "id": 5})
            assert_error(await conn.answer(5), "unknown_op", ident=5, field="op")
            await conn.assert_serving(6)


async def test_operation_before_hello_gets_not_authenticated(gateway: Harness) -> None:
    with trio.fail_after(10):
        async with RawConnection.open(gateway.socket_path) as conn:
            await conn.send(submit(3))
            assert_error(await conn.answer(3), "not_authenticated", ident=3)
            assert (await conn.hello(ident=4))["type"] == "result"
            await conn.assert_serving(5)


async def test_wrong_secret_gets_auth_failed_and_the_connection_may_try_again(gateway: Harness) -> None:
    with trio.fail_after(10):
        async with RawConnection.open(gateway.socket_path) as conn:
            assert_error(await conn.hello(secret="wrong", ident=1), "auth_failed", ident=1)
            assert_error(await conn.hello(secret="wrong again", ident=2), "auth_failed", ident=2)
            result = await conn.hello(ident=3)
            assert result["type"] == "result", result
            assert result["result"]["account"] == ACCOUNT
            assert result["result"]["max_frame_bytes"] == MAX_FRAME_BYTES
            await conn.assert_serving(4)


async def test_third_wrong_secret_closes_the_connection_with_fatal_auth_failed(gateway: Harness) -> None:
    with trio.fail_after(10):
        async with RawConnection.open(gateway.socket_path) as conn:
            for ident in (1, 2):
                assert_error(await conn.hello(secret="nope", ident=ident), "auth_failed", ident=ident)
            reply = await conn.hello(secret="nope", ident=3)
            assert reply["code"] == "auth_failed"
            assert reply.get("fatal") is True, reply
            assert await conn.receive() is None
        async with RawConnection.open(gateway.socket_path) as conn:
            await conn.hello()
            await conn.assert_serving(2)


async def test_unknown_account_gets_the_same_auth_failed(gateway: Harness) -> None:
    with trio.fail_after(10):
        async with RawConnection.open(gateway.socket_path) as conn:
            await conn.send({"op": "hello", "id": 1, "version": 1, "account": "nobody", "secret": SECRET})
            assert_error(await conn.answer(1), "auth_failed", ident=1)


# --- submit refusals --------------------------------------------------------------------------------


async def test_unroutable_number_is_a_rejected_recipient_with_reason_invalid_number(gateway: Harness) -> None:
    with trio.fail_after(10):
        async with RawConnection.open(gateway.socket_path) as conn:
            await conn.hello()
            # "+123" is well formed on the wire (an optional + and 1-20 digits) but no E.164 number.
            await conn.send(submit(2, to=["+447700900123", "+123"], text="one good, one bad"))
            reply = await conn.answer(2)
            assert reply["type"] == "result", reply
            good, bad = reply["result"]["messages"]
            assert good["state"] == "accepted"
            assert bad["to"] == "+123"
            assert bad["state"] == "rejected"
            assert bad["reason"] == "invalid_number"
            # Still has a message id, so status accounts for it.
            await conn.send({"op": "status", "id": 3, "message_id": bad["message_id"]})
            status = await conn.answer(3)
            assert status["type"] == "result", status
            (stored,) = status["result"]["messages"]
            assert stored["reason"] == "invalid_number"
            await conn.assert_serving(4)
        await wait_for_carrier(gateway, 2)
    assert gateway.sim.counters.submits_ok == 2, "the rejected recipient must never reach the carrier"


async def test_rejected_recipient_reports_a_documented_final_state(gateway: Harness) -> None:
    """docs/protocol.md "status": final states are delivered, failed, expired and cancelled, and a client
    must treat any other state as not final; a refused recipient must not look in flight for ever."""
    with trio.fail_after(10):
        async with RawConnection.open(gateway.socket_path) as conn:
            await conn.hello()
            await conn.send(submit(2, to="+123"))
            (rejected,) = (await conn.answer(2))["result"]["messages"]
            await conn.send({"op": "status", "id": 3, "message_id": rejected["message_id"]})
            (stored,) = (await conn.answer(3))["result"]["messages"]
            assert stored["state"] in DOCUMENTED_FINAL_STATES, stored
            assert stored["reason"] == "invalid_number"


@pytest.mark.parametrize(
    ("request_keys", "field"),
    [
        # A number as people write it ("call me", "0800-FLOWERS") is refused per recipient (invalid_number,
        # with the cause): only what no writing of a number holds fails the request.
        pytest.param({"to": ["+447700900123", "call\nme"]}, "to[1]", id="recipient"),
        pytest.param({"to": "0800\tFLOWERS"}, "to", id="single-recipient"),
        pytest.param({"to": ["+447700900123", "4" * 65]}, "to[1]", id="too-long"),
        pytest.param({"sender": "Shop!<script>"}, "sender", id="sender"),
    ],
)
async def test_malformed_number_gets_invalid_number_naming_the_field(
    gateway: Harness, request_keys: dict[str, Any], field: str
) -> None:
    with trio.fail_after(10):
        async with RawConnection.open(gateway.socket_path) as conn:
            await conn.hello()
            await conn.send(submit(2, **request_keys))
            assert_error(await conn.answer(2), "invalid_number", ident=2, field=field)
            await conn.assert_serving(3)


async def test_text_outside_the_carriers_encodings_gets_not_encodable(gateway: Harness) -> None:
    with trio.fail_after(10):
        async with RawConnection.open(gateway.socket_path) as conn:
            await conn.hello()
            await conn.send(submit(2, text=CHINESE))
            assert_error(await conn.answer(2), "not_encodable", ident=2, field="text")
            await conn.send({"op": "preview", "id": 3, "text": CHINESE})
            assert_error(await conn.answer(3), "not_encodable", ident=3, field="text")
            await conn.assert_serving(4)
        await wait_for_carrier(gateway, 1)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("a" * (GSM_PER_PART * MAX_PARTS + 1), id="more-parts-than-the-route-allows"),
        pytest.param("a" * 10_001, id="over-10000-chars"),
    ],
)
async def test_text_too_long_gets_too_long(gateway: Harness, text: str) -> None:
    with trio.fail_after(10):
        async with RawConnection.open(gateway.socket_path) as conn:
            await conn.hello()
            await conn.send(submit(2, text=text))
            assert_error(await conn.answer(2), "too_long", ident=2, field="text")
            await conn.send(submit(3, text="a" * (GSM_PER_PART * MAX_PARTS)))  # exactly the limit: fine
            reply = await conn.answer(3)
            assert reply["type"] == "result", reply
            await conn.assert_serving(4)
        await wait_for_carrier(gateway, 1 + MAX_PARTS)


async def test_client_library_raises_the_documented_errors_on_one_connection(gateway: Harness) -> None:
    """The same refusals through the trio client: its exception classes carry the codes, and one
    connection survives them all."""

    def request(text: str, to: str = "+447700900123") -> SubmitRequest:
        return SubmitRequest((to,), text, MessageClass.NOTIFICATION, "Shop")

    with trio.fail_after(10):
        async with open_unix_client(gateway.socket_path, account=ACCOUNT, secret=SECRET) as client:
            with pytest.raises(TextNotEncodable) as not_encodable:
                await client.submit(request(CHINESE))
            assert not_encodable.value.code == "not_encodable"
            with pytest.raises(TextTooLong) as too_long:
                await client.submit(request("b" * (GSM_PER_PART * MAX_PARTS + 1)))
            assert too_long.value.code == "too_long"
            with pytest.raises(InvalidNumber) as invalid:
                await client.submit(request("hi", to="not\ta number"))
            assert invalid.value.code == "invalid_number"
            assert invalid.value.field == "to[0]"  # the client always sends a list
            result = await client.submit(request("after three refusals"))
            assert [m.state for m in result.messages] == ["accepted"]
        await wait_for_carrier(gateway, 1)
