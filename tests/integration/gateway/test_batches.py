"""Templates and batches end to end (docs/protocol.md, `account`): an account submits a template, the operator
approves it, the account makes a batch, streams its recipients in chunks (one chunk sent twice, as after a
lost answer), sends it, and the report and details agree with what was seeded: opted out, invalid numbers,
a missing value, a value with a symbol, the rest delivered with their own rendered text. A recurring batch on
a wall clock the test moves: a run at each occurrence, stop between runs, none after its end."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import trio

from gateway.engine import batches as batches_module
from gateway.errors import StoreError
from gateway.sim.config import IdFormat as SimIdFormat
from gateway.sim.config import ReceiptOutcome, SimConfig
from gateway.sim.server import Simulator
from gateway.store import SetBlacklist, SetOptOut, records
from gateway.store.ops import PutBatch, TopUp
from gateway.upstream import BlockingClient, MessageClass, SubmitRequest, UpstreamError
from gateway.upstream.schema import OPERATOR

from .harness import SIM_PASSWORD, Harness, running_gateway

TEXT = "Hi {name}, your coupon {coupon} is ready at Acme. Reply STOP to opt out"
T0 = 1_796_371_200_000  # 2026-12-04T00:00:00Z


def operator(h: Harness, command: str, **args: Any) -> dict[str, Any]:
    admin = h.running.admin_socket
    assert admin is not None
    with BlockingClient.connect_unix(admin, account=OPERATOR, secret="-") as client:
        return client.admin(command, **args)


async def wait_for(h: Harness, batch_id: str, done: Any, within: float = 30) -> dict[str, Any]:
    """The batch's report once `done(report)` holds, asking as the account does (within `within` s)."""
    with trio.fail_after(within):
        async with h.client() as client:
            while True:
                report = await client.account("batch", action="show", batch_id=batch_id)
                if done(report):
                    return report
                await trio.sleep(0.05)


def rows(first: int, count: int) -> list[dict[str, Any]]:
    return [{"to": f"4477009{first + i:05d}", "vars": {"name": f"N{first + i}", "coupon": f"C{first + i}"}}
            for i in range(count)]  # fmt: skip


async def test_a_template_batch_reports_what_was_seeded(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with running_gateway(tmp_path) as h:
            engine = h.running.engine
            async with h.client() as client:
                made = await client.account("template", action="create", template_id="coupon", text=TEXT)
                assert (made["state"], made["variables"]) == ("pending", ["name", "coupon"])
                for bad, reason in (("Hi {name}", "template_only_variable"), ("你好{0}", "template_bad_variable"),
                                    ("Your ★ coupon {coupon} is ready at Acme", "template_symbol")):  # fmt: skip
                    with pytest.raises(UpstreamError) as refused:
                        await client.account("template", action="create", template_id="bad", text=bad)
                    assert refused.value.field == "args.text"
                    assert refused.value.message.startswith(reason)
                with pytest.raises(UpstreamError) as refused:  # an account does not approve its own
                    await client.account("template", action="approve", template_id="coupon")
                assert refused.value.field == "args.action"
                with pytest.raises(UpstreamError) as refused:  # not approved yet
                    await client.account("batch", action="create", batch_id="spring", template="coupon",
                                         sender="ACME")  # fmt: skip
                assert refused.value.field == "args.template"

            approved = await trio.to_thread.run_sync(
                lambda: operator(h, "template", action="approve", account="acme", template_id="coupon")
            )
            assert approved["state"] == "approved"
            async with h.client() as client:  # the same create again (its answer lost) keeps the review
                again = await client.account("template", action="create", template_id="coupon", text=TEXT)
                assert again["state"] == "approved"

            opted = ["447700900003", "447700900017"]
            await engine.writer.apply([SetOptOut(n, scope="acme", source="import") for n in opted])

            async with h.client() as client:
                created = await client.account("batch", action="create", batch_id="spring", template="coupon",
                                               sender="ACME")  # fmt: skip
                assert (created["state"], created["recipients"]) == ("draft", 0)
                again = await client.account("batch", action="create", batch_id="spring", template="coupon",
                                             sender="ACME")  # fmt: skip
                assert again["state"] == "draft"  # the same create again is answered, not refused
                chunk = rows(0, 20)
                chunk[5] = {"to": "not-a-number", "vars": {"name": "X", "coupon": "Y"}}
                chunk[8] = {"to": "447700900008", "vars": {"name": "no coupon"}}
                chunk[11] = {"to": "447700900011", "vars": {"name": "【Fake】", "coupon": "C"}}
                await client.account("batch", action="add", batch_id="spring", first=0, rows=chunk)
                await client.account("batch", action="add", batch_id="spring", first=20, rows=rows(20, 20))
                await client.account("batch", action="add", batch_id="spring", first=20, rows=rows(20, 20))  # again
                filled = await client.account("batch", action="add", batch_id="spring", first=40, rows=rows(40, 10))
                assert filled["recipients"] == 50
                sent = await client.account("batch", action="send", batch_id="spring")
                assert sent["state"] in ("pending", "sending", "done")
                with pytest.raises(UpstreamError) as refused:  # no recipient is added once it is sent
                    await client.account("batch", action="add", batch_id="spring", first=50, rows=rows(50, 1))
                assert str(refused.value.code) == "invalid_request"

            report = await wait_for(h, "spring", lambda r: r["batch"]["state"] == "done")
            assert report["targeted"] == 50
            assert report["refused_by_reason"] == {
                "invalid_number": 1, "opted_out": 2, "template_bad_value": 1, "template_variable_missing": 1,
            }  # fmt: skip
            assert (report["valid"], report["delivered"], report["failed"]) == (45, 45, 0)
            assert report["batch"]["runs"] == 1
            assert report["batch"]["run_ids"] == ["spring"]

            async with h.client() as client:
                page = await client.account("batch", action="details", batch_id="spring", outcome="delivered",
                                            limit=1000)  # fmt: skip
            delivered = page["recipients"]
            assert len(delivered) == 45
            for row in delivered:  # each recipient got its own text
                m = engine.store.get(int(row["message_id"]))
                assert m is not None
                n = int(row["to"][-5:])
                assert m.text.startswith(f"Hi N{n}, your coupon C{n} is ready")
            # The run's chunks are idempotent: sending again changes nothing.
            async with h.client() as client:
                made = await client.account("batch", action="create", batch_id="spring", template="coupon",
                                            sender="ACME")  # fmt: skip
                assert made["state"] == "done"  # a create whose answer was lost, sent again after the send
                await client.account("batch", action="send", batch_id="spring")
            assert (await wait_for(h, "spring", lambda r: True))["targeted"] == 50

            # A batch none of whose recipients could be sent to has failed, and says why.
            async with h.client() as client:
                await client.account("batch", action="create", batch_id="lost", template="coupon", sender="ACME")
                await client.account("batch", action="add", batch_id="lost",
                                     rows=[{"to": n, "vars": {"name": "A", "coupon": "B"}} for n in opted])  # fmt: skip
                await client.account("batch", action="send", batch_id="lost")
            lost = await wait_for(h, "lost", lambda r: r["batch"]["state"] in ("done", "failed"))
            assert lost["refused_by_reason"] == {"opted_out": 2}
            assert (lost["batch"]["state"], lost["batch"]["reason"]) == ("failed", "no recipient was delivered")


async def test_a_recurring_batch_runs_at_each_occurrence_until_stopped(tmp_path: Path) -> None:
    now = [T0]
    with trio.fail_after(120):
        async with running_gateway(tmp_path, wall_ms=lambda: now[0]) as h:
            batches = h.running.engine.backend.batches

            async def move_to(ms: int) -> None:
                now[0] = ms
                batches.wake()

            async with h.client() as client:
                await client.account("batch", action="create", batch_id="weekly", text="Acme weekly deals",
                                     sender="ACME", **{"class": "notification"}, every="daily",
                                     at=(T0 + 3_600_000) / 1000, until=(T0 + 3 * 86_400_000 + 3_600_000) / 1000,
                                     time_zone="Asia/Shanghai")  # fmt: skip
                await client.account("batch", action="add", batch_id="weekly", rows=["447700900001", "447700900002"])
                sent = await client.account("batch", action="send", batch_id="weekly")
                assert (sent["state"], sent["next_run_at"]) == ("pending", (T0 + 3_600_000) / 1000)

            await move_to(T0 + 3_600_000)
            report = await wait_for(h, "weekly", lambda r: r["batch"]["runs"] == 1 and r["delivered"] == 2)
            assert report["batch"]["next_run_at"] == (T0 + 86_400_000 + 3_600_000) / 1000
            await move_to(T0 + 86_400_000 + 3_600_000)
            report = await wait_for(h, "weekly", lambda r: r["batch"]["runs"] == 2 and r["delivered"] == 4)
            assert report["batch"]["run_ids"] == ["weekly#1", "weekly#2"]
            async with h.client() as client:
                run = await client.account("batch", action="show", batch_id="weekly#2")
                assert (run["targeted"], run["delivered"]) == (2, 2)  # each run reported on its own

                stopped = await client.account("batch", action="stop", batch_id="weekly")
                assert (stopped["state"], stopped["next_run_at"]) == ("stopped", None)
                await client.account("batch", action="create", batch_id="a-draft", text="Acme draft deals",
                                     sender="ACME")  # fmt: skip
                listed = await client.account("batch", action="list")
                # Made batches (a draft too) with their definitions, and each run with its own counters.
                assert [b["batch_id"] for b in listed["batches"]] == ["a-draft", "weekly", "weekly#1", "weekly#2"]
                assert [(b.get("batch") or {}).get("state") for b in listed["batches"]] == [
                    "draft", "stopped", None, None
                ]  # fmt: skip
                assert [b["targeted"] for b in listed["batches"]] == [0, 4, 2, 2]
                page = await client.account("batch", action="list", limit=2)
                assert page["next"] == "weekly"
                rest = await client.account("batch", action="list", batch_id=page["next"])
                assert [b["batch_id"] for b in rest["batches"]] == ["weekly#1", "weekly#2"]
            await move_to(T0 + 2 * 86_400_000 + 3_600_000)
            await trio.sleep(0.5)
            report = await wait_for(h, "weekly", lambda r: True)
            assert (report["batch"]["runs"], report["targeted"]) == (2, 4)  # no run after the stop

            # A batch whose until ends the runs: its last run, then done.
            async with h.client() as client:
                await client.account("batch", action="create", batch_id="short", text="Acme short deals",
                                     sender="ACME", **{"class": "notification"}, every="daily",
                                     at=(T0 + 3 * 86_400_000) / 1000, until=(T0 + 4 * 86_400_000) / 1000)  # fmt: skip
                await client.account("batch", action="add", batch_id="short", rows=["447700900003"])
                await client.account("batch", action="send", batch_id="short")
            await move_to(T0 + 3 * 86_400_000)
            await wait_for(h, "short", lambda r: r["batch"]["runs"] == 1 and r["delivered"] == 1)
            await move_to(T0 + 4 * 86_400_000)
            report = await wait_for(h, "short", lambda r: r["batch"]["state"] == "done" and r["delivered"] == 2)
            assert (report["batch"]["runs"], report["batch"]["next_run_at"]) == (2, None)


async def test_a_chunk_submitted_again_after_a_failed_cursor_write_is_not_sent_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The crash window of a run: a chunk committed, the cursor not moved past it (it moves with the next
    chunk), and the answer lost. The run tries the chunk again; its client_ref makes the store answer it as
    a duplicate, so each recipient is counted and sent once."""

    monkeypatch.setattr(batches_module, "CHUNK", 5)
    monkeypatch.setattr(batches_module, "RETRY_SECONDS", 0.05)
    with trio.fail_after(60):
        async with running_gateway(tmp_path) as h:
            batches = h.running.engine.backend.batches
            real_apply = batches._ctx.apply
            failed: list[int] = []

            async def apply(ops: Any) -> Any:
                results = await real_apply(ops)
                if not failed and moves_cursor_to(ops, 10):  # with the third chunk
                    failed.append(1)
                    return [StoreError("the writer's answer was lost")] * len(ops)
                return results

            monkeypatch.setattr(batches, "_ctx", _Proxy(batches._ctx, apply))
            async with h.client() as client:
                await client.account("batch", action="create", batch_id="b", text="Acme news for you",
                                     sender="ACME", **{"class": "notification"})  # fmt: skip
                await client.account("batch", action="add", batch_id="b", rows=[r["to"] for r in rows(0, 17)])
                await client.account("batch", action="send", batch_id="b")
            report = await wait_for(h, "b", lambda r: r["batch"]["state"] == "done" and r["delivered"] == 17)
            assert failed == [1]
            assert (report["targeted"], report["valid"], report["submitted"]) == (17, 17, 17)
            assert batches.failed_runs == 1


def moves_cursor_to(ops: Any, cursor: int) -> bool:
    """Whether a group is a run's commit of a chunk with the position before it (engine/batches.py `_run`),
    that position being `cursor`."""
    return len(ops) == 2 and isinstance(ops[0], PutBatch) and records.unpack_batch_def(ops[0].packed).cursor == cursor


class _Proxy:
    """The engine context with its apply replaced (the context is a slotted class)."""

    def __init__(self, ctx: Any, apply: Any) -> None:
        self._ctx = ctx
        self.apply = apply

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)


async def test_a_batch_of_20000_reports_exactly_what_was_seeded(tmp_path: Path) -> None:
    """20,000 recipients of a two-variable template: opted out, blacklisted, invalid numbers, a missing value,
    a range the carrier refuses, and receipts that fail with two err: codes the carrier's table maps. The
    report, the details paged through, and the balance agree with each other and with the seed."""
    n = 20_000
    sim = SimConfig(
        credentials=(("gw", SIM_PASSWORD),), id_format=SimIdFormat.HEX, seed=11,
        destination_errors=(("44770200", 0x0B),),  # ESME_RINVDSTADR for 1000 of them
        receipt_mix=(ReceiptOutcome("DELIVRD", 0, 8.0), ReceiptOutcome("UNDELIV", 1, 1.0),
                     ReceiptOutcome("UNDELIV", 11, 1.0)),
    )  # fmt: skip

    def configure(cfg: Any) -> Any:
        table = {"001": "absent_subscriber", "011": "carrier_blacklisted"}
        return dataclasses.replace(cfg, carriers=(dataclasses.replace(cfg.carriers[0], failure_reasons=table),))

    numbers = [f"4477010{i:05d}" for i in range(n - 1000)] + [f"44770200{i:04d}" for i in range(1000)]
    opted, listed = numbers[100:600], numbers[700:1000]
    bad_numbers = set(range(1000, 1200))
    missing = set(range(1200, 1300))
    with trio.fail_after(240):
        async with running_gateway(tmp_path, sim_config=sim, configure=configure) as h:
            engine = h.running.engine
            await engine.writer.apply([SetOptOut(x, scope="acme", source="import") for x in opted])
            await engine.writer.apply([SetBlacklist(x, scope="", source="import") for x in listed])
            await engine.top_up(TopUp("acme", 25_000, "order 1"))
            async with h.client() as client:
                await client.account("template", action="create", template_id="t", text=TEXT)  # marketing
                await trio.to_thread.run_sync(
                    lambda: operator(h, "template", action="approve", account="acme", template_id="t")
                )
                await client.account("batch", action="create", batch_id="big", template="t", sender="ACME")
                for first in range(0, n, 1000):
                    chunk = [
                        {"to": "bad-" + str(i) if i in bad_numbers else numbers[i],
                         "vars": {"name": f"N{i}"} if i in missing else {"name": f"N{i}", "coupon": f"C{i}"}}
                        for i in range(first, first + 1000)
                    ]  # fmt: skip
                    await client.account("batch", action="add", batch_id="big", first=first, rows=chunk)
                await client.account("batch", action="send", batch_id="big")
            report = await wait_for(h, "big", lambda r: r["batch"]["state"] == "done", within=180)

            refused = {"opted_out": 500, "blacklisted": 300, "invalid_number": 200, "template_variable_missing": 100}
            assert report["targeted"] == n
            assert report["refused_by_reason"] == refused
            valid = n - sum(refused.values())
            assert report["valid"] == valid
            assert report["delivered"] + report["failed"] == valid
            by_reason = {f["reason"]: f["count"] for f in report["failed_by_reason"]}
            assert by_reason["carrier_rejected:ESME_RINVDSTADR"] == 1000
            assert set(by_reason) == {"carrier_rejected:ESME_RINVDSTADR", "undeliverable:001", "undeliverable:011"}
            assert report["failed_by_category"] == {
                "invalid_number": 1000, "absent_subscriber": by_reason["undeliverable:001"],
                "carrier_blacklisted": by_reason["undeliverable:011"],
            }  # fmt: skip
            # The receipt mix is 8:1:1 over the 17,900 the carrier took: both failures are there in number.
            assert 1000 < by_reason["undeliverable:001"] < 2600
            assert (report["waiting_receipt"], report["in_progress"]) == (0, 0)

            # Every recipient's row, paged through by outcome, agrees with the counters.
            seen: dict[str, int] = {}
            async with h.client() as client:
                for outcome in ("delivered", "failed", "refused"):
                    after = None
                    while True:
                        page = await client.account("batch", action="details", batch_id="big", outcome=outcome,
                                                    after=after, limit=1000)  # fmt: skip
                        for row in page["recipients"]:
                            key = outcome if outcome == "delivered" else row["reason"]
                            seen[key] = seen.get(key, 0) + 1
                        after = page["next"]
                        if after is None:
                            break
                balance = await client.account("balance", action="show")
            assert seen == {"delivered": report["delivered"], **refused, **by_reason}
            # One part each: the balance was charged the delivered parts, and nothing stays reserved.
            assert report["parts_charged"] == report["delivered"]
            assert (balance["charged"], balance["reserved"]) == (report["delivered"], 0)
            assert balance["available"] == 25_000 - report["delivered"]


async def test_marketing_from_a_templated_account_goes_only_from_an_approved_template(tmp_path: Path) -> None:
    def configure(cfg: Any) -> Any:
        acme = dataclasses.replace(cfg.accounts[0], template_classes=("marketing",))
        return dataclasses.replace(cfg, accounts=(acme,))

    with trio.fail_after(60):
        async with running_gateway(tmp_path, configure=configure) as h, h.client() as client:
            with pytest.raises(UpstreamError) as refused:
                await client.submit(SubmitRequest(("447700900001",), "Big sale at Acme. Reply STOP to opt out",
                                                  MessageClass.MARKETING, "ACME"))  # fmt: skip
            assert (str(refused.value.code), refused.value.field) == ("invalid_request", "class")
            assert refused.value.message.startswith("template_required")
            with pytest.raises(UpstreamError) as refused:
                await client.account("batch", action="create", batch_id="b", text="Big sale", sender="ACME")
            assert refused.value.message.startswith("template_required")
            done = await client.submit(SubmitRequest(("447700900001",), "Your parcel is on its way",
                                                     MessageClass.NOTIFICATION, "ACME"))  # fmt: skip
            assert done.messages[0].state == "accepted"  # other classes as before

            await client.account("template", action="create", template_id="t", text=TEXT)
            shown = await client.account("template", action="preview", template_id="t",
                                         vars={"name": "Ann", "coupon": "A-17"})  # fmt: skip
            assert shown["text"] == "Hi Ann, your coupon A-17 is ready at Acme. Reply STOP to opt out"
            assert (shown["encoding"], shown["parts"], shown["reason"]) == ("gsm7", 1, None)
            with pytest.raises(UpstreamError) as refused:
                await client.account("template", action="preview", template_id="t", vars={"name": "Ann"})
            assert refused.value.field == "args.vars"
            assert refused.value.message.startswith("template_variable_missing")


async def test_receipts_that_come_after_a_restart_complete_the_report(tmp_path: Path) -> None:
    """The gateway stops while every message of a batch waits for its receipt; the next gateway on the same
    store binds to the same SMSC, which delivers them then: the report, the details and the balance end
    exactly as if nothing had happened."""
    n = 1000
    sim = Simulator(SimConfig(
        credentials=(("gw", SIM_PASSWORD),), id_format=SimIdFormat.HEX, seed=3, receipt_delay_seconds=4.0,
        receipt_mix=(ReceiptOutcome("DELIVRD", 0, 9.0), ReceiptOutcome("UNDELIV", 1, 1.0)),
    ))  # fmt: skip
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(sim.serve, "127.0.0.1", 0)
            async with running_gateway(tmp_path, simulator=(sim, port)) as h:
                await h.running.engine.top_up(TopUp("acme", 5000, "order 1"))
                async with h.client() as client:
                    await client.account("batch", action="create", batch_id="r", text=TEXT.format(name="you",
                                         coupon="X1"), sender="ACME")  # fmt: skip
                    await client.account("batch", action="add", batch_id="r",
                                         rows=[f"4477011{i:05d}" for i in range(n)])  # fmt: skip
                    await client.account("batch", action="send", batch_id="r")
                before = await wait_for(h, "r", lambda r: r["submitted"] == n)
                assert before["delivered"] + before["failed"] < n  # receipts still to come
            async with running_gateway(tmp_path, simulator=(sim, port)) as h:
                report = await wait_for(h, "r", lambda r: r["batch"]["state"] == "done")
                async with h.client() as client:
                    balance = await client.account("balance", action="show")
                    page = await client.account("batch", action="details", batch_id="r", outcome="failed",
                                                limit=1000)  # fmt: skip
            nursery.cancel_scope.cancel()
    assert (report["targeted"], report["valid"], report["submitted"], report["waiting_receipt"]) == (n, n, n, 0)
    assert report["delivered"] + report["failed"] == n
    assert report["failed_by_reason"] == [
        {"carrier": "sim", "reason": "undeliverable:001", "category": "no_reason", "count": report["failed"]}
    ]
    assert len(page["recipients"]) == report["failed"] > 0
    assert (balance["charged"], balance["reserved"], balance["available"]) == (
        report["delivered"], 0, 5000 - report["delivered"]
    )  # fmt: skip


async def test_a_stop_mid_run_ends_the_run_and_cancels_what_no_carrier_has(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop that lands while the run's third chunk commits: no chunk after it, the third chunk's messages
    that no carrier has yet cancelled, what went out still reported."""
    monkeypatch.setattr(batches_module, "CHUNK", 5)
    with trio.fail_after(60):
        async with running_gateway(tmp_path) as h:
            batches = h.running.engine.backend.batches
            real_apply = batches._ctx.apply
            stopped: list[int] = []

            async def apply(ops: Any) -> Any:
                if not stopped and moves_cursor_to(ops, 10):
                    stopped.append(await batches.stop("acme", "b"))  # the operator's stop, just before
                return await real_apply(ops)

            monkeypatch.setattr(batches, "_ctx", _Proxy(batches._ctx, apply))
            async with h.client() as client:
                await client.account("batch", action="create", batch_id="b", text="Acme news for you",
                                     sender="ACME", **{"class": "notification"})  # fmt: skip
                await client.account("batch", action="add", batch_id="b", rows=[r["to"] for r in rows(0, 40)])
                await client.account("batch", action="send", batch_id="b")
            report = await wait_for(h, "b", lambda r: r["batch"]["state"] == "stopped" and not r["in_progress"])
            assert len(stopped) == 1
            # Three chunks were stored (the third with the stop's revision refused: it committed in the
            # same transaction), none after.
            assert report["targeted"] == 15
            cancelled = report["failed_by_category"].get("cancelled", 0)
            assert report["delivered"] + cancelled == 15
            assert cancelled >= 1  # the third chunk's, queued when the stop came, at least
            assert report["batch"]["runs"] == 1
