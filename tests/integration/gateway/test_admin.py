"""The admin socket and gatewayctl against a running gateway: every command over the real socket, both output
modes, every error exit (docs/admin.md)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from gateway.app import CarrierSection, GatewayConfig
from gateway.ctl.main import main as ctl_main
from gateway.engine import RouteSettings
from gateway.engine.settings import ComplianceSettings
from gateway.sim.config import IdFormat as SimIdFormat
from gateway.sim.config import SimConfig
from gateway.upstream import BlockingClient, MessageClass, SubmitRequest, UpstreamError
from gateway.upstream.schema import AdminRequest, Op

from .harness import SECRET, SIM_PASSWORD, Harness, collect_final_events, ctl, ctl_json
from .harness import running_gateway as _running_gateway

WORDING = "Reply STOP to opt out"
# Two SMSC accounts on the one simulator: each carrier's receipts come back on its own binds.
SIM = SimConfig(credentials=(("gw", SIM_PASSWORD), ("gw2", SIM_PASSWORD)), id_format=SimIdFormat.HEX, seed=7)


def running_gateway(tmp: Path, **kwargs: Any) -> contextlib.AbstractAsyncContextManager[Harness]:
    return _running_gateway(tmp, sim_config=SIM, **kwargs)




def _two_carriers(cfg: GatewayConfig) -> GatewayConfig:
    """A second carrier on the same simulator, after the first in the route; the account appends its
    opt-out wording to marketing."""
    first = cfg.carriers[0]
    second = CarrierSection(
        name="sim2", binds=tuple(dataclasses.replace(b, name="trx2", system_id="gw2") for b in first.binds),
        encoding=first.encoding, response_ids=first.response_ids, receipt_ids=first.receipt_ids,
    )  # fmt: skip
    acme = dataclasses.replace(cfg.accounts[0], append_optout=WORDING)
    return dataclasses.replace(
        cfg,
        carriers=(first, second),
        routes=(RouteSettings("", ("sim", "sim2")),),
        accounts=(acme,),
        compliance=ComplianceSettings(window=""),
    )


async def _send(h: Harness, to: list[str], text: str = "hello", cls: MessageClass = MessageClass.NOTIFICATION) -> (
    list[str]
):
    async with h.client() as client:
        result = await client.submit(SubmitRequest(tuple(to), text, cls, "ACME"))
    return [m.message_id for m in result.messages]


async def test_status_binds_find_show_in_both_output_modes(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with running_gateway(tmp_path, configure=_two_carriers) as h:
            ids = await _send(h, ["447700900001"] * 5 + ["447700900002"])
            async with h.client() as client:
                await collect_final_events(client, set(ids))

            code, status = await ctl_json(h, "status")
            assert code == 0
            assert status["totals"]["accepted"] == 6
            assert status["store"]["messages"] == 6
            assert status["carriers"]["sim"]["bound"] == 1
            assert status["carriers"]["sim2"]["bound"] == 1
            assert status["accounts"] == ["acme"]
            code, out, _ = await ctl(h, "status")
            assert code == 0
            assert "carriers" in out
            assert "sim2" in out
            assert "throughput" in out

            code, answer = await ctl_json(h, "binds")
            binds = answer["binds"]
            assert code == 0
            assert {(b["carrier"], b["state"]) for b in binds} == {("sim", "bound"), ("sim2", "bound")}
            assert sum(b["accepted"] for b in binds) == 6
            code, out, _ = await ctl(h, "binds", "sim")
            assert code == 0
            assert "trx" in out
            assert "trx2" not in out

            code, found = await ctl_json(h, "find", "--to", "+44 7700 900001")
            assert code == 0
            assert found["number"] == "447700900001"
            assert [m["message_id"] for m in found["messages"]] == list(reversed(ids[:5]))  # newest first
            assert {m["state"] for m in found["messages"]} == {"delivered"}
            code, found = await ctl_json(h, "find", "--to", "447700900001", "--limit", "2")
            assert len(found["messages"]) == 2
            code, _, _ = await ctl(h, "find", "--to", "447700900999")
            assert code == 1  # nothing to that number

            code, shown = await ctl_json(h, "show", ids[5])
            (msg,) = shown["messages"]
            assert msg["to"] == "447700900002"
            assert msg["state"] == "delivered"
            assert msg["carrier"] == "sim"
            assert msg["segments"][0]["carrier_id"]
            assert msg["route"] == ["sim", "sim2"]
            code, out, _ = await ctl(h, "show", ids[5])
            assert code == 0
            assert "447700900002" in out
            assert "parts" in out

            code, health = await ctl_json(h, "health")
            assert code == 0
            assert health["ready"] is True


async def test_pause_holds_a_carriers_messages_and_drain_moves_them(tmp_path: Path) -> None:
    """A paused carrier is offered nothing: its route goes on to the next carrier, as when it is down, and
    with every carrier of the route paused the message waits (never dropped) until one is resumed."""
    with trio.fail_after(60):
        async with running_gateway(tmp_path, configure=_two_carriers) as h:
            code, answer = await ctl_json(h, "carrier", "pause", "sim")
            assert code == 0
            assert answer["held"] == "paused"
            (first,) = await _send(h, ["447700900010"])
            async with h.client() as client:
                finals, _ = await collect_final_events(client, {first})
            assert finals[first].carrier == "sim2"

            await ctl_json(h, "carrier", "pause", "sim2")
            (paused,) = await _send(h, ["447700900011"])
            await trio.sleep(1.0)  # the scheduler has had many rounds: it must not have sent it
            code, shown = await ctl_json(h, "show", paused)
            assert shown["messages"][0]["state"] in ("accepted", "queued")
            code, answer = await ctl_json(h, "status")
            assert answer["carriers"]["sim"]["held"] == "paused"
            assert answer["carriers"]["sim2"]["held"] == "paused"
            code, out, _ = await ctl(h, "binds")
            assert "paused" in out

            await ctl_json(h, "carrier", "resume", "sim")
            async with h.client() as client:
                finals, _ = await collect_final_events(client, {paused}, after=None)
            assert finals[paused].kind == "delivered"
            assert finals[paused].carrier == "sim"

            await ctl_json(h, "carrier", "resume", "sim2")
            code, answer = await ctl_json(h, "carrier", "drain", "sim")
            assert code == 0
            assert answer["held"] == "drained"
            (moved,) = await _send(h, ["447700900012"])
            async with h.client() as client:
                finals, _ = await collect_final_events(client, {moved}, after=None)
            assert finals[moved].carrier == "sim2"  # the drained carrier's route went on to the next

            code, err = await ctl_json(h, "carrier", "pause", "nope")
            assert code == 1
            assert err["error"]["code"] == "not_found"


async def test_lists_of_the_gateway_and_of_a_carrier(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with running_gateway(tmp_path, configure=_two_carriers) as h:
            code, out, _ = await ctl(h, "optout", "--scope", "gateway", "add", "447700900021")
            assert code == 0
            assert "listed" in out
            code, out, _ = await ctl(h, "blacklist", "--scope", "carrier:sim", "add", "447700900022")
            assert code == 0
            code, out, _ = await ctl(h, "blacklist", "--scope", "gateway", "add", "447700900023")
            assert code == 0
            async with h.client() as client:
                marketing = await client.submit(SubmitRequest(("447700900021",), "sale", MessageClass.MARKETING,
                                                              "ACME"))  # fmt: skip
                notify = await client.submit(
                    SubmitRequest(("447700900022", "447700900023"), "hi", MessageClass.NOTIFICATION, "ACME")
                )
            assert marketing.messages[0].reason == "opted_out"  # the gateway's opt-out holds for every account
            # A carrier's blacklist takes that carrier off the route: the number goes by the other one.
            assert notify.messages[0].state == "accepted"
            assert notify.messages[1].reason == "blacklisted"
            async with h.client() as client:
                finals, _ = await collect_final_events(client, {notify.messages[0].message_id})
            assert finals[notify.messages[0].message_id].carrier == "sim2"

            code, out, _ = await ctl(h, "optout", "--scope", "gateway", "check", "447700900021", "447700900029",
                                     json_out=True)  # fmt: skip
            assert [json.loads(line)["listed"] for line in out.splitlines()] == [True, False]  # a record a line
            code, out, _ = await ctl(h, "blacklist", "--scope", "carrier:sim", "export")
            assert out.splitlines()[1].startswith("447700900022,")
            code, err = await ctl_json(h, "optout", "--scope", "carrier:sim", "add", "447700900021")
            assert code == 1
            assert err["error"]["code"] == "invalid_request"


async def test_account_commands_on_the_admin_socket(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with running_gateway(tmp_path, configure=_two_carriers) as h:
            code, out, _ = await ctl(h, "send", "447700900031", "hello there")
            assert code == 0
            assert "accepted" in out
            code, out, _ = await ctl(h, "send", "447700900032", "not-a-number-x", "hi")
            assert code == 1  # one recipient refused
            code, preview = await ctl_json(h, "preview", "Big sale today", "--class", "marketing")
            assert code == 0
            assert preview["text"].endswith(WORDING)
            plain = (await ctl_json(h, "preview", "Big sale today"))[1]
            assert preview["chars"] == plain["chars"] + len(WORDING) + 1  # the appended wording is counted
            code, _, err = await ctl(h, "-a", "nobody", "send", "447700900031", "hi")
            assert code == 2
            assert "nobody" in err


async def test_errors_are_answered_with_their_exit_code(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with running_gateway(tmp_path) as h:
            code, err = await ctl_json(h, "show", "123")
            assert code == 1
            assert err["error"]["code"] == "not_found"
            code, _, stderr = await ctl(h, "show", "123")
            assert code == 1
            assert "not_found" in stderr
            # Started without a config file: a reload is refused, and says why.
            code, answer = await ctl_json(h, "reload")
            assert code == 1
            assert answer["refused"]
            assert answer["problems"]
            code, out, _ = await ctl(h, "receipts", "--unmatched")
            assert code == 0
            assert "0 unmatched" in out
            admin = h.running.admin_socket
            assert admin is not None
            assert stat.S_IMODE(os.stat(admin).st_mode) == 0o600
            # The upstream socket serves no admin command, whatever the account.
            client = await trio.to_thread.run_sync(
                lambda: BlockingClient.connect_unix(h.running.socket_path, account="acme", secret=SECRET)
            )
            with client, pytest.raises(UpstreamError) as refused:
                await trio.to_thread.run_sync(lambda: client.call(Op.ADMIN, AdminRequest("status", {})))
            assert str(refused.value.code) == "unknown_op"
            code, out, _ = await ctl(h, "top", "--iterations", "1", "--interval", "0.1")
            assert (code == 0 and "binds" not in out) or "carrier" in out
    # The gateway has stopped: nothing listens on its admin socket.
    code, err = await ctl_json(h, "status")
    assert code == 3
    assert err["error"]["code"] == "unreachable"


def test_completion_script_names_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl_main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    assert "complete -F _gatewayctl gatewayctl" in script
    for command in ("status", "binds", "carrier", "find", "show", "reload", "top", "optout"):
        assert command in script


async def test_every_account_command_and_usage_error(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with running_gateway(tmp_path) as h:
            code, out, _ = await ctl(h, "--json", "send", "447700900041", "later", "--schedule-in", "3600",
                                     "--client-ref", "ref-41")  # fmt: skip
            assert code == 0
            sent = json.loads(out)
            assert sent["state"] == "scheduled"
            code, out, _ = await ctl(h, "status", sent["message_id"])
            assert code == 0
            assert "scheduled" in out
            code, out, _ = await ctl(h, "--json", "status", "--client-ref", "ref-41")
            assert json.loads(out)["message_id"] == sent["message_id"]
            code, shown = await ctl_json(h, "show", "--ref", "ref-41")
            assert shown["messages"][0]["segments"][0]["due_at"] is not None  # waits for its schedule
            code, out, _ = await ctl(h, "cancel", sent["message_id"])
            assert code == 0
            assert sent["message_id"] in out
            code, err = await ctl_json(h, "cancel", sent["message_id"])
            assert code == 1
            assert err["error"]["code"] == "not_cancellable"
            code, out, _ = await ctl(h, "--json", "events", "--timeout", "0.5")
            assert code == 0
            (event,) = [json.loads(line) for line in out.splitlines()]  # the account's events, as a line each
            assert event["kind"] == "failed"
            assert event["reason"] == "cancelled"
            code, _, _ = await ctl(h, "status", "--client-ref")
            assert code == 2  # argparse: --client-ref needs a value
            code, err = await ctl_json(h, "show")
            assert code == 2
            assert err["error"]["code"] == "usage"
    # A file TOML cannot read: its [server] table is read line by line (here: nothing, the default
    # socket, where no gateway listens), and gatewayctl says so.
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    done = await trio.run_process([sys.executable, "-m", "gateway.ctl.main", "-c", str(bad), "--json", "status"],
                                  capture_stdout=True, capture_stderr=True, check=False)  # fmt: skip
    assert done.returncode == 3
    assert json.loads(done.stdout)["error"]["code"] == "unreachable"
    assert b"not valid TOML" in done.stderr
    missing = [sys.executable, "-m", "gateway.ctl.main", "-c", str(tmp_path / "none.toml"), "--json", "status"]
    done = await trio.run_process(missing, capture_stdout=True, capture_stderr=True, check=False)
    assert done.returncode == 2
    assert json.loads(done.stdout)["error"]["code"] == "config"


async def test_what_a_careless_operator_types(tmp_path: Path) -> None:
    """A config the gateway would refuse still leads gatewayctl to the socket (reload then says why); bytes
    that are no text, a number that is no number and junk in an import are refused with their reasons."""
    with trio.fail_after(60):
        async with running_gateway(tmp_path) as h:
            admin = h.running.admin_socket
            assert admin is not None
            broken = tmp_path / "conf" / "gateway.toml"
            broken.parent.mkdir()
            socket_line = b'socket_path = "' + str(tmp_path / "gw.sock").encode() + b'"\n'
            broken.write_bytes(b"[server]\n" + socket_line + b"[[routes\n\xff\n")

            async def run(*argv: str) -> subprocess.CompletedProcess[bytes]:
                return await trio.run_process([sys.executable, "-m", "gateway.ctl.main", *argv],
                                              capture_stdout=True, capture_stderr=True, check=False)  # fmt: skip

            done = await run("-c", str(broken), "--json", "accounts")
            assert done.returncode == 0
            assert json.loads(done.stdout) == {"accounts": ["acme"]}
            done = await run("--socket", admin, "preview", "caf\udcff")
            assert done.returncode == 2
            assert b"Traceback" not in done.stderr
            code, err = await ctl_json(h, "find", "--to", "garbage!")
            assert code == 1
            assert err["error"]["code"] == "invalid_request"
            junk = tmp_path / "junk.csv"
            junk.write_text("number\n447700900051\n" + "x" * 5000 + "\n447700900052\n")
            code, out, _ = await ctl(h, "optout", "--scope", "gateway", "import", str(junk))
            assert code == 1  # one line refused
            assert "2 listed, 1 refused" in out


async def test_resume_retries_a_refused_bind_at_once(tmp_path: Path) -> None:
    """The SMSC refused the bind (a wrong password); the operator fixes the file and resumes the carrier: it
    binds now, not at the end of bind_refused_retry_seconds."""
    from gateway.app import Gateway
    from gateway.sim.server import Simulator

    from .harness import gateway_config

    sim = Simulator(SIM)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(sim.serve, "127.0.0.1", 0)
            cfg = gateway_config(tmp_path, port)
            (tmp_path / "sim.secret").write_text("wrong")
            gateway = Gateway(cfg)
            running = await nursery.start(gateway.run)
            pool = running.pools["sim"]
            while pool.status()[0].state != "refused":  # noqa: ASYNC110 - a real SMSC answer: no event to wait on
                await trio.sleep(0.01)
            h = Harness(gateway, running, sim, tmp_path)
            code, health = await ctl_json(h, "health")
            assert code == 1
            assert "ESME_RINVPASWD" in health["problems"][0]
            (tmp_path / "sim.secret").write_text(SIM_PASSWORD)
            code, answer = await ctl_json(h, "carrier", "resume", "sim")
            assert code == 0
            assert answer["binds_retried"] == 1
            await pool.wait_bound()
            gateway.shutdown()
            await gateway.stopped.wait()
            nursery.cancel_scope.cancel()
