"""An upstream ESME through SIGKILLs: the gateway (a child process, [smpp_server] on) is killed twice while an
SMPP client submits over a transceiver bind and takes its receipts. Every submit the gateway answered
ESME_ROK gets its receipt as deliver_sm, after the restarts too: nothing acknowledged is lost, and the receipts
the dead gateway owed come from the next one (the simulator, in the test process, holds them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest
import trio

from gateway.sim.config import SimConfig
from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandId, Tag
from gateway.smpp.constants import CommandStatus as S
from gateway.smpp.session import LinkDead, PduReceived, ResponseReceived, Session, SessionConfig
from gateway.smpp.state import Role
from tests.integration.gateway_input.helpers import free_port

from .helpers import (
    ACCOUNT,
    SIM_PASSWORD,
    SIM_SYSTEM_ID,
    GatewayProcess,
    RecordingSimulator,
    wait_until_serving,
)
from .helpers import write_config as crash_config

SYSTEM_ID = "crashesme"
PASSWORD = "esme1234"
WINDOW = 20
TOTAL = 10_000


def smpp_config(tmp: Path, sim_port: int, smpp_port: int) -> Path:
    config = crash_config(tmp, sim_port)
    (tmp / "esme.secret").write_text(PASSWORD + "\n")
    config.write_text(
        config.read_text().replace('log_level = "warning"', 'log_level = "info"')
        + f"""
[smpp_server]
port = {smpp_port}
redeliver_seconds = 0.5
[[smpp_server.accounts]]
account = "{ACCOUNT}"
system_id = "{SYSTEM_ID}"
password_file = "{tmp / "esme.secret"}"
window = {WINDOW}
"""
    )
    return config


@dataclass
class EsmeLedger:
    acked: set[str] = field(default_factory=set)  # ids the gateway answered ESME_ROK
    refused: int = 0
    lost_answers: int = 0  # submits on the wire when the link went: stored or not, the ESME cannot know
    receipts: dict[str, int] = field(default_factory=dict)  # receipted_message_id -> times received
    sent: int = 0
    sessions: int = 0
    changed: trio.Event = field(default_factory=trio.Event)

    def note(self) -> None:
        self.changed.set()

    async def until(self, done: Callable[[], bool]) -> None:
        while not done():
            await self.changed.wait()
            self.changed = trio.Event()


async def esme(port: int, ledger: EsmeLedger, stop: trio.Event) -> None:
    """Bind transceiver, keep WINDOW submits in flight until `stop`, answer every deliver_sm; reconnect and
    bind again whenever the gateway goes away."""
    while True:
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
        except OSError:
            await trio.sleep(0.05)
            continue
        ledger.sessions += 1
        session = Session(Role.ESME, SessionConfig(window=WINDOW, enquire_link_interval_seconds=0))
        try:
            await _run(stream, session, ledger, stop)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            ledger.lost_answers += sum(1 for r in session.close() if r.command_id == CommandId.SUBMIT_SM)
            await trio.aclose_forcefully(stream)
        if stop.is_set() and _done(ledger):
            return
        await trio.sleep(0.05)


def _acked_at_least(ledger: EsmeLedger, n: int) -> bool:
    return len(ledger.acked) >= n


def _done(ledger: EsmeLedger) -> bool:
    return ledger.acked <= ledger.receipts.keys()


async def _run(stream: trio.SocketStream, session: Session, ledger: EsmeLedger, stop: trio.Event) -> None:
    session.send_request(P.BindTransceiver(system_id=SYSTEM_ID, password=PASSWORD), trio.current_time())
    await stream.send_all(session.data_to_send())
    bound = False
    while True:
        if bound and not stop.is_set():
            while session.window_free > 0:
                ledger.sent += 1
                n = ledger.sent
                submit = P.SubmitSm(source_addr="CrashTest", destination_addr=f"4477009{n % 100000:05d}",
                                    short_message=f"smpp crash {n}".encode(), registered_delivery=1)  # fmt: skip
                session.send_request(submit, trio.current_time())
        out = session.data_to_send()
        if out:
            await stream.send_all(out)
        if stop.is_set() and _done(ledger):
            return
        with trio.move_on_after(0.5):
            data = await stream.receive_some(65536)
            if not data:
                return
            for event in session.receive_data(data, trio.current_time()):
                if isinstance(event, ResponseReceived):
                    pdu = event.pdu
                    if event.request.command_id == CommandId.BIND_TRANSCEIVER:
                        assert pdu.command_status == S.ESME_ROK, pdu
                        bound = True
                    elif isinstance(pdu, P.SubmitSmResp) and pdu.command_status == S.ESME_ROK:
                        ledger.acked.add(pdu.message_id)
                        ledger.note()
                    elif event.request.command_id == CommandId.SUBMIT_SM:
                        ledger.refused += 1  # throttled or the gateway stopping: not stored
                elif isinstance(event, PduReceived) and isinstance(event.pdu, P.DeliverSm):
                    receipted = event.pdu.tlv(Tag.RECEIPTED_MESSAGE_ID)
                    assert isinstance(receipted, str), event.pdu
                    ledger.receipts[receipted] = ledger.receipts.get(receipted, 0) + 1
                    ledger.note()
                    session.acknowledge(event.pdu)
                elif isinstance(event, LinkDead):
                    return


@pytest.mark.slow
async def test_sigkill_twice_loses_no_acknowledged_submit_and_every_receipt_reaches_the_esme(tmp_path: Path) -> None:
    sim = RecordingSimulator(SimConfig(credentials=((SIM_SYSTEM_ID, SIM_PASSWORD),), seed=15,
                                       receipt_delay_seconds=0.3))  # fmt: skip
    smpp_port = free_port()
    ledger = EsmeLedger()
    stop = trio.Event()
    with trio.fail_after(150):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(sim.serve, "127.0.0.1", 0)
            gateway = GatewayProcess(smpp_config(tmp_path, port, smpp_port), tmp_path)
            await gateway.start()
            with trio.fail_after(20):
                await wait_until_serving(tmp_path / "gw.sock")
            nursery.start_soon(esme, smpp_port, ledger, stop)
            target = 0
            for _ in range(2):
                target = len(ledger.acked) + 1500
                with trio.fail_after(40):
                    await ledger.until(partial(_acked_at_least, ledger, target))
                await gateway.kill()
                await gateway.start()
                with trio.fail_after(20):
                    await wait_until_serving(tmp_path / "gw.sock")
            with trio.fail_after(60):  # the ESME bound again and goes on, to 10,000 acknowledged in all
                await ledger.until(partial(_acked_at_least, ledger, max(target + 500, TOTAL)))
            stop.set()
            with trio.fail_after(60):
                await ledger.until(lambda: _done(ledger))
            assert await gateway.terminate() == 0, gateway.last_log()[-3000:]
            nursery.cancel_scope.cancel()
    missing = ledger.acked - ledger.receipts.keys()
    assert not missing, f"{len(missing)} acknowledged submits without a receipt"
    # A receipt for an id the ESME never heard of is a submit whose answer the kill cut off (stored, unanswered).
    unknown = ledger.receipts.keys() - ledger.acked
    assert len(unknown) <= ledger.lost_answers, (len(unknown), ledger.lost_answers)
    assert ledger.sessions >= 3
    assert len(ledger.acked) >= TOTAL
    # Each receipt at most twice: once, or again after a kill took the deliver_sm_resp's cursor with it.
    assert max(ledger.receipts.values()) <= 2
