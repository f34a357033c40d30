"""gatewayctl's batch reports and balances against a running gateway: an account with a small balance
submits a batch, one recipient is refused for want of parts, one is cancelled, two are delivered; every
report, page, export and statement agrees with that (docs/admin.md, "batch" and "balance")."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from gateway.admin.reports import CSV_COLUMNS
from gateway.ctl.main import main as ctl_main
from gateway.upstream import BlockingClient, MessageClass, SubmitRequest, UpstreamError
from gateway.upstream.schema import OPERATOR

from .harness import Harness, collect_final_events, ctl, ctl_json, running_gateway

BATCH = "spring-sale"




async def _submit_batch(h: Harness) -> tuple[str, list[str], str]:
    """With 3 parts: one recipient scheduled for later (reserves 1), then three now: two reserve the last
    two parts, the third is refused insufficient_balance. The scheduled one is cancelled (its part
    released). Returns (the cancelled id, the two delivered ids, the refused id) once all three ended."""
    async with h.client() as client:
        later = await client.submit(SubmitRequest(("447700900100",), "later", MessageClass.NOTIFICATION, "ACME",
                                                  schedule_at=time.time() + 3600, batch_id=BATCH))  # fmt: skip
        now = await client.submit(SubmitRequest(("447700900101", "447700900102", "447700900103"), "hello",
                                                MessageClass.NOTIFICATION, "ACME", batch_id=BATCH))  # fmt: skip
        (cancelled,) = [m.message_id for m in later.messages]
        assert [(m.state, m.reason) for m in now.messages] == [
            ("accepted", None), ("accepted", None), ("rejected", "insufficient_balance")
        ]  # fmt: skip
        await client.cancel(message_id=cancelled)
    delivered = [m.message_id for m in now.messages[:2]]
    async with h.client() as client:
        finals, _ = await collect_final_events(client, {cancelled, *delivered})
    assert {i: finals[i].kind for i in finals} == {cancelled: "failed", delivered[0]: "delivered",
                                                    delivered[1]: "delivered"}  # fmt: skip
    return cancelled, delivered, now.messages[2].message_id


async def test_a_batch_report_agrees_with_what_was_sent(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with running_gateway(tmp_path) as h:
            code, out, _ = await ctl(h, "balance", "topup", "--account", "acme", "3", "--note", "first order")
            assert code == 0
            assert "balance of acme" in out
            code, bal = await ctl_json(h, "balance", "show", "--account", "acme")
            assert code == 0
            assert bal == {"account": "acme", "limited": True, "available": 3, "reserved": 0, "charged": 0}
            code, out, _ = await ctl(h, "balance", "show", "-a", "acme")
            assert code == 0
            assert "available" in out
            assert "3" in out

            cancelled, delivered, refused = await _submit_batch(h)

            code, report = await ctl_json(h, "batch", "show", BATCH, "--account", "acme")
            assert code == 0
            assert report["account"] == "acme"
            assert report["batch_id"] == BATCH
            assert (report["targeted"], report["valid"], report["refused"]) == (4, 3, 1)
            assert report["refused_by_reason"] == {"insufficient_balance": 1}
            assert (report["submitted"], report["delivered"], report["failed"]) == (2, 2, 1)
            assert report["failed_by_category"] == {"cancelled": 1}
            assert [(f["reason"], f["category"], f["count"]) for f in report["failed_by_reason"]] == [
                ("cancelled", "cancelled", 1)
            ]
            assert (report["waiting_receipt"], report["in_progress"]) == (0, 0)
            assert (report["parts_billed"], report["parts_charged"]) == (2, 2)
            code, out, _ = await ctl(h, "batch", "show", BATCH, "--account", "acme")
            assert code == 0
            for section in ("refused at accept, by reason", "insufficient_balance", "failed, by category",
                            "failure reasons as the carriers gave them"):  # fmt: skip
                assert section in out

            code, listed = await ctl_json(h, "batch", "list", "--account", "acme")
            assert code == 0
            assert [b["batch_id"] for b in listed["batches"]] == [BATCH]
            assert listed["batches"][0]["delivered"] == 2
            assert listed["next"] is None
            code, out, _ = await ctl(h, "-a", "acme", "batch", "list")  # the top-level -a names it too
            assert code == 0
            assert BATCH in out
            assert "1 batch(es) of acme" in out

            code, page = await ctl_json(h, "batch", "details", BATCH, "--account", "acme", "--outcome", "refused")
            assert code == 0
            (row,) = page["recipients"]
            assert (row["message_id"], row["to"], row["state"], row["reason"]) == (
                refused, "447700900103", "refused", "insufficient_balance"
            )  # fmt: skip
            assert page["next"] is None
            code, out, _ = await ctl(h, "batch", "details", BATCH, "--account", "acme", "--outcome", "failed",
                                     "--reason", "cancel")  # fmt: skip
            assert code == 0
            assert cancelled in out
            assert "1 recipient(s)" in out

            # A page of one, then the next page from the --after it printed.
            code, first = await ctl_json(h, "batch", "details", BATCH, "--account", "acme", "--limit", "1")
            assert [r["message_id"] for r in first["recipients"]] == [cancelled]  # id (acceptance) order
            assert first["next"] == cancelled
            code, out, _ = await ctl(h, "batch", "details", BATCH, "--account", "acme", "--limit", "1")
            assert f"(next: --after {cancelled})" in out
            code, second = await ctl_json(h, "batch", "details", BATCH, "--account", "acme", "--limit", "1",
                                          "--after", first["next"])  # fmt: skip
            assert [r["message_id"] for r in second["recipients"]] == [delivered[0]]

            code, out, err = await ctl(h, "batch", "export", BATCH, "--account", "acme")
            assert code == 0
            rows = list(csv.DictReader(io.StringIO(out)))
            assert tuple(rows[0]) == CSV_COLUMNS
            assert [r["message_id"] for r in rows] == [cancelled, *delivered, refused]  # one row a recipient
            assert [r["state"] for r in rows] == ["failed", "delivered", "delivered", "refused"]
            assert rows[0]["category"] == "cancelled"
            assert rows[1]["final_at"]
            assert rows[3]["carrier"] == ""  # nil: an empty cell
            assert "4 recipient(s)" in err
            target = tmp_path / "failed.csv"
            code, out, _ = await ctl(h, "batch", "export", BATCH, "--account", "acme", "--outcome", "delivered",
                                     "-o", str(target))  # fmt: skip
            assert code == 0
            assert out == ""
            with target.open(newline="") as f:
                assert [r["to"] for r in csv.DictReader(f)] == ["447700900101", "447700900102"]
            code, out, _ = await ctl(h, "batch", "export", BATCH, "--account", "acme", json_out=True)
            assert code == 0
            assert [json.loads(line)["message_id"] for line in out.splitlines()] == [cancelled, *delivered, refused]

            code, bal = await ctl_json(h, "balance", "statement", "--account", "acme")
            assert code == 0
            assert (bal["available"], bal["reserved"], bal["charged"]) == (1, 0, 2)
            moved = {key: sum(e[key] for e in bal["statement"]) for key in ("reserved", "charged", "released",
                                                                            "topped_up")}  # fmt: skip
            assert moved == {"reserved": 3, "charged": 2, "released": 1, "topped_up": 3}
            assert "first order" in [e["note"] for e in bal["statement"]]
            code, later = await ctl_json(h, "balance", "statement", "--account", "acme", "--since",
                                         str(int(time.time()) + 3600))  # fmt: skip
            assert later["statement"] == []
            code, out, _ = await ctl(h, "balance", "statement", "--account", "acme")
            assert code == 0
            assert "statement" in out
            assert "first order" in out
            code, out, _ = await ctl(h, "balance", "statement", "--account", "acme", "--limit", "1")
            assert f"(next: --since {bal['statement'][0]['at'] + 1})" in out  # a full page: where the next starts

            code, bal = await ctl_json(h, "balance", "topup", "--account", "acme", "-1")  # negative: taken back
            assert code == 0
            assert bal["available"] == 0
            code, _, stderr = await ctl(h, "balance", "topup", "--account", "acme", "-5")  # more than there is
            assert code == 1
            assert "cannot take back 5 parts" in stderr
            code, bal = await ctl_json(h, "balance", "show", "--account", "acme")
            assert bal["available"] == 0  # nothing changed

            # The account reads the same report and balance itself, on its own connection (op account).
            async with h.client() as client:
                own = await client.account("batch", action="show", batch_id=BATCH)
                assert own == report
                page = await client.account("batch", action="details", batch_id=BATCH, outcome="delivered")
                assert [r["message_id"] for r in page["recipients"]] == delivered
                mine = await client.account("balance", action="show")
                assert (mine["available"], mine["charged"]) == (0, 2)
                with pytest.raises(UpstreamError) as denied:
                    await client.account("balance", action="topup", parts=100)
                assert (str(denied.value.code), denied.value.field) == ("invalid_request", "args.action")
                with pytest.raises(UpstreamError) as denied:
                    await client.account("batch", action="list", account="other")
                assert str(denied.value.code) == "not_found"
                with pytest.raises(UpstreamError) as denied:
                    await client.account("status")
                assert (str(denied.value.code), denied.value.field) == ("invalid_request", "command")

            code, bal = await ctl_json(h, "balance", "unlimited", "--account", "acme", "--note", "paid up")
            assert code == 0
            assert (bal["limited"], bal["available"]) == (False, None)
            code, out, _ = await ctl(h, "balance", "show", "--account", "acme")
            assert "unlimited" in out


async def test_batch_and_balance_errors_exit_with_their_codes(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with running_gateway(tmp_path) as h:
            code, err = await ctl_json(h, "batch", "show", "no-such-batch", "--account", "acme")
            assert code == 1
            assert err["error"]["code"] == "not_found"
            code, _, stderr = await ctl(h, "batch", "details", "no-such-batch", "--account", "acme")
            assert code == 1
            assert "not_found" in stderr
            target = tmp_path / "none.csv"
            code, _, _ = await ctl(h, "batch", "export", "no-such-batch", "--account", "acme", "-o", str(target))
            assert code == 1
            assert not target.exists()  # no empty file left behind
            code, err = await ctl_json(h, "balance", "show", "--account", "nobody")
            assert code == 2  # an unknown account is a usage error, as for an account's commands
            assert err["error"]["code"] == "usage"
            assert "nobody" in err["error"]["message"]

            # gatewayctl names no account by default for these (a top-up of the wrong one is not undone).
            code, err = await ctl_json(h, "batch", "list")
            assert code == 2
            assert err["error"]["code"] == "usage"
            assert "--account" in err["error"]["message"]
            code, _, stderr = await ctl(h, "balance", "topup", "5")
            assert code == 2
            assert "--account" in stderr
            # The admin socket itself refuses an operator's connection that names none.
            admin = h.running.admin_socket
            assert admin is not None

            def ask(**args: Any) -> None:
                with BlockingClient.connect_unix(admin, account=OPERATOR, secret="-") as client:
                    client.admin("batch", action="list", **args)

            with pytest.raises(UpstreamError) as refused:
                await trio.to_thread.run_sync(ask)
            assert str(refused.value.code) == "invalid_request"
            assert refused.value.field == "args.account"
            with pytest.raises(UpstreamError) as refused:
                await trio.to_thread.run_sync(lambda: ask(account="nobody"))
            assert str(refused.value.code) == "not_found"

            for argv in (
                ["batch", "details", "b", "--account", "acme", "--outcome", "lost"],
                ["batch", "details", "b", "--account", "acme", "--after", "x1"],
                ["batch", "list", "--account", "acme", "--limit", "1001"],
                ["balance", "topup", "--account", "acme", "0"],
                ["balance", "topup", "--account", "acme", "5", "--note", "x" * 161],
                ["balance", "statement", "--account", "acme", "--since", "yesterday-ish"],
            ):
                code, _, stderr = await ctl(h, *argv)
                assert code == 2, argv
                assert "Traceback" not in stderr


def test_completion_names_batch_template_and_balance(capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl_main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    for command, words in (
        ("batch", ("list", "show", "details", "export", "send", "stop", "--account", "--outcome", "--reason",
                   "--output", "--batch-id", "--template", "--text", "--every", "--at", "--until", "--time-zone")),
        ("balance", ("show", "statement", "topup", "unlimited", "--note", "--since")),
        ("template", ("list", "show", "approve", "reject", "official", "delete", "--reason", "--account")),
    ):  # fmt: skip
        line = next(line for line in script.splitlines() if line.strip().startswith(f"{command})"))
        for word in words:
            assert word in line, (command, word)
