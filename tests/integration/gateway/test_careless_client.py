"""What a careless client sends (issue 11, tried from docs/protocol.md alone): message ids in other forms,
a resent submit after its messages ended, a refused subscribe then a corrected one, emoji texts."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from gateway.upstream import MessageClass, SubmitRequest
from gateway.upstream.errors import InvalidRequest, NotFound

from .harness import collect_final_events, running_gateway

LIMIT = 30


async def test_message_ids_are_opaque_strings_not_numbers(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with running_gateway(tmp_path) as gw, gw.client() as client:
            result = await client.submit(
                SubmitRequest(to=("447700900123",), text="hi", message_class=MessageClass.NOTIFICATION, sender="ACME")
            )
            mid = result.messages[0].message_id
            (found,) = await client.status(message_id=mid)
            assert found.message_id == mid
            full_width = mid.translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})
            arabic_indic = mid.translate({ord(d): 0x0660 + int(d) for d in "0123456789"})
            # Each of these was found as the message, or answered `internal` with a traceback in the log.
            for other in ("0" + mid, full_width, arabic_indic, "²", "9" * 64, str(1 << 64)):
                with pytest.raises(NotFound):
                    await client.status(message_id=other)
                with pytest.raises(NotFound):
                    await client.cancel(message_id=other)


async def test_a_resent_submit_answers_each_message_as_it_is_now(tmp_path: Path) -> None:
    # A client that lost the answer resends; it was told "accepted" for a message already delivered.
    request = SubmitRequest(
        to=("447700900123", "447700900124"), text="Your code is 1234", sender="ACME",
        message_class=MessageClass.VERIFICATION, client_ref="order-77",
    )  # fmt: skip
    with trio.fail_after(LIMIT):
        async with running_gateway(tmp_path) as gw, gw.client() as client:
            first = await client.submit(request)
            ids = {m.message_id for m in first.messages}
            await collect_final_events(client, ids)
            again = await client.submit(request)
            assert again.duplicate
            assert [m.message_id for m in again.messages] == [m.message_id for m in first.messages]
            assert {(m.state, m.reason) for m in again.messages} == {("delivered", "delivered")}


async def test_a_refused_subscribe_leaves_the_client_free_to_subscribe_again(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with running_gateway(tmp_path) as gw, gw.client() as client:
            with pytest.raises(InvalidRequest):
                await client.subscribe(window=0)
            sub = await client.subscribe(after=0, window=5)
            assert sub.window == 5


async def test_emoji_texts_preview_and_split_by_their_utf16_units(tmp_path: Path) -> None:
    # 67 emoji hung the whole gateway (the splitter looped); 60 were sent as 4 parts.
    with trio.fail_after(LIMIT):
        async with running_gateway(tmp_path) as gw, gw.client() as client:
            for text, parts in (("😀" * 35, 1), ("😀" * 60, 2), ("😀" * 67, 3), ("a" * 30 + "😀" * 40, 2)):
                p = await client.preview(text)
                assert (p.parts, p.chars) == (parts, len(text.encode("utf-16-be")) // 2), text
            result = await client.submit(
                SubmitRequest(to=("447700900123",), text="😀" * 60, message_class=MessageClass.MARKETING, sender="ACME")
            )
            finals, _ = await collect_final_events(client, {result.messages[0].message_id})
            (status,) = await client.status(message_id=result.messages[0].message_id)
            assert status.segments == 2
            assert {e.kind for e in finals.values()} == {"delivered"}
