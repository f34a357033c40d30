"""One bind to a carrier SMSC: connect, bind, submit within window and TPS, take inbound, reconnect.

Tasks per connection (never one per PDU):
- reader: every read goes to `session.receive_data`; the events are handled in order, then one `kick()`;
- writer and ticker: see `link.py`;
- sender (transmit-capable binds): waits until the core (core.py) grants window, TPS and the end of any
  throttle pause, then takes as many jobs as those allow (refused-for-throttling jobs first, in their
  original order) and queues them all before a single kick, so they leave in one write.

What the bind decides lives in `BindCore` (core.py, pure, unit-tested without sockets); this shell waits,
reads, writes and logs.

Guarantees the engine relies on:
- every job taken from the jobs channel comes back exactly once on the results channel;
- nothing is resent blindly: a PDU that was written and got no answer is UNKNOWN; only a PDU never written
  (NOT_SENT) or refused with ESME_RTHROTTLED/ESME_RMSGQFUL (retried here) is safe to send again;
- deliver_sm_resp goes out only when the engine acks the `Inbound`.
"""

from __future__ import annotations

import math
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog
import trio

from gateway import debuglog
from gateway.carriers.bucket import AccountBudget
from gateway.carriers.config import BindConfig, BindMode
from gateway.carriers.core import BindCore, BindState, Pending
from gateway.carriers.jobs import Inbound, OutcomeKind, SubmitJob, SubmitOutcome
from gateway.carriers.link import Link, LinkLost
from gateway.errors import ConfigError
from gateway.logbudget import LogBudget
from gateway.smpp import pdu as P
from gateway.smpp.constants import THROTTLE_STATUSES, CommandId, status_name
from gateway.smpp.errors import ProtocolError
from gateway.smpp.session import (
    Event,
    LinkDead,
    Outstanding,
    PduReceived,
    Rejected,
    RequestExpired,
    ResponseReceived,
    ResponseRepaired,
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
_BOUND = BindState.BOUND

__all__ = ["Bind", "BindRefused", "BindState", "BindStatus", "describe"]


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
    throttles: int = 0  # throttle pauses since the start
    # submit_sm answer times, counted into gateway.ops.histogram.LATENCY_BOUNDS (+Inf last), and their sum.
    latency_counts: tuple[int, ...] = ()
    latency_sum: float = 0.0


class BindRefused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"bind refused with {status_name(status)}")
        self.status = status


class Bind:
    """One SMPP connection (with reconnects) of mode transmitter, receiver or transceiver.

    Every decision (state, window, TPS, throttle pause and slow restart, retry order, back-off, what a lost
    link hands back) is the `BindCore`'s; this class does the waiting, the socket and the logging.
    """

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
        rng: random.Random | None = None,
        budget: AccountBudget | None = None,
    ) -> None:
        if mode is BindMode.TX_RX_PAIR:
            raise ValueError("a Bind is one connection; CarrierPool splits tx+rx into two")
        self.config = config
        self.carrier = carrier
        self.mode = mode
        self.name = name or config.name
        self.core = BindCore(config, trio.current_time(), rng=rng, budget=budget)
        self._jobs = jobs if mode.transmits else None
        self._results = results
        self._inbound = inbound
        self._log = log.bind(carrier=carrier, bind=self.name)
        self._stopping = trio.Event()
        # Set to end a back-off or a refused bind's wait early: stop(), or the operator's retry_now().
        self._wake = trio.Event()
        self._stopped = trio.Event()
        self._stopped.set()  # until run() starts
        self._link: Link | None = None
        self._window_free = trio.Event()
        self._unacked = 0
        self._inbound_room = trio.Event()
        self._said: set[str] = set()  # what the link's SMSC does to every PDU, said once per link
        # An SMSC whose every PDU is malformed gets each one answered, but the log a bounded number of lines.
        self._rejected_log = LogBudget("pdu_rejected_more")
        self._ack_link: Link | None = None
        self._ack_on_link: Callable[[P.DeliverSm | P.DataSm, int], None] | None = None
        self._bound = trio.Event()
        self._receive_scope: trio.CancelScope | None = None

    # --- public -------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, bind and serve until `stop()`; reconnects when the core says (back-off, refused retry)."""
        self._stopped = trio.Event()
        core = self.core
        task_status.started()
        while not self._stopping.is_set():
            core.connect(trio.current_time())
            await self._connection()
            if self._stopping.is_set():
                break
            if self._bound.is_set():  # a new event for the next bind; waiters on an unset one stay valid
                self._bound = trio.Event()
            delay = max(0.0, core.retry_at - trio.current_time())
            if core.state is BindState.REFUSED:
                self._log.debug("bind_retry_scheduled", delay_seconds=round(delay, 3))
            else:
                self._log.info("bind_backing_off", delay_seconds=round(delay, 3), last_error=core.last_error)
            if not self._stopping.is_set():
                self._wake = trio.Event()
            with trio.move_on_after(delay):
                await self._wake.wait()
        core.stop(trio.current_time())
        self._stopped.set()

    def stop(self) -> None:
        """Stop taking jobs, let answers arrive (bounded by stop_grace_seconds), unbind, close."""
        self._stopping.set()
        self._wake.set()

    def retry_now(self) -> bool:
        """Connect again now if this bind waits (a back-off, or a bind the SMSC refused: the operator fixed
        the password file). True when it was waiting."""
        if self._wake.is_set() or self.is_bound:
            return False
        self._wake.set()
        return True

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def wait_bound(self) -> None:
        await self._bound.wait()

    @property
    def is_bound(self) -> bool:
        link = self._link
        return link is not None and not link.closed and link.session.is_bound

    @property
    def state(self) -> BindState:
        return self.core.state

    @property
    def throttles(self) -> int:
        return self.core.throttles

    def status(self) -> BindStatus:
        now = trio.current_time()
        core = self.core
        session = self._link.session if self._link is not None else None
        throttled = core.paused(now)
        state = core.state
        if state is BindState.THROTTLED and not throttled:
            state = BindState.BOUND  # the pause is over; the sender has not sent since
        latency = core.latency.snapshot()
        return BindStatus(
            carrier=self.carrier,
            bind=self.name,
            mode=self.mode.value,
            state=state.value,
            since=core.since,
            window_in_use=session.in_flight if session is not None else 0,
            window=self.config.window,
            current_tps=float(core.current_tps(now)),
            throttled=throttled,
            reconnects=core.reconnects,
            last_error=core.last_error,
            unacked_inbound=self._unacked,
            submitted=core.submitted,
            accepted=core.accepted,
            throttles=core.throttles,
            latency_counts=latency.counts,
            latency_sum=latency.sum,
        )

    # --- one connection -----------------------------------------------------------------------------

    async def _connection(self) -> None:
        cfg = self.config
        try:
            password = cfg.resolve_password()
            with trio.fail_after(cfg.bind_timeout_seconds):
                stream = await self._open_stream()
        except ConfigError as err:
            self._ended(str(err))
            return
        except (OSError, trio.TooSlowError, ssl.SSLError, trio.BrokenResourceError) as err:
            # trio wraps TLS failures in BrokenResourceError; the cause says what is wrong (certificate).
            cause = f" ({err.__cause__!r})" if err.__cause__ is not None else ""
            self._ended(f"connect failed: {err!r}{cause}")
            return
        now = trio.current_time()
        self.core.connected(now)
        session = Session(
            Role.ESME,
            SessionConfig(
                window=cfg.window,
                response_timeout_seconds=cfg.response_timeout_seconds,
                enquire_link_interval_seconds=cfg.enquire_link_interval_seconds,
            ),
            now=now,
        )
        link = Link(stream, session)
        self._link = link
        self._unacked = 0  # what the last link brought and was never acked, the SMSC will redeliver
        self._said = set()
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
                    self.core.stop(trio.current_time())
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
        self._log.info("bind_established", mode=self.mode.value, host=cfg.host, port=cfg.port)

    async def _graceful_unbind(self, link: Link) -> None:
        """SMPP 3.4 4.2: let in-flight answers arrive (bounded), then unbind and wait for unbind_resp."""
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
        self._ended(reason)
        written, unwritten = self.core.unsent(lost, link.batches_taken)
        await trio.aclose_forcefully(link.stream)
        for req in written:
            job = req.context.job
            await self._emit(self._outcome(job, OutcomeKind.UNKNOWN, seq=req.sequence_number, reason=reason))
        for item in unwritten:
            await self._emit(self._outcome(item.job, OutcomeKind.NOT_SENT, reason=reason))

    def _ended(self, reason: str) -> None:
        """Tell the core the connection is over, and say so in the log as it deserves."""
        before = self.core.link_lost(None if reason in ("stopped", "cancelled") else reason, trio.current_time())
        if reason in ("stopped", "cancelled"):
            self._log.info("bind_closed", reason=reason)
        elif before is BindState.REFUSED:
            pass  # logged once as bind_refused; retried on its own schedule
        elif before in (BindState.BOUND, BindState.THROTTLED, BindState.UNBINDING):
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
        if debuglog.enabled:
            self._debug_events(events)
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
                if event.flush:
                    link.finish(f"link dead: {event.reason}")  # the generic_nack goes out first
                else:
                    link.fail(f"link dead: {event.reason}")
            elif isinstance(event, Rejected):
                self._rejected_log.log(self._log.warning, trio.current_time(), "pdu_rejected",
                                       status=status_name(event.status), reason=event.reason)  # fmt: skip
            elif isinstance(event, UnexpectedResponse):
                self._log.info("unexpected_response", seq=event.pdu.sequence_number, command=type(event.pdu).__name__)
            elif isinstance(event, ResponseRepaired):
                self._say_once("response_repaired", seq=event.sequence_number, reason=event.reason,
                               note="read from its mandatory fields; what did not parse was dropped")  # fmt: skip

    def _debug_events(self, events: list[Event]) -> None:
        for event in events:
            pdu = getattr(event, "pdu", None)
            if pdu is not None:
                self._log.debug("pdu_in", command=type(pdu).__name__, seq=pdu.sequence_number,
                                status=status_name(pdu.command_status), what=type(event).__name__)  # fmt: skip
            else:
                self._log.debug("session_event", what=type(event).__name__)

    async def _on_response(self, link: Link, req: Outstanding, resp: P.Pdu) -> None:
        self._window_free.set()
        item = req.context
        if not isinstance(item, Pending):
            self._on_control_response(link, req, resp)
            return
        # Its deadline is its write batch's start plus the response timeout (see _send): the answer time.
        self.core.latency.observe(trio.current_time() - req.deadline + self.config.response_timeout_seconds)
        status = resp.command_status
        if status == 0 and isinstance(resp, P.SubmitSmResp):
            self.core.on_accepted()
            if not resp.message_id:  # no receipt can be matched to it: it ends no_receipt at the timeout
                self._say_once("submit_accepted_without_id", seq=req.sequence_number,
                               note="receipts cannot be matched")  # fmt: skip
            await self._emit(
                self._outcome(item.job, OutcomeKind.ACCEPTED, seq=req.sequence_number, message_id=resp.message_id)
            )
        elif status in THROTTLE_STATUSES:
            self._on_throttled(link, item, status)
        else:
            # A generic_nack with ESME_ROK would make no sense; it is still not an acceptance.
            await self._emit(
                self._outcome(item.job, OutcomeKind.REJECTED, seq=req.sequence_number, status=status or 0x08)
            )

    def _say_once(self, event: str, **context: object) -> None:
        """A warning about what an SMSC that does it once does to every PDU: once per link, not per PDU."""
        if event not in self._said:
            self._said.add(event)
            self._log.warning(event, **context, logged="once per link")

    def _on_throttled(self, link: Link, item: Pending, status: int) -> None:
        """Refused, so not acted on: safe to resend, first and in order, once the pause is over."""
        core = self.core
        now = trio.current_time()
        pause = core.on_throttled(item, now, link.session.in_flight)
        if pause is None:
            return
        # Submits queued and not yet written would overtake the refused one: take them back, in order.
        for req in link.session.withdraw(_SUBMIT_SM):
            core.hold(req.context)
        if self._receive_scope is not None:
            self._receive_scope.cancel()
        self._log.info("bind_throttled", status=status_name(status), pause_seconds=pause)

    def _on_control_response(self, link: Link, req: Outstanding, resp: P.Pdu) -> None:
        if req.command_id not in _BIND_IDS:
            return
        status = resp.command_status
        now = trio.current_time()
        if status == 0:
            self.core.bound(now)
            self._bound.set()
            return
        # SMPP 3.4 4.1: a refused bind leaves the session open; we drop it and retry when the core says.
        reason = str(BindRefused(status))
        if self.core.bind_refused(status, reason, now):
            self._log.error("bind_refused", status=status_name(status), system_id=self.config.system_id)
        else:
            self._log.debug("bind_refused_again", status=status_name(status))
        link.fail(reason)

    async def _on_unanswered(self, link: Link, event: RequestExpired | ResponseUnreadable) -> None:
        self._window_free.set()
        req = event.request
        if not isinstance(req.context, Pending):
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
        core = self.core
        timeout = self.config.response_timeout_seconds
        with scope:
            while True:
                now, room = await self._wait_ready(session)
                batch = link.batches_taken + 1
                sent = 0
                # Refused jobs first, in their original order; new ones only once none waits.
                while sent < room and core.has_retry:
                    item = core.next_retry(batch)
                    if item is None:
                        break
                    if not self._send(link, item, now):
                        return
                    sent += 1
                while sent < room and not core.has_retry:
                    job: SubmitJob | None
                    try:
                        if sent:
                            job = jobs.receive_nowait()
                        else:
                            job = await self._receive_first(jobs)
                            if job is None:
                                break  # a throttle refusal cancelled the wait
                            now = trio.current_time()  # the wait may have been long: deadlines from now
                            if core.state is not _BOUND:
                                core.hold(core.take(job, batch))  # a pause began: it goes after the refused
                                break
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                    if not self._send(link, core.take(job, batch), now):
                        return
                    sent += 1
                now = trio.current_time()
                core.sent(sent, now)
                link.deadline_hint(now + timeout)
                link.kick()

    def _send(self, link: Link, item: Pending, now: float) -> bool:
        try:
            # `now`: when the batch started (a response deadline a few milliseconds early at most).
            job = item.job
            if debuglog.enabled:
                self._log.debug("pdu_out", command="submit_sm", context=repr(job.context))
            if job.wire:
                link.session.send_encoded(_SUBMIT_SM, job.wire, now, context=item)
            else:
                assert job.pdu is not None
                link.session.send_request(job.pdu, now, context=item)
        except ProtocolError:
            # Unbound under us (the SMSC sent unbind): this one never left; the link is ending anyway.
            self.core.hold(item)
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

    async def _wait_ready(self, session: Session) -> tuple[float, int]:
        """Until the core says submits may go (window and slow start room, no pause, a TPS token): the time
        and how many. Never returns no room, so the sender always waits here or sends something."""
        core = self.core
        while True:
            now = trio.current_time()
            at = core.ready_at(now, session.in_flight)
            if at <= now:
                room = min(session.window_free, core.room(now, session.in_flight))
                if room > 0:
                    return now, room
                at = math.inf
            if at == math.inf:
                self._window_free = trio.Event()
                await self._window_free.wait()
            else:
                await trio.sleep_until(at)

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


def describe(status: BindStatus) -> dict[str, Any]:
    """A status snapshot as a plain dict (for gatewayctl and JSON)."""
    return {name: getattr(status, name) for name in BindStatus.__slots__}
