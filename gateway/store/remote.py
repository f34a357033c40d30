"""The gateway's side of the writer process (gateway/store/worker.py): start it, send it groups, stop it.

    process = await WriterProcess.start(cfg, now_ms)     # the worker opens the store and recovers
    store = Store(cfg, clock)                             # this process reads; it never writes
    writer = Writer(store, process=process)

`send` and `receive` are separate so the Writer can keep a few groups in flight (writer.PIPELINE_DEPTH):
the worker answers them in the order they were sent. A worker that exits or answers nonsense raises
WorkerCrashed: the gateway stops rather than guess what was committed.
"""

from __future__ import annotations

import os
import socket
import sys
from collections import deque
from collections.abc import Sequence

import msgpack
import trio

from gateway.errors import GatewayError, StoreError
from gateway.store import wire
from gateway.store.config import StoreConfig
from gateway.store.ops import Op, Result
from gateway.store.store import RecoveryReport

_LEN_BYTES = 4


class WriterProcess:
    def __init__(self, process: trio.Process, stream: trio.SocketStream) -> None:
        self._process = process
        self._stream = stream
        self._buffer = bytearray()
        self._sent: deque[int] = deque()  # the size of each group sent and not yet answered
        self.last_seq = 0
        self.recovery = RecoveryReport(0, 0)

    @property
    def pid(self) -> int:
        return self._process.pid

    @classmethod
    async def start(cls, cfg: StoreConfig, now_ms: int) -> WriterProcess:
        """Start the worker, open the store there (recovery included) and wait until it is ready.
        Raises StoreError with the worker's reason when it cannot open the store."""
        ours, theirs = socket.socketpair()
        try:
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "gateway.store.worker", str(theirs.fileno()), str(os.getpid())],
                pass_fds=(theirs.fileno(),),
            )
        finally:
            theirs.close()
        self = cls(process, trio.SocketStream(trio.socket.from_stdlib_socket(ours)))
        try:
            await self._stream.send_all(wire.frame(msgpack.packb({**wire.config_fields(cfg), "now_ms": now_ms})))
            ready = msgpack.unpackb(await self._receive("opening the store"))
            if ready[0] is None:
                raise StoreError(f"the store writer could not open {cfg.path}: {ready[1]}")
            self.last_seq = ready[0]
            self.recovery = RecoveryReport(ready[1], ready[2])
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.aclose()
            raise
        return self

    async def send(self, ops: Sequence[Op], now_ms: int) -> None:
        """Send one group; its answer comes from `receive()`, answers in the order groups were sent.
        Not cancellable: a group half sent would leave the stream unusable."""
        self._sent.append(len(ops))
        with trio.CancelScope(shield=True):
            try:
                await self._stream.send_all(wire.frame(wire.pack_request(now_ms, ops)))
            except (trio.BrokenResourceError, trio.ClosedResourceError) as err:
                code = await self._exit_code()
                raise wire.WorkerCrashed(f"the store writer process exited ({code}) before a commit") from err

    async def receive(self) -> list[Result | GatewayError]:
        """The next group's results: per-op errors as values; a group refused as a whole raises StoreFull
        or wire.GroupFailed; a broken worker raises wire.WorkerCrashed."""
        data = await self._receive("committing")
        sent = self._sent.popleft() if self._sent else -1
        try:
            seq, results = wire.unpack_reply(data)
        except wire.WireFormatError as err:
            raise wire.WorkerCrashed(str(err)) from err
        self.last_seq = max(self.last_seq, seq)
        if isinstance(results, GatewayError):
            raise results
        if len(results) != sent:
            raise wire.WorkerCrashed(f"{len(results)} results for {sent} operations")
        return results

    async def _receive(self, doing: str) -> bytes:
        buf = self._buffer
        while True:
            if len(buf) >= _LEN_BYTES:
                size = int.from_bytes(buf[:_LEN_BYTES], "big")
                if len(buf) >= _LEN_BYTES + size:
                    body = bytes(buf[_LEN_BYTES : _LEN_BYTES + size])
                    del buf[: _LEN_BYTES + size]
                    return body
            try:
                chunk = await self._stream.receive_some(1 << 20)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                chunk = b""
            if not chunk:
                code = await self._exit_code()
                raise wire.WorkerCrashed(f"the store writer process exited ({code}) while {doing}")
            buf += chunk

    async def _exit_code(self) -> int | None:
        with trio.move_on_after(5):
            return await self._process.wait()
        return self._process.returncode

    async def aclose(self) -> None:
        """Stop the worker: end of file is its signal to close the store and exit."""
        with trio.CancelScope(shield=True):
            await self._stream.aclose()
            with trio.move_on_after(30):
                await self._process.wait()
                return
            self._process.kill()
            await self._process.wait()
