"""A reload under load: carriers added, their binds changed and removed, an account added, while messages
flow; nothing accepted is lost, and each change reaches the carriers it names."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from gateway.app import Gateway, Running, load_config
from gateway.sim.config import IdFormat as SimIdFormat
from gateway.sim.config import SimConfig
from gateway.sim.server import Simulator
from gateway.upstream import MessageClass, SubmitRequest, UpstreamError, open_unix_client

from .harness import collect_final_events

SIM_PASSWORD = "simpw"


def _carrier(name: str, port: int, system_id: str, window: int = 20) -> str:
    return f"""
[[carriers]]
name = "{name}"
response_ids = {{ base = "hex", fold_case = true }}
receipt_ids = {{ base = "hex", fold_case = true }}
[[carriers.binds]]
name = "{name}-trx"
host = "127.0.0.1"
port = {port}
system_id = "{system_id}"
password_file = "sim.secret"
mode = "transceiver"
window = {window}
"""


def _config(tmp: Path, carriers: str, route: list[str], *, second_account: bool = False) -> str:
    accounts = '[[accounts]]\nname = "acme"\nsecret_file = "acme.secret"\n'
    if second_account:
        accounts += '[[accounts]]\nname = "beta"\nsecret_file = "beta.secret"\n'
    names = ", ".join(f'"{c}"' for c in route)
    return f"""
[store]
path = "{tmp}/store"
sync = false
map_size_bytes = 268435456

[server]
socket_path = "{tmp}/gw.sock"
# info, the default: a reload applies the level to the whole process (this one runs every test after it)
log_level = "info"
shutdown_grace_seconds = 2.0

[engine]
default_region = "GB"
test_prefixes = ["4477"]
retry_backoff_min_seconds = 0.05
scheduler_poll_seconds = 0.2

{accounts}
{carriers}

[[routes]]
carriers = [{names}]
"""


async def _send(path: str, account: str, secret: str, numbers: list[str]) -> list[str]:
    async with open_unix_client(path, account=account, secret=secret) as client:
        result = await client.submit(SubmitRequest(tuple(numbers), "reload me", MessageClass.NOTIFICATION, "ACME"))
    assert all(m.state == "accepted" for m in result.messages)
    return [m.message_id for m in result.messages]


async def test_carriers_added_rebound_and_removed_under_load(tmp_path: Path) -> None:
    (tmp_path / "acme.secret").write_text("s3cret")
    (tmp_path / "beta.secret").write_text("b3ta")
    (tmp_path / "sim.secret").write_text(SIM_PASSWORD)
    creds = (("a", SIM_PASSWORD), ("b", SIM_PASSWORD), ("b2", SIM_PASSWORD))
    sim = Simulator(SimConfig(credentials=creds, id_format=SimIdFormat.HEX, seed=3))
    conf = tmp_path / "gateway.toml"
    sent: list[str] = []
    stop_sending = trio.Event()

    async def keep_sending(running: Running) -> None:
        n = 0
        while not stop_sending.is_set():
            numbers = [f"4477{n + i:08d}" for i in range(20)]
            n += 20
            sent.extend(await _send(running.socket_path, "acme", "s3cret", numbers))
            await trio.sleep(0.05)

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(sim.serve, "127.0.0.1", 0)
            conf.write_text(_config(tmp_path, _carrier("a", port, "a"), ["a"]))
            gateway = Gateway(load_config(conf), config_path=conf)
            running: Running = await nursery.start(gateway.run)
            await running.pools["a"].wait_bound()
            async with trio.open_nursery() as load:
                load.start_soon(keep_sending, running)
                await trio.sleep(0.5)

                # 1. A second carrier, first in the route, and a second account.
                conf.write_text(_config(tmp_path, _carrier("a", port, "a") + _carrier("b", port, "b"), ["b", "a"],
                                        second_account=True))  # fmt: skip
                report = await gateway.reload()
                assert not report.refused, report.problems
                assert "b" in running.pools
                await running.pools["b"].wait_bound()
                beta = await _send(running.socket_path, "beta", "b3ta", ["447700000001"])  # the new account works
                await trio.sleep(0.5)

                # 2. b's binds change (another SMSC account, a wider window): paused, replaced, resumed.
                old_b = running.pools["b"]
                conf.write_text(_config(tmp_path, _carrier("a", port, "a") + _carrier("b", port, "b2", 40),
                                        ["b", "a"], second_account=True))  # fmt: skip
                report = await gateway.reload()
                assert not report.refused, report.problems
                assert running.pools["b"] is not old_b
                await running.pools["b"].wait_bound()
                await trio.sleep(0.5)

                # 3. a is removed (and its route with it): what was queued for it goes to b.
                conf.write_text(_config(tmp_path, _carrier("b", port, "b2", 40), ["b"], second_account=True))
                report = await gateway.reload()
                assert not report.refused, report.problems
                assert "a" not in running.pools
                await trio.sleep(0.5)

                # 4. A route naming a carrier that does not exist: refused whole, the running ones stay.
                conf.write_text(_config(tmp_path, _carrier("b", port, "b2", 40), ["b", "zz"], second_account=True))
                report = await gateway.reload()
                assert report.refused or report.problems
                assert "b" in running.pools
                stop_sending.set()

            # 5. a comes back, as it was, first in the route: it is routable again (not only bound).
            conf.write_text(_config(tmp_path, _carrier("a", port, "a") + _carrier("b", port, "b2", 40), ["a", "b"],
                                    second_account=True))  # fmt: skip
            report = await gateway.reload()
            assert not report.refused, report.problems
            assert any("carrier a: added" in line for line in report.applied)
            await running.pools["a"].wait_bound()
            back = await _send(running.socket_path, "acme", "s3cret", ["447799000001", "447799000002"])
            async with open_unix_client(running.socket_path, account="acme", secret="s3cret") as client:
                finals, _ = await collect_final_events(client, set(back), after=None)
            assert {e.carrier for e in finals.values()} == {"a"}

            want = set(sent)
            async with open_unix_client(running.socket_path, account="acme", secret="s3cret") as client:
                finals, _ = await collect_final_events(client, want)
            assert len(want) > 100
            assert {e.kind for e in finals.values()} <= {"delivered", "failed"}
            assert all(e.reason != "no_route" for e in finals.values())
            delivered_by = {e.carrier for e in finals.values() if e.kind == "delivered"}
            assert {"a", "b"} <= delivered_by
            async with open_unix_client(running.socket_path, account="beta", secret="b3ta") as client:
                finals, _ = await collect_final_events(client, set(beta))
            assert finals[beta[0]].kind == "delivered"

            # A rotated secret file under the same name: the next reload reads it (the config is unchanged).
            (tmp_path / "beta.secret").write_text("n3w")
            conf.write_text(_config(tmp_path, _carrier("b", port, "b2", 40), ["b"], second_account=True))
            report = await gateway.reload()
            assert not report.refused
            await _send(running.socket_path, "beta", "n3w", ["447700000002"])
            with pytest.raises(UpstreamError):
                await _send(running.socket_path, "beta", "b3ta", ["447700000003"])

            # An account removed: its open connection is cut off at its next request.
            async with open_unix_client(running.socket_path, account="beta", secret="n3w") as beta_client:
                conf.write_text(_config(tmp_path, _carrier("a", port, "a") + _carrier("b", port, "b2", 40),
                                        ["a", "b"]))  # fmt: skip
                report = await gateway.reload()
                assert "account beta: removed" in report.applied
                with pytest.raises(UpstreamError):
                    await beta_client.submit(
                        SubmitRequest(("447700000004",), "after removal", MessageClass.NOTIFICATION, "ACME")
                    )

            stats = running.engine.statistics()
            assert stats.faults.internal_errors == 0
            gateway.shutdown()
            await gateway.stopped.wait()
            nursery.cancel_scope.cancel()
