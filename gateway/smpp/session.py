"""A sans-IO SMPP 3.4 session, for either side of the wire.

Bytes in, events out, bytes to send; no socket, no clock. The shell passes `now` (any monotonic float, trio's
clock in production, a virtual one in tests) wherever a deadline matters:

    events = session.receive_data(await stream.receive_some(65536), now)
    seq = session.send_request(SubmitSm(...), now, context=segment_key)
    await stream.send_all(session.data_to_send())
    events += session.tick(now)        # at session.next_deadline() at the latest

The session does the protocol's chores itself, as h2 acknowledges pings: it answers enquire_link, answers an
unbind and closes, answers a request in the wrong state with ESME_RINVBNDSTS, answers an unreadable PDU with
generic_nack or the request's own response carrying the decode error's status, keeps sequence numbers,
matches responses to requests, enforces the in-flight window, and sends enquire_link when the link is idle.
"""

from __future__ import annotations

import heapq
import struct
from dataclasses import dataclass
from typing import Any

from gateway.fastinit import fast_init
from gateway.smpp import codec
from gateway.smpp import pdu as P
from gateway.smpp.constants import HEADER_SIZE, MAX_SEQUENCE, RESPONSE_BIT, CommandId
from gateway.smpp.constants import CommandStatus as S
from gateway.smpp.errors import DecodeError, FrameError, ProtocolError, WindowFull
from gateway.smpp.framing import DEFAULT_MAX_COMMAND_LENGTH, Framer
from gateway.smpp.state import ALLOWED, BINDS, RECV, SEND, TRANSITIONS, Role, State, next_state

_HEADER_AT = struct.Struct(">IIII").unpack_from
# Only binds, unbinds and their responses ever move the state (state.TRANSITIONS).
_CHANGES_STATE = frozenset(int(key[3]) for key in TRANSITIONS)
# Requests that do not take a window slot: the link must stay manageable when the window is full.
_UNWINDOWED = frozenset({CommandId.ENQUIRE_LINK, CommandId.UNBIND}) | BINDS


@dataclass(frozen=True, slots=True)
class SessionConfig:
    window: int = 100
    response_timeout_seconds: float = 30.0
    # Send enquire_link after this long without receiving anything; 0 disables.
    enquire_link_interval_seconds: float = 30.0
    max_command_length: int = DEFAULT_MAX_COMMAND_LENGTH


@dataclass(slots=True)
class Outstanding:
    """A request on the wire waiting for its response."""

    sequence_number: int
    command_id: CommandId
    deadline: float
    context: Any
    # None for a request queued with `Session.send_encoded` without its PDU.
    pdu: P.Pdu | None


# --- events -----------------------------------------------------------------------------------------


class Event:
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class PduReceived(Event):
    """A request from the peer that the application must act on (and answer with `send_response`)."""

    pdu: P.Pdu


@dataclass(frozen=True, slots=True)
class ResponseReceived(Event):
    """The response to one of our requests (a generic_nack with its sequence number counts)."""

    request: Outstanding
    pdu: P.Pdu


@dataclass(frozen=True, slots=True)
class RequestExpired(Event):
    """No response before the deadline. Never resend blindly: the peer may have acted on it."""

    request: Outstanding


@dataclass(frozen=True, slots=True)
class ResponseUnreadable(Event):
    """A response to one of our requests arrived but could not be decoded."""

    request: Outstanding
    error: DecodeError


@dataclass(frozen=True, slots=True)
class ResponseRepaired(Event):
    """A response the strict decoder refused, taken from its readable mandatory fields (codec.salvage_response):
    `reason` says what was wrong; a ResponseReceived for it follows."""

    command_id: int
    sequence_number: int
    reason: str


@dataclass(frozen=True, slots=True)
class UnexpectedResponse(Event):
    """A response whose sequence number matches nothing in flight (late after expiry, or a peer bug)."""

    pdu: P.Pdu


@dataclass(frozen=True, slots=True)
class Rejected(Event):
    """We answered a peer's PDU with an error (wrong state, malformed); informational."""

    command_id: int | None
    sequence_number: int | None
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class StateChanged(Event):
    old: State
    new: State


@dataclass(frozen=True, slots=True)
class LinkDead(Event):
    """Our enquire_link got no answer in time, or the stream is beyond repair.

    With `flush`, the session queued a last word for the peer (SMPP 3.4 4.3: the generic_nack with
    ESME_RINVCMDLEN for an impossible command_length): the shell writes what is queued, then closes.
    """

    reason: str
    flush: bool = False


# One of these per PDU received: built through the slots (gateway/fastinit.py).
fast_init(PduReceived)
fast_init(ResponseReceived)


# --- the session ------------------------------------------------------------------------------------


class Session:
    def __init__(self, role: Role, config: SessionConfig | None = None, *, now: float = 0.0) -> None:
        self.role = role
        self.config = config or SessionConfig()
        self._state = State.OPEN
        # ALLOWED[role, state] cached: looking up a (Role, State) key hashes two Enums in Python per PDU.
        self._may_send, self._may_receive = ALLOWED[role, State.OPEN]
        self._framer = Framer(self.config.max_command_length)
        self._out: list[bytes] = []
        self._next_seq = 1
        self._outstanding: dict[int, Outstanding] = {}
        self._deadlines: list[tuple[float, int]] = []
        self._windowed = 0
        self._last_received = now
        self._enquire_seq: int | None = None
        # Set by an impossible command_length: the stream cannot be realigned, nothing after it is read.
        self._broken = False
        # Counters for status snapshots.
        self.sent_requests = 0
        self.received_pdus = 0

    # --- introspection ---

    @property
    def in_flight(self) -> int:
        """Windowed requests awaiting a response."""
        return self._windowed

    @property
    def window_free(self) -> int:
        return self.config.window - self._windowed

    @property
    def is_bound(self) -> bool:
        return self.state in (State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX)

    def outstanding(self) -> list[Outstanding]:
        return list(self._outstanding.values())

    # --- sending ---

    def send_request(self, pdu: P.Pdu, now: float, context: Any = None, timeout: float | None = None) -> int:
        """Queue a request; returns its sequence number. Raises ProtocolError or WindowFull."""
        cid = pdu.command_id
        if cid & RESPONSE_BIT:
            raise ProtocolError(f"{type(pdu).__name__} is a response; use send_response")
        self._check_send(cid)
        windowed = cid not in _UNWINDOWED
        if windowed and self._windowed >= self.config.window:
            raise WindowFull(f"window of {self.config.window} is full")
        seq = self._allocate_seq()
        self._out.append(codec.encode(pdu, seq))
        deadline = now + (self.config.response_timeout_seconds if timeout is None else timeout)
        self._track(seq, cid, deadline, context, pdu, windowed)
        return seq

    def send_encoded(
        self,
        command_id: CommandId,
        body: bytes,
        now: float,
        *,
        sequence_number: int = 0,
        context: Any = None,
        pdu: P.Pdu | None = None,
    ) -> int:
        """Queue a PDU the caller encoded itself, with command_status 0; returns its sequence number.

        `body` is the PDU's octets after the 16-octet header, which this writes. A request gets the next
        sequence number and is tracked exactly as `send_request` tracks it (window, deadline, state), its
        `Outstanding.pdu` being `pdu` (None when the caller keeps what it needs in `context`); a response
        goes out under `sequence_number`, the request's, as `send_response` sends it. For a peer that sends
        thousands of PDUs that differ in a few fields (the simulator's receipts): the same octets as
        `send_request`/`send_response` with the PDU that encodes to `body`, which the caller answers for.
        """
        if command_id & RESPONSE_BIT:
            self._check_send(command_id)
            self._out += (codec.pack_header(HEADER_SIZE + len(body), command_id, 0, sequence_number), body)
            self._transition(SEND, command_id, 0)
            return sequence_number
        self._check_send(command_id)
        windowed = command_id not in _UNWINDOWED
        if windowed and self._windowed >= self.config.window:
            raise WindowFull(f"window of {self.config.window} is full")
        seq = self._allocate_seq()
        self._out += (codec.pack_header(HEADER_SIZE + len(body), command_id, 0, seq), body)
        self._track(seq, command_id, now + self.config.response_timeout_seconds, context, pdu, windowed)
        return seq

    def _track(
        self, seq: int, cid: CommandId, deadline: float, context: Any, pdu: P.Pdu | None, windowed: bool
    ) -> None:
        """Record a request just queued: outstanding until its response or its deadline."""
        self._outstanding[seq] = Outstanding(seq, cid, deadline, context, pdu)
        heap = self._deadlines
        heapq.heappush(heap, (deadline, seq))
        if len(heap) > 2 * len(self._outstanding) + 64:
            # Answered requests leave their entry behind until it comes due (the response timeout, 30 s
            # later by default): at thousands of submits a second the heap would hold a hundred thousand
            # dead entries. Rebuilt from what is outstanding, amortised over as many sends as it drops.
            self._deadlines = [(req.deadline, s) for s, req in self._outstanding.items()]
            heapq.heapify(self._deadlines)
        if windowed:
            self._windowed += 1
        self.sent_requests += 1
        self._transition(SEND, cid, 0)

    def send_response(self, pdu: P.Pdu) -> None:
        """Queue a response (its sequence_number is the request's). Raises ProtocolError."""
        cid = pdu.command_id
        if not cid & RESPONSE_BIT:
            raise ProtocolError(f"{type(pdu).__name__} is a request; use send_request")
        self._check_send(cid)
        self._out.append(codec.encode(pdu))
        self._transition(SEND, cid, pdu.command_status)

    def acknowledge(self, request: P.DeliverSm | P.DataSm, status: int = 0) -> None:
        """Queue the deliver_sm_resp / data_sm_resp for `request` with `status`: SMPP 3.4 4.6.2 / 4.7.2, an
        empty message_id and no TLVs (no body at all with an error status, as the codec writes it). The
        same octets as send_response(DeliverSmResp(...)), without building the PDU: a gateway answers one
        per receipt."""
        cid = request.command_id | RESPONSE_BIT
        self._check_send(cid)
        seq = request.sequence_number
        if status:
            self._out.append(codec.pack_header(HEADER_SIZE, cid, status, seq))
        else:
            self._out.append(codec.pack_header(HEADER_SIZE + 1, cid, 0, seq) + b"\x00")

    def withdraw(self, command_id: CommandId) -> list[Outstanding]:
        """Take back every request of `command_id` queued and not yet taken by `data_to_send`, oldest first:
        they never reach the wire and leave the window (a throttled bind holds back what it had just queued,
        so it does not overtake the refused submits). Only what this session queued is parsed, so it is
        well formed; responses and other requests stay queued in their order."""
        if not self._out:
            return []
        data = b"".join(self._out)
        keep: list[bytes] = []
        taken: list[Outstanding] = []
        pos, end = 0, len(data)
        while pos < end:
            length, cid, _, seq = _HEADER_AT(data, pos)
            req = self._outstanding.get(seq) if cid == command_id else None
            if req is not None and req.command_id == cid:
                self._pop(seq)
                taken.append(req)
            else:
                keep.append(data[pos : pos + length])
            pos += length
        self._out[:] = keep
        return taken

    def pending_bytes(self) -> int:
        """Octets queued and not yet taken by `data_to_send` (a shell stops reading a peer that lets them pile up)."""
        return sum(map(len, self._out))

    def data_to_send(self) -> bytes:
        """Everything queued since the last call, as one buffer for one write."""
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def close(self) -> list[Outstanding]:
        """The link is gone: every request still in flight comes back, for the caller to decide."""
        lost = list(self._outstanding.values())
        self._outstanding.clear()
        self._deadlines.clear()
        self._windowed = 0
        self._enquire_seq = None
        if self.state is not State.CLOSED:
            self.state = State.CLOSED
        return lost

    # --- receiving ---

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes from the peer; returns what happened, in order."""
        events: list[Event] = []
        if self.state is State.CLOSED or self._broken:
            return events
        self._last_received = now
        framer = self._framer
        framer.feed(data)
        try:
            frames = framer.frames()
        except FrameError as err:
            self._on_frame_error(err, events)
            return events
        for frame in frames:
            self.received_pdus += 1
            try:
                pdu = codec.decode(frame)
            except DecodeError as err:
                self._on_decode_error(err, frame, events)
                continue
            if pdu.command_id & RESPONSE_BIT:
                self._on_response(pdu, events)
            else:
                self._on_request(pdu, events)
        if framer.failed:  # an impossible length after the whole PDUs just handled
            try:
                framer.frames()
            except FrameError as err:
                self._on_frame_error(err, events)
        return events

    def _on_frame_error(self, err: FrameError, events: list[Event]) -> None:
        # The stream cannot be realigned: tell the peer why (SMPP 3.4 4.3: generic_nack, with the sequence
        # number when the header was readable), and give up the link once that is written.
        self._broken = True
        self._out.append(codec.encode(P.GenericNack(command_status=err.command_status), err.sequence_number or 0))
        events.append(Rejected(None, err.sequence_number, err.command_status, err.reason))
        events.append(LinkDead(err.reason, flush=True))

    # --- timers ---

    def next_deadline(self) -> float | None:
        """When `tick` next has something to do, or None."""
        candidates = []
        heap = self._deadlines
        # Answered requests leave their heap entry behind; drop those from the top before reading it.
        while heap and heap[0][1] not in self._outstanding:
            heapq.heappop(heap)
        if heap:
            candidates.append(heap[0][0])
        interval = self.config.enquire_link_interval_seconds
        if interval > 0 and self.is_bound and self._enquire_seq is None:
            candidates.append(self._last_received + interval)
        return min(candidates) if candidates else None

    def tick(self, now: float) -> list[Event]:
        """Expire overdue requests and keep an idle link probed."""
        events: list[Event] = []
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, seq = heapq.heappop(heap)
            req = self._outstanding.get(seq)
            if req is None or req.deadline > now:
                continue  # answered already
            self._pop(seq)
            if req.command_id == CommandId.ENQUIRE_LINK:
                self._enquire_seq = None
                events.append(LinkDead("no enquire_link_resp before the deadline"))
            else:
                events.append(RequestExpired(req))
        interval = self.config.enquire_link_interval_seconds
        if (
            interval > 0
            and self.is_bound
            and self._enquire_seq is None
            and now - self._last_received >= interval
        ):
            self._enquire_seq = self.send_request(P.EnquireLink(), now)
        return events

    # --- internals ---

    def _check_send(self, cid: int) -> None:
        if cid not in self._may_send:
            raise ProtocolError(f"{self.role.value} may not send {CommandId(cid).name} in {self.state.name}")

    @property
    def state(self) -> State:
        return self._state

    @state.setter
    def state(self, new: State) -> None:
        self._state = new
        self._may_send, self._may_receive = ALLOWED[self.role, new]

    def _transition(self, direction: str, cid: int, status: int) -> None:
        if cid not in _CHANGES_STATE:
            return
        new = next_state(self.role, self.state, direction, cid, status)
        if new is not self.state:
            self.state = new

    def _allocate_seq(self) -> int:
        # SMPP 3.4 5.2.1: 1..0x7FFFFFFF, then wrap; skip any number still awaiting its response.
        while True:
            seq = self._next_seq
            self._next_seq = 1 if seq >= MAX_SEQUENCE else seq + 1
            if seq not in self._outstanding:
                return seq

    def _pop(self, seq: int) -> Outstanding | None:
        req = self._outstanding.pop(seq, None)
        if req is not None and req.command_id not in _UNWINDOWED:
            self._windowed -= 1
        return req

    def _on_response(self, pdu: P.Pdu, events: list[Event]) -> None:
        seq, cid = pdu.sequence_number, pdu.command_id
        req = self._outstanding.get(seq)
        if req is None or (cid != req.command_id | RESPONSE_BIT and cid != CommandId.GENERIC_NACK):
            # Nothing in flight under that number, or a response of another kind (an enquire_link_resp
            # with a submit's number): not an answer to anything. The request stays in flight: its own
            # response may still come, else its deadline makes it unknown (the SMSC may have acted on it).
            events.append(UnexpectedResponse(pdu))
            return
        self._pop(seq)
        if req.command_id == CommandId.ENQUIRE_LINK:
            self._enquire_seq = None
        old = self.state
        if pdu.command_id != CommandId.GENERIC_NACK:
            self._transition(RECV, pdu.command_id, pdu.command_status)
        events.append(ResponseReceived(req, pdu))
        if self.state is not old:
            events.append(StateChanged(old, self.state))

    def _on_request(self, pdu: P.Pdu, events: list[Event]) -> None:
        cid = pdu.command_id
        if cid not in self._may_receive:
            status = S.ESME_RALYBND if cid in BINDS and self.is_bound else S.ESME_RINVBNDSTS
            reason = f"{CommandId(cid).name} in {self.state.name}"
            self._answer_error(cid, pdu.sequence_number, status, reason)
            events.append(Rejected(cid, pdu.sequence_number, status, f"not allowed in {self.state.name}"))
            return
        if cid == CommandId.ENQUIRE_LINK:
            self._out.append(codec.encode(P.EnquireLinkResp(), pdu.sequence_number))
            return
        if cid == CommandId.UNBIND:
            old = self.state
            self._out.append(codec.encode(P.UnbindResp(), pdu.sequence_number))
            self._transition(RECV, cid, 0)
            events.append(StateChanged(old, self.state))
            return
        events.append(PduReceived(pdu))

    def _on_decode_error(self, err: DecodeError, frame: bytes, events: list[Event]) -> None:
        cid, seq = err.command_id, err.sequence_number
        if cid is not None and cid & RESPONSE_BIT and seq is not None and seq in self._outstanding:
            salvaged = codec.salvage_response(frame)
            if salvaged is not None:  # its mandatory fields are whole: an answer, minus what was dropped
                events.append(ResponseRepaired(cid, seq, err.reason))
                self._on_response(salvaged, events)
                return
            req = self._pop(seq)
            assert req is not None
            events.append(ResponseUnreadable(req, err))
            return
        self._answer_error(cid, seq, err.command_status, err.reason)
        events.append(Rejected(cid, seq, err.command_status, err.reason))

    def _answer_error(self, cid: int | None, seq: int | None, status: int, reason: str) -> None:
        """Answer a bad request with its own response carrying `status`; anything else with generic_nack."""
        resp_cls = P.RESPONSE_FOR.get(CommandId(cid)) if cid in P.BY_COMMAND_ID else None
        if resp_cls is None or (cid is not None and cid & RESPONSE_BIT):
            # SMPP 3.4 4.3: generic_nack for an unknown command_id or a PDU we cannot make sense of.
            self._out.append(codec.encode(P.GenericNack(command_status=status), seq or 0))
        else:
            self._out.append(codec.encode(resp_cls(command_status=status), seq or 0))
