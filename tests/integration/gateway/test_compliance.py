"""Compliance end to end (gateway/policy/, the store's accept transaction): a seeded mix of opted-out,
blacklisted, capped, invalid and night-time recipients is refused or held exactly as seeded, each with its
reason; texts get the account's opt-out wording; MO keywords opt numbers out and back in."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from pathlib import Path

import trio

from gateway.app import GatewayConfig
from gateway.engine.settings import CapSettings, ComplianceSettings, WordListSettings
from gateway.store import SetBlacklist, SetOptOut
from gateway.upstream import MessageClass, SubmitRequest

from .harness import Harness, collect_final_events, running_gateway

# 14:00 UTC on a winter day: 14:00 in London (inside 09:00-21:00), 22:00 in Shanghai (outside).
AFTERNOON_IN_LONDON_MS = 1_800_021_600_000  # 2027-01-15T14:00:00Z
assert time.gmtime(AFTERNOON_IN_LONDON_MS / 1000)[3] == 14
WORDING = "Reply STOP to opt out"


def _compliance(cfg: GatewayConfig) -> GatewayConfig:
    acme = dataclasses.replace(cfg.accounts[0], append_optout=WORDING, optout_keywords=("BASTA",))
    return dataclasses.replace(
        cfg,
        accounts=(acme,),
        word_lists=(WordListSettings("banned", ("最低价", "guaranteed win")),),
        compliance=ComplianceSettings(banned_words=("banned",)),
        caps=(
            CapSettings("all-marketing-day", limit=1, window_seconds=86400, scope="all"),
            CapSettings("notifications-day", limit=2, window_seconds=86400, classes=("notification",)),
        ),
    )


def _clock() -> int:
    return AFTERNOON_IN_LONDON_MS + int(time.monotonic() * 1000) % 1000


async def _submit(h: Harness, to: list[str], text: str, cls: MessageClass = MessageClass.MARKETING) -> list:  # type: ignore[type-arg]
    async with h.client() as client:
        result = await client.submit(SubmitRequest(to=tuple(to), text=text, message_class=cls, sender="ACME"))
    return list(result.messages)


async def test_a_seeded_mix_is_refused_and_held_exactly_as_seeded(tmp_path: Path) -> None:
    gb = [f"4479111{n:05d}" for n in range(400)]
    cn = [f"86138{n:08d}" for n in range(100)]  # 22:00 in Shanghai: held
    opted, listed, account_listed, capped = gb[:50], gb[50:80], gb[80:100], gb[100:150]
    invalid = ["12345", "+44 1", "999999999999999"]
    with trio.fail_after(60):
        async with running_gateway(tmp_path, wall_ms=_clock, configure=_compliance) as h:
            writer = h.running.engine.writer
            await writer.apply(
                [SetOptOut(n, scope="acme", source="import") for n in opted]
                + [SetBlacklist(n) for n in listed]
                + [SetBlacklist(n, scope="account:acme") for n in account_listed]
            )
            first = await _submit(h, capped, "Spring sale today only")  # each takes the day's one slot
            assert {m.state for m in first} == {"accepted"}
            messages = await _submit(h, gb + cn + invalid, "Spring sale, second chance")
            # A notification still reaches those who opted out of marketing.
            notified = await _submit(h, opted, "Your parcel arrives today", MessageClass.NOTIFICATION)
            stored = h.running.engine.store.get(int(messages[-len(invalid) - len(cn) - 1].message_id))

    by_to = {m.to: m for m in messages}
    reasons = Counter(m.reason for m in messages)
    assert reasons == Counter({
        None: 400 - 150, "opted_out": 50, "blacklisted": 50, "frequency_capped": 50, "outside_window": 100,
        "invalid_number": 3,
    })  # fmt: skip
    assert {by_to[n].state for n in opted + listed + account_listed + capped + invalid} == {"rejected"}
    assert {by_to[n].state for n in cn} == {"scheduled"}
    assert {by_to[n].detail for n in cn} == {"held until 2027-01-16T01:00:00Z, when its window opens"}
    assert {by_to[n].detail for n in capped} == {"rule all-marketing-day: at most 1 in 1 day"}
    assert {by_to[n].detail for n in account_listed} == {"on account acme's blacklist"}
    assert {m.state for m in notified} == {"accepted"}
    assert stored is not None
    assert stored.text == "Spring sale, second chance " + WORDING


async def test_banned_words_and_mo_keywords(tmp_path: Path) -> None:
    number = "447911100001"
    with trio.fail_after(60):
        async with running_gateway(tmp_path, wall_ms=_clock, configure=_compliance) as h:
            banned = await _submit(h, [number, "447911100002"], "全网最 低 价, come now")
            assert {(m.state, m.reason) for m in banned} == {("rejected", "content_banned")}
            assert banned[0].detail == "banned word '最低价' (list banned)"
            store = h.running.engine.store
            h.sim.inject_mo("TD 谢谢", source=number, destination="ACME")
            async with h.client() as client:
                await collect_mo(client, 1)
            assert store.opt_out(number, "acme") is not None
            (refused,) = await _submit(h, [number], "Winter sale")
            assert refused.reason == "opted_out"
            h.sim.inject_mo("basta!", source="447911100003", destination="ACME")  # the account's own keyword
            h.sim.inject_mo("start", source=number, destination="ACME")
            async with h.client() as client:
                await collect_mo(client, 3)
            assert store.opt_out(number, "acme") is None
            assert store.opt_out("447911100003", "acme") is not None
            (again,) = await _submit(h, [number], "Winter sale, last day")
            assert (again.state, again.reason) == ("accepted", None)
            async with h.client() as client:
                finals, _ = await collect_final_events(client, {again.message_id})
            assert finals[again.message_id].kind == "delivered"


async def collect_mo(client, n: int) -> list[str]:  # type: ignore[no-untyped-def]
    texts: list[str] = []
    sub = await client.subscribe(after=0, kinds=("mo",))
    async for event in sub:
        texts.append(event.text)
        if len(texts) == n:
            return texts
    raise AssertionError("the event stream ended")
