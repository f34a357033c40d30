"""Compliance end to end (gateway/policy/, the store's accept transaction): a seeded mix of opted-out,
blacklisted, capped, invalid and night-time recipients is refused or held exactly as seeded, each with its
reason; texts get the account's opt-out wording; MO keywords opt numbers out and back in."""

from __future__ import annotations

import dataclasses
import random
import time
from collections import Counter
from pathlib import Path

import trio

from gateway.app import GatewayConfig, build_policy
from gateway.engine.settings import CapSettings, ComplianceSettings, WordListSettings
from gateway.store import SetBlacklist, SetOptOut
from gateway.upstream import MessageClass, SubmitRequest, SubmittedMessage

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


async def _submit(
    h: Harness, to: list[str], text: str, cls: MessageClass = MessageClass.MARKETING
) -> list[SubmittedMessage]:
    """Every recipient's answer, in order, in requests of a thousand."""
    messages: list[SubmittedMessage] = []
    async with h.client() as client:
        for k in range(0, len(to), 1000):
            request = SubmitRequest(to=tuple(to[k : k + 1000]), text=text, message_class=cls, sender="ACME")
            messages.extend((await client.submit(request)).messages)
    return messages


async def test_a_seeded_mix_is_refused_and_held_exactly_as_seeded(tmp_path: Path) -> None:
    rng = random.Random(13)
    numbers = rng.sample(range(10**8), 20_000)
    gb = [f"4477{n:08d}" for n in numbers[:16_000]]  # the harness's test prefix 4477: every one a number
    cn = [f"86138{n % 10**8:08d}" for n in numbers[16_000:19_990]]  # 22:00 in Shanghai: held
    roles = rng.sample(gb, 8_000)
    opted, listed, account_listed, capped = roles[:2_000], roles[2_000:3_500], roles[3_500:4_000], roles[4_000:]
    invalid = ["12345", "+44 1", "999999999999999", "call-me", "0", "+", "4479", "+44 (0) 20", "86", "+999 1234"]
    with trio.fail_after(120):
        async with running_gateway(tmp_path, wall_ms=_clock, configure=_compliance) as h:
            writer = h.running.engine.writer
            await writer.apply(
                [SetOptOut(n, scope="acme", source="import") for n in opted]
                + [SetBlacklist(n) for n in listed]
                + [SetBlacklist(n, scope="account:acme") for n in account_listed]
            )
            first = await _submit(h, capped, "Spring sale today only")  # each takes the day's one slot
            assert {m.state for m in first} == {"accepted"}
            everyone = gb + cn + invalid
            rng.shuffle(everyone)
            messages = await _submit(h, everyone, "Spring sale, second chance")
            # A notification still reaches those who opted out of marketing.
            notified = await _submit(h, opted, "Your parcel arrives today", MessageClass.NOTIFICATION)
            sent = next(m for m in messages if m.to in set(gb) - set(roles))
            stored = h.running.engine.store.get(int(sent.message_id))

    by_to = {m.to: m for m in messages}
    assert len(by_to) == 20_000
    reasons = Counter(m.reason for m in messages)
    assert reasons == Counter({
        None: 16_000 - 8_000, "opted_out": 2_000, "blacklisted": 2_000, "frequency_capped": 4_000,
        "outside_window": 3_990, "invalid_number": 10,
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
            assert refused.detail is not None
            assert refused.detail.startswith("opted out of account acme's marketing messages on ")
            assert refused.detail.endswith(" by the reply 'TD 谢谢'")
            h.sim.inject_mo("basta!", source="447911100003", destination="ACME")  # the account's own keyword
            h.sim.inject_mo("start", source=number, destination="ACME")
            async with h.client() as client:
                await collect_mo(client, 3)
            assert store.opt_out(number, "acme") is None
            assert store.opt_out("447911100003", "acme") is not None
            # A sub-number of the account's address is the account's; an address no account has opts out of
            # every account (a STOP is never lost to a guess).
            h.sim.inject_mo("TD", source="447911100004", destination="ACME0042")
            h.sim.inject_mo("STOP", source="447911100005", destination="10690000")
            async with h.client() as client:
                await collect_mo(client, 5)
            assert store.opt_out("447911100004", "acme") is not None
            assert store.opt_out("447911100005", "") is not None
            assert store.opt_out("447911100005", "acme") is None
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


async def test_the_account_edits_its_lists_and_the_accept_sees_them(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with running_gateway(tmp_path, wall_ms=_clock, configure=_compliance) as h, h.client() as client:
            added = await client.lists("optout", "add", ["+44 7911 100010", "447911100011", "call-me"])
            assert [(e.number, e.listed, e.reason) for e in added.entries] == [
                ("447911100010", True, None), ("447911100011", True, None), (None, False, "invalid_number"),
            ]  # fmt: skip
            assert added.entries[0].source == "api"
            (refused,) = await _submit(h, ["447911100010"], "Winter sale")
            assert refused.reason == "opted_out"
            (notified,) = await _submit(h, ["447911100010"], "Your parcel", MessageClass.NOTIFICATION)
            assert notified.state == "accepted"
            await client.lists("optout", "remove", ["07911 100010"])  # national: the account's region
            (again,) = await _submit(h, ["447911100010"], "Winter sale")
            assert again.state == "accepted"
            checked = await client.lists("optout", "check", ["447911100010", "447911100011"])
            assert [e.listed for e in checked.entries] == [False, True]
            await client.lists("blacklist", "add", ["447911100012"])
            (listed,) = await _submit(h, ["447911100012"], "Your parcel", MessageClass.NOTIFICATION)
            assert (listed.reason, listed.detail) == ("blacklisted", "on account acme's blacklist")
            # The CLI streams a CSV in and the whole list out, a thousand at a time.
            csv_file = tmp_path / "optouts.csv"
            csv_file.write_text("number,added\n" + "".join(f"+4479112{n:05d},2026-01-01\n" for n in range(2500)))
            code, out = await trio.to_thread.run_sync(_ctl, h, ["optout", "import", str(csv_file)])
            assert code == 0
            assert "2,500 listed, 0 refused" in out
            code, out = await trio.to_thread.run_sync(_ctl, h, ["optout", "export"])
            rows = out.splitlines()
            assert rows[0] == "number,at,source,note"
            assert len(rows) == 1 + 2500 + 1  # and 447911100011
            assert rows[1].startswith("447911100011,")
            page = await client.lists("optout", "page", after="447911202498", limit=5)
            assert [e.number for e in page.entries] == ["447911202499"]
            assert page.next is None


def _ctl(h: Harness, argv: list[str]) -> tuple[int, str]:
    """gatewayctl's command on a blocking client of the running gateway; (exit code, what it printed)."""
    import contextlib
    import io

    from gateway.ctl.main import _parser, _run
    from gateway.upstream.blocking import BlockingClient

    from .harness import SECRET

    out = io.StringIO()
    with (
        BlockingClient.connect_unix(h.running.socket_path, account="acme", secret=SECRET, timeout=30) as client,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        code = _run(_parser().parse_args(argv), client)
    return code, out.getvalue()


async def test_a_held_message_is_checked_again_when_its_window_opens(tmp_path: Path) -> None:
    """Held for the night in Shanghai, then: one number opts out, and a reload narrows the window. When the
    window opens the opted-out one ends failed (opted_out), the other waits for the narrower window."""
    shift = [0]

    def clock() -> int:
        return _clock() + shift[0]

    opted, other = "8613800138111", "8613800138222"
    with trio.fail_after(60):
        async with running_gateway(tmp_path, wall_ms=clock, configure=_compliance) as h, h.client() as client:
            held = await _submit(h, [opted, other], "Spring sale")
            assert {m.state for m in held} == {"scheduled"}
            (waiting,) = await client.status(message_id=held[1].message_id)
            assert waiting.due_at == 1_800_061_200.0  # 2027-01-16T01:00:00Z: 09:00 in Shanghai
            await client.lists("optout", "add", [opted])
            engine = h.running.engine
            compliance = h.gateway.cfg.compliance
            assert compliance is not None
            narrowed = build_policy(
                dataclasses.replace(h.gateway.cfg, compliance=dataclasses.replace(compliance, window="10:00-21:00"))
            )
            assert narrowed is not None
            engine.set_policy(narrowed)  # as a SIGHUP does
            shift[0] = 11 * 3_600_000 + 60_000  # 01:01Z: 09:01 in Shanghai, the old window's opening
            engine.wake()
            finals, _ = await collect_final_events(client, {held[0].message_id})
            assert (finals[held[0].message_id].kind, finals[held[0].message_id].reason) == ("failed", "opted_out")
            (status,) = await client.status(message_id=held[1].message_id)
            assert status.state == "scheduled"  # held again, until 10:00 in Shanghai
            shift[0] = 12 * 3_600_000 + 60_000  # 02:01Z: 10:01 in Shanghai
            engine.wake()
            async with h.client() as second:
                finals, _ = await collect_final_events(second, {held[1].message_id})
            assert finals[held[1].message_id].kind == "delivered"
