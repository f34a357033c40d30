"""The SMPP server face (trio): upstream applications bind to the gateway as ESMEs (docs/smpp_server.md).

Per connection, as the simulator and our binds do it: a sans-IO `Session` in the SMSC role, one reader
(whole reads into the session), one writer and one ticker (`carriers.link.Link`). What each PDU means comes
from the pure `smpp_core`; what it does goes through the same `UpstreamBackend` as the internal socket, so
a submit_sm is validated, routed, checked by the policy and committed before its submit_sm_resp leaves.

- Each submit runs as its own task, at most the account's `window` per bind (one more is answered
  ESME_RTHROTTLED at once, as is one over the account's TPS); answers go out as they finish, by sequence.
- The parts of a long message wait, unanswered, in one `Assembly` until the whole text is there; it is
  submitted once, and every part is answered with its message id (or the same refusal).
- Receipts and MO go back per account by one pusher task: the account's events after its SMPP cursor, as
  deliver_sm on any of its receiver or transceiver binds (the one with the most room), each done only when
  its deliver_sm_resp says so. The cursor (`smpp:<account>`) is stored as it moves, so events wait durably
  while no receiver is bound and a rebind gets every one it missed, once.
- A fault boundary around each request: a bug answers ESME_RSYSERR and is logged once per cause.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
import trio

from gateway.carriers.bucket import TokenBucket
from gateway.carriers.link import Link, LinkLost
from gateway.smpp import pdu as P
from gateway.smpp.constants import INTERFACE_VERSION_34, CommandId, status_name
from gateway.smpp.constants import CommandStatus as S
from gateway.smpp.errors import ProtocolError
from gateway.smpp.session import (
    Event as SessionEvent,
)
from gateway.smpp.session import (
    LinkDead,
    PduReceived,
    RequestExpired,
    ResponseReceived,
    Session,
    SessionConfig,
    StateChanged,
)
from gateway.smpp.state import BINDS, Role, State
from gateway.store.keys import id_time_ms
from gateway.upstream.auth import Credentials
from gateway.upstream.backend import UpstreamBackend
from gateway.upstream.errors import UpstreamError, upstream_error_for
from gateway.upstream.faults import AuthLog, FaultLog
from gateway.upstream.schema import Event, EventKind, MessageQuery, SubmitRequest, SubmitResult, submit_request
from gateway.upstream.server import Drain
from gateway.upstream.smpp_core import (
    PERMANENT_REFUSALS,
    Assembly,
    AuthGuard,
    Outbox,
    Piece,
    Refused,
    SmppAccountConfig,
    SmppServerConfig,
    TooLong,
    bind_type,
    mo_pdu,
    query_answer,
    read_submit,
    receipt_pdu,
    refused_at_accept,
    status_for_error,
    status_for_reason,
)

log = structlog.get_logger(__name__)

_KINDS = frozenset({EventKind.DELIVERED, EventKind.FAILED, EventKind.MO})
_SUBMITS = frozenset({int(CommandId.SUBMIT_SM), int(CommandId.DATA_SM), int(CommandId.SUBMIT_MULTI)})
_RECEIVES = frozenset({"receiver", "transceiver"})
_BIND_RESP: dict[int, type[P.BindTransmitterResp | P.BindReceiverResp | P.BindTransceiverResp]] = {
    int(CommandId.BIND_TRANSMITTER): P.BindTransmitterResp,
    int(CommandId.BIND_RECEIVER): P.BindReceiverResp,
    int(CommandId.BIND_TRANSCEIVER): P.BindTransceiverResp,
}
# How many events one read of the log takes for an account's receivers at most.
_READ_LIMIT = 500
# On a graceful stop: how long what was read may take to be answered, and the ESME to answer the unbind.
_DRAIN_ANSWER_SECONDS = 2.0
# Answers queued for an ESME that does not read them, before it is not read either.
_MAX_UNSENT_BYTES = 1 << 20
# Receipt wishes kept in memory (about 100 bytes each); older ones are read from the store.
_WANTED_KEPT = 200_000
# How often a moved cursor is stored (each store is one small commit).
_CURSOR_SAVE_SECONDS = 0.2


def cursor_name(account: str) -> str:
    """The event cursor the SMPP face keeps for an account, apart from the internal socket's own."""
    return f"smpp:{account}"


class SmppBackend(UpstreamBackend, Protocol):
    async def submit_many(self, account: str, requests: Sequence[SubmitRequest]) -> list[SubmitResult | Exception]:
        """Several submits in one group commit: each request's result, or the error `submit` raises for it."""
        ...

    async def stored_cursor(self, name: str) -> int | None:
        """The event cursor stored under `name`; None when none ever was (a stored 0 is 0)."""
        ...

    async def receipt_wanted(self, account: str, message_ids: Sequence[str]) -> set[str]:
        """Those of the account's messages whose submit asked for a receipt and was not refused."""
        ...


@dataclass(slots=True)
class SmppServerStatistics:
    bound: int = 0  # connections bound now
    binds: int = 0  # binds accepted since the start
    binds_refused: int = 0
    submits: int = 0
    refused: int = 0
    throttled: int = 0
    receipts_sent: int = 0
    mo_sent: int = 0
    deliver_retries: int = 0
    deliver_given_up: int = 0
    long_pending: int = 0
    by_account: dict[str, int] = field(default_factory=dict)


class _Conn:
    __slots__ = ("account", "bind", "config", "inflight", "legacy", "link", "peer", "receives", "settled")

    def __init__(self, link: Link, peer: str) -> None:
        self.link = link
        self.peer = peer
        self.account: str | None = None
        self.config: SmppAccountConfig | None = None
        self.bind = ""
        self.receives = False
        self.legacy = False  # bound with interface_version 0x33 or older: no TLVs to it (SMPP 3.4 5.2.4)
        self.inflight = 0  # requests read and not yet answered
        self.settled = trio.Event()  # set when inflight falls to 0 (a drain waits for it)

    @property
    def session(self) -> Session:
        return self.link.session


class _Box:
    """An account's receivers and what is in flight to them."""

    def __init__(self, account: str, outbox: Outbox) -> None:
        self.account = account
        self.outbox = outbox
        self.receivers: list[_Conn] = []
        self.wake = trio.Event()
        self.saved = outbox.cursor
        self.running = False

    def poke(self) -> None:
        self.wake.set()


class SmppServer:
    def __init__(
        self,
        backend: SmppBackend,
        config: SmppServerConfig,
        passwords: Mapping[str, str],
        *,
        drain: Drain | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._backend = backend
        self._drain = drain
        self._ssl = ssl_context
        self.stats = SmppServerStatistics()
        self._faults = FaultLog()
        self._auth_log = AuthLog()
        self._boxes: dict[str, _Box] = {}
        # Whether each message submitted here wants its receipt (registered_delivery, not refused), so that
        # a receipt is built without reading the store; bounded, the store answers for older ones.
        self._wanted: dict[str, bool] = {}
        self._assembly = Assembly(config.reassembly_timeout_seconds)
        self._assembly_wake = trio.Event()
        self._binds: dict[str, int] = {}  # system_id -> bound connections
        self._buckets: dict[str, TokenBucket] = {}
        self._nursery: trio.Nursery | None = None
        self.port = 0
        self.update(config, passwords)

    def update(self, config: SmppServerConfig, passwords: Mapping[str, str]) -> None:
        """A reload's accounts and passwords: bound ESMEs keep their bind; new binds see these."""
        self.config = config
        guard: AuthGuard | None = getattr(self, "_guard", None)
        if guard is None or (guard.failures, guard.window) != (config.lockout_failures, config.lockout_seconds):
            self._guard = AuthGuard(config.lockout_failures, config.lockout_seconds)  # a reload keeps lock-outs
        self._accounts = {a.system_id: a for a in config.accounts}
        self._credentials = Credentials(passwords)  # system_id -> password, compared in constant time
        self._refused_status = config.status_refused()
        self._assembly.timeout_seconds = config.reassembly_timeout_seconds
        for box in self._boxes.values():
            box.outbox.retry_after = config.redeliver_seconds
            box.outbox.max_failures = config.redeliver_attempts
        now = trio.current_time()
        for a in config.accounts:
            bucket = self._buckets.get(a.system_id)
            if bucket is None or bucket.rate != a.tps:
                # A contract counts per second: a second's worth may come at once.
                self._buckets[a.system_id] = TokenBucket(a.tps, now, burst=max(1.0, a.tps) if a.tps else None)

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled (or drained); `await nursery.start(server.serve)` gives the port."""
        cfg = self.config
        tcp = await trio.open_tcp_listeners(cfg.port, host=cfg.host)
        self.port = tcp[0].socket.getsockname()[1]
        listeners: list[trio.abc.Listener[Any]] = list(tcp)
        if self._ssl is not None:
            listeners = [trio.SSLListener(t, self._ssl, https_compatible=False) for t in tcp]
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._expire_parts)
            async with trio.open_nursery() as accepting:
                if self._drain is not None:
                    accepting.start_soon(self._stop_accepting, accepting.cancel_scope)
                await accepting.start(trio.serve_listeners, self._handle, listeners)
                log.info("smpp_server_listening", host=cfg.host, port=self.port, tls=self._ssl is not None)
                task_status.started(self.port)
            for listener in listeners:
                await listener.aclose()
            await trio.sleep_forever()

    async def _stop_accepting(self, scope: trio.CancelScope) -> None:
        assert self._drain is not None
        await self._drain.begun.wait()
        scope.cancel()

    # --- connections -------------------------------------------------------------------------------

    async def _handle(self, stream: trio.abc.Stream) -> None:
        structlog.contextvars.clear_contextvars()
        cfg = self.config
        session = Session(
            Role.SMSC,
            SessionConfig(
                window=100_000,  # per receiver: the pusher keeps to the account's receipt_window
                response_timeout_seconds=cfg.response_timeout_seconds,
                enquire_link_interval_seconds=cfg.enquire_link_seconds,
            ),
            now=trio.current_time(),
        )
        link = Link(stream, session)
        conn = _Conn(link, _peer(stream))
        if self._drain is not None:
            self._drain.enter()
        try:
            with link.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(link.writer)
                    nursery.start_soon(link.ticker, lambda evs: self._on_events(conn, evs, nursery))
                    nursery.start_soon(self._bind_deadline, conn)
                    if self._drain is not None:
                        nursery.start_soon(self._unbind_on_drain, conn)
                    await self._reader(conn, nursery)
        except Exception:
            log.exception("smpp_connection_failed", peer=conn.peer)
        finally:
            self._forget(conn)
            if self._drain is not None:
                self._drain.leave()
            await trio.aclose_forcefully(stream)

    async def _reader(self, conn: _Conn, nursery: trio.Nursery) -> None:
        link = conn.link
        try:
            while True:
                # Back-pressure: an ESME that does not read its answers is not read either, so what it is
                # owed stays bounded (its enquire_link then goes unanswered and the link ends).
                while link.session.pending_bytes() > _MAX_UNSENT_BYTES:
                    link.kick()
                    await link.written()
                data = await link.receive()
                await self._on_events(conn, link.session.receive_data(data, trio.current_time()), nursery)
                link.kick()
        except LinkLost as err:
            link.fail(str(err))

    async def _bind_deadline(self, conn: _Conn) -> None:
        await trio.sleep(self.config.bind_timeout_seconds)
        if conn.account is None:
            log.info("smpp_bind_timeout", peer=conn.peer)
            conn.link.fail("no bind in time")

    async def _unbind_on_drain(self, conn: _Conn) -> None:
        """The gateway is stopping: answer what was read (a stored submit gets its id; new ones are refused
        ESME_RSYSERR, nothing stored), then unbind (its unbind_resp ends the link), then close."""
        assert self._drain is not None
        await self._drain.begun.wait()
        with trio.move_on_after(_DRAIN_ANSWER_SECONDS):
            while conn.inflight:
                conn.settled = trio.Event()
                await conn.settled.wait()
        if conn.session.is_bound:
            with contextlib.suppress(ProtocolError):  # a session unbinding already: closing anyway
                conn.session.send_request(P.Unbind(), trio.current_time())
            conn.link.kick()
            await trio.sleep(_DRAIN_ANSWER_SECONDS)  # until the unbind_resp ends the link, at most
        conn.link.finish("gateway stopping")

    async def _on_events(self, conn: _Conn, events: list[SessionEvent], nursery: trio.Nursery) -> None:
        ready: list[tuple[Piece, tuple[Any, ...]]] = []  # the submits of this read, whole: one group
        for event in events:
            if isinstance(event, PduReceived):
                self._on_request(conn, event.pdu, nursery, ready)
            elif isinstance(event, ResponseReceived):
                self._on_response(conn, event.request.context, event.pdu)
            elif isinstance(event, RequestExpired):
                self._on_expired(event.request.context)
            elif isinstance(event, StateChanged):
                if event.new is State.CLOSED:
                    self._forget(conn)
                    conn.link.finish("unbound")
            elif isinstance(event, LinkDead):
                if event.flush:  # the session queued a last word (a generic_nack): it goes out first
                    conn.link.finish(f"link dead: {event.reason}")
                else:
                    conn.link.fail(f"link dead: {event.reason}")
        if ready:
            # In the server's nursery: a long message's parts may have come over several binds.
            assert self._nursery is not None
            assert conn.config is not None  # set by the bind, kept after an unbind in the same read
            self._nursery.start_soon(self._submit, conn.config.account, ready)
        _hint(conn)
        conn.link.kick()

    def _on_request(
        self, conn: _Conn, pdu: P.Pdu, nursery: trio.Nursery, ready: list[tuple[Piece, tuple[Any, ...]]]
    ) -> None:
        cid = int(pdu.command_id)
        if cid in BINDS:
            assert isinstance(pdu, P.BindTransmitter | P.BindReceiver | P.BindTransceiver)
            nursery.start_soon(self._on_bind, conn, pdu)
            return
        cfg = conn.config
        assert conn.account is not None  # the session answers anything else unbound
        assert cfg is not None
        if cid in _SUBMITS:
            assert isinstance(pdu, P.SubmitSm | P.DataSm | P.SubmitMulti)
            self._on_submit(conn, cfg, pdu, ready)
        elif cid == CommandId.QUERY_SM or cid == CommandId.CANCEL_SM:
            assert isinstance(pdu, P.QuerySm | P.CancelSm)
            conn.inflight += 1
            nursery.start_soon(self._on_query, conn, pdu)
        else:
            resp = P.RESPONSE_FOR.get(CommandId(cid))
            if resp is not None:  # replace_sm: the gateway changes no stored text (docs/smpp_server.md)
                status = S.ESME_RREPLACEFAIL if cid == CommandId.REPLACE_SM else S.ESME_RINVCMDID
                conn.session.send_response(resp(sequence_number=pdu.sequence_number, command_status=status))

    # --- binds -------------------------------------------------------------------------------------

    async def _on_bind(self, conn: _Conn, pdu: P.BindTransmitter | P.BindReceiver | P.BindTransceiver) -> None:
        now = trio.current_time()
        source = conn.peer.rpartition(":")[0] or conn.peer
        status, why = self._bind_status(pdu, source, now)
        if status:
            self.stats.binds_refused += 1
            if status in (S.ESME_RINVPASWD, S.ESME_RINVSYSID):
                self._guard.failed(source, now)
            self._auth_log.failed(now, "smpp_bind_refused", system_id=pdu.system_id[:16], peer=conn.peer,
                                  status=S(status).name, reason=why)  # fmt: skip
            await trio.sleep(self.config.auth_failure_delay_seconds)  # a guess costs the guesser time
        resp = _BIND_RESP[int(pdu.command_id)](
            sequence_number=pdu.sequence_number, command_status=status, system_id=self.config.system_id
        )
        if status:
            self._send(conn, resp, done=False)
            conn.link.finish("bind refused")
            return
        if conn.account is not None or conn.session.state is not State.OPEN:
            already = _BIND_RESP[int(pdu.command_id)](sequence_number=pdu.sequence_number,
                                                      command_status=S.ESME_RALYBND)  # fmt: skip
            self._send(conn, already, done=False)
            return
        cfg = self._accounts[pdu.system_id]
        self._guard.succeeded(source)
        conn.session.send_response(resp)
        conn.account, conn.config, conn.bind = cfg.account, cfg, bind_type(pdu.command_id)
        conn.receives = conn.bind in _RECEIVES
        conn.legacy = pdu.interface_version < INTERFACE_VERSION_34
        self._binds[cfg.system_id] = self._binds.get(cfg.system_id, 0) + 1
        self.stats.binds += 1
        _hint(conn)  # the enquire_link timer of a bound link
        conn.link.kick()
        log.info("smpp_bound", system_id=cfg.system_id, account=cfg.account, bind=conn.bind, peer=conn.peer)
        box = await self._box(cfg.account)
        if conn.receives and not conn.link.closed and conn.account is not None:
            box.receivers.append(conn)
            box.poke()

    def _bind_status(self, pdu: P.BindTransmitter | P.BindReceiver | P.BindTransceiver, source: str,
                     now: float) -> tuple[int, str]:  # fmt: skip
        if self._guard.locked(source, now):
            return S.ESME_RBINDFAIL, "locked out after repeated failures"
        cfg = self._accounts.get(pdu.system_id)
        # Credentials compares an unknown system_id's password as long as a known one's: no probing by time.
        if not self._credentials.check(pdu.system_id, pdu.password) or cfg is None:
            if cfg is None or not self._credentials.knows(pdu.system_id):
                return S.ESME_RINVSYSID, "unknown system_id"
            return S.ESME_RINVPASWD, "wrong password"
        if self._drain is not None and self._drain.begun.is_set():
            return S.ESME_RBINDFAIL, "the gateway is stopping"
        if bind_type(pdu.command_id) not in cfg.bind_types:
            return S.ESME_RBINDFAIL, f"{bind_type(pdu.command_id)} binds are not allowed for this system_id"
        if self._binds.get(cfg.system_id, 0) >= cfg.max_binds:
            return S.ESME_RBINDFAIL, f"already {cfg.max_binds} binds (max_binds)"
        return S.ESME_ROK, ""

    def _forget(self, conn: _Conn) -> None:
        """The connection is gone (unbind, close): its bind slot, its receivers' in-flight events (sent again
        on another receiver), its held parts."""
        if conn.account is None or conn.config is None:
            return
        system_id = conn.config.system_id
        self._binds[system_id] = max(0, self._binds.get(system_id, 1) - 1)
        box = self._boxes.get(conn.account)
        if box is not None and conn in box.receivers:
            box.receivers.remove(conn)
            now = trio.current_time()
            for request in conn.session.close():
                if isinstance(request.context, tuple) and request.context[0] is box:
                    # At once, elsewhere: the bind went, the ESME did not refuse it.
                    box.outbox.again(request.context[1], now - box.outbox.retry_after, failed=False)
            box.poke()
        self._assembly.forget(conn)
        conn.account = None
        log.info("smpp_unbound", system_id=system_id, peer=conn.peer, reason=conn.link.error or "unbound")

    # --- submits -----------------------------------------------------------------------------------

    def _on_submit(self, conn: _Conn, cfg: SmppAccountConfig, pdu: P.SubmitSm | P.DataSm | P.SubmitMulti,
                   ready: list[tuple[Piece, tuple[Any, ...]]]) -> None:  # fmt: skip
        now = trio.current_time()
        token = (conn, pdu.sequence_number, int(pdu.command_id))
        if conn.inflight >= cfg.window:
            self.stats.throttled += 1
            self._answer(token, S.ESME_RTHROTTLED)
            return
        bucket = self._buckets[cfg.system_id]
        if bucket.available(now) < 1:
            self.stats.throttled += 1
            self._answer(token, S.ESME_RTHROTTLED)
            return
        bucket.take(1, now)
        if self._drain is not None and self._drain.begun.is_set():
            self._answer(token, S.ESME_RSYSERR)
            return
        try:
            piece = read_submit(pdu, cfg, time.time())
        except Refused as err:
            self.stats.refused += 1
            self._answer(token, err.command_status)
            return
        conn.inflight += 1
        if piece.total == 1:
            ready.append((piece, (token,)))
            return
        try:
            whole = self._assembly.add(cfg.account, piece, token, now)
        except TooLong as err:
            for t in err.tokens:
                self._answer(t, err.command_status, done=True)
            return
        except Refused as err:
            self._answer(token, err.command_status, done=True)
            return
        self.stats.long_pending = self._assembly.pending
        self._assembly_wake.set()
        if whole is not None:
            ready.append((whole.piece, whole.tokens))

    async def _submit(self, account: str, ready: list[tuple[Piece, tuple[Any, ...]]]) -> None:
        """The submits one read brought, accepted in one group commit; each answered on its own."""
        self.stats.submits += len(ready)
        items: list[tuple[Piece, tuple[Any, ...]]] = []
        requests = []
        for piece, tokens in ready:
            try:
                requests.append(_request(piece))
                items.append((piece, tokens))
            except Exception as exc:
                self._refuse(account, tokens, exc)
        try:
            results = await self._backend.submit_many(account, requests) if requests else []
        except Exception as exc:  # the group as a whole (a bug): each submit of it is refused
            results = [exc] * len(requests)
        for (piece, tokens), result in zip(items, results, strict=True):
            if isinstance(result, Exception):
                self._refuse(account, tokens, result)
            else:
                for token in tokens:
                    self._answer_submit(token, piece, result)

    def _refuse(self, account: str, tokens: tuple[Any, ...], exc: Exception) -> None:
        error = upstream_error_for(exc)
        if error is None:
            self._faults.report(exc, trio.current_time(), account=account, op="submit_sm")
            status = int(S.ESME_RSYSERR)
        else:
            status = status_for_error(error)
        self.stats.refused += 1
        for token in tokens:
            self._answer(token, status, done=True)

    def _answer_submit(self, token: tuple[Any, int, int], piece: Piece, result: SubmitResult) -> None:
        conn, seq, cid = token
        messages = result.messages
        wanted = self._wanted
        for m in messages:  # what the receipts of these will need to know, without reading the store
            wanted[m.message_id] = piece.receipt and m.state != "rejected"
        if len(wanted) > _WANTED_KEPT:
            for old in list(itertools.islice(wanted, len(wanted) - _WANTED_KEPT)):
                del wanted[old]
        taken = [m for m in messages if m.state != "rejected"]
        if cid != CommandId.SUBMIT_MULTI:
            m = messages[0]
            if m.state == "rejected":
                self.stats.refused += 1
                self._answer(token, status_for_reason(m.reason or "", self._refused_status), done=True)
                return
            resp: P.Pdu = (P.SubmitSmResp if cid == CommandId.SUBMIT_SM else P.DataSmResp)(
                sequence_number=seq, message_id=m.message_id
            )
        else:
            refused = self._refused_status
            unsuccess = list(piece.unsuccess) + [
                P.UnsuccessSme(address=m.to[:20], error_status_code=status_for_reason(m.reason or "", refused))
                for m in messages if m.state == "rejected"
            ]  # fmt: skip
            status = S.ESME_ROK if taken else unsuccess[0].error_status_code
            resp = P.SubmitMultiResp(sequence_number=seq, command_status=status,
                                     message_id=taken[0].message_id if taken else "",
                                     unsuccess_smes=tuple(unsuccess))  # fmt: skip
        self._send(conn, resp, done=True)

    def _answer(self, token: tuple[Any, int, int], status: int, *, done: bool = False) -> None:
        conn, seq, cid = token
        resp = P.RESPONSE_FOR[CommandId(cid)](sequence_number=seq, command_status=status)
        self._send(conn, resp, done=done)

    def _send(self, conn: _Conn, resp: P.Pdu, *, done: bool) -> None:
        if done:
            conn.inflight -= 1
            if not conn.inflight:
                conn.settled.set()
        if conn.link.closed:
            return  # the ESME went: it resubmits what it had no answer for
        try:
            conn.session.send_response(resp)
        except ProtocolError as exc:  # a session that unbound meanwhile: nothing more goes to it
            log.debug("smpp_answer_dropped", reason=str(exc), peer=conn.peer)
            return
        conn.link.kick()

    async def _expire_parts(self) -> None:
        """Refuse the parts of long messages whose other parts did not come in time (ESME_RSUBMITFAIL):
        nothing was stored, and the ESME hears it."""
        while True:
            deadline = self._assembly.next_deadline()
            with trio.move_on_at(deadline if deadline is not None else float("inf")):
                await self._assembly_wake.wait()
            self._assembly_wake = trio.Event()
            for tokens in self._assembly.expire(trio.current_time()):
                log.info("smpp_long_message_incomplete", parts=len(tokens))
                for token in tokens:
                    self._answer(token, S.ESME_RSUBMITFAIL, done=True)
            self.stats.long_pending = self._assembly.pending

    # --- query_sm, cancel_sm ----------------------------------------------------------------------

    async def _on_query(self, conn: _Conn, pdu: P.QuerySm | P.CancelSm) -> None:
        account = conn.account
        resp: P.Pdu
        seq = pdu.sequence_number
        try:
            if account is None:
                raise Refused(S.ESME_RINVBNDSTS, "unbound")
            query = MessageQuery(message_id=pdu.message_id or None)
            if not pdu.message_id:
                raise Refused(S.ESME_RINVMSGID, "a message_id is needed")
            if isinstance(pdu, P.QuerySm):
                (status, *_) = await self._backend.status(account, query)
                final, state, error = query_answer(status)
                resp = P.QuerySmResp(sequence_number=pdu.sequence_number, message_id=pdu.message_id,
                                     final_date=final, message_state=state, error_code=error)  # fmt: skip
            else:
                await self._backend.cancel(account, query)
                resp = P.CancelSmResp(sequence_number=pdu.sequence_number)
        except Refused as err:
            resp = P.RESPONSE_FOR[pdu.command_id](sequence_number=seq, command_status=err.command_status)
        except Exception as exc:
            known = upstream_error_for(exc)
            if known is None:
                self._faults.report(exc, trio.current_time(), account=account, op=type(pdu).__name__)
            fail = S.ESME_RQUERYFAIL if isinstance(pdu, P.QuerySm) else S.ESME_RCANCELFAIL
            code = known.code if isinstance(known, UpstreamError) else ""
            resp = P.RESPONSE_FOR[pdu.command_id](
                sequence_number=seq, command_status=S.ESME_RINVMSGID if code == "not_found" else fail
            )
        self._send(conn, resp, done=True)

    # --- receipts and MO -----------------------------------------------------------------------------

    async def _box(self, account: str) -> _Box:
        """The account's outbox, its pusher started. The first bind an account ever made by SMPP stores its
        cursor at the log's end (0 in an empty log): what came before was not for an ESME, everything after
        is, across restarts."""
        box = self._boxes.get(account)
        if box is None:
            backend = self._backend
            name = cursor_name(account)
            stored = await backend.stored_cursor(name)
            if stored is None:
                stored = await backend.last_event_seq()
                await backend.ack_events(name, stored)
            cursor = stored
            box = self._boxes.get(account)  # another bind of the account may have made it meanwhile
            if box is None:
                outbox = Outbox(cursor, self.config.redeliver_seconds, self.config.redeliver_attempts)
                box = self._boxes[account] = _Box(account, outbox)
        if not box.running and self._nursery is not None:
            box.running = True
            self._nursery.start_soon(self._push, box)
        return box

    async def _push(self, box: _Box) -> None:
        """The account's pusher, for as long as the server runs: a fault (a bug, a store that refused the
        cursor) is logged and the pusher starts over a second later from what the outbox holds."""
        while True:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._save_cursor, box)
                    await self._push_loop(box)
            except Exception as exc:
                self._faults.report(exc, trio.current_time(), account=box.account, op="smpp_push")
            await trio.sleep(1.0)

    async def _push_loop(self, box: _Box) -> None:
        outbox = box.outbox
        while True:
            room = self._room(box)
            if room > 0:
                now = trio.current_time()
                items = outbox.due(now, room)
                if len(items) < room:
                    limit = min(room - len(items), _READ_LIMIT)
                    read = await self._backend.read_events(box.account, outbox.read_to, limit, _KINDS)
                    items.extend(await self._fresh(box, [e for e in read if isinstance(e, Event)]))
                if items:
                    self._deliver(box, items)
                    await trio.lowlevel.checkpoint()
                    continue
            await self._wait(box, room > 0)

    async def _wait(self, box: _Box, for_events: bool) -> None:
        """Until an event, a receiver's room, a bind, or the next retry."""
        retry = box.outbox.next_retry()
        async with trio.open_nursery() as nursery:
            if retry is not None and for_events:  # with no room, only a response (or a bind) can help
                nursery.cancel_scope.deadline = retry

            async def woken() -> None:
                await box.wake.wait()
                nursery.cancel_scope.cancel()

            async def events() -> None:
                await self._backend.wait_events(box.account, box.outbox.read_to, _KINDS)
                nursery.cancel_scope.cancel()

            nursery.start_soon(woken)
            if for_events:
                nursery.start_soon(events)
        box.wake = trio.Event()

    def _room(self, box: _Box) -> int:
        return sum(max(0, c.config.receipt_window - c.session.in_flight) for c in box.receivers
                   if c.config is not None and not c.link.closed and c.session.is_bound)  # fmt: skip

    async def _fresh(self, box: _Box, events: list[Event]) -> list[tuple[int, Any]]:
        """New events as (seq, deliver_sm); those no ESME asked for are done at once."""
        outbox = box.outbox
        known = self._wanted
        ids = [e.message_id for e in events if e.kind is not EventKind.MO and e.message_id
               and e.message_id not in known and not refused_at_accept(e)]  # fmt: skip
        wanted = await self._backend.receipt_wanted(box.account, ids) if ids else set()
        out = []
        for e in events:
            pdu: P.DeliverSm | None = None
            mid = e.message_id
            if e.kind is EventKind.MO:
                pdu = mo_pdu(e, self._alphabet(box))
            elif mid is not None and (known.pop(mid, False) or mid in wanted):
                pdu = receipt_pdu(e, _id_time(mid, e.at))
            if pdu is None:
                outbox.skip(e.seq)
            else:
                outbox.add(e.seq, pdu)
                out.append((e.seq, pdu))
        return out

    def _alphabet(self, box: _Box) -> str:
        for c in box.receivers:
            if c.config is not None:
                return c.config.default_alphabet
        return "gsm7"

    def _deliver(self, box: _Box, items: list[tuple[int, Any]]) -> None:
        now = trio.current_time()
        timeout = self.config.response_timeout_seconds
        for seq, pdu in items:
            conn = max(
                (c for c in box.receivers if not c.link.closed and c.session.is_bound and c.config is not None),
                key=lambda c: c.config.receipt_window - c.session.in_flight if c.config else 0,
                default=None,
            )
            if conn is None:
                box.outbox.again(seq, now - box.outbox.retry_after, failed=False)
                continue
            try:
                # SMPP 3.4 5.2.4: an ESME of an older version gets no optional parameters; a receipt's text
                # carries all it needs.
                sent = dataclasses.replace(pdu, tlvs=()) if conn.legacy and pdu.esm_class and pdu.tlvs else pdu
                conn.session.send_request(sent, now, context=(box, seq), timeout=timeout)
            except Exception as exc:  # the session closed under us: another receiver takes it
                log.debug("smpp_deliver_not_sent", reason=str(exc))
                box.outbox.again(seq, now - box.outbox.retry_after, failed=False)
                continue
            if pdu.esm_class:
                self.stats.receipts_sent += 1
            else:
                self.stats.mo_sent += 1
            conn.link.deadline_hint(now + timeout)
            conn.link.kick()

    def _on_response(self, conn: _Conn, context: Any, pdu: P.Pdu) -> None:
        if not (isinstance(context, tuple) and isinstance(context[0], _Box)):
            return  # the unbind we sent on a drain
        box, seq = context
        status = int(pdu.command_status)
        if status == S.ESME_ROK or status in PERMANENT_REFUSALS:
            if status:
                log.warning("smpp_deliver_refused", account=box.account, status=S(status).name, seq=seq)
            box.outbox.done(seq)
        else:
            self._failed(box, seq, f"deliver_sm_resp {status_name(status)}")
        box.poke()

    def _on_expired(self, context: Any) -> None:
        if isinstance(context, tuple) and isinstance(context[0], _Box):
            box, seq = context
            self._failed(box, seq, "no deliver_sm_resp in time")
            box.poke()

    def _failed(self, box: _Box, seq: int, why: str) -> None:
        """A deliver_sm the ESME refused for now, or left unanswered: again later, or given up."""
        if box.outbox.again(seq, trio.current_time()):
            self.stats.deliver_retries += 1
            return
        self.stats.deliver_given_up += 1
        log.warning("smpp_deliver_given_up", account=box.account, seq=seq, last=why,
                    attempts=box.outbox.max_failures)  # fmt: skip

    async def _save_cursor(self, box: _Box) -> None:
        """Store the cursor as it moves, at most every _CURSOR_SAVE_SECONDS (one small commit each)."""
        while True:
            await trio.sleep(_CURSOR_SAVE_SECONDS)
            cursor = box.outbox.cursor
            if cursor > box.saved:
                await self._backend.ack_events(cursor_name(box.account), cursor)
                box.saved = cursor

    async def flush_cursors(self) -> None:
        """Store every moved cursor now (on the way out)."""
        for box in list(self._boxes.values()):
            if box.outbox.cursor > box.saved:
                await self._backend.ack_events(cursor_name(box.account), box.outbox.cursor)
                box.saved = box.outbox.cursor

    def statistics(self) -> SmppServerStatistics:
        s = self.stats
        s.long_pending = self._assembly.pending
        s.bound = sum(self._binds.values())
        s.by_account = {a: len(b.receivers) for a, b in self._boxes.items()}
        return s


def _hint(conn: _Conn) -> None:
    """Wake the link's ticker if the session's next deadline (a response due, an idle link's enquire_link)
    comes before the one it sleeps until."""
    deadline = conn.session.next_deadline()
    if deadline is not None:
        conn.link.deadline_hint(deadline)


def _request(piece: Piece) -> SubmitRequest:
    """A piece as the internal socket's submit, checked as a frame's is (schema.submit_request)."""
    return submit_request(piece.to, piece.text, piece.message_class, piece.sender, schedule_at=piece.schedule_at,
                          validity_seconds=piece.validity_seconds, receipt=piece.receipt)  # fmt: skip


def _id_time(message_id: str | None, default: float) -> float:
    """When a gateway message id was made: its top bits are milliseconds since 2026-01-01 (store/keys.py)."""
    if message_id and message_id.isdigit():
        return id_time_ms(int(message_id)) / 1000
    return default


def _peer(stream: trio.abc.Stream) -> str:
    sock = getattr(stream, "socket", None)
    if sock is None:
        sock = getattr(getattr(stream, "transport_stream", None), "socket", None)
    try:
        host, port = sock.getpeername()[:2] if sock is not None else ("", 0)
    except OSError:
        return ""
    return f"{host}:{port}"
