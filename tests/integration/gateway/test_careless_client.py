"""What a careless client sends (issue 11, tried from docs/protocol.md alone): message ids in other forms,
a resent submit after its messages ended, a refused subscribe then a corrected one, emoji texts."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from gateway.upstream import MessageClass, SubmitRequest, UpstreamError
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


async def test_any_arguments_to_the_account_op_get_an_answer_never_an_internal_error(tmp_path: Path) -> None:
    """Templates, batches and balances take maps of arguments from platforms' code: every mix of known and
    unknown keys, wrong types, huge, empty, NaN and nested values is answered with a result or a named
    error, never `internal`, and the gateway goes on (seeded, so a failure replays)."""
    rng = random.Random(1404)
    keys = ("action", "account", "batch_id", "template_id", "template", "text", "class", "sender", "at", "every",
            "until", "time_zone", "validity_seconds", "receipt", "first", "rows", "vars", "outcome", "reason",
            "after", "limit", "parts", "note", "since", "nonsense")  # fmt: skip
    actions = ("create", "add", "send", "stop", "list", "show", "details", "preview", "approve", "delete",
               "statement", "topup", "")  # fmt: skip

    def value(depth: int = 0) -> Any:
        pick = rng.randrange(12 if depth < 2 else 9)
        makers: list[Callable[[], Any]] = [
            lambda: rng.choice(actions), lambda: "b1", lambda: "x" * rng.choice((0, 1, 64, 65, 2000)),
            lambda: rng.choice((0, -1, 1, 2**63, 2**64 - 1, -(2**63))),
            lambda: rng.choice((0.5, float("nan"), float("inf"), -1e300)),
            lambda: rng.choice((True, False)), lambda: f"4477009001{rng.randrange(100):02d}",
            lambda: "Hi {name}, coupon {c} at Acme. Reply STOP to opt out", lambda: "【Acme】{0}{}{{x}}★",
            lambda: [value(depth + 1) for _ in range(rng.randrange(4))],
            lambda: {rng.choice(("to", "vars", "name", "c", "")): value(depth + 1) for _ in range(rng.randrange(3))},
            lambda: [{"to": "447700900123", "vars": {"name": value(depth + 1), "c": "C"}}],
        ]
        return makers[pick]()

    with trio.fail_after(120):
        async with running_gateway(tmp_path) as gw, gw.client() as client:
            codes: dict[str, int] = {}
            for _ in range(400):
                command = rng.choice(("batch", "template", "balance", "batch", "template"))
                args = {k: value() for k in rng.sample(keys, rng.randrange(1, 7))}
                try:
                    await client.account(command, **args)
                    code = "answered"
                except UpstreamError as err:
                    code = str(err.code)
                    if code == "internal":
                        raise AssertionError(f"{command} {args!r}: {err}") from err
                codes[code] = codes.get(code, 0) + 1
            assert codes.get("invalid_request")
            assert codes.get("not_found")
            # The connection and the gateway are still there, and still answer.
            assert (await client.account("balance", action="show"))["limited"] is False
            assert "batches" in await client.account("batch", action="list")
