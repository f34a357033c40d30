"""One bind to a carrier SMSC: connect, bind, submit within window and TPS, take inbound, reconnect.

Tasks per connection (never one per PDU):
- reader: every read goes to `session.receive_data`; the events are handled in order, then one `kick()`;
- writer and ticker: see `link.py`;
- sender (transmit-capable binds): waits for a free window slot, TPS tokens and the end of any throttle
  pause, then takes as many jobs as those allow (refused-for-throttling jobs first, in their original order)
  and queues them all before a single kick, so they leave in one write.

Guarantees the engine relies on:
- every job taken from the jobs channel comes back exactly once on the results channel;
- nothing is resent blindly: a PDU that was written and got no answer is UNKNOWN; only a PDU never written
  (NOT_SENT) or refused with ESME_RTHROTTLED/ESME_RMSGQFUL (retried here) is safe to send again;
- deliver_sm_resp goes out only when the engine acks the `Inbound`.
"""

from __future__ import annotations

import heapq
import math
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog
import trio

from gateway.carriers.bucket import TokenBucket
from gateway.carriers.config import BindConfig, BindMode
from gateway.carriers.jobs import Inbound, OutcomeKind, SubmitJob, SubmitOutcome
from gateway.carriers.link import Link, LinkLost
from gateway.errors import ConfigError, ProtocolError
from gateway.smpp import pdu as P
from gateway.smpp.constants import THROTTLE_STATUSES, CommandId, status_name
from gateway.smpp.session import (
    Event,
    LinkDead,
    Outstanding,
    PduReceived,
    Rejected,
    RequestExpired,
    ResponseReceived,
    ResponseUnreadable,
    Session,
    SessionConfig,
    StateChanged,
    UnexpectedResponse,
)
from gateway.smpp.state import Role, State

log = structlog.get_logger(__name__)

_BIND_PDU: dict[BindMode, type[P.BindTransmitter | P.BindReceiver | P.BindTransceiver]] = {
    BindMode.TRANSMITTER: P.BindTransmitter,
    BindMode.RECEIVER: P.BindReceiver,
    BindMode.TRANSCEIVER: P.BindTransceiver,
}
_BIND_IDS = frozenset({CommandId.BIND_TRANSMITTER, CommandId.BIND_RECEIVER, CommandId.BIND_TRANSCEIVER})
_UNBIND_TIMEOUT_SECONDS = 2.0


_SUBMIT_SM = CommandId.SUBMIT_SM

class BindState:
    """Where a bind is, for status snapshots (plain strings, so a snapshot serialises as it is)."""

    IDLE = "idle"
    CONNECTING = "connecting"
    BINDING = "binding"
    BOUND = "bound"
    THROTTLED = "throttled"
    UNBINDING = "unbinding"
    BACKING_OFF = "backing_off"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class BindStatus:
    carrier: str
    bind: str
    mode: str
    state: str
    since: float
    window_in_use: int
    window: int
    current_tps: float
    throttled: bool
    reconnects: int
    last_error: str | None
    unacked_inbound: int
    submitted: int
    accepted: int


@dataclass(slots=True)
class _InFlight:
    """A job on the wire: its place in the original order (for throttle retries) and its write batch."""

    job: SubmitJob
    order: int
    batch: int


class BindRefused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"bind refused with {status_name(status)}")
        self.status = status


class Bind:
    """One SMPP connection (with reconnects) of mode transmitter, receiver or transceiver."""

    def __init__(
        self,
        config: BindConfig,
        *,
        carrier: str,
        mode: BindMode,
        jobs: trio.MemoryReceiveChannel[SubmitJob] | None,
        results: trio.MemorySendChannel[SubmitOutcome],
        inbound: trio.MemorySendChannel[Inbound],
        name: str | None = None,
    ) -> None:
        if mode is BindMode.TX_RX_PAIR:
            raise ValueError("a Bind is one connection; CarrierPool splits tx+rx into two")
        self.config = config
        self.carrier = carrier
        self.mode = mode
        self.name = name or config.name
        self._jobs = jobs if mode.transmits else None
        self._results = results
        self._inbound = inbound
        self._log = log.bind(carrier=carrier, bind=self.name)
        self._stopping = trio.Event()
        self._stopped = trio.Event()
        self._stopped.set()  # until run() starts
        self._link: Link | None = None
        # Throttle-refused jobs, ordered by when they were first taken: resent before anything new.
        self._retry: list[tuple[int, _InFlight]] = []
        self._order = 0
        self._throttled_until = -math.inf
        self._throttle_backoff = 0.0
        self._window_free = trio.Event()
        self._unacked = 0
        self._inbound_room = trio.Event()
        self._ack_link: Link | None = None
        self._ack_on_link: Callable[[P.DeliverSm | P.DataSm, int], None] | None = None
        self._bound = trio.Event()
        self._receive_scope: trio.CancelScope | None = None
        # Status snapshot fields.
        self.state = BindState.IDLE
        self.since = trio.current_time()
        self.reconnects = 0
        self.last_error: str | None = None
        self.submitted = 0
        self.accepted = 0
        self.throttles = 0
        self._tps_second = 0
        self._tps_count = 0
        self._tps_last = 0

    # --- public -------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, bind and serve until `stop()`; reconnects with exponential back-off and jitter."""
        self._stopped = trio.Event()
        task_status.started()
        attempt = 0
        while not self._stopping.is_set():
            await self._connection()
            if self._stopping.is_set():
                break
            attempt = 0 if self._bound.is_set() else attempt + 1
            self._bound = trio.Event()
            self.reconnects += 1
            delay = self._backoff(attempt)
            self._set_state(BindState.BACKING_OFF)
            self._log.info("bind_backing_off", delay_seconds=round(delay, 3), last_error=self.last_error)
            with trio.move_on_after(delay):
                await self._stopping.wait()
        self._set_state(BindState.STOPPED)
        self._stopped.set()

    def stop(self) -> None:
        """Stop taking jobs, let answers arrive (bounded by stop_grace_seconds), unbind, close."""
        self._stopping.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def wait_bound(self) -> None:
        await self._bound.wait()

    @property
    def is_bound(self) -> bool:
        link = self._link
        return link is not None and not link.closed and link.session.is_bound

    def status(self) -> BindStatus:
        now = trio.current_time()
        session = self._link.session if self._link is not None else None
        throttled = now < self._throttled_until
        state = self.state
        if throttled and state == BindState.BOUND:
            state = BindState.THROTTLED
        return BindStatus(
            carrier=self.carrier,
            bind=self.name,
            mode=self.mode.value,
            state=state,
            since=self.since,
            window_in_use=session.in_flight if session is not None else 0,
            window=self.config.window,
            current_tps=float(self._current_tps(now)),
            throttled=throttled,
            reconnects=self.reconnects,
            last_error=self.last_error,
            unacked_inbound=self._unacked,
            submitted=self.submitted,
            accepted=self.accepted,
        )

    # --- one connection -----------------------------------------------------------------------------

    async def _connection(self) -> None:
        cfg = self.config
        self._set_state(BindState.CONNECTING)
        try:
            password = cfg.resolve_password()
            with trio.fail_after(cfg.bind_timeout_seconds):
                stream = await self._open_stream()
        except ConfigError as err:
            self._lost(str(err))
            return
        except (OSError, trio.TooSlowError, ssl.SSLError, trio.BrokenResourceError) as err:
            # trio wraps TLS failures in BrokenResourceError; the cause says what is wrong (certificate).
            cause = f" ({err.__cause__!r})" if err.__cause__ is not None else ""
            self._lost(f"connect failed: {err!r}{cause}")
            return
        session = Session(
            Role.ESME,
            SessionConfig(
                window=cfg.window,
                response_timeout_seconds=cfg.response_timeout_seconds,
                enquire_link_interval_seconds=cfg.enquire_link_interval_seconds,
            ),
            now=trio.current_time(),
        )
        link = Link(stream, session)
        self._link = link
        self._unacked = 0  # what the last link brought and was never acked, the SMSC will redeliver
        try:
            with link.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(link.writer)
                    nursery.start_soon(self._reader, link)
                    nursery.start_soon(link.ticker, lambda events: self._on_events(link, events))
                    await self._bind(link, password)
                    sender_scope = trio.CancelScope()
                    if self._jobs is not None:
                        nursery.start_soon(self._sender, link, self._jobs, sender_scope)
                    await self._stopping.wait()
                    sender_scope.cancel()
                    await self._graceful_unbind(link)
                    link.fail("stopped")
        finally:
            await self._after_link(link)

    async def _open_stream(self) -> trio.abc.Stream:
        cfg = self.config
        tcp = await trio.open_tcp_stream(cfg.host, cfg.port)
        if not cfg.tls:
            return tcp
        ctx = ssl.create_default_context(cafile=cfg.tls_ca_file)
        if cfg.tls_cert_file:
            ctx.load_cert_chain(cfg.tls_cert_file, cfg.tls_key_file)
        tls = trio.SSLStream(tcp, ctx, server_hostname=cfg.tls_server_name or cfg.host)
        handshaken = False
        try:
            await tls.do_handshake()
            handshaken = True
        finally:
            if not handshaken:  # refused certificate, timeout or cancel: do not leak the TCP socket
                await trio.aclose_forcefully(tcp)
        return tls

    async def _bind(self, link: Link, password: str) -> None:
        cfg = self.config
        self._set_state(BindState.BINDING)
        pdu = _BIND_PDU[self.mode](
            system_id=cfg.system_id,
            password=password,
            system_type=cfg.system_type,
            interface_version=cfg.interface_version,
            addr_ton=cfg.addr_ton,
            addr_npi=cfg.addr_npi,
            address_range=cfg.address_range,
        )
        link.session.send_request(pdu, trio.current_time(), timeout=cfg.bind_timeout_seconds)
        link.kick()
        with trio.move_on_after(cfg.bind_timeout_seconds):
            await self._bound.wait()
        if not self._bound.is_set():
            link.fail("no bind response in time")
            await trio.lowlevel.checkpoint()  # the cancelled link scope takes effect here
        self._set_state(BindState.BOUND)
        self._log.info("bind_established", mode=self.mode.value, host=cfg.host, port=cfg.port)

    async def _graceful_unbind(self, link: Link) -> None:
        """SMPP 3.4 4.2: let in-flight answers arrive (bounded), then unbind and wait for unbind_resp."""
        self._set_state(BindState.UNBINDING)
        session = link.session
        with trio.move_on_after(self.config.stop_grace_seconds):
            while session.in_flight:
                await self._changed(link)
        try:
            session.send_request(P.Unbind(), trio.current_time(), timeout=_UNBIND_TIMEOUT_SECONDS)
        except ProtocolError:
            return
        link.kick()
        with trio.move_on_after(_UNBIND_TIMEOUT_SECONDS):
            while session.state is not State.CLOSED:
                await self._changed(link)
        self._log.info("unbound", clean=session.state is State.CLOSED)

    async def _changed(self, link: Link) -> None:
        self._window_free = trio.Event()
        await self._window_free.wait()

    async def _after_link(self, link: Link) -> None:
        """The link is over: close the socket, then every job we hold goes back to the engine."""
        reason = link.error or "cancelled"
        lost = link.session.close()
        self._link = None
        if reason != "stopped":
            self._lost(reason)
        outcomes = [self._unanswered(req, link, reason) for req in lost if isinstance(req.context, _InFlight)]
        retry, self._retry = self._retry, []
        outcomes += [
            self._outcome(item.job, OutcomeKind.NOT_SENT, reason=f"refused by throttling, then {reason}")
            for _, item in sorted(retry, key=lambda entry: entry[0])
        ]
        await trio.aclose_forcefully(link.stream)
        for outcome in outcomes:
            await self._emit(outcome)

    def _unanswered(self, req: Outstanding, link: Link, reason: str) -> SubmitOutcome:
        item: _InFlight = req.context
        written = item.batch <= link.batches_taken
        kind = OutcomeKind.UNKNOWN if written else OutcomeKind.NOT_SENT
        return self._outcome(item.job, kind, seq=req.sequence_number if written else None, reason=reason)

    def _lost(self, reason: str) -> None:
        if reason == "cancelled":
            self._log.info("bind_closed", reason=reason)
            return
        self.last_error = reason
        if self.state in (BindState.BOUND, BindState.UNBINDING):
            self._log.warning("bind_lost", reason=reason)
        else:
            self._log.warning("bind_failed", reason=reason)

    # --- reader -------------------------------------------------------------------------------------

    async def _reader(self, link: Link) -> None:
        session = link.session
        try:
            while True:
                await self._inbound_bound()
                data = await link.receive()
                await self._on_events(link, session.receive_data(data, trio.current_time()))
                link.kick()
        except LinkLost as err:
            link.fail(str(err))

    async def _inbound_bound(self) -> None:
        """Backpressure: at max_unacked_inbound, stop handling and reading until the engine acks; TCP flow
        control then pushes back on the SMSC. Responses to our submits wait too, as a full engine wants."""
        while self._unacked >= self.config.max_unacked_inbound:
            self._inbound_room = trio.Event()
            await self._inbound_room.wait()

    async def _on_events(self, link: Link, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, ResponseReceived):
                await self._on_response(link, event.request, event.pdu)
            elif isinstance(event, PduReceived):
                await self._on_request(link, event.pdu)
            elif isinstance(event, RequestExpired | ResponseUnreadable):
                await self._on_unanswered(link, event)
            elif isinstance(event, StateChanged):
                self._on_state_changed(link, event)
            elif isinstance(event, LinkDead):
                link.fail(f"link dead: {event.reason}")
            elif isinstance(event, Rejected):
                self._log.warning("pdu_rejected", status=status_name(event.status), reason=event.reason)
            elif isinstance(event, UnexpectedResponse):
                self._log.info("unexpected_response", seq=event.pdu.sequence_number)

    async def _on_response(self, link: Link, req: Outstanding, resp: P.Pdu) -> None:
        self._window_free.set()
        item = req.context
        if not isinstance(item, _InFlight):
            self._on_control_response(link, req, resp)
            return
        status = resp.command_status
        if status == 0 and isinstance(resp, P.SubmitSmResp):
            self.accepted += 1
            self._throttle_backoff = 0.0
            await self._emit(
                self._outcome(item.job, OutcomeKind.ACCEPTED, seq=req.sequence_number, message_id=resp.message_id)
            )
        elif status in THROTTLE_STATUSES:
            # Refused, so not acted on: safe to resend, first and in order, once the pause is over.
            heapq.heappush(self._retry, (item.order, item))
            self._throttle(status)
            if self._receive_scope is not None:
                self._receive_scope.cancel()
        else:
            # A generic_nack with ESME_ROK would make no sense; it is still not an acceptance.
            await self._emit(
                self._outcome(item.job, OutcomeKind.REJECTED, seq=req.sequence_number, status=status or 0x08)
            )

    def _on_control_response(self, link: Link, req: Outstanding, resp: P.Pdu) -> None:
        if req.command_id in _BIND_IDS:
            if resp.command_status == 0:
                self._bound.set()
            else:
                # SMPP 3.4 4.1: a refused bind leaves the session open; we drop it and retry after back-off.
                self._log.warning("bind_refused", status=status_name(resp.command_status))
                link.fail(str(BindRefused(resp.command_status)))

    async def _on_unanswered(self, link: Link, event: RequestExpired | ResponseUnreadable) -> None:
        self._window_free.set()
        req = event.request
        if not isinstance(req.context, _InFlight):
            if req.command_id in _BIND_IDS:
                link.fail("no readable bind response")
            return
        if isinstance(event, RequestExpired):
            reason = "response timeout"
        else:
            reason = f"unreadable response: {event.error}"
        self._log.warning("submit_unknown", seq=req.sequence_number, reason=reason)
        await self._emit(
            self._outcome(req.context.job, OutcomeKind.UNKNOWN, seq=req.sequence_number, reason=reason)
        )

    async def _on_request(self, link: Link, pdu: P.Pdu) -> None:
        if not isinstance(pdu, P.DeliverSm | P.DataSm):
            self._log.info("pdu_ignored", command=type(pdu).__name__)
            return
        await self._inbound_bound()
        self._unacked += 1
        answer = self._ack_on_link
        if answer is None or self._ack_link is not link:  # one bound method per link, not a closure per PDU
            answer = self._ack_on_link = partial(self._ack, link)
            self._ack_link = link
        item = Inbound(pdu, self.carrier, self.name, answer)
        try:
            self._inbound.send_nowait(item)
        except trio.WouldBlock:
            await self._inbound.send(item)

    def _ack(self, link: Link, request: P.DeliverSm | P.DataSm, status: int) -> None:
        if link.closed:
            return
        self._unacked -= 1
        self._inbound_room.set()
        try:
            link.session.acknowledge(request, status)
        except ProtocolError:
            return  # the link closed meanwhile; the SMSC redelivers what it got no answer for
        link.kick()

    def _on_state_changed(self, link: Link, event: StateChanged) -> None:
        if event.new is State.CLOSED and event.old is not State.UNBINDING:
            # SMPP 3.4 4.2: the session queued unbind_resp; send it, then end the link and reconnect.
            self._log.info("unbound_by_peer")
            link.finish("unbound by the SMSC")

    # --- sender -------------------------------------------------------------------------------------

    async def _sender(
        self, link: Link, jobs: trio.MemoryReceiveChannel[SubmitJob], scope: trio.CancelScope
    ) -> None:
        session = link.session
        bucket = TokenBucket(self.config.tps, trio.current_time())
        timeout = self.config.response_timeout_seconds
        with scope:
            while True:
                now = await self._wait_ready(session, bucket)
                room = min(session.window_free, bucket.available(now))
                batch = link.batches_taken + 1
                sent = 0
                while sent < room:
                    item = self._next_retry(batch)
                    if item is None:
                        if self._retry:
                            break  # refused jobs wait out the pause first: order is kept
                        try:
                            job: SubmitJob | None
                            if sent:
                                job = jobs.receive_nowait()
                            else:
                                job = await self._receive_first(jobs)
                                now = trio.current_time()  # the wait may have been long: deadlines from now
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                        if job is None:
                            continue  # a throttled job came back for a retry while we waited
                        self._order += 1
                        item = _InFlight(job, self._order, batch)
                    if not self._send(link, item, now):
                        return
                    sent += 1
                now = trio.current_time()
                bucket.take(sent, now)
                self._count_tps(sent, now)
                link.deadline_hint(now + timeout)
                link.kick()

    def _send(self, link: Link, item: _InFlight, now: float) -> bool:
        try:
            # `now`: when the batch started (a response deadline a few milliseconds early at most).
            job = item.job
            if job.wire:
                link.session.send_encoded(_SUBMIT_SM, job.wire, now, context=item)
            else:
                assert job.pdu is not None
                link.session.send_request(job.pdu, now, context=item)
        except ProtocolError:
            # Unbound under us (the SMSC sent unbind): this one never left; the link is ending anyway.
            heapq.heappush(self._retry, (item.order, item))
            return False
        return True

    async def _receive_first(self, jobs: trio.MemoryReceiveChannel[SubmitJob]) -> SubmitJob | None:
        try:
            return jobs.receive_nowait()
        except trio.WouldBlock:
            pass
        with trio.CancelScope() as cs:
            self._receive_scope = cs
            try:
                return await jobs.receive()
            finally:
                self._receive_scope = None
        return None

    def _next_retry(self, batch: int) -> _InFlight | None:
        if not self._retry or trio.current_time() < self._throttled_until:
            return None
        _, item = heapq.heappop(self._retry)
        item.batch = batch
        return item

    async def _wait_ready(self, session: Session, bucket: TokenBucket) -> float:
        """Until the window has room, any throttle pause is over and a TPS token is there."""
        while True:
            now = trio.current_time()
            if now < self._throttled_until:
                await trio.sleep_until(self._throttled_until)
                continue
            if session.window_free <= 0:
                self._window_free = trio.Event()
                await self._window_free.wait()
                continue
            at = bucket.next_token_at(now)
            if at > now:
                await trio.sleep_until(at)
                continue
            return now

    def _throttle(self, status: int) -> None:
        cfg = self.config
        now = trio.current_time()
        if now < self._throttled_until:
            return  # one pause per burst of refusals, not one per refused PDU
        lo, hi = cfg.throttle_backoff_min_seconds, cfg.throttle_backoff_max_seconds
        self._throttle_backoff = lo if self._throttle_backoff == 0 else min(hi, self._throttle_backoff * 2)
        self._throttled_until = now + self._throttle_backoff
        self.throttles += 1
        self._log.info("bind_throttled", status=status_name(status), pause_seconds=self._throttle_backoff)

    # --- helpers ------------------------------------------------------------------------------------

    def _outcome(
        self,
        job: SubmitJob,
        kind: OutcomeKind,
        *,
        seq: int | None = None,
        message_id: str = "",
        status: int = 0,
        reason: str = "",
    ) -> SubmitOutcome:
        return SubmitOutcome(
            context=job.context,
            kind=kind,
            carrier=self.carrier,
            bind=self.name,
            message_id=message_id,
            status=status,
            sequence_number=seq,
            reason=reason,
        )

    async def _emit(self, outcome: SubmitOutcome) -> None:
        try:
            self._results.send_nowait(outcome)
        except trio.WouldBlock:
            await self._results.send(outcome)

    def _count_tps(self, n: int, now: float) -> None:
        self.submitted += n
        second = int(now)
        if second != self._tps_second:
            self._tps_last = self._tps_count if second == self._tps_second + 1 else 0
            self._tps_second = second
            self._tps_count = 0
        self._tps_count += n

    def _current_tps(self, now: float) -> int:
        """Submits in the last whole second."""
        second = int(now)
        if second == self._tps_second:
            return self._tps_last
        return self._tps_count if second == self._tps_second + 1 else 0

    def _backoff(self, attempt: int) -> float:
        # Exponential back-off with full jitter: a fleet of binds that lost one SMSC do not return together.
        cfg = self.config
        ceiling = min(cfg.reconnect_max_seconds, cfg.reconnect_min_seconds * 2.0 ** min(attempt, 30))
        return cfg.reconnect_min_seconds / 2 + random.random() * (ceiling - cfg.reconnect_min_seconds / 2)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.since = trio.current_time()


def describe(status: BindStatus) -> dict[str, Any]:
    """A status snapshot as a plain dict (for gatewayctl and JSON)."""
    return {name: getattr(status, name) for name in BindStatus.__slots__}
