"""Shared pieces for the carrier and simulator tests: a simulator + pool running, and a scriptable SMSC."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import trio

from gateway.carriers import BindConfig, BindMode, CarrierConfig, CarrierPool, Inbound, SubmitJob, SubmitOutcome
from gateway.sim import SimConfig, Simulator
from gateway.smpp import pdu as P
from gateway.smpp.session import PduReceived, Session, SessionConfig, StateChanged
from gateway.smpp.state import BINDS, Role, State

PASSWORD_ENV = "GATEWAY_TEST_SIM_PASSWORD"
SYSTEM_ID = "acme"
PASSWORD = "s3cret"
SIM_CONFIG = SimConfig(credentials=((SYSTEM_ID, PASSWORD),), seed=7)


def bind_config(port: int, **changes: Any) -> BindConfig:
    os.environ[PASSWORD_ENV] = PASSWORD
    base = BindConfig(
        name="b1",
        port=port,
        system_id=SYSTEM_ID,
        password_env=PASSWORD_ENV,
        window=10,
        reconnect_min_seconds=0.5,
        reconnect_max_seconds=4,
        bind_timeout_seconds=5,
        enquire_link_interval_seconds=30,
    )
    return replace(base, **changes)


def submit(i: int, *, receipt: bool = True, **changes: Any) -> P.SubmitSm:
    pdu = P.SubmitSm(
        source_addr="ACME",
        destination_addr=f"4477009{i:05d}",
        short_message=b"message %d" % i,
        registered_delivery=1 if receipt else 0,
    )
    return replace(pdu, **changes)


@asynccontextmanager
async def running_sim(config: SimConfig = SIM_CONFIG) -> AsyncIterator[Simulator]:
    sim = Simulator(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.serve, "127.0.0.1", 0)
        yield sim
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def running_pool(
    port: int, *, mode: BindMode = BindMode.TRANSCEIVER, wait_bound: bool = True, **changes: Any
) -> AsyncIterator[CarrierPool]:
    pool = CarrierPool(CarrierConfig(name="sim", binds=(bind_config(port, mode=mode, **changes),)))
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        if wait_bound:
            await pool.wait_bound()
        yield pool
        nursery.cancel_scope.cancel()


async def submit_all(pool: CarrierPool, pdus: list[P.SubmitSm]) -> list[SubmitOutcome]:
    """Send every PDU (context = its index) and collect one outcome per PDU, in arrival order."""
    assert pool.results is not None
    for i, pdu in enumerate(pdus):
        await pool.jobs.send(SubmitJob(pdu, i))
    return [await pool.results.receive() for _ in pdus]


async def take_inbound(pool: CarrierPool, n: int, *, ack: bool = True) -> list[Inbound]:
    assert pool.inbound is not None
    items = []
    for _ in range(n):
        item = await pool.inbound.receive()
        if ack:
            item.ack()
        items.append(item)
    return items


class ScriptedSmsc:
    """An SMSC that accepts any bind and then does only what the test says: answer submits after a delay,
    or go silent (read and discard everything, enquire_link included)."""

    def __init__(self, *, answer_submits: bool = True, submit_delay: float = 0.0, silent: bool = False) -> None:
        self.answer_submits = answer_submits
        self.submit_delay = submit_delay
        self.silent = silent
        self.received: list[P.Pdu] = []
        self.connections = 0

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        try:
            await self._serve_one(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return  # the bind went away; that is what some tests do

    async def _serve_one(self, stream: trio.SocketStream) -> None:
        session = Session(Role.SMSC, SessionConfig(enquire_link_interval_seconds=0))
        lock = trio.StrictFIFOLock()

        async def flush() -> None:
            async with lock:
                await stream.send_all(session.data_to_send())

        bound = False
        async with trio.open_nursery() as nursery:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    nursery.cancel_scope.cancel()
                    return
                if bound and self.silent:
                    continue
                for event in session.receive_data(data, trio.current_time()):
                    if isinstance(event, PduReceived):
                        self.received.append(event.pdu)
                        bound = bound or event.pdu.command_id in BINDS
                        self._answer(session, event.pdu, nursery, flush)
                    elif isinstance(event, StateChanged) and event.new is State.CLOSED:
                        self.received.append(P.Unbind())  # the session answered it by itself
                await flush()

    def _answer(
        self, session: Session, pdu: P.Pdu, nursery: trio.Nursery, flush: Callable[[], Awaitable[None]]
    ) -> None:
        if pdu.command_id in BINDS:
            resp = P.RESPONSE_FOR[pdu.command_id]
            session.send_response(resp(sequence_number=pdu.sequence_number))
        elif isinstance(pdu, P.SubmitSm) and self.answer_submits:
            nursery.start_soon(self._answer_later, session, pdu, flush)

    async def _answer_later(self, session: Session, pdu: P.SubmitSm, flush: Callable[[], Awaitable[None]]) -> None:
        await trio.sleep(self.submit_delay)
        seq = pdu.sequence_number
        session.send_response(P.SubmitSmResp(sequence_number=seq, message_id=f"m{seq}"))
        await flush()
