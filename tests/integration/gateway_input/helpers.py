"""A whole gateway in this process (real config file, real store, real Unix socket) in front of a simulator,
and a raw frame connection written from docs/protocol.md alone (struct + msgpack, not the gateway's codec)
to send what a well-behaved client never would."""

from __future__ import annotations

import os
import socket
import struct
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import msgpack
import trio

from gateway.app import Gateway, load_config
from gateway.sim.config import SimConfig
from gateway.sim.server import Simulator
from gateway.smpp import pdu as P
from gateway.upstream import UpstreamError, open_unix_client

ROOT = Path(__file__).resolve().parents[3]
ACCOUNT = "shop"
SECRET = "shop-secret-7"
SIM_SYSTEM_ID = "gateway"
SIM_PASSWORD = "simpass"
# Small on purpose: an oversize frame is cheap to send, and 16x this is the "implausible length" limit.
MAX_FRAME_BYTES = 16384
# The carrier allows the GSM 7-bit default alphabet only (no UCS-2 fallback) and at most two parts.
MAX_PARTS = 2
PREFIX = struct.Struct(">I")  # docs/protocol.md "Framing": uint32 big-endian length


def write_config(directory: Path, sim_port: int) -> Path:
    (directory / "account.secret").write_text(SECRET + "\n")
    (directory / "sim.secret").write_text(SIM_PASSWORD + "\n")
    path = directory / "gateway.toml"
    path.write_text(
        f"""
[server]
socket_path = "{directory / "gw.sock"}"
log_level = "warning"
shutdown_grace_seconds = 2.0
[server.upstream]
max_frame_bytes = {MAX_FRAME_BYTES}

[store]
path = "{directory / "store"}"
sync = false

[engine]
default_region = "GB"
test_prefixes = ["4477"]            # the numbers these tests send: mostly not in any real plan

[[accounts]]
name = "{ACCOUNT}"
secret_file = "{directory / "account.secret"}"

[[carriers]]
name = "sim"
encoding = {{ encodings = ["gsm7"], split = "udh8", max_parts = {MAX_PARTS} }}
[[carriers.binds]]
name = "sim-trx"
host = "127.0.0.1"
port = {sim_port}
system_id = "{SIM_SYSTEM_ID}"
password_file = "{directory / "sim.secret"}"
mode = "transceiver"
window = 10
reconnect_min_seconds = 0.1

[[routes]]
prefix = "44"
carriers = ["sim"]
"""
    )
    return path


class WatchedSimulator(Simulator):
    """The built-in simulator, letting a test wait for its accepted submit_sm count to reach a number."""

    def __init__(self, config: SimConfig) -> None:
        super().__init__(config)
        self._submitted = trio.Event()

    def _on_submit(self, conn: Any, pdu: P.SubmitSm) -> None:
        super()._on_submit(conn, pdu)
        self._submitted.set()

    async def wait_for_submits(self, count: int) -> None:
        while self.counters.submits_ok < count:
            await self._submitted.wait()
            self._submitted = trio.Event()


@dataclass(frozen=True, slots=True)
class Harness:
    socket_path: Path
    sim: WatchedSimulator


@asynccontextmanager
async def running_gateway(directory: Path) -> AsyncIterator[Harness]:
    """Simulator on a free port, then the gateway from a config file naming it; shut down gracefully."""
    sim = WatchedSimulator(SimConfig(credentials=((SIM_SYSTEM_ID, SIM_PASSWORD),)))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve, "127.0.0.1", 0)
        gateway = Gateway(load_config(write_config(directory, port)))
        # The inner nursery ends when `run` returns, i.e. when the graceful shutdown sequence has finished.
        async with trio.open_nursery() as inner:
            running = await inner.start(gateway.run)
            try:
                yield Harness(Path(running.socket_path), sim)
            finally:
                gateway.shutdown()
        nursery.cancel_scope.cancel()


def frame(obj: object) -> bytes:
    payload: bytes = msgpack.packb(obj, use_bin_type=True)
    return PREFIX.pack(len(payload)) + payload


def submit(ident: int, to: str | list[str] = "+447700900123", text: str = "hello", **extra: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "op": "submit",
        "id": ident,
        "to": to,
        "text": text,
        "class": "notification",
        "sender": "Shop",
    }
    request.update(extra)
    return request


class RawConnection:
    """One Unix socket connection speaking frames by hand."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buffer = bytearray()

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path) -> AsyncIterator[RawConnection]:
        conn = cls(await trio.open_unix_socket(str(path)))
        try:
            yield conn
        finally:
            await conn.stream.aclose()

    async def send_bytes(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def send(self, *objs: object) -> None:
        await self.send_bytes(b"".join(frame(obj) for obj in objs))

    async def receive(self) -> dict[str, Any] | None:
        """The next server frame (a map), or None when the server closed the connection."""
        while True:
            if len(self._buffer) >= PREFIX.size:
                (length,) = PREFIX.unpack_from(self._buffer)
                if len(self._buffer) >= PREFIX.size + length:
                    payload = bytes(self._buffer[PREFIX.size : PREFIX.size + length])
                    del self._buffer[: PREFIX.size + length]
                    obj = msgpack.unpackb(payload, raw=False)
                    assert isinstance(obj, dict), obj
                    return obj
            data = await self.stream.receive_some(65536)
            if not data:
                return None
            self._buffer += data

    async def answer(self, ident: int) -> dict[str, Any]:
        """The answer to request `ident`, skipping event frames (none are expected without a subscription)."""
        while True:
            reply = await self.receive()
            assert reply is not None, f"connection closed before the answer to {ident}"
            if reply.get("type") != "event":
                assert reply.get("id") == ident, reply
                return reply

    async def hello(self, secret: str = SECRET, ident: int = 1) -> dict[str, Any]:
        await self.send({"op": "hello", "id": ident, "version": 1, "account": ACCOUNT, "secret": secret})
        return await self.answer(ident)

    async def assert_serving(self, ident: int) -> dict[str, Any]:
        """A valid submit on this connection is accepted: the server kept serving."""
        await self.send(submit(ident, text=f"still serving {ident}"))
        reply = await self.answer(ident)
        assert reply["type"] == "result", reply
        (message,) = reply["result"]["messages"]
        assert message["state"] == "accepted", reply
        return reply


# --- the daemon as an operator runs it ----------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's pick for port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def gateway_command() -> list[str]:
    """The `gateway` console script of this interpreter's environment (what bin/gateway execs)."""
    script = Path(sys.executable).parent / "gateway"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gateway.cli"]


class Daemon:
    """`gateway serve -c FILE` as a child process, its output in a log file; `stop()` kills it (by its pid)
    if a test ends while it still runs, so no test leaves a gateway behind."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log_path = log
        self.proc: trio.Process | None = None
        self._log: TextIO | None = None

    async def start(self) -> None:
        self._log = self.log_path.open("w")
        self.proc = await trio.lowlevel.open_process(
            [*gateway_command(), "serve", "-c", str(self.config)],
            cwd=self.config.parent,
            stdout=self._log,
            stderr=self._log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def send_signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    async def wait(self) -> int:
        assert self.proc is not None
        return await self.proc.wait()

    async def stop(self) -> None:
        """Kill it if it still runs, reap it, close its log."""
        if self.proc is not None:
            if self.running():
                self.proc.kill()
            await self.proc.wait()
        if self._log is not None:
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text()

    def assert_running(self) -> None:
        assert self.running(), f"the gateway exited ({self.proc and self.proc.returncode}):\n{self.log()[-4000:]}"

    async def wait_for_log(self, needle: str, count: int = 1) -> str:
        """Until `needle` is in the log `count` times (the caller bounds the wait); the log."""
        while (text := self.log()).count(needle) < count:
            self.assert_running()
            await trio.sleep(0.05)
        return text

    async def wait_until_serving(self, socket_path: Path, account: str, secret: str) -> None:
        """Until a hello and a ping on the upstream socket succeed; fails at once if the daemon exited."""
        self.assert_running()
        while not await answers_ping(socket_path, account, secret):
            self.assert_running()
            await trio.sleep(0.05)


async def answers_ping(socket_path: Path, account: str, secret: str) -> bool:
    try:
        async with open_unix_client(socket_path, account=account, secret=secret) as client:
            await client.ping()
    except (OSError, UpstreamError):
        return False
    return True


@asynccontextmanager
async def daemon(config: Path, log: Path) -> AsyncIterator[Daemon]:
    process = Daemon(config, log)
    await process.start()
    try:
        yield process
    finally:
        with trio.CancelScope(shield=True):
            await process.stop()


async def serve_to_exit(config: Path) -> tuple[int, str]:
    """`gateway serve -c config` expected to refuse to start: its exit code and stderr (bounded)."""
    with trio.fail_after(60):
        done = await trio.run_process(
            [*gateway_command(), "serve", "-c", str(config)],
            cwd=config.parent,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    return done.returncode, done.stderr.decode()
