"""The engine's face to upstream applications [trio]: `UpstreamBackend` (gateway/upstream/backend.py).

A submit checks every number, chooses each recipient's route (routing/), and is acknowledged only once the
store committed it; status, cancel and preview answer from the store and the route table; events are read
from the store's log as `Event`s, which the upstream server encodes as frames.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from gateway.admin.commands import Balance, Batch, BatchEdit, TemplateCommand, parse_command
from gateway.engine.batches import Batches, refused_by_cluster
from gateway.engine.context import Context
from gateway.engine.reporting import balance_answer, batch_answer
from gateway.engine.scheduler import Scheduler
from gateway.errors import GatewayError
from gateway.lifecycle import DUE_STATES, Ev, Event, State
from gateway.policy.categories import FailureTable
from gateway.policy.policy import Policy, TextVerdict
from gateway.policy.templates import Compiled, TemplateError, TemplateRules
from gateway.routing.content import Scan
from gateway.routing.numbers import BadNumber, Number
from gateway.routing.router import Refusal, Routing
from gateway.segmenting import preview
from gateway.store import (
    Advance,
    AdvanceResult,
    Message,
    Op,
    Recipient,
    SetBlacklist,
    SetCursor,
    SetOptOut,
    Submit,
)
from gateway.store import SubmitResult as StoreSubmitResult
from gateway.store.records import (
    E_ACCOUNT,
    E_ADDRESS,
    E_AT_MS,
    E_BATCH,
    E_CARRIER,
    E_CLIENT_REF,
    E_KIND,
    E_MESSAGE_ID,
    E_NUMBER,
    E_REASON,
    E_SEQ,
    E_TEXT,
    BatchDef,
    EventFields,
    event_duplicate,
)
from gateway.store.records import EventKind as StoredKind
from gateway.upstream import (
    AdminRequest,
    AdminResult,
    CancelResult,
    InvalidRequest,
    ListAction,
    ListEntry,
    ListName,
    ListRequest,
    ListResult,
    MessageQuery,
    MessageStatus,
    NotCancellable,
    NotFound,
    PreviewRequest,
    PreviewResult,
    SubmitRequest,
    SubmitResult,
    SubmittedMessage,
)
from gateway.upstream import Event as UpstreamEvent
from gateway.upstream import EventKind as UpstreamKind


def _verdict(
    routing: Routing, policy: Policy, account: str, message_class: str, text: str
) -> tuple[TextVerdict, Scan | None]:
    """The policy's verdict on a text (docs/protocol.md, "Compliance"), and the route table's word scan of the
    text it sends (with the account's opt-out wording, where one was appended)."""
    scan = routing.router.scan_text(text)
    verdict = policy.text(account, message_class, text, scan)
    if verdict.text != text:
        scan = routing.router.scan_text(verdict.text)
    return verdict, scan

@dataclass(frozen=True, slots=True)
class BackendStatistics:
    submits: int  # submit requests committed since the start (duplicates included)
    recipients: int  # their recipients
    # Recipients refused at accept, by reason (invalid_number, no_route, ...; the store's opted_out,
    # blacklisted, frequency_capped too); a duplicate submit's answer is not counted again.
    refused: dict[str, int]
    text_refused: int  # requests refused whole: no routed carrier can send the text
    cancelled: int  # messages cancelled
    subscription_positions: int  # event-scan positions kept for subscribers (bounded)
    accepted: int  # recipients accepted and stored (not refused, not a duplicate's)


class Backend:
    def __init__(self, ctx: Context, scheduler: Scheduler) -> None:
        self._ctx = ctx
        self._scheduler = scheduler
        self._accept_encoding = next(iter(ctx.encodings.values()), None)
        # Where an event query (account, kinds, after seq) may resume scanning: see _account_rows.
        self._scanned: dict[tuple[str, frozenset[UpstreamKind] | None, int], int] = {}
        self._submits = self._recipients = self._text_refused = self._cancelled = self._accepted = 0
        self._refused: dict[str, int] = {}
        # Templates and batches: what the `account` op makes, and the task that runs the batches.
        self.batches = Batches(ctx, self)

    def statistics(self) -> BackendStatistics:
        return BackendStatistics(
            self._submits, self._recipients, dict(self._refused), self._text_refused, self._cancelled,
            len(self._scanned), self._accepted,
        )  # fmt: skip

    # --- submit ---------------------------------------------------------------------------------------

    async def submit(self, account: str, request: SubmitRequest) -> SubmitResult:
        (result,) = await self.submit_many(account, [request])
        if isinstance(result, Exception):
            raise result
        return result

    async def submit_many(
        self, account: str, requests: Sequence[SubmitRequest]
    ) -> list[SubmitResult | Exception]:
        """Several submits of one account in one group commit (the SMPP face hands over what one read of an
        ESME brought: many one-recipient requests). Each request is checked, accepted or refused on its own,
        exactly as `submit` would: its result, or the exception `submit` would raise for it."""
        ctx = self._ctx
        now_ms = ctx.wall_ms()
        # One snapshot of each for the whole group, whatever a reload does meanwhile.
        routing, policy = ctx.routing, ctx.policy
        verdicts: dict[tuple[str, str], tuple[TextVerdict, Scan | None]] = {}
        prepared: list[tuple[Submit, list[tuple[Recipient, str]]] | Exception] = []
        for i, request in enumerate(requests):
            try:
                prepared.append(self._prepare(account, request, now_ms, routing, policy, verdicts))
            except Exception as err:  # answered to that request alone, as `submit` would raise it
                prepared.append(err)
            if len(request.to) > 1 or i % 16 == 15:
                # A request's checks take milliseconds: let the store writer hear of other callers' groups
                # meanwhile (trio runs every ready task before a waiting one; without this the two processes
                # take turns).
                await trio.lowlevel.checkpoint()
        if ctx.shared is not None:
            prepared = await self._shared_checks(prepared)
        ops = [p[0] for p in prepared if not isinstance(p, Exception)]
        results = iter(await ctx.apply(ops) if ops else [])
        if ops:
            self._scheduler.wake()
        out: list[SubmitResult | Exception] = []
        for request, p in zip(requests, prepared, strict=True):
            if isinstance(p, Exception):
                out.append(p)
                continue
            result = next(results)
            if isinstance(result, GatewayError):
                out.append(result)
                continue
            assert isinstance(result, StoreSubmitResult)
            out.append(self._answer(request, p[1], result))
        return out

    async def _shared_checks(
        self, prepared: list[tuple[Submit, list[tuple[Recipient, str]]] | Exception]
    ) -> list[tuple[Submit, list[tuple[Recipient, str]]] | Exception]:
        """Several nodes (gateway.cluster): the other nodes' opt-outs and blacklists, and the caps counted
        across every node, before the store commits; a class that waits while Valkey is unreachable is
        answered `overloaded` (retry shortly)."""
        shared = self._ctx.shared
        assert shared is not None
        submits = [p[0] for p in prepared if not isinstance(p, Exception)]
        if not submits:
            return prepared
        verdicts = iter(await shared.check(submits))
        out: list[tuple[Submit, list[tuple[Recipient, str]]] | Exception] = []
        for p in prepared:
            if isinstance(p, Exception):
                out.append(p)
                continue
            v = next(verdicts)
            out.append(v if isinstance(v, Exception) else refused_by_cluster(p[0], p[1], v))
        return out

    def _prepare(
        self, account: str, request: SubmitRequest, now_ms: int, routing: Routing, policy: Policy,
        verdicts: dict[tuple[str, str], tuple[TextVerdict, Scan | None]],
    ) -> tuple[Submit, list[tuple[Recipient, str]]]:
        """A request's recipients checked and routed, as the store Submit that accepts them."""
        message_class = str(request.message_class)
        if policy.requires_template(account, message_class):
            raise InvalidRequest(f"template_required: {message_class} from this account is sent from an approved "
                                 "template, in a batch (op account)", field="class")  # fmt: skip
        key = (message_class, request.text)
        found = verdicts.get(key)
        if found is None:  # once for every recipient, and for every request of the group with the same text
            found = verdicts[key] = _verdict(routing, policy, account, message_class, request.text)
        verdict, scan = found
        text = verdict.text  # with the account's opt-out wording, where one was appended
        region = routing.region_of(account)
        numbers = [routing.numbers.parse(to, region) for to in request.to]
        ported = self._ported(numbers)
        checked = [
            (Recipient(to[:64], reject="invalid_number"), str(number)) if not isinstance(number, Number)
            else (Recipient(number.e164, reject=verdict.reject), verdict.detail) if verdict.reject
            else self._recipient(routing, account, message_class, request.sender, text, number, scan,
                                 ported.get(number.e164))
            for to, number in zip(request.to, numbers, strict=True)
        ]  # fmt: skip
        if policy.window is not None:
            opens: dict[tuple[str, ...], int] = {}  # per set of time zones: a request's recipients share a few
            checked = [
                self._held(policy, account, message_class, r, detail, number, now_ms, opens)
                for (r, detail), number in zip(checked, numbers, strict=True)
            ]  # fmt: skip
        recipients = tuple(r for r, _ in checked)
        self._refuse_text(checked, text)
        op = Submit(
            account=account,
            message_class=message_class,
            sender=request.sender,
            text=text,
            recipients=recipients,
            receipt=request.receipt,
            client_ref=request.client_ref or "",
            batch=request.batch_id or "",
            schedule_ms=int(request.schedule_at * 1000) if request.schedule_at else 0,
            expires_ms=now_ms + request.validity_seconds * 1000 if request.validity_seconds else 0,
            check_optout=policy.check_optout(message_class),
            caps=policy.caps(account, request.sender, message_class, verdict.offers_optout),
        )
        return op, checked

    def _answer(
        self, request: SubmitRequest, checked: list[tuple[Recipient, str]], result: StoreSubmitResult
    ) -> SubmitResult:
        """What a committed submit answers per recipient (docs/protocol.md, submit)."""
        self._submits += 1
        self._recipients += len(checked)
        if not result.duplicate:
            refused = self._refused
            for outcome in result.outcomes:
                if outcome.state is _REJECTED:
                    refused[outcome.reason] = refused.get(outcome.reason, 0) + 1
                else:
                    self._accepted += 1
        messages = []
        # A duplicate answers each message's state now, as status names it (delivered, failed, ...).
        states = _PUBLIC_STATES if result.duplicate else _ACCEPT_STATES
        for to, (r, detail), outcome in zip(request.to, checked, result.outcomes, strict=False):
            state = states.get(outcome.state, "accepted")
            number = None if r.reject == "invalid_number" else r.number  # docs/protocol.md: normalised form
            reason = outcome.reason or None
            # The detail belongs to this request's own refusal (or the store's: which cap, which list), or
            # says until when a send window holds it; a duplicate answers the stored state.
            why = None
            if not result.duplicate:
                if r.reject and outcome.reason == r.reject:
                    why = detail
                elif outcome.reason:
                    why = outcome.detail or None
                elif r.defer_until_ms and outcome.state is State.DEFERRED:
                    reason, why = "outside_window", detail
            messages.append(SubmittedMessage(to, str(outcome.message_id), state, reason, number, why))
        return SubmitResult(tuple(messages), result.duplicate)

    def _ported(self, numbers: Sequence[Number | BadNumber]) -> dict[str, str]:
        """The networks ported numbers among `numbers` moved to, in one read (none without a table)."""
        if not self._ctx.portability.active:
            return {}
        e164s = [n.e164 for n in numbers if isinstance(n, Number)]
        return {n: net for n, net in zip(e164s, self._ctx.store.ported_networks(e164s), strict=True) if net}

    def _recipient(
        self, routing: Routing, account: str, message_class: str, sender: str, text: str, number: Number,
        scan: Scan | None, network: str | None, own_text: str = "",
    ) -> tuple[Recipient, str]:
        """One recipient with a valid number: its route chosen (routing/router.py), the network a ported
        number moved to overriding its block; refused with the reason (and a detail for a person) when it
        cannot go. `own_text`: its text when not the Submit's (a batch's rendered template)."""
        plan = routing.router.decide(
            number, account=account, message_class=message_class, sender=sender,
            text=text, rng=self._ctx.rng, scan=scan, network=network,
        )  # fmt: skip
        if isinstance(plan, Refusal):
            return Recipient(number.e164, reject=plan.reason, text=own_text), plan.detail
        encodings = self._ctx.encodings
        route = tuple(c for c in plan.carriers if c in encodings)
        if not route:  # the route names only carriers this process does not run (a reload added them)
            return Recipient(number.e164, reject="no_route", text=own_text), f"route {plan.route}: no running carrier"
        # What an account with a balance reserves: the parts at its first carrier (Router.fit is cached per
        # text and encoding, so a request's recipients share one preview).
        parts = routing.router.fit(text, route[0])[1] or 1
        return Recipient(number.e164, route=route, parts=parts, text=own_text), ""

    def batch_submit(
        self, account: str, b: BatchDef, run_id: str, rows: Sequence[tuple[int, str, dict[str, str]]],
        compiled: Compiled | None, rules: TemplateRules,
    ) -> Submit:
        """A chunk of a batch run as one store Submit: each row's text rendered from the template with its
        values (refused template_variable_missing or template_bad_value when it cannot be), then checked,
        routed and held for its send window as a submit's recipient is. Its client_ref names the run and
        the chunk's first row, so the same chunk submitted again is answered as a duplicate."""
        ctx = self._ctx
        routing, policy = ctx.routing, ctx.policy
        now_ms = ctx.wall_ms()
        cls, sender = b.message_class, b.sender
        region = routing.region_of(account)
        numbers = [routing.numbers.parse(to, region) for _, to, _ in rows]
        ported = self._ported(numbers)
        skeleton = "".join(compiled.literals) if compiled is not None else b.text
        # Each distinct text is checked once (a template with few distinct values shares its checks).
        verdicts: dict[str, tuple[TextVerdict, Scan | None]] = {}
        opens: dict[tuple[str, ...], int] = {}
        recipients = []
        offers_optout = True
        for (_, to, values), number in zip(rows, numbers, strict=True):
            e164 = number.e164 if isinstance(number, Number) else to[:64]
            text = b.text
            if compiled is not None:
                try:
                    text = compiled.render(values, rules)
                except TemplateError as err:
                    recipients.append(Recipient(e164, reject=err.problem.reason))
                    continue
            checked = verdicts.get(text)
            if checked is None:
                checked = verdicts[text] = _verdict(routing, policy, account, cls, text)
            verdict, scan = checked
            offers_optout = offers_optout and verdict.offers_optout
            own = verdict.text if verdict.text != skeleton else ""
            if not isinstance(number, Number):
                r = Recipient(e164, reject="invalid_number", text=own)
            elif verdict.reject:
                r = Recipient(e164, reject=verdict.reject, text=own)
            else:
                r, detail = self._recipient(routing, account, cls, sender, verdict.text, number, scan,
                                            ported.get(number.e164), own)  # fmt: skip
                if policy.window is not None:
                    r, _ = self._held(policy, account, cls, r, detail, number, now_ms, opens)
            recipients.append(r)
        return Submit(
            account=account, message_class=cls, sender=sender, text=skeleton, recipients=tuple(recipients),
            receipt=b.receipt, client_ref=f"batch:{run_id}:{rows[0][0]}", batch=run_id,
            expires_ms=now_ms + b.validity_seconds * 1000 if b.validity_seconds else 0,
            check_optout=policy.check_optout(cls), caps=policy.caps(account, sender, cls, offers_optout),
        )  # fmt: skip

    def submitted(self) -> None:
        """A batch chunk was committed: the scheduler sends what it queued."""
        self._scheduler.wake()

    def _held(
        self, policy: Policy, account: str, message_class: str, r: Recipient, detail: str,
        number: Number | BadNumber, now_ms: int, opens: dict[tuple[str, ...], int],
    ) -> tuple[Recipient, str]:
        """A routed recipient outside its send window: held until it opens (deferred, never dropped). A
        mobile may be anywhere in its country: the window must be open in every zone of it."""
        if r.reject or not isinstance(number, Number):
            return r, detail
        zones = self._ctx.routing.numbers.time_zones(r.number, geographic=number.geographic)
        until = opens.get(zones)
        if until is None:
            until = opens[zones] = policy.defer_until(account, message_class, zones, now_ms)
        if not until:
            return r, detail
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(until / 1000))
        held = Recipient(r.number, defer_until_ms=until, route=r.route, parts=r.parts, text=r.text)
        return held, f"held until {when}, when its window opens"

    def _refuse_text(self, checked: Sequence[tuple[Recipient, str]], text: str) -> None:
        """A text that no routed carrier of any recipient can send is refused as a whole, as a request error
        (message_too_long, not_encodable), as before routes were checked: nothing is stored."""
        routed = [r for r, _ in checked if r.reject not in ("invalid_number", "no_route")]
        if routed and all(r.reject in _TEXT_REASONS for r in routed):
            # The first carrier that refuses the text for that reason words the request's error.
            ctx = self._ctx
            carrier = next((c for c in ctx.encodings if ctx.fit(text, c) == routed[0].reject), None)
            error = ctx.text_error(text, carrier) if carrier is not None else None
            if error is not None:
                self._text_refused += 1
                raise error

    # --- status, cancel, preview ----------------------------------------------------------------------

    def _messages(self, account: str, query: MessageQuery) -> list[Message]:
        store = self._ctx.store
        if query.message_id is not None:
            ids: tuple[int, ...] = (int(query.message_id),) if _is_message_id(query.message_id) else ()
        else:
            ids = store.by_client_ref(account, query.client_ref or "")
        found = [m for m in (store.get(i) for i in ids) if m is not None and m.account == account]
        if not found:
            raise NotFound("no such message for this account")
        return found

    async def status(self, account: str, query: MessageQuery) -> Sequence[MessageStatus]:
        return [_status(m) for m in self._messages(account, query)]

    async def cancel(self, account: str, query: MessageQuery) -> CancelResult:
        # Only what no carrier has seen yet can be cancelled (SMPP cancel_sm is not reliable across SMSCs).
        found = [m for m in self._messages(account, query) if m.state in DUE_STATES]
        results = await self._ctx.apply([Advance(m.id, None, Event(Ev.CANCEL)) for m in found])
        done = tuple(
            str(m.id)
            for m, r in zip(found, results, strict=True)
            if isinstance(r, AdvanceResult) and r.state is State.CANCELLED
        )
        if not done:
            raise NotCancellable("already submitted to a carrier or final")
        self._cancelled += len(done)
        return CancelResult(done)

    async def receipt_wanted(self, account: str, message_ids: Sequence[str]) -> set[str]:
        """Those of the account's messages (by id) that want a receipt, for the SMPP face: not when the submit
        asked for none, nor when the recipient was refused at accept (its ESME had an error status, no id)."""
        store = self._ctx.store
        out = set()
        for mid in message_ids:
            m = store.get(int(mid)) if _is_message_id(mid) else None
            if m is None or m.account != account or not m.receipt:
                continue
            if not (m.state is _REJECTED and all(s.updated_ms == m.created_ms for s in m.segments)):
                out.add(mid)
        return out

    async def preview(self, account: str, request: PreviewRequest) -> PreviewResult:
        encoding = self._accept_encoding
        if encoding is None:
            raise NotFound("no carrier configured")
        if request.message_class is None:
            p = preview(request.text, encoding)
            return PreviewResult(str(p.encoding), p.parts, p.units, p.chars_left, p.units_per_part)
        # As a submit of this class would go: the account's wording appended, its content rules checked.
        routing = self._ctx.routing
        verdict = self._ctx.policy.text(
            account, str(request.message_class), request.text, routing.router.scan_text(request.text)
        )
        p = preview(verdict.text, encoding)
        return PreviewResult(
            str(p.encoding), p.parts, p.units, p.chars_left, p.units_per_part, verdict.text,
            verdict.reject or None, verdict.detail or None,
        )  # fmt: skip

    # --- the account's lists ---------------------------------------------------------------------------

    async def lists(self, account: str, request: ListRequest) -> ListResult:
        optout = request.list is ListName.OPTOUT
        return await self.edit_list(request, account if optout else "account:" + account, account, "api")

    async def edit_list(self, request: ListRequest, scope: str, account: str | None, source: str) -> ListResult:
        """`lists` on any scope: an account's (its name for opt-outs, "account:NAME" for its blacklist), the
        gateway's ("") or a carrier's blacklist ("carrier:NAME"), as the admin socket edits them. Numbers
        are read in `account`'s region (None: the gateway's default)."""
        ctx = self._ctx
        store = ctx.store
        optout = request.list is ListName.OPTOUT
        if request.action is ListAction.PAGE:
            limit = request.limit or 1000
            rows = store.list_page(str(request.list), scope, request.after or "", limit)
            page = tuple(ListEntry(n, n, True, *_when(entry)) for n, entry in rows)
            return ListResult(page, rows[-1][0] if len(rows) == limit else None)
        routing = ctx.routing
        region = routing.region_of(account) if account is not None else routing.default_region
        parsed = [(to, routing.numbers.parse(to, region)) for to in request.numbers]
        valid = list(dict.fromkeys(n.e164 for _, n in parsed if isinstance(n, Number)))
        if request.action is not ListAction.CHECK and valid:
            on = request.action is ListAction.ADD
            ops: list[Op] = [
                SetOptOut(n, scope=scope, opted_out=on, source=source) if optout
                else SetBlacklist(n, listed=on, scope=scope, source=source)
                for n in valid
            ]  # fmt: skip
            if ctx.shared is not None:  # every node's lists too (docs/scaling.md)
                await ctx.shared.publish(ops)
            for result in await ctx.apply(ops):
                if isinstance(result, GatewayError):
                    raise result
        # What each number's entry is now (an opt-out from every account, an operator's, counts too), in one read.
        found = dict(zip(valid, store.list_entries(str(request.list), scope, valid), strict=True))
        entries = [
            ListEntry(to, n.e164, found[n.e164] is not None, *_when(found[n.e164])) if isinstance(n, Number)
            else ListEntry(to, None, False, reason="invalid_number", detail=str(n))
            for to, n in parsed
        ]  # fmt: skip
        return ListResult(tuple(entries))

    # --- events ---------------------------------------------------------------------------------------

    async def account(self, account: str, request: AdminRequest) -> AdminResult:
        """The account's own batches, templates and balance (docs/protocol.md, `account`): the admin
        commands and their answers, for this account only; a balance is read, templates not reviewed."""
        if request.command not in ("batch", "template", "balance"):
            raise InvalidRequest("account answers batch, template and balance", field="command")
        args = dict(request.args)
        if args.get("account", account) != account:
            raise NotFound(f"no account {args['account']!r} for this connection")
        args["account"] = account
        try:
            command = parse_command(request.command, args)
        except InvalidRequest as err:  # the admin parser names args.KEY; this op's fields are the same
            raise InvalidRequest(err.message, field=err.field) from None
        store = self._ctx.store
        if isinstance(command, Batch):
            return AdminResult(batch_answer(store, self.failure_table(), command, account))
        if isinstance(command, BatchEdit):
            return AdminResult(await self.batches.edit(account, command))
        if isinstance(command, TemplateCommand):
            return AdminResult(await self.batches.template(account, command, operator=False))
        assert isinstance(command, Balance)
        if command.action not in ("show", "statement"):
            raise InvalidRequest("an account reads its balance (show, statement); top-ups are the operator's",
                                 field="args.action")  # fmt: skip
        return AdminResult(balance_answer(store, command, account))

    def failure_table(self) -> FailureTable:
        """Each carrier's failure codes as reports name them (CarrierSettings.failure_reasons)."""
        carriers = self._ctx.carriers
        return FailureTable({name: c.failure_reasons for name, c in carriers.items()})

    async def read_events(
        self, account: str, after_seq: int, limit: int, kinds: frozenset[UpstreamKind] | None = None
    ) -> Sequence[UpstreamEvent]:
        return [_event(f) for f in self._account_rows(account, after_seq, limit, kinds)]

    def _account_rows(
        self, account: str, after_seq: int, limit: int, kinds: frozenset[UpstreamKind] | None = None
    ) -> list[EventFields]:
        """The account's next `limit` log entries (of `kinds`) after `after_seq` (the log is shared by all
        accounts)."""
        wanted = None if kinds is None else frozenset(_STORED_KINDS[k] for k in kinds)
        # The log only grows: entries known not to match after a cursor need no second look. Without
        # this, a subscriber for final events rescans every "submitted" event ahead of the next final one
        # at each commit, for each wait and read.
        scanned = self._scanned
        key = (account, kinds, after_seq)
        after_seq = scanned.get(key, after_seq)
        out: list[EventFields] = []
        store = self._ctx.store
        while len(out) < limit:
            batch = store.event_rows(after_seq, limit=max(limit, 256))
            if not batch:
                break
            for f in batch:
                if f[E_ACCOUNT] == account and (wanted is None or f[E_KIND] in wanted):
                    out.append(f)
                    if len(out) == limit:
                        return out
            after_seq = batch[-1][E_SEQ]
        if len(scanned) >= _SCANNED_ENTRIES:
            scanned.clear()
        # Nothing for this query matches up to `after_seq` beyond what `out` holds: the next query starts
        # after its last entry (or after the same cursor, if none) and can skip to here.
        scanned[(account, kinds, out[-1][E_SEQ]) if out else key] = after_seq
        return out

    async def wait_events(
        self, account: str, after_seq: int, kinds: frozenset[UpstreamKind] | None = None
    ) -> None:
        ctx = self._ctx
        while True:
            waiter = ctx.new_events
            if ctx.store.last_seq() > after_seq and self._account_rows(account, after_seq, 1, kinds):
                return
            await waiter.wait()

    async def ack_events(self, account: str, seq: int) -> None:
        store = self._ctx.store
        # A cursor ahead of the log would hide the events logged up to it. The log is read when the seq is
        # past what the writer's replies told: a subscriber may have been sent events committed since.
        if seq > store.last_seq() and seq > store.logged_seq():
            raise InvalidRequest(f"seq {seq} is past the last event ({store.last_seq()})", field="seq")
        await self._ctx.apply([SetCursor(account, seq)])

    async def event_cursor(self, account: str) -> int:
        return self._ctx.store.cursor(account)

    async def stored_cursor(self, name: str) -> int | None:
        return self._ctx.store.stored_cursor(name)

    async def last_event_seq(self) -> int:
        return self._ctx.store.last_seq()


# What a submit answers per recipient (docs/protocol.md, submit).
_ACCEPT_STATES = {State.REJECTED: "rejected", State.DEFERRED: "scheduled"}
_REJECTED = State.REJECTED

# docs/protocol.md names the states an app sees; the reason code says why a message failed.
_PUBLIC_STATES = {
    State.ACCEPTED: "accepted",
    State.DEFERRED: "scheduled",
    State.QUEUED: "queued",
    State.SUBMITTING: "queued",
    State.SUBMITTED: "submitted",
    State.UNKNOWN: "unknown",
    State.DELIVERED: "delivered",
    State.UNDELIVERABLE: "failed",
    State.EXPIRED: "expired",
    State.REJECTED: "failed",
    State.FAILED: "failed",
    State.CANCELLED: "cancelled",
}

_TEXT_REASONS = frozenset({"message_too_long", "not_encodable"})


def _when(entry: tuple[int, str, str] | None) -> tuple[float | None, str | None, str | None]:
    """A list entry's (at, source, note) as ListEntry takes them: None for what an old entry never kept."""
    if entry is None:
        return None, None, None
    at_ms, source, note = entry
    return (at_ms / 1000 if at_ms else None), source or None, note or None


def _is_message_id(text: str) -> bool:
    """Whether `text` is a message id as the gateway writes them: ASCII digits, no leading zero, a u64. Ids
    are opaque strings to clients: "0121...", full-width or Arabic-Indic digits name no message."""
    return text.isascii() and text.isdigit() and (text == "0" or text[0] != "0") and int(text) < 1 << 64


def _status(m: Message) -> MessageStatus:
    updated = max((s.updated_ms for s in m.segments), default=m.created_ms)
    return MessageStatus(
        message_id=str(m.id),
        to=m.recipient,
        state=_PUBLIC_STATES[m.state],
        segments=len(m.segments),
        reason=m.reason or None,
        carrier=m.carrier or None,
        client_ref=m.client_ref or None,
        batch_id=m.batch or None,
        created_at=m.created_ms / 1000,
        updated_at=updated / 1000,
        possible_duplicate=m.possible_duplicate,
        trail=m.trail,
        due_at=_due_at(m),
    )


def _due_at(m: Message) -> float | None:
    """When a message that waits for a time (state deferred: a schedule, a send window, a back-off) is due."""
    if m.state is not State.DEFERRED:
        return None
    due = min((s.due_ms for s in m.segments if s.state is State.DEFERRED), default=0)
    return due / 1000 if due else None


_KINDS = {
    int(StoredKind.SUBMITTED): UpstreamKind.SUBMITTED,
    int(StoredKind.DELIVERED): UpstreamKind.DELIVERED,
    int(StoredKind.FAILED): UpstreamKind.FAILED,
    int(StoredKind.MO): UpstreamKind.MO,
}
_STORED_KINDS = {v: k for k, v in _KINDS.items()}
_MO = int(StoredKind.MO)
# Subscriptions' scan positions kept (a few per subscriber are live at a time; the rest are stale).
_SCANNED_ENTRIES = 1024


def _event(f: EventFields) -> UpstreamEvent:
    """A stored event (records.EventFields) as the upstream `Event` a subscriber receives: an MO's number is
    its sender and its address the one it was sent to; any other event's number is the recipient."""
    kind = f[E_KIND]
    if kind == _MO:
        message_id, to, sender = None, f[E_ADDRESS], f[E_NUMBER]
    else:
        message_id, to, sender = str(f[E_MESSAGE_ID]), f[E_NUMBER], f[E_ADDRESS]
    return UpstreamEvent(
        f[E_SEQ], _KINDS[kind], f[E_AT_MS] / 1000, message_id, to, sender, f[E_TEXT] or None,
        f[E_REASON] or None, f[E_CARRIER] or None, f[E_CLIENT_REF] or None, f[E_BATCH] or None,
        event_duplicate(f),
    )  # fmt: skip

