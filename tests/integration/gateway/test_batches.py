"""Templates and batches end to end (docs/protocol.md, `account`): an account submits a template, the operator
approves it, the account makes a batch, streams its recipients in chunks (one chunk sent twice, as after a
lost answer), sends it, and the report and details agree with what was seeded: opted out, invalid numbers,
a missing value, a value with a symbol, the rest delivered with their own rendered text. A recurring batch on
a wall clock the test moves: a run at each occurrence, stop between runs, none after its end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from gateway.engine import batches as batches_module
from gateway.errors import StoreError
from gateway.store import SetOptOut, records
from gateway.store.ops import PutBatch
from gateway.upstream import BlockingClient, UpstreamError
from gateway.upstream.schema import OPERATOR

from .harness import Harness, running_gateway

TEXT = "Hi {name}, your coupon {coupon} is ready at Acme. Reply STOP to opt out"
T0 = 1_796_371_200_000  # 2026-12-04T00:00:00Z


def operator(h: Harness, command: str, **args: Any) -> dict[str, Any]:
    admin = h.running.admin_socket
    assert admin is not None
    with BlockingClient.connect_unix(admin, account=OPERATOR, secret="-") as client:
        return client.admin(command, **args)


async def wait_for(h: Harness, batch_id: str, done: Any) -> dict[str, Any]:
    """The batch's report once `done(report)` holds, asking as the account does (within 30 s)."""
    with trio.fail_after(30):
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
                await client.account("batch", action="send", batch_id="spring")
            assert (await wait_for(h, "spring", lambda r: True))["targeted"] == 50


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
    """The crash window of a run: a chunk committed, the cursor not moved past it. The run tries the chunk
    again; its client_ref makes the store answer it as a duplicate, so each recipient is counted and sent
    once."""

    monkeypatch.setattr(batches_module, "CHUNK", 5)
    monkeypatch.setattr(batches_module, "RETRY_SECONDS", 0.05)
    with trio.fail_after(60):
        async with running_gateway(tmp_path) as h:
            batches = h.running.engine.backend.batches
            real_apply = batches._ctx.apply
            failed: list[int] = []

            async def apply(ops: Any) -> Any:
                moving = len(ops) == 1 and isinstance(ops[0], PutBatch) and not failed
                if moving and records.unpack_batch_def(ops[0].packed).cursor == 10:  # after the second chunk
                    failed.append(1)
                    return [StoreError("disk went away")]
                return await real_apply(ops)

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


class _Proxy:
    """The engine context with its apply replaced (the context is a slotted class)."""

    def __init__(self, ctx: Any, apply: Any) -> None:
        self._ctx = ctx
        self.apply = apply

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)
