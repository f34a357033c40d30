"""A batch run cut by SIGKILL: the gateway dies while it expands a 20,000-recipient template batch, a second
one on the same store takes the run up where its last committed chunk left it. Every recipient is accepted
exactly once (the chunks are idempotent) and none reaches the carrier twice (marketing is at-most-once);
the simulator, in the test process, sees every submit_sm across both lives."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
import trio

from gateway.sim.config import SimConfig
from gateway.upstream import BlockingClient, UpstreamError, open_unix_client
from gateway.upstream.schema import OPERATOR

from .helpers import (
    ACCOUNT,
    SECRET,
    SIM_PASSWORD,
    SIM_SYSTEM_ID,
    GatewayProcess,
    RecordingSimulator,
    wait_until_serving,
)
from .helpers import write_config as crash_config

N = 20_000
TEXT = "Hi {name}, your coupon {coupon} is ready at Acme. Reply STOP to opt out"


async def report(socket_path: Path) -> dict[str, Any]:
    async with open_unix_client(socket_path, account=ACCOUNT, secret=SECRET) as client:
        return await client.account("batch", action="show", batch_id="crash")


@pytest.mark.slow
async def test_sigkill_mid_expansion_accepts_and_sends_every_recipient_once(tmp_path: Path) -> None:
    sim = RecordingSimulator(SimConfig(credentials=((SIM_SYSTEM_ID, SIM_PASSWORD),), seed=14))
    with trio.fail_after(150):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(sim.serve, "127.0.0.1", 0)
            socket_path = tmp_path / "gw.sock"
            config = crash_config(tmp_path, port)
            config.write_text(config.read_text().replace('log_level = "warning"', 'log_level = "info"'))
            gateway = GatewayProcess(config, tmp_path)
            await gateway.start()
            with trio.fail_after(20):
                await wait_until_serving(socket_path)
            client_cm = open_unix_client(socket_path, account=ACCOUNT, secret=SECRET)
            client = await client_cm.__aenter__()
            await client.account("template", action="create", template_id="t", text=TEXT)

            def approve() -> None:
                with BlockingClient.connect_unix(str(tmp_path / "admin.sock"), account=OPERATOR, secret="-") as c:
                    c.admin("template", action="approve", account=ACCOUNT, template_id="t")

            await trio.to_thread.run_sync(approve)
            await client.account("batch", action="create", batch_id="crash", template="t", sender="ACME")
            for first in range(0, N, 1000):
                rows = [{"to": f"4477012{i:05d}", "vars": {"name": f"N{i}", "coupon": f"C{i}"}}
                        for i in range(first, first + 1000)]  # fmt: skip
                await client.account("batch", action="add", batch_id="crash", first=first, rows=rows)
            await client.account("batch", action="send", batch_id="crash")
            while True:  # until a tenth of the recipients are in: then the kill, mid-run
                at_kill = (await client.account("batch", action="show", batch_id="crash"))["targeted"]
                if at_kill >= 2000:
                    break
                await trio.sleep(0.005)
            await gateway.kill()  # at once, the connection still open
            with contextlib.suppress(OSError, UpstreamError):
                await client_cm.__aexit__(None, None, None)
            assert at_kill < N, "the run ended before the kill: nothing was cut"

            await gateway.start()
            with trio.fail_after(20):
                await wait_until_serving(socket_path)
            # Every recipient accepted; what was at the carrier at the kill may wait for its receipt as unknown.
            # What was at the carrier at the kill waits for its receipt as unknown (at-most-once): settled
            # once every recipient is in and that count holds still.
            done: dict[str, Any] = {}
            seen: list[int] = []
            with trio.move_on_after(90):
                while len(seen) < 5 or len(set(seen[-5:])) > 1 or done["targeted"] < N:
                    await trio.sleep(0.2)
                    done = await report(socket_path)
                    seen.append(done["in_progress"])
            assert done["targeted"] == N, (at_kill, done)
            code = await gateway.terminate()
            assert code == 0, gateway.last_log()
            assert "batch_run_resumed" in gateway.last_log()  # the operator sees the run taken up again
            nursery.cancel_scope.cancel()

    assert (done["targeted"], done["valid"], done["refused"]) == (N, N, 0)
    assert done["batch"]["runs"] == 1
    twice = {text: n for text, n in sim.texts.items() if n > 1}
    assert twice == {}, f"{len(twice)} recipients got their text twice"
    # Each recipient's own text reached the carrier, bar those the kill cut (unknown, waiting for a receipt).
    assert len(sim.texts) + done["in_progress"] >= N
    assert all(text.startswith("Hi N") for text in sim.texts)
