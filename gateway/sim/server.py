"""The built-in SMSC simulator: accepts binds, answers submits, pushes receipts and MO, injects faults.

Fast by construction, so it is never the bottleneck of the gateway's benchmarks: per connection one reader
(whole reads into the sans-IO session), one writer (one `send_all` per turn), one ticker; receipts wait in
one timer heap served by one scheduler task for the whole simulator, never a sleeping task per message.

    sim = Simulator(SimConfig(receipt_delay_seconds=0.5))
    port = await nursery.start(sim.serve, "127.0.0.1", 0)
    sim.inject_mo("STOP", source="447700900123")
    print(sim.stats())
"""

from __future__ import annotations

import heapq
import math
import random
import ssl
import time
from collections import deque
from typing import Any

import structlog
import trio

from gateway.carriers.bucket import TokenBucket
from gateway.carriers.link import Link, LinkLost
from gateway.sim.concat import ConcatChecker
from gateway.sim.config import IdFormat, SimConfig
from gateway.sim.counters import Counters
from gateway.sim.receipts import MAX_ID_OCTETS, Receipts
from gateway.smpp import codec
from gateway.smpp import pdu as P
from gateway.smpp.constants import HEADER_SIZE, CommandId, EsmClass
from gateway.smpp.constants import CommandStatus as S
from gateway.smpp.errors import EncodeError, ProtocolError
from gateway.smpp.framing import Framer
from gateway.smpp.session import (
    Event,
    LinkDead,
    Outstanding,
    PduReceived,
    RequestExpired,
    ResponseReceived,
    Session,
    SessionConfig,
    StateChanged,
)
from gateway.smpp.state import BINDS, Role, State

# Plain ints: Flag arithmetic, enum attribute lookups and enum hashing run Python code in enum.py, on the
# simulator's hot path.
_UDHI = int(EsmClass.UDHI)
_SUBMIT_SM = int(CommandId.SUBMIT_SM)
_SUBMIT_SM_RESP = CommandId.SUBMIT_SM_RESP
_DELIVER_SM = CommandId.DELIVER_SM
log = structlog.get_logger(__name__)

_RECEIPT = "receipt"
_MO = "mo"
# A deliver_sm waiting to go out or for its response: (_RECEIPT or _MO, its body after the header). Built as
# octets (receipts.py), sent with Session.send_encoded, and it is the request's context on the session, so an
# unanswered one can go out again after a reconnect (_requeue).
_Delivery = tuple[str, bytes]
_BIND_RESP: dict[int, type[P.BindTransmitterResp | P.BindReceiverResp | P.BindTransceiverResp]] = {
    CommandId.BIND_TRANSMITTER: P.BindTransmitterResp,
    CommandId.BIND_RECEIVER: P.BindReceiverResp,
    CommandId.BIND_TRANSCEIVER: P.BindTransceiverResp,
}
_RX_BINDS = frozenset({CommandId.BIND_RECEIVER, CommandId.BIND_TRANSCEIVER})
_TX_BINDS = frozenset({CommandId.BIND_TRANSMITTER, CommandId.BIND_TRANSCEIVER})
# 3GPP TS 23.040 9.2.3.24.1: an 8-bit-reference concatenation UDH takes 6 octets; GSM 7-bit fits 153
# characters beside it, UCS-2 67 (the single-message limits are 160 and 70).
_GSM_SINGLE, _GSM_PART = 160, 153
_UCS2_SINGLE, _UCS2_PART = 70, 67


class _Conn:
    """One ESME connection to the simulator."""

    __slots__ = ("bucket", "drop_at", "link", "receives", "system_id", "transmits")

    def __init__(self, link: Link, throttle_tps: float, drop_every: int) -> None:
        self.link = link
        self.system_id = ""
        self.receives = False
        self.transmits = False
        self.bucket = TokenBucket(throttle_tps, trio.current_time()) if throttle_tps > 0 else None
        self.drop_at = drop_every


class Simulator:
    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = cfg = config or SimConfig()
        self.counters = Counters()
        self.concat = ConcatChecker()
        self.port: int | None = None
        self._rng = random.Random(cfg.seed)
        self._next_id = cfg.id_start if cfg.id_start is not None else int(time.time()) * 1000
        self._id_hex = cfg.id_format is IdFormat.HEX
        self._receipts = Receipts(cfg.receipt_mix, self._rng, styles=cfg.receipt_styles)
        self._conns: set[_Conn] = set()
        self._receivers: dict[str, list[_Conn]] = {}
        self._rr = 0
        self._pending: dict[str, deque[_Delivery]] = {}
        self._heap: list[tuple[float, int, str, _Delivery]] = []
        # submit_sm_resp held back by response_delay_seconds, by due time: its sequence number and body.
        self._held: list[tuple[float, int, _Conn, int, bytes]] = []
        self._heap_seq = 0
        self._wake = trio.Event()
        self._sleep_until = math.inf
        self._mo_ref = 0
        # trio's clock when the PDUs being handled were read: one reading per read, however many PDUs it
        # brought, serves every deadline and token bucket they touch.
        self._now = 0.0

    # --- public -------------------------------------------------------------------------------------

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen and serve until cancelled; `await nursery.start(sim.serve, host, 0)` gives the bound port.

        With `ssl_context` (a server context holding the certificate), connections are TLS, as some
        carriers require; SMPP itself is unchanged over it.
        """
        tcp = await trio.open_tcp_listeners(port, host=host)
        self.port = tcp[0].socket.getsockname()[1]
        listeners: list[trio.abc.Listener[Any]] = list(tcp)
        if ssl_context is not None:
            listeners = [trio.SSLListener(t, ssl_context, https_compatible=False) for t in tcp]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._scheduler)
            if self.config.mo_interval_seconds > 0:
                nursery.start_soon(self._periodic_mo)
            log.info("sim_listening", host=host, port=self.port)
            task_status.started(self.port)
            await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)

    def stats(self) -> dict[str, int]:
        c = self.counters
        c.concat_complete = self.concat.complete
        c.concat_inconsistent = self.concat.inconsistent
        c.concat_incomplete = self.concat.incomplete
        c.receipts_pending = len(self._heap) + sum(len(q) for q in self._pending.values())
        return c.snapshot()

    def inject_mo(
        self,
        text: str,
        *,
        source: str | None = None,
        destination: str | None = None,
        system_id: str | None = None,
    ) -> int:
        """Push a mobile-originated message to a receiver bind of `system_id` (default: the first account).

        Text that fits one SMS goes as one deliver_sm; longer text as concatenated parts with an 8-bit
        reference UDH (3GPP TS 23.040 9.2.3.24.1) and esm_class UDHI. Returns the number of parts.
        """
        cfg = self.config
        sid = system_id if system_id is not None else cfg.credentials[0][0]
        parts = _mo_parts(text, self._next_mo_ref())
        now = trio.current_time()
        for dc, body in parts:
            pdu = P.DeliverSm(
                source_addr_ton=1,
                source_addr_npi=1,
                source_addr=source or cfg.mo_source,
                destination_addr=destination or cfg.mo_destination,
                esm_class=EsmClass.UDHI if len(parts) > 1 else 0,
                data_coding=dc,
                short_message=body,
            )
            self._deliver(sid, (_MO, codec.encode(pdu, 0)[HEADER_SIZE:]), now)
        return len(parts)

    def inject_deliver(self, pdu: P.DeliverSm, *, system_id: str | None = None) -> None:
        """Push a deliver_sm exactly as given (tests: what a foreign SMSC sends, malformed content included);
        its deliver_sm_resp counts in mo_acked or mo_refused."""
        sid = system_id if system_id is not None else self.config.credentials[0][0]
        self._deliver(sid, (_MO, codec.encode(pdu, 0)[HEADER_SIZE:]), trio.current_time())

    def drop_all(self) -> None:
        """Close every connection at once, unanswered (tests: a carrier that vanishes)."""
        for conn in list(self._conns):
            self.counters.drops += 1
            conn.link.fail("dropped on request")

    def unbind_all(self) -> None:
        """Send unbind on every bound connection (SMPP 3.4 4.2: either side may end the session)."""
        now = trio.current_time()
        for conn in list(self._conns):
            if conn.link.session.is_bound:
                conn.link.session.send_request(P.Unbind(), now)
                conn.link.kick()

    @property
    def connections(self) -> int:
        return len(self._conns)

    # --- connections --------------------------------------------------------------------------------

    async def _handle(self, stream: trio.abc.Stream) -> None:
        cfg = self.config
        session = Session(
            Role.SMSC,
            SessionConfig(
                window=cfg.window,
                response_timeout_seconds=cfg.response_timeout_seconds,
                enquire_link_interval_seconds=0,
            ),
            now=trio.current_time(),
        )
        link = Link(stream, session)
        conn = _Conn(link, cfg.throttle_tps, cfg.drop_every_pdus)
        self._conns.add(conn)
        try:
            with link.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(link.writer)
                    nursery.start_soon(link.ticker, lambda evs: self._on_events(conn, evs, trio.current_time()))
                    await self._reader(conn)
        finally:
            self._forget(conn)
            self._requeue(conn, session.close())
            await trio.aclose_forcefully(stream)

    async def _reader(self, conn: _Conn) -> None:
        link = conn.link
        session = link.session
        framer = Framer() if self.config.drop_every_pdus else None
        try:
            while True:
                data = await link.receive()
                if framer is None:
                    # One clock reading per read, however many PDUs it brought.
                    now = trio.current_time()
                    await self._on_events(conn, session.receive_data(data, now), now)
                elif not await self._feed_counting(conn, framer, data):
                    return
                link.kick()
        except LinkLost as err:
            link.fail(str(err))

    async def _feed_counting(self, conn: _Conn, framer: Framer, data: bytes) -> bool:
        """Feed PDU by PDU so the connection drops exactly at its Nth PDU (slow path, only when asked)."""
        framer.feed(data)
        for frame in framer.frames():
            conn.drop_at -= 1
            if conn.drop_at <= 0:
                self.counters.drops += 1
                log.info("sim_dropping_connection", system_id=conn.system_id)
                conn.link.fail("dropped by fault injection")
                return False
            now = trio.current_time()
            await self._on_events(conn, conn.link.session.receive_data(frame, now), now)
        return True

    async def _on_events(self, conn: _Conn, events: list[Event], now: float) -> None:
        self._now = now
        for event in events:
            if isinstance(event, PduReceived):
                self._on_request(conn, event.pdu)
            elif isinstance(event, ResponseReceived):
                self._on_response(conn, event.request.context, event.pdu)
            elif isinstance(event, RequestExpired):
                self.counters.receipts_expired += 1
            elif isinstance(event, StateChanged):
                if event.new is State.CLOSED:
                    self.counters.unbinds += 1
                    self._forget(conn)
                    conn.link.finish("unbound")
            elif isinstance(event, LinkDead):
                conn.link.fail(event.reason)

    def _on_request(self, conn: _Conn, pdu: P.Pdu) -> None:
        cid = pdu.command_id
        if cid == _SUBMIT_SM:
            assert isinstance(pdu, P.SubmitSm)
            self._on_submit(conn, pdu)
        elif cid in BINDS:
            assert isinstance(pdu, P.BindTransmitter | P.BindReceiver | P.BindTransceiver)
            self._on_bind(conn, pdu)
        elif cid == CommandId.DATA_SM:
            msg_id = self._new_id()
            conn.link.session.send_response(P.DataSmResp(sequence_number=pdu.sequence_number, message_id=msg_id))
        else:
            resp = P.RESPONSE_FOR.get(CommandId(cid))
            if resp is not None:
                # query_sm, cancel_sm, replace_sm, submit_multi: not simulated.
                conn.link.session.send_response(
                    resp(sequence_number=pdu.sequence_number, command_status=S.ESME_RINVCMDID)
                )

    def _on_bind(self, conn: _Conn, pdu: P.BindTransmitter | P.BindReceiver | P.BindTransceiver) -> None:
        cfg = self.config
        expected = cfg.password_for(pdu.system_id)
        if expected is None:
            status = S.ESME_RINVSYSID
        elif expected != pdu.password:
            status = S.ESME_RINVPASWD
        else:
            status = S.ESME_ROK
        resp_cls: type[P.BindTransmitterResp | P.BindReceiverResp | P.BindTransceiverResp]
        resp_cls = _BIND_RESP[pdu.command_id]
        conn.link.session.send_response(
            resp_cls(sequence_number=pdu.sequence_number, command_status=status, system_id=cfg.system_id)
        )
        if status:
            self.counters.binds_refused += 1
            log.info("sim_bind_refused", system_id=pdu.system_id, status=status.name)
            conn.link.finish("bind refused")
            return
        self.counters.binds += 1
        conn.system_id = pdu.system_id
        conn.transmits = pdu.command_id in _TX_BINDS
        conn.receives = pdu.command_id in _RX_BINDS
        if conn.receives:
            self._receivers.setdefault(conn.system_id, []).append(conn)
            self._drain(conn, self._now)
        log.info("sim_bound", system_id=pdu.system_id, mode=type(pdu).__name__)

    def _on_submit(self, conn: _Conn, pdu: P.SubmitSm) -> None:
        now = self._now
        counters = self.counters
        counters.submits += 1
        session = conn.link.session
        seq = pdu.sequence_number
        bucket = conn.bucket
        if bucket is not None:
            if bucket.available(now) < 1:
                counters.throttled += 1
                session.send_response(P.SubmitSmResp(sequence_number=seq, command_status=S.ESME_RTHROTTLED))
                return
            bucket.take(1, now)
        cfg = self.config
        if cfg.destination_errors:
            status = _destination_error(cfg.destination_errors, pdu.destination_addr)
            if status:
                counters.errors_injected += 1
                session.send_response(P.SubmitSmResp(sequence_number=seq, command_status=status))
                return
        if cfg.error_rate and self._rng.random() < cfg.error_rate:
            counters.errors_injected += 1
            session.send_response(P.SubmitSmResp(sequence_number=seq, command_status=cfg.error_status))
            return
        value = self._next_id
        msg_id = self._new_id_octets()
        if pdu.esm_class & _UDHI or pdu.tlvs:
            self.concat.feed(conn.system_id, pdu)
        counters.submits_ok += 1
        if len(msg_id) > MAX_ID_OCTETS:
            raise EncodeError(f"message_id {msg_id!r} longer than {MAX_ID_OCTETS}", command_status=S.ESME_RINVMSGID)
        body = self._receipts.build(pdu, msg_id, value)
        # SMPP 3.4 4.4.2: submit_sm_resp's body is message_id, a C-Octet String.
        resp = msg_id + b"\x00"
        if body is None:
            self._respond(conn, seq, resp, now)
            return
        receipt = (_RECEIPT, body)
        if cfg.receipt_before_response_rate and self._rng.random() < cfg.receipt_before_response_rate:
            self._deliver(conn.system_id, receipt, now)
            self._respond(conn, seq, resp, now)
            return
        self._respond(conn, seq, resp, now)
        if cfg.receipt_delay_seconds <= 0:
            self._deliver(conn.system_id, receipt, now)
        else:
            self._schedule(now + cfg.receipt_delay_seconds, conn.system_id, receipt)

    def _on_response(self, conn: _Conn, context: Any, pdu: P.Pdu) -> None:
        if context is None:
            return  # our unbind
        kind = context[0]
        if kind == _RECEIPT:
            if pdu.command_status == 0:
                self.counters.receipts_acked += 1
        elif kind == _MO:
            if pdu.command_status == 0:
                self.counters.mo_acked += 1
            else:
                self.counters.mo_refused += 1
        if self._pending.get(conn.system_id):
            self._drain(conn, self._now)

    def _requeue(self, conn: _Conn, lost: list[Outstanding]) -> None:
        """deliver_sm that got no answer go out again on the next receiver bind, as an SMSC retries them."""
        unanswered = sorted(
            (req for req in lost if isinstance(req.context, tuple)), key=lambda req: req.sequence_number
        )
        if not unanswered or not conn.system_id:
            return
        queue = self._pending.setdefault(conn.system_id, deque())
        for req in reversed(unanswered):
            queue.appendleft(req.context)
        now = trio.current_time()
        for other in self._receivers.get(conn.system_id, []):
            self._drain(other, now)

    def _forget(self, conn: _Conn) -> None:
        self._conns.discard(conn)
        receivers = self._receivers.get(conn.system_id)
        if receivers and conn in receivers:
            receivers.remove(conn)

    # --- receipts and MO ----------------------------------------------------------------------------

    def _new_id(self) -> str:
        return self._new_id_octets().decode()

    def _new_id_octets(self) -> bytes:
        """The next message_id as ASCII octets: submit_sm_resp and receipts are written without the codec."""
        n = self._next_id
        self._next_id = n + 1
        return b"%x" % n if self._id_hex else b"%d" % n

    def _respond(self, conn: _Conn, seq: int, body: bytes, now: float) -> None:
        """Send (or hold for response_delay_seconds) the submit_sm_resp with `body` for request `seq`."""
        delay = self.config.response_delay_seconds
        if delay <= 0:
            conn.link.session.send_encoded(_SUBMIT_SM_RESP, body, now, sequence_number=seq)
            return
        self._heap_seq += 1
        heapq.heappush(self._held, (now + delay, self._heap_seq, conn, seq, body))
        if now + delay < self._sleep_until:
            self._wake.set()

    def _schedule(self, due: float, system_id: str, delivery: _Delivery) -> None:
        self._heap_seq += 1
        heapq.heappush(self._heap, (due, self._heap_seq, system_id, delivery))
        if due < self._sleep_until:
            self._wake.set()

    async def _scheduler(self) -> None:
        heap = self._heap
        while True:
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                _, _, system_id, delivery = heapq.heappop(heap)
                self._deliver(system_id, delivery, now)
            held = self._held
            while held and held[0][0] <= now:
                _, _, conn, seq, body = heapq.heappop(held)
                if conn.link.closed:
                    continue  # the connection it belonged to is gone: the ESME's request times out
                try:
                    conn.link.session.send_encoded(_SUBMIT_SM_RESP, body, now, sequence_number=seq)
                except ProtocolError:
                    continue  # unbound meanwhile
                conn.link.kick()
            self._sleep_until = min(heap[0][0] if heap else math.inf, held[0][0] if held else math.inf)
            with trio.move_on_at(self._sleep_until):
                await self._wake.wait()
            self._wake = trio.Event()

    def _deliver(self, system_id: str, delivery: _Delivery, now: float) -> None:
        conns = self._receivers.get(system_id)
        if conns:
            rr = self._rr = self._rr + 1
            n = len(conns)
            for i in range(n):
                conn = conns[(rr + i) % n]
                if conn.link.session.window_free > 0 and not conn.link.closed:
                    self._send_deliver(conn, delivery, now)
                    return
        queue = self._pending.setdefault(system_id, deque())
        if len(queue) >= self.config.max_pending_receipts:
            self.counters.receipts_discarded += 1
            return
        queue.append(delivery)

    def _send_deliver(self, conn: _Conn, delivery: _Delivery, now: float) -> None:
        link = conn.link
        try:
            link.session.send_encoded(_DELIVER_SM, delivery[1], now, context=delivery)
        except ProtocolError:  # the bind is going away; keep the PDU for another
            self._pending.setdefault(conn.system_id, deque()).appendleft(delivery)
            return
        if delivery[0] == _RECEIPT:
            self.counters.receipts_sent += 1
        else:
            self.counters.mo_sent += 1
        link.deadline_hint(now + self.config.response_timeout_seconds)
        link.kick()

    def _drain(self, conn: _Conn, now: float) -> None:
        queue = self._pending.get(conn.system_id)
        session = conn.link.session
        while queue and session.window_free > 0 and not conn.link.closed:
            self._send_deliver(conn, queue.popleft(), now)

    def _next_mo_ref(self) -> int:
        self._mo_ref = (self._mo_ref + 1) & 0xFF
        return self._mo_ref

    async def _periodic_mo(self) -> None:
        n = 0
        while True:
            await trio.sleep(self.config.mo_interval_seconds)
            n += 1
            self.inject_mo(f"periodic MO {n}")


def _destination_error(errors: tuple[tuple[str, int], ...], destination: str) -> int:
    """The command_status configured for the longest prefix of `destination` (0: none)."""
    for prefix, status in errors:  # longest first (config.parse_destination_errors)
        if destination.startswith(prefix):
            return status
    return 0


def _mo_parts(text: str, ref: int) -> list[tuple[int, bytes]]:
    """(data_coding, short_message) of each part. ASCII text as octets with data_coding 0 (the SMSC default
    alphabet in the simulator), anything else as UCS-2 (data_coding 8, SMPP 3.4 5.2.19)."""
    if text.isascii():
        dc, single, per_part, enc = 0, _GSM_SINGLE, _GSM_PART, "ascii"
    else:
        dc, single, per_part, enc = 8, _UCS2_SINGLE, _UCS2_PART, "utf-16-be"
    units = list(text)
    if len(units) <= single:
        return [(dc, text.encode(enc))]
    chunks = ["".join(units[i : i + per_part]) for i in range(0, len(units), per_part)]
    total = len(chunks)
    # 3GPP TS 23.040 9.2.3.24.1: UDHL=5, IEI 0x00, IEDL 3, reference, total, sequence (from 1).
    return [(dc, bytes((5, 0, 3, ref, total, i + 1)) + chunk.encode(enc)) for i, chunk in enumerate(chunks)]
