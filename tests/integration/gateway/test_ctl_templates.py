"""gatewayctl's templates and batches made from a CSV against a running gateway: an account's template is
listed, shown and approved; a CSV of five recipients is sent with it and each gets its own text; the same
command again changes nothing; a batch scheduled an hour ahead is stopped; and the command lines a gateway
would refuse exit with their codes (docs/admin.md, "gatewayctl")."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio

from gateway.upstream import BlockingClient
from gateway.upstream.schema import OPERATOR

from .harness import Harness, ctl, ctl_json, running_gateway

TEXT = "Hi {name}, your coupon {coupon} is ready at Acme. Reply STOP to opt out"


def operator(h: Harness, command: str, **args: Any) -> dict[str, Any]:
    admin = h.running.admin_socket
    assert admin is not None
    with BlockingClient.connect_unix(admin, account=OPERATOR, secret="-") as client:
        return client.admin(command, **args)


async def create_template(h: Harness, template_id: str, text: str = TEXT) -> dict[str, Any]:
    return await trio.to_thread.run_sync(
        lambda: operator(h, "template", action="create", account="acme", template_id=template_id, text=text)
    )


def write_csv(path: Path, count: int) -> Path:
    path.write_text("to,name,coupon\n" + "".join(f"44770090000{i},N{i},C{i}\n" for i in range(1, count + 1)))
    return path


async def wait_done(h: Harness, batch_id: str, delivered: int) -> dict[str, Any]:
    """`batch show` as gatewayctl prints it, once the batch is done and `delivered` were delivered."""
    with trio.fail_after(60):
        while True:
            code, report = await ctl_json(h, "batch", "show", batch_id, "--account", "acme")
            assert code == 0
            if report["batch"]["state"] == "done" and report["delivered"] == delivered:
                return dict(report)
            await trio.sleep(0.1)


async def test_a_template_is_reviewed_and_a_csv_batch_sent_with_it(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with running_gateway(tmp_path) as h:
            await create_template(h, "t1")
            code, listed = await ctl_json(h, "template", "list", "--account", "acme")
            assert code == 0
            assert [(t["template_id"], t["state"], t["class"], t["variables"]) for t in listed["templates"]] == [
                ("t1", "pending", "marketing", ["name", "coupon"])
            ]
            code, out, _ = await ctl(h, "template", "list", "--account", "acme")
            assert code == 0
            assert "name, coupon" in out
            assert "1 template(s) of acme" in out
            code, out, _ = await ctl(h, "template", "show", "t1", "--account", "acme")
            assert code == 0
            assert TEXT in out  # whole here, cut to a line in the list
            assert "pending" in out

            csv_file = write_csv(tmp_path / "coupons.csv", 5)
            send = ["batch", "send", str(csv_file), "--account", "acme", "--batch-id", "coupons", "--sender", "ACME",
                    "--template", "t1"]  # fmt: skip
            code, err = await ctl_json(h, *send)  # not approved yet: nothing is made
            assert code == 1
            assert err["error"]["code"] == "invalid_request"
            assert "pending" in err["error"]["message"]

            code, approved = await ctl_json(h, "template", "approve", "t1", "--account", "acme")
            assert code == 0
            assert (approved["state"], approved["official"], approved["reason"]) == ("approved", False, None)

            code, sent = await ctl_json(h, *send)
            assert code == 0
            assert sent["state"] in ("pending", "sending", "done")
            assert (sent["recipients"], sent["template"], sent["class"]) == (5, "t1", "marketing")
            report = await wait_done(h, "coupons", 5)
            assert (report["targeted"], report["valid"], report["failed"]) == (5, 5, 0)
            assert (report["batch"]["runs"], report["batch"]["run_ids"]) == (1, ["coupons"])
            code, out, _ = await ctl(h, "batch", "show", "coupons", "--account", "acme")
            assert code == 0
            for word in ("the batch: when it runs", "done", "template t1", "next run", "recipients"):
                assert word in out

            code, page = await ctl_json(h, "batch", "details", "coupons", "--account", "acme")
            assert code == 0
            for row in page["recipients"]:  # each recipient got its own row's values
                m = h.running.engine.store.get(int(row["message_id"]))
                assert m is not None
                n = row["to"][-1]
                assert m.text.startswith(f"Hi N{n}, your coupon C{n} is ready at Acme")

            # A batch an hour ahead (an ISO time, read in its --time-zone), stopped before it runs.
            at = int(time.time()) + 3600
            iso = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            send_later = ["batch", "send", str(write_csv(tmp_path / "later.csv", 2)), "--account", "acme",
                          "--batch-id", "later", "--sender", "ACME", "--text", "Your parcel is on its way",
                          "--class", "notification", "--at", iso, "--time-zone", "UTC"]  # fmt: skip
            code, later = await ctl_json(h, *send_later)
            assert code == 0
            assert (later["state"], later["recipients"], later["next_run_at"]) == ("pending", 2, at)
            # The same command again (as after a lost answer) is answered as it is, and adds nobody.
            code, out, stderr = await ctl(h, *send_later)
            assert code == 0, stderr
            assert f"batch later of acme: pending, 2 recipient(s), next run {iso.replace('T', ' ')}Z" in out
            assert "already" in stderr
            code, out, _ = await ctl(h, "batch", "stop", "later", "--account", "acme")
            assert code == 0
            assert "batch later of acme: stopped; 0 message(s)" in out
            code, report = await ctl_json(h, "batch", "show", "later", "--account", "acme")
            assert (report["batch"]["state"], report["batch"]["next_run_at"]) == ("stopped", None)
            assert report["targeted"] == 0
            code, stopped = await ctl_json(h, "batch", "stop", "later", "--account", "acme")  # again: the same
            assert code == 0
            assert (stopped["state"], stopped["cancelled"]) == ("stopped", 0)


async def test_template_and_batch_send_errors_exit_with_their_codes(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with running_gateway(tmp_path) as h:
            await create_template(h, "t2")
            code, err = await ctl_json(h, "template", "reject", "t2", "--account", "acme")
            assert code == 2  # a rejection says why
            assert err["error"]["code"] == "usage"
            assert "--reason" in err["error"]["message"]
            code, rejected = await ctl_json(h, "template", "reject", "t2", "--account", "acme", "--reason",
                                            "no brand name")  # fmt: skip
            assert code == 0
            assert (rejected["state"], rejected["reason"]) == ("rejected", "no brand name")
            code, official = await ctl_json(h, "template", "official", "t2", "--account", "acme")
            assert code == 0
            assert (official["state"], official["official"]) == ("approved", True)
            code, out, _ = await ctl(h, "template", "list", "--account", "acme")
            assert "approved (official)" in out

            code, err = await ctl_json(h, "template", "show", "nope", "--account", "acme")
            assert code == 1
            assert err["error"]["code"] == "not_found"
            code, _, stderr = await ctl(h, "template", "approve", "nope", "--account", "acme")
            assert code == 1
            assert "not_found" in stderr
            csv_file = write_csv(tmp_path / "r.csv", 3)
            base = ["batch", "send", str(csv_file), "--account", "acme", "--batch-id", "b", "--sender", "ACME"]
            code, err = await ctl_json(h, *base, "--template", "nope")
            assert code == 1
            assert err["error"]["code"] == "not_found"
            code, err = await ctl_json(h, "batch", "stop", "nope", "--account", "acme")
            assert code == 1
            assert err["error"]["code"] == "not_found"

            code, deleted = await ctl_json(h, "template", "delete", "t2", "--account", "acme")
            assert (code, deleted) == (0, {"account": "acme", "template_id": "t2", "deleted": True})
            code, _ = await ctl_json(h, "template", "show", "t2", "--account", "acme")
            assert code == 1

            headless = tmp_path / "headless.csv"
            headless.write_text("447700900001,N1,C1\n")
            empty = tmp_path / "empty.csv"
            empty.write_text("to,name\n")
            past = str(int(time.time()) - 60)
            for argv in (
                [*base, "--text", "hi", "--every", "daily"],  # a recurring batch needs --at
                [*base, "--text", "hi", "--until", "2099-01-01"],  # --until without --every
                [*base, "--text", "hi", "--at", past],
                [*base, "--text", "hi", "--at", "tomorrow-ish"],
                [*base, "--text", "hi", "--time-zone", "Mars/Olympus"],
                [*base, "--text", "hi", "--template", "t1"],  # one of them
                [*base, "--text", "hi", "--batch-id", "b#2"],
                ["batch", "send", str(headless), "--account", "acme", "--batch-id", "b", "--sender", "ACME",
                 "--template", "t2"],
                ["batch", "send", str(empty), "--account", "acme", "--batch-id", "b", "--sender", "ACME",
                 "--text", "hi"],
                ["batch", "send", str(tmp_path / "missing.csv"), "--account", "acme", "--batch-id", "b", "--sender",
                 "ACME", "--text", "hi"],
                ["batch", "send", str(csv_file), "--batch-id", "b", "--sender", "ACME", "--text", "hi"],  # no account
                ["template", "list"],
            ):
                code, _, stderr = await ctl(h, *argv)
                assert code == 2, argv
                assert "Traceback" not in stderr
            code, err = await ctl_json(h, "batch", "show", "b", "--account", "acme")
            assert (code, err["error"]["code"]) == (1, "not_found")  # none of those made a batch
