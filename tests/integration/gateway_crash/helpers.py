"""The crash test's parts: a simulator that records every submit_sm, the gateway as a child process, and a
load of submitting clients that keep a ledger of what the gateway acknowledged.

The simulator lives in the test process, not in the gateway, so it sees every submit_sm across every
SIGKILL and restart; that is how duplicates are counted.
"""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import trio

from gateway.segmenting.decode import decode_text
from gateway.sim.config import SimConfig
from gateway.sim.server import Simulator
from gateway.smpp import pdu as P
from gateway.smpp.constants import EsmClass
from gateway.upstream import MessageClass, SubmitRequest, UpstreamError, open_unix_client

ROOT = Path(__file__).resolve().parents[3]
ACCOUNT = "crash"
SECRET = "crash-secret-1"
SIM_SYSTEM_ID = "gateway"
SIM_PASSWORD = "simpass"
# Alternate classes: notification is resent after a crash (at-least-once, flagged possible duplicate),
# marketing becomes "unknown" (at-most-once, store/config.py), so both recovery paths are exercised.
CLASSES = (MessageClass.NOTIFICATION, MessageClass.MARKETING)


class RecordingSimulator(Simulator):
    """The built-in simulator, also counting each text it was handed (one count per submit_sm)."""

    def __init__(self, config: SimConfig) -> None:
        super().__init__(config)
        self.texts: Counter[str] = Counter()
        self.destinations: Counter[str] = Counter()  # submit_sm per destination_addr

    def _on_submit(self, conn: Any, pdu: P.SubmitSm) -> None:
        udhi = bool(pdu.esm_class & EsmClass.UDHI)
        self.texts[decode_text(pdu.short_message, pdu.data_coding, udhi=udhi).text] += 1
        self.destinations[pdu.destination_addr] += 1
        super()._on_submit(conn, pdu)


def write_config(directory: Path, sim_port: int) -> Path:
    """A gateway config for one carrier (the simulator above) with every path under `directory`."""
    (directory / "account.secret").write_text(SECRET + "\n")
    (directory / "sim.secret").write_text(SIM_PASSWORD + "\n")
    path = directory / "gateway.toml"
    path.write_text(
        f"""
[server]
socket_path = "{directory / "gw.sock"}"
log_level = "warning"
shutdown_grace_seconds = 3.0

[store]
path = "{directory / "store"}"
sync = true

[engine]
default_region = "GB"
test_prefixes = ["4477"]            # the numbers these tests send: mostly not in any real plan
retry_backoff_min_seconds = 0.2
retry_backoff_max_seconds = 1.0
scheduler_poll_seconds = 0.2

[[accounts]]
name = "{ACCOUNT}"
secret_file = "{directory / "account.secret"}"

[[carriers]]
name = "sim"
[[carriers.binds]]
name = "sim-trx"
host = "127.0.0.1"
port = {sim_port}
system_id = "{SIM_SYSTEM_ID}"
password_file = "{directory / "sim.secret"}"
mode = "transceiver"
window = 50
reconnect_min_seconds = 0.1
reconnect_max_seconds = 0.5

[[routes]]
prefix = ""
carriers = ["sim"]
"""
    )
    return path


class GatewayProcess:
    """`python -m gateway.cli serve -c FILE` as a child; its output goes to a log file per run."""

    def __init__(self, config: Path, log_dir: Path) -> None:
        self.config = config
        self.log_dir = log_dir
        self.runs = 0
        self.proc: trio.Process | None = None
        self._log: TextIO | None = None

    async def start(self) -> None:
        self.runs += 1
        self._log = self._open_log()
        self.proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "gateway.cli", "serve", "-c", str(self.config)],
            cwd=ROOT,
            stdout=self._log,
            stderr=self._log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def _open_log(self) -> TextIO:
        return (self.log_dir / f"gateway-{self.runs}.log").open("w")  # closed in _reap

    async def kill(self) -> int:
        """SIGKILL: no shutdown sequence runs, whatever was mid-flight stays so."""
        assert self.proc is not None
        self.proc.kill()
        return await self._reap()

    async def terminate(self) -> int:
        """SIGTERM: the graceful shutdown sequence."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return await self._reap()

    async def _reap(self) -> int:
        assert self.proc is not None
        code = await self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def last_log(self) -> str:
        return (self.log_dir / f"gateway-{self.runs}.log").read_text()


async def wait_until_serving(socket_path: Path) -> None:
    """Until a hello on the upstream socket succeeds (a stale socket file refuses until then)."""
    while True:
        try:
            async with open_unix_client(socket_path, account=ACCOUNT, secret=SECRET) as client:
                await client.ping()
                return
        except (OSError, UpstreamError):
            await trio.sleep(0.05)


@dataclass
class Ledger:
    """What the load sent and what the gateway acknowledged: message id -> text."""

    acked: dict[str, str] = field(default_factory=dict)
    sent: int = 0
    lost_answers: int = 0
    _grew: trio.Event = field(default_factory=trio.Event)

    def next_text(self) -> tuple[int, str]:
        self.sent += 1
        return self.sent, f"crash {self.sent}"

    def acknowledge(self, message_id: str, text: str) -> None:
        self.acked[message_id] = text
        self._grew.set()

    async def wait_for_acks(self, count: int) -> None:
        while len(self.acked) < count:
            await self._grew.wait()
            self._grew = trio.Event()


def crash_request(n: int, text: str) -> SubmitRequest:
    """load_worker's default: the classes alternate (CLASSES), numbers from +4477009."""
    return SubmitRequest((f"+4477009{n % 100000:05d}",), text, CLASSES[n % len(CLASSES)], "CrashTest")


async def load_worker(
    socket_path: Path,
    ledger: Ledger,
    stop: trio.Event,
    make: Callable[[int, str], SubmitRequest] = crash_request,
) -> None:
    """Submit one message at a time (`make(n, ledger's text)`; the request's text is what the ledger keeps),
    reconnecting whenever the gateway goes away, until `stop`.

    A submit counts as acknowledged only when its result arrived; one the kill cut off is a lost answer.
    """
    while not stop.is_set():
        try:
            async with open_unix_client(socket_path, account=ACCOUNT, secret=SECRET) as client:
                while not stop.is_set():
                    n, text = ledger.next_text()
                    request = make(n, text)
                    text = request.text
                    try:
                        result = await client.submit(request)
                    except (OSError, UpstreamError):
                        ledger.lost_answers += 1
                        raise
                    for message in result.messages:
                        ledger.acknowledge(message.message_id, text)
        except (OSError, UpstreamError):
            await trio.sleep(0.02)
