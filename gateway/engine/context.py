"""What the engine's parts share [trio]: the store and its writer, the carriers, the route table of the day,
the commit every write goes through, and the fault boundary around one message.

The parts (scheduler.py, dispatch.py, correlate.py, backend.py) each own their tasks and their state; what
one part must ask another goes through here or through a method the other part names for it (core.py wires
them). Nothing here decides: the decisions are pure (engine/plan.py, routing/, lifecycle).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
import trio

from gateway import debuglog
from gateway.carriers.pool import CarrierPool
from gateway.engine.portability import PortabilityImporter
from gateway.engine.sequencer import Sequencer
from gateway.engine.settings import CarrierSettings, EngineSettings
from gateway.errors import GatewayError
from gateway.lifecycle import Ev, Event
from gateway.policy.policy import Policy
from gateway.routing.health import Budget, ErrorBudget
from gateway.routing.numbers import Number
from gateway.routing.router import Plan as RoutePlan
from gateway.routing.router import Routing
from gateway.segmenting import preview
from gateway.smpp.errors import MessageTooLong, SegmentingError
from gateway.store import (
    Advance,
    AdvanceResult,
    CorruptRecord,
    Message,
    Op,
    OpFailed,
    Prepare,
    Reroute,
    Result,
    Store,
    Submit,
    SubmitResult,
    Writer,
)

if TYPE_CHECKING:
    from gateway.cluster.shared import Shared

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class FaultStatistics:
    internal_errors: int  # messages failed with internal_error (or found poisoned again) since the start
    poisoned: int  # messages this process never hands out again
    failing: int  # internal_error failures waiting to be written
    rerouted: int  # messages moved to the next carrier of their route


class Context:
    def __init__(
        self,
        *,
        store: Store,
        writer: Writer,
        pools: dict[str, CarrierPool],
        carriers: dict[str, CarrierSettings],
        routing: Routing,
        policy: Policy,
        settings: EngineSettings,
        wall_ms: Callable[[], int],
        rng: random.Random,
        shared: Shared | None = None,
    ) -> None:
        self.store = store
        # Several nodes (docs/scaling.md): what they share, in Valkey; None for one node.
        self.shared = shared
        self.writer = writer
        self.pools = pools
        self.carriers = carriers
        # Routes, networks, word lists and number rules: replaced whole by a reload (Engine.set_routing).
        self.routing = routing
        # The compliance rules (gateway/policy/): replaced whole by a reload (Engine.set_policy).
        self.policy = policy
        self.settings = settings
        self.wall_ms = wall_ms
        self.rng = rng
        self.encodings = {name: c.encoding.route_encoding() for name, c in carriers.items()}
        self.id_formats = {name: c.id_formats for name, c in carriers.items()}
        # A long message's later parts, waiting for the carrier to accept the part before (sequencer.py).
        self.sequencer = Sequencer()
        # Carriers the operator paused or drained (gatewayctl carrier), with which: they are offered no
        # message until resumed. Held in memory: a restart resumes every carrier.
        self.held: dict[str, str] = {}
        # Carriers failing too often are skipped for a cool-down (routing/health.py).
        self.health = ErrorBudget({name: _budget(c) for name, c in carriers.items()})
        # The number-portability table, imported from its CSV while the gateway runs (portability.py).
        self.portability = PortabilityImporter(store, self.apply)
        self._seen_seq = store.last_seq()
        # Set (and replaced) by each commit that logged new events: subscribers wait on it.
        self.new_events = trio.Event()
        # Messages the gateway failed with internal_error, and those it could not even fail (a record it
        # cannot read): the scheduler never hands them out again, so no bug loops at start-up.
        self._failing: list[tuple[int, str]] = []
        self.poisoned: set[int] = set()
        self._failing_wake = trio.Event()
        self._internal_errors = 0
        self._rerouted = 0

    # --- every write ----------------------------------------------------------------------------------

    async def apply(self, ops: Sequence[Op]) -> list[Result | GatewayError]:
        """Every write goes through here: one group commit, then subscribers hear of new events."""
        results = await self.writer.apply(ops)
        if debuglog.enabled:
            _debug_ops(ops, results)
        seq = self.store.last_seq()
        if seq != self._seen_seq:
            self._seen_seq = seq
            self.new_events.set()
            self.new_events = trio.Event()
        return results

    async def commit(self, ops: Sequence[Op]) -> list[Result | GatewayError]:
        """`apply`, then each op's error handled as `check_results` says."""
        results = await self.apply(ops)
        self.check_results(ops, results)
        return results

    def check_results(self, ops: Sequence[Op], results: Sequence[Result | GatewayError]) -> None:
        """Per-op errors of a group: a bug in the store (OpFailed) fails that message; the rest is logged."""
        for op, result in zip(ops, results, strict=True):
            if not isinstance(result, GatewayError):
                if isinstance(op, Reroute) and isinstance(result, AdvanceResult) and not result.ignored:
                    self._rerouted += 1
                continue
            message_id = getattr(op, "message_id", None)
            if isinstance(result, OpFailed | CorruptRecord) and message_id is not None:
                self.internal_error(message_id, str(result))
            elif not isinstance(op, Prepare | Reroute) and not (
                isinstance(op, Advance) and op.event.kind in (Ev.DISPATCH, Ev.SCHEDULE, Ev.EXPIRE)
            ):  # those meet messages cancelled or expired meanwhile: expected
                log.error("op_not_applied", op=repr(op), error=str(result))

    # --- the carriers' binds -------------------------------------------------------------------------

    def can_transmit(self, carrier: str) -> bool:
        """A bound transmitter, and not paused or drained by the operator."""
        pool = self.pools.get(carrier)
        return (
            pool is not None and carrier not in self.held and any(b.is_bound and b.mode.transmits for b in pool.binds)
        )

    def transmitting(self) -> set[str]:
        """The carriers with a bound transmitter now."""
        return {carrier for carrier in self.pools if self.can_transmit(carrier)}

    def handing_back(self, carrier: str) -> bool:
        """True once `carrier` has had no bound transmitter for its handback_seconds (the pool keeps since
        when), and at once when the operator drained it."""
        if self.held.get(carrier) == DRAINED or carrier not in self.pools:  # drained, or removed by a reload
            return True
        since = self.pools[carrier].transmitter_down_since()
        limit = self.carriers[carrier].handback_seconds if carrier in self.carriers else 30.0
        return since is not None and trio.current_time() - since >= limit

    def set_carrier(self, name: str, settings: CarrierSettings, pool: CarrierPool | None = None) -> None:
        """A carrier a reload added (with its pool), whose pool it replaced, or whose settings it changed."""
        if pool is not None:
            self.pools[name] = pool
        # A carrier removed and added back with the same settings needs its encodings again (drop_carrier
        # took them, and they are what makes it routable).
        if settings != self.carriers.get(name) or name not in self.encodings:
            self.carriers[name] = settings
            self.encodings[name] = settings.encoding.route_encoding()
            self.id_formats[name] = settings.id_formats
            self.health.set_budget(name, _budget(settings))

    def drop_carrier(self, name: str) -> None:
        """A carrier a reload removed: no message goes to it any more. Its settings and id forms stay, for
        the answers and receipts its last binds may still hand in."""
        self.pools.pop(name, None)
        self.encodings.pop(name, None)
        self.held.pop(name, None)

    def handback_reason(self, carrier: str) -> str:
        """Why a message left `carrier` without being sent there, for its trail."""
        return "drained" if self.held.get(carrier) == DRAINED else "no_bind"

    # --- the route table of the day -------------------------------------------------------------------

    def fit(self, text: str, carrier: str) -> str:
        """"" when `carrier` can send `text` within its encodings and part limit, else the reason code
        (message_too_long, not_encodable): the route table's answer, kept per text (Router.fit)."""
        return self.routing.router.fit(text, carrier)[0]

    def text_error(self, text: str, carrier: str) -> GatewayError | None:
        """The error a request gets for a text `carrier` cannot send (MessageTooLong, NotEncodable)."""
        encoding = self.encodings[carrier]
        try:
            shape = preview(text, encoding)
        except SegmentingError as err:
            return err
        return MessageTooLong(shape.parts, encoding.max_parts) if shape.too_long else None

    def route_of(self, msg: Message) -> tuple[str, ...]:
        """The carriers to try for `msg`, in order: as the route table chose them at its accept; for a message
        stored before routes were (no stored route), as the route table of the day chooses now."""
        if msg.route:
            return msg.route
        routing = self.routing
        number = routing.numbers.check_e164(msg.recipient)
        if not isinstance(number, Number):
            return ()
        network = self.store.ported_network(number.e164) if self.portability.active else None
        plan = routing.router.decide(
            number, account=msg.account, message_class=msg.message_class, sender=msg.sender, text=msg.text,
            rng=self.rng, network=network,
        )  # fmt: skip
        return plan.carriers if isinstance(plan, RoutePlan) else ()

    def movable(self, msg: Message, carrier: str, first: int) -> bool:
        """Whether a refusal of part `first` on `carrier` may move the message to another carrier: no part of
        it was accepted (this is its first part) and its route has a carrier it has not left yet."""
        if first != 0:
            return False
        left = {c for c, _ in msg.trail}
        left.add(carrier)
        return any(c not in left for c in self.route_of(msg))

    # --- the fault boundary ---------------------------------------------------------------------------

    def internal_error(self, message_id: int, err: BaseException | str) -> None:
        """One message hit a bug: it ends `failed` with reason internal_error, logged once with its id (and
        the traceback), and the daemon goes on. It is never handed out again by this process."""
        self._internal_errors += 1
        if message_id in self.poisoned:
            return
        self.poisoned.add(message_id)
        if isinstance(err, BaseException):
            log.error("message_internal_error", message_id=message_id, error=f"{type(err).__name__}: {err}",
                      exc_info=err)  # fmt: skip
        else:
            log.error("message_internal_error", message_id=message_id, error=err)
        self._failing.append((message_id, str(err)))
        self._failing_wake.set()

    async def run_failer(self) -> None:
        """Applies the internal_error failures; a message that cannot even be failed stays poisoned (never
        handed out again by this process) and is reported once."""
        while True:
            await self._failing_wake.wait()
            self._failing_wake = trio.Event()
            failing, self._failing = self._failing, []
            ops: list[Op] = [Advance(mid, None, _INTERNAL_ERROR) for mid, _ in failing]
            self.stop_sequences(mid for mid, _ in failing)
            for (mid, _), result in zip(failing, await self.apply(ops), strict=True):
                if isinstance(result, GatewayError):
                    log.error("message_not_failed", message_id=mid, error=str(result))

    def stop_sequences(self, ids: Iterable[int]) -> None:
        for mid in ids:
            self.sequencer.stop(mid)

    def fault_statistics(self) -> FaultStatistics:
        return FaultStatistics(self._internal_errors, len(self.poisoned), len(self._failing), self._rerouted)


PAUSED = "paused"
DRAINED = "drained"


def _debug_ops(ops: Sequence[Op], results: Sequence[Result | GatewayError]) -> None:
    """Each write and what came of it, one line a message (debug only: see gateway/debuglog.py)."""
    for op, result in zip(ops, results, strict=False):
        if isinstance(op, Submit) and isinstance(result, SubmitResult):
            for r, o in zip(op.recipients, result.outcomes, strict=False):
                log.debug("store_write", op="Submit", message_id=o.message_id, to=r.number, account=op.account,
                          state=o.state.name.lower(), reason=o.reason or None)  # fmt: skip
            continue
        fields: dict[str, object] = {"op": type(op).__name__}
        for name in ("message_id", "segment", "carrier", "carrier_id", "reason"):
            value = getattr(op, name, None)
            if value is not None:
                fields[name] = value
        event = getattr(op, "event", None)
        if event is not None:
            fields["change"] = event.kind.name.lower()
        matched = getattr(result, "message_id", None)
        if matched:
            fields["message_id"] = matched
        state = getattr(result, "state", None)
        fields["result"] = type(result).__name__ if state is None else state.name.lower()
        if isinstance(result, GatewayError):
            fields["error"] = str(result)
        log.debug("store_write", **fields)


def _budget(c: CarrierSettings) -> Budget:
    b = c.error_budget
    return Budget(b.max_error_rate, b.window_seconds, b.min_submits, b.cooldown_seconds)

_INTERNAL_ERROR = Event(Ev.FAIL, "internal_error")
