"""Correlation [trio]: what the carriers answer, into lifecycle events, a batch per group commit.

- results   submit_sm outcomes of every carrier: accepted parts release the next part of their message,
            refusals retry, move to the next carrier or fail the message (engine/plan.py decides), and each
            answer counts in its carrier's error budget
- inbound   receipts and MO of every carrier; deliver_sm_resp only once what it acknowledges is durable;
            long MOs reassembled (their parts kept durably while they wait), opt-out keywords applied
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import structlog
import trio

from gateway.carriers.jobs import Inbound, OutcomeKind, SubmitJob, SubmitOutcome
from gateway.engine import plan
from gateway.engine.context import Context
from gateway.engine.dispatch import Dispatch, drain
from gateway.engine.scheduler import DEFAULT_REASONS, STATE_NAMES, Scheduler
from gateway.engine.settings import AccountSettings, ErrorClasses
from gateway.errors import GatewayError
from gateway.lifecycle import Ev, Event, carrier_rejected
from gateway.logbudget import LogBudget
from gateway.routing.numbers import normalise
from gateway.segmenting import MoMessage, MoPart, Reassembler, mo_part
from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandStatus, status_name
from gateway.smpp.errors import WireError
from gateway.smpp.receipt import ReceiptError, parse_receipt_status
from gateway.store import Advance, AdvanceResult, KeepMoPart, Mo, Op, Receipt, ReceiptResult, Reroute, SetOptOut

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class CorrelateStatistics:
    outcomes: int  # submit_sm answers (and parts never answered) correlated since the start
    receipts: int  # receipts stored (matched, early or ignored) since the start
    receipts_early: int  # of which came before their submit_sm_resp was stored (matched later)
    receipts_ignored: int  # of which named a message already final (a repeat)
    receipts_unparseable: int  # acknowledged, logged, not stored: no status could be read
    mo: int  # MO messages stored (long ones once, reassembled)
    mo_parts_waiting: int  # parts of long MOs waiting for the rest
    inbound_refused: int  # deliver_sm / data_sm answered ESME_RX_P_APPN
    carrier_cool_downs: int  # times a carrier's error budget sent it into a cool-down
    cooling: tuple[str, ...]  # carriers cooling down now
    receipts_claimed: int  # early receipts a submit_sm_resp claimed since the start (matched late)
    # Parts receipts ended since the start, by (state, reason): the store answers a receipt with its part's
    # state, so a long message counts once per part (the submit outcomes' ends count in Scheduler.ended).
    receipt_ends: dict[tuple[str, str], int]
    results_queued: int  # submit outcomes of the binds waiting for the correlator now
    inbound_queued: int  # receipts and MO waiting for the correlator now


class Correlator:
    def __init__(
        self,
        ctx: Context,
        scheduler: Scheduler,
        dispatch: Dispatch,
        accounts: Sequence[AccountSettings],
        results: trio.MemoryReceiveChannel[SubmitOutcome],
        inbound: trio.MemoryReceiveChannel[Inbound],
    ) -> None:
        self._ctx = ctx
        self._scheduler = scheduler
        self._dispatch = dispatch
        self.set_accounts(accounts)
        self._results = results
        self._inbound = inbound
        self._reassembler = Reassembler(ctx.settings.mo_reassembly_timeout_seconds)
        self._results_done = trio.Event()
        self._inbound_done = trio.Event()
        # What a carrier sends wrong is logged, within a bound (an SMSC can repeat a mistake at its full rate).
        self._unparseable_log = LogBudget("receipt_unparseable_more")
        self._refused_log = LogBudget("inbound_refused_more")
        self._outcomes = self._receipts = self._early = self._ignored = self._unparseable = 0
        self._mo = self._refused = self._cool_downs = self._claimed = 0
        self._receipt_ends: dict[tuple[str, str], int] = {}

    def set_accounts(self, accounts: Sequence[AccountSettings]) -> None:
        """The accounts MO reach by their addresses (at start, and when a reload changes them)."""
        self._mo_accounts = {_address(addr): a.name for a in accounts for addr in a.mo_addresses}
        # Longest first: a sub-number (106900005678 + 1) belongs to the longest address it extends.
        self._mo_prefixes = sorted(self._mo_accounts, key=len, reverse=True)
        self._default_account = accounts[0].name if accounts else ""

    def statistics(self) -> CorrelateStatistics:
        now = trio.current_time()
        return CorrelateStatistics(
            outcomes=self._outcomes, receipts=self._receipts, receipts_early=self._early,
            receipts_ignored=self._ignored, receipts_unparseable=self._unparseable, mo=self._mo,
            mo_parts_waiting=self._reassembler.pending, inbound_refused=self._refused,
            carrier_cool_downs=self._cool_downs,
            cooling=tuple(c for c in self._ctx.pools if self._ctx.health.cooling(c, now)),
            receipts_claimed=self._claimed, receipt_ends=dict(self._receipt_ends),
            results_queued=self._results.statistics().current_buffer_used,
            inbound_queued=self._inbound.statistics().current_buffer_used,
        )  # fmt: skip

    def start(self, nursery: trio.Nursery) -> None:
        nursery.start_soon(self._results_loop)
        nursery.start_soon(self._inbound_loop)

    async def drained(self) -> None:
        """Once the carriers' result and inbound channels were closed and everything in them is stored."""
        await self._results_done.wait()
        await self._inbound_done.wait()

    # --- submit_sm outcomes ---------------------------------------------------------------------------

    async def _results_loop(self) -> None:
        try:
            while True:
                await self._correlate_outcomes(await drain(self._results, self._ctx.settings.correlate_batch))
        except trio.EndOfChannel:
            self._results_done.set()

    async def _correlate_outcomes(self, outcomes: list[SubmitOutcome]) -> None:
        ctx = self._ctx
        now_ms = ctx.wall_ms()
        ops: list[Op] = []
        released: list[tuple[str, SubmitJob]] = []  # later parts to send once their DISPATCH is durable
        formats = ctx.id_formats
        deadlines = self._receipt_deadlines(now_ms)
        sequencer = ctx.sequencer
        shared = ctx.shared
        mapped: list[tuple[int, str, str]] = []  # (index in ops, carrier, id) of accepted parts, in a cluster
        self._outcomes += len(outcomes)
        self._count_health(outcomes)
        for o in outcomes:
            ref: plan.SegmentRef = o.context
            try:
                if o.kind is _ACCEPTED:  # nearly every outcome
                    event = plan.accepted_event(o, formats[o.carrier], deadlines[o.carrier])
                    ops.append(Advance(ref.message_id, ref.segment, event))
                    if shared is not None:  # its receipt may come to another node's bind: it is ours
                        shared.mapped(o.carrier, event.carrier_id)
                        mapped.append((len(ops) - 1, o.carrier, event.carrier_id))
                    if ref.message_id in sequencer and (job := sequencer.next(ref.message_id)) is not None:
                        ops.append(Advance(ref.message_id, job.context.segment, Event(Ev.DISPATCH, bind=o.carrier)))
                        released.append((o.carrier, job))
                else:
                    self._unhappy(o, ref, now_ms, deadlines[o.carrier], ops)
            except Exception as err:  # the fault boundary around one message
                sequencer.stop(ref.message_id)
                ctx.internal_error(ref.message_id, err)
        for carrier in {o.carrier for o in outcomes}:  # their binds have window room again
            self._dispatch.answered(carrier)
        results = await ctx.commit(ops)
        for i, carrier, carrier_id in mapped:  # an early receipt ended it in this commit: none will come now
            r = results[i]
            if isinstance(r, AdvanceResult) and r.early_receipt_applied and r.state.is_final and shared:
                shared.unmap(carrier, carrier_id)
        self._claimed += self._scheduler.ended.count(ops, results)
        dispatched = {
            (op.message_id, op.segment) for op, r in zip(ops, results, strict=True)
            if isinstance(op, Advance) and op.event.kind is Ev.DISPATCH and not isinstance(r, GatewayError)
        }  # fmt: skip
        for carrier, job in released:
            if (job.context.message_id, job.context.segment) in dispatched:  # not cancelled or expired meanwhile
                self._dispatch.release(carrier, job)
            else:
                self._scheduler.rescan()  # its remaining parts are due again
        if any(isinstance(op, Advance) and op.event.kind in _RESCAN for op in ops) or any(
            isinstance(op, Reroute) for op in ops
        ):
            self._scheduler.rescan()
        elif any(isinstance(op, Advance) and op.event.kind is Ev.SUBMIT_RETRY for op in ops):
            self._scheduler.wake()

    def _count_health(self, outcomes: list[SubmitOutcome]) -> None:
        """Each answer into its carrier's error budget (routing/health.py): accepted, or a failure that says
        the carrier is unwell (a "next carrier" status, no answer); the others count as neither."""
        now = trio.current_time()
        health = self._ctx.health
        for o in outcomes:
            if o.kind is _ACCEPTED:
                failed = False
            elif o.kind is OutcomeKind.UNKNOWN:
                failed = True
            elif o.kind is OutcomeKind.REJECTED:
                settings = self._ctx.carriers.get(o.carrier)
                errors = settings.errors if settings is not None else ErrorClasses()
                if plan.error_class(o.status, errors) != "next_carrier":
                    continue
                failed = True
            else:
                continue  # never sent: the link, not the carrier's answer
            tripped = health.record(o.carrier, failed, now)
            if tripped is not None:
                log.warning(
                    "carrier_cooling_down", carrier=o.carrier, error_rate=round(tripped.error_rate, 3),
                    submits=tripped.submits, seconds=round(tripped.until - now, 1),
                )  # fmt: skip
                self._cool_downs += 1
                self._scheduler.rescan()  # its waiting messages may take another carrier now

    def _receipt_deadlines(self, now_ms: int) -> dict[str, int]:
        return {name: now_ms + int(c.receipt_timeout_seconds * 1000) for name, c in self._ctx.carriers.items()}

    def _unhappy(self, o: SubmitOutcome, ref: plan.SegmentRef, now_ms: int, deadline_ms: int, ops: list[Op]) -> None:
        """The ops for a part the carrier did not accept (refused, never sent, unanswered): the part's own
        event, and what it means for the later parts of its message, which were never written."""
        ctx = self._ctx
        s = ctx.settings
        settings = ctx.carriers.get(o.carrier)
        errors = settings.errors if settings is not None else ErrorClasses()
        event = plan.outcome_event(
            o, ref, now_ms=now_ms, ids=ctx.id_formats[o.carrier],
            recovery=ctx.store.cfg.recovery_for(ref.message_class), max_attempts=s.retry_max_attempts,
            backoff_min_seconds=s.retry_backoff_min_seconds, backoff_max_seconds=s.retry_backoff_max_seconds,
            errors=errors, receipt_deadline_ms=deadline_ms,
        )  # fmt: skip
        ops.append(Advance(ref.message_id, ref.segment, event))
        waiting = [job.context.segment for job in ctx.sequencer.stop(ref.message_id)]
        if event.kind in (Ev.SUBMIT_REJECT, Ev.FAIL):
            # Refused for good: the parts after it never go (a handset never gets half a text).
            ops.extend(Advance(ref.message_id, i, Event(Ev.FAIL, event.reason)) for i in waiting)
        elif event.kind is Ev.SUBMIT_RETRY or (event.kind is Ev.RESEND and event.until_ms):
            # They wait with it, so they never overtake it; a move takes them along.
            ops.extend(Advance(ref.message_id, i, Event(Ev.DEFER, until_ms=event.until_ms)) for i in waiting)
            if event.kind is Ev.SUBMIT_RETRY and plan.moves_on(o, ref, errors):
                ops.append(Reroute(ref.message_id, o.carrier, event_reason(o)))
        # NOT_SENT, LOST (and a resend at once, as recovery makes): the waiting parts stay queued, due, and
        # are sent again in order.

    # --- receipts and MO ------------------------------------------------------------------------------

    async def restore_mo_parts(self) -> None:
        """The parts of long MOs acknowledged before a stop or a crash wait for the rest again, as old as
        they are (a message whose time ran out meanwhile comes out incomplete at the next housekeeping)."""
        ctx = self._ctx
        stored, unreadable = ctx.store.mo_parts()
        if unreadable:
            log.error("mo_parts_unreadable", rows=unreadable)
        if not stored:
            return
        now, wall = trio.current_time(), ctx.wall_ms()
        ops: list[Op] = []
        for p, received_ms in sorted(stored, key=lambda kept: kept[1]):
            part = MoPart(p.source, p.destination, p.text, p.data_coding, p.ref, p.total, p.seq)
            for mo in self._reassembler.add(part, now - max(0, wall - received_ms) / 1000):
                self._mo_ops(mo, p.carrier, ops)
        if ops:
            await ctx.commit(ops)
        log.info("mo_parts_restored", parts=len(stored), waiting=self._reassembler.pending)

    async def expire_mo_parts(self) -> None:
        """Long MOs whose missing parts did not come in time are stored as they are, marked incomplete."""
        ops: list[Op] = []
        for mo in self._reassembler.expire(trio.current_time()):
            self._mo_ops(mo, "", ops)
        if ops:
            await self._ctx.apply(ops)

    async def _inbound_loop(self) -> None:
        try:
            while True:
                await self._correlate_inbound(await drain(self._inbound, self._ctx.settings.correlate_batch))
        except trio.EndOfChannel:
            self._inbound_done.set()

    async def _correlate_inbound(self, items: list[Inbound]) -> None:
        now = trio.current_time()
        ops: list[Op] = []
        for item in items:
            start = len(ops)
            try:
                if item.is_receipt:
                    self._receipt_ops(item, ops)
                else:
                    part = _mo_part(item)
                    for mo in self._reassembler.add(part, now):
                        self._mo_ops(mo, item.carrier, ops)
                    if self._reassembler.holds(part):  # waits for the rest: durable before the SMSC hears
                        ops.append(_keep(part, item.carrier))
            except Exception as err:  # the fault boundary around one PDU: it never stops the others
                del ops[start:]
                self._refuse_inbound(item, err)
        shared = self._ctx.shared
        if shared is not None and ops:
            # Several nodes: another node's parts' receipts go to it (durably, before the SMSC hears), and
            # opt-outs from MO to every node (docs/scaling.md).
            await shared.publish(ops)
            ops = await shared.route_receipts(ops)
        results = await self._ctx.apply(ops) if ops else []
        if shared is not None:
            shared.settled(ops, results)
        ends = self._receipt_ends
        for op, result in zip(ops, results, strict=True):
            if isinstance(result, GatewayError):
                log.error("inbound_not_applied", error=str(result))
            elif getattr(result, "early", False):
                self._early += 1
                if shared is not None and type(op) is Receipt:  # maybe another node's, not mapped yet
                    shared.late(op)
            elif getattr(result, "ignored", False):
                self._ignored += 1
            elif type(result) is ReceiptResult and result.ended is not None and type(op) is Receipt:
                # Once per message: the receipt of its last part ended it (a long message has one a part).
                key = (STATE_NAMES[result.ended], op.reason or DEFAULT_REASONS.get(result.ended, ""))
                ends[key] = ends.get(key, 0) + 1
        # SMPP 3.4 4.6.2 deliver_sm_resp: only now that the receipt or MO is durable.
        for item in items:
            item.ack()

    def _refuse_inbound(self, item: Inbound, err: Exception) -> None:
        """A deliver_sm or data_sm the gateway cannot take (an MO whose UDH does not parse, text it cannot
        decode, or a bug): answered ESME_RX_P_APPN, the permanent refusal SMPP 3.4 5.1.3 gives an ESME
        (the SMSC then does not redeliver it forever), and logged with its octets so nothing goes unseen."""
        self._refused += 1
        pdu = item.pdu
        expected = isinstance(err, WireError)  # malformed content: a warning, not a gateway bug
        self._refused_log.log(
            log.warning if expected else log.error, trio.current_time(), "inbound_refused",
            carrier=item.carrier, bind=item.bind, command=type(pdu).__name__, source=pdu.source_addr,
            destination=pdu.destination_addr, esm_class=pdu.esm_class,
            data_coding=pdu.data_coding, message_hex=item.message[:254].hex(), error=str(err) or type(err).__name__,
            status="ESME_RX_P_APPN", exc_info=None if expected else err,
        )  # fmt: skip
        item.ack(CommandStatus.ESME_RX_P_APPN)

    def _receipt_ops(self, item: Inbound, ops: list[Op]) -> None:
        try:
            receipt = parse_receipt_status(item.message, item.pdu.tlvs)
        except ReceiptError as err:
            # Acknowledged (the SMSC would resend it forever) but never silent: logged with its text.
            self._unparseable += 1
            self._unparseable_log.log(log.error, trio.current_time(), "receipt_unparseable", carrier=item.carrier,
                                      text=item.message[:200], error=str(err))  # fmt: skip
            return
        ids = self._ctx.id_formats.get(item.carrier)
        if ids is not None:
            self._receipts += 1
            ops.append(plan.receipt_op(receipt, item.carrier, ids, item.message))

    def _account_of(self, destination: str) -> str | None:
        """The account an MO sent to `destination` belongs to: its address exactly (with or without + or
        00), else the longest of the accounts' addresses it extends (Chinese long numbers carry a
        sub-number after the account's code); None when it matches none."""
        address = _address(destination)
        found = self._mo_accounts.get(address)
        if found is None:
            found = next((self._mo_accounts[p] for p in self._mo_prefixes if address.startswith(p)), None)
        return found

    def _mo_ops(self, mo: MoMessage, carrier: str, ops: list[Op]) -> None:
        owner = self._account_of(mo.destination)
        account = owner or self._default_account
        text = mo.text if mo.complete else f"{mo.text} [incomplete: parts {list(mo.missing)} missing]"
        self._mo += 1
        ops.append(Mo(account, carrier, mo.source, mo.destination, text, mo.ref or 0, mo.parts))
        policy = self._ctx.policy
        found = policy.keyword(account, mo.text) if mo.complete else None
        if found is not None:  # TD, 退订, STOP (or START): the number opts out of (or back into) marketing
            number = normalise(mo.source, default_country_code=self._ctx.routing.country_code)
            if number:
                # A reply to an address no account has opts out of (or back into) every account: a STOP
                # honoured too widely costs a text; one honoured for the wrong account costs a complaint.
                scope = account if policy.optout_scope == "account" and owner is not None else ""
                ops.append(SetOptOut(
                    number, scope=scope, opted_out=found.kind == "optout", source=f"mo:{carrier}", note=mo.text,
                ))  # fmt: skip
                log.info("mo_keyword", number=number, account=scope or "*", kind=found.kind, keyword=found.keyword)


def _address(destination: str) -> str:
    """An MO destination as addresses are compared: without a leading + or 00, surrounding spaces dropped."""
    address = destination.strip()
    if address.startswith("+"):
        return address[1:]
    return address[2:] if address.startswith("00") and address[2:].isdigit() else address


def event_reason(o: SubmitOutcome) -> str:
    """Why a message left a carrier, for its trail: the refusal's reason code."""
    return carrier_rejected(status_name(o.status))


# Outcomes that leave segments due behind the scheduler's cursor.
_RESCAN = (Ev.RESEND, Ev.REQUEUE, Ev.LOST, Ev.SUBMIT_REJECT, Ev.FAIL)
_ACCEPTED = OutcomeKind.ACCEPTED


def _keep(part: MoPart, carrier: str) -> KeepMoPart:
    return KeepMoPart(
        carrier, part.source, part.destination, part.ref or 0, part.total, part.seq, part.text, part.data_coding
    )


def _mo_part(item: Inbound) -> MoPart:
    pdu = item.pdu
    short = pdu.short_message if isinstance(pdu, P.DeliverSm) else b""
    return mo_part(pdu.source_addr, pdu.destination_addr, short, pdu.data_coding, pdu.esm_class, pdu.tlvs)
