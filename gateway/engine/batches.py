"""Templates and batches [trio]: an account's templates (checked, then approved by the operator), its batches
(made, filled with recipients chunk by chunk, sent now, at a time or every day, week or month), and the task
that runs them.

A batch is stored as a definition (records.BatchDef) and its recipients by index (batch rows); nothing is
sent until `send`. A run expands the rows a chunk at a time into store Submits, each recipient with its own
rendered text, checked and routed as a submit's recipients are (Backend.batch_submit). A chunk is one Submit
whose client_ref names the run and the chunk's first index, committed before the definition's cursor moves
past it: after a crash the chunk is submitted again and the store answers it as the duplicate it is, so no
recipient is sent twice and none is skipped. A recurring batch's runs are counted apart ("ID#1", "ID#2" ...),
so each run has its own report, and the batch's report adds them up.

Stop: the definition is stopped first (the runner checks it before each chunk and cannot advance past it:
the cursor write names the revision it read), then what of the current run no carrier has yet is cancelled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import structlog
import trio
import trio.lowlevel

from gateway.admin import reports
from gateway.admin.commands import OPERATOR_TEMPLATE_ACTIONS, BatchEdit, TemplateCommand
from gateway.errors import GatewayError
from gateway.lifecycle import DUE_STATES, Ev, Event
from gateway.policy import recurrence, templates
from gateway.store import Advance, InvalidField, Recipient, Submit, UnknownMessage, WrongState, records
from gateway.store.ops import BatchRows, PutBatch, PutTemplate
from gateway.store.records import BatchCounters, BatchDef, Template
from gateway.upstream.errors import InvalidRequest, NotFound
from gateway.upstream.schema import MessageClass, PreviewRequest

if TYPE_CHECKING:
    from gateway.engine.backend import Backend
    from gateway.engine.context import Context

log = structlog.get_logger("gateway.batches")

CHUNK = 1000
# A batch whose run fails on something other than its own data (the store full) is tried again after this.
RETRY_SECONDS = 5.0
TEMPLATE_RULES = templates.TemplateRules()
# States as platforms show them; "sent" (every recipient submitted) reads as sending until every message ended.
DRAFT, PENDING, SENDING, SENT, STOPPED, FAILED = "draft", "pending", "sending", "sent", "stopped", "failed"


def run_ids(batch_id: str, b: BatchDef) -> list[str]:
    """The batch ids its messages are counted under: the batch's own, or one per run of a recurring one."""
    if b.every == "once":
        return [batch_id] if b.runs else []
    return [f"{batch_id}#{n}" for n in range(1, b.runs + 1)]


def counters(store: Any, account: str, batch_id: str, b: BatchDef) -> BatchCounters:
    """The counters of every run of the batch, added up."""
    return reports.merged(c for c in (store.batch(account, i) for i in run_ids(batch_id, b)) if c is not None)


def describe(batch_id: str, b: BatchDef, counted: BatchCounters | None = None) -> dict[str, Any]:
    """The definition as an answer: seconds since the epoch, nil for what is not set. A batch whose every
    run was sent is `sending` while messages of it have not ended, then `done`, or `failed` when none of
    its recipients was delivered."""
    state, reason = b.state, b.reason
    if state == SENT and counted is not None:
        if counted.in_progress:
            state = SENDING
        elif counted.targeted and not counted.delivered:
            state, reason = FAILED, reason or "no recipient was delivered"
        else:
            state = "done"
    elif state == SENT:
        state = "done"
    return {
        "batch_id": batch_id, "state": state, "reason": reason or None, "class": b.message_class,
        "sender": b.sender, "text": b.text or None, "template": b.template or None, "every": b.every,
        "at": b.start_ms / 1000 if b.start_ms else None, "until": b.end_ms / 1000 if b.end_ms else None,
        "time_zone": b.time_zone, "validity_seconds": b.validity_seconds or None, "receipt": b.receipt,
        "recipients": b.recipients, "runs": b.runs, "next_run_at": b.next_ms / 1000 if b.next_ms else None,
        "run_ids": run_ids(batch_id, b), "created_at": b.created_ms / 1000, "updated_at": b.updated_ms / 1000,
    }  # fmt: skip


def template_answer(template_id: str, t: Template) -> dict[str, Any]:
    return {
        "template_id": template_id, "text": t.text, "class": t.message_class, "state": t.state,
        "reason": t.reason or None, "official": t.official, "variables": list(templates.variables(t.text)),
        "created_at": t.created_ms / 1000, "updated_at": t.updated_ms / 1000,
    }  # fmt: skip


def _store_error(err: GatewayError, field: str) -> GatewayError:
    if isinstance(err, UnknownMessage):
        return NotFound(str(err))
    if isinstance(err, WrongState | InvalidField):
        return InvalidRequest(str(err), field=field)
    return err


class Batches:
    def __init__(self, ctx: Context, backend: Backend) -> None:
        self._ctx = ctx
        self._backend = backend
        self._wake = trio.Event()
        self.runs_started = self.chunks = self.failed_runs = 0

    def wake(self) -> None:
        self._wake.set()

    async def _put(self, *ops: Any, field: str = "args.batch_id") -> None:
        for result in await self._ctx.apply(list(ops)):
            if isinstance(result, GatewayError):
                raise _store_error(result, field)

    # --- templates ------------------------------------------------------------------------------------

    async def template(self, account: str, command: TemplateCommand, operator: bool) -> dict[str, Any]:
        store = self._ctx.store
        if command.action in OPERATOR_TEMPLATE_ACTIONS and not operator:
            raise InvalidRequest("templates are approved by the operator", field="args.action")
        if command.action == "list":
            return {"account": account,
                    "templates": [template_answer(i, t) for i, t in store.templates(account)]}  # fmt: skip
        template_id = command.template_id or ""
        old = store.template(account, template_id)
        now = self._ctx.wall_ms()
        if command.action == "create" and old is not None and (old.text, old.message_class) == (
            command.text, command.message_class
        ):
            pass  # the same template again (an answer lost): as it stands, reviewed or not
        elif command.action == "create":
            new = Template(command.text, command.message_class, PENDING, created_ms=old.created_ms if old else now,
                           updated_ms=now)  # fmt: skip
            self._check_template(account, new)
            await self._put(PutTemplate(account, template_id, old.rev if old else 0, records.pack_template(new)),
                            field="args.template_id")  # fmt: skip
            log.info("template_created", account=account, template_id=template_id, state=PENDING)
        elif old is None:
            raise NotFound(f"no template {template_id!r} of account {account!r}")
        elif command.action == "preview":
            return {"account": account, "template_id": template_id, **await self._preview(account, old, command)}
        elif command.action == "delete":
            await self._put(PutTemplate(account, template_id, old.rev, b""), field="args.template_id")
            return {"account": account, "template_id": template_id, "deleted": True}
        elif command.action != "show":
            state = "rejected" if command.action == "reject" else "approved"
            changed = replace(old, state=state, reason=command.reason, official=command.action == "official",
                              updated_ms=now)  # fmt: skip
            await self._put(PutTemplate(account, template_id, old.rev, records.pack_template(changed)),
                            field="args.template_id")  # fmt: skip
            log.info("template_reviewed", account=account, template_id=template_id, state=state,
                     reason=command.reason)  # fmt: skip
        t = store.template(account, template_id)
        assert t is not None
        return {"account": account, **template_answer(template_id, t)}

    async def _preview(self, account: str, t: Template, command: TemplateCommand) -> dict[str, Any]:
        """The text a recipient with these values would get, as a submit of it would send it: its encoding,
        parts, and the policy's refusal if any."""
        try:
            text = templates.render(t.text, dict(command.values), TEMPLATE_RULES)
        except templates.TemplateError as err:
            raise InvalidRequest(str(err), field="args.vars") from None
        p = await self._backend.preview(account, PreviewRequest(text, MessageClass(t.message_class)))
        return {"text": p.text, "encoding": p.encoding, "parts": p.parts, "chars": p.chars,
                "chars_left": p.chars_left, "per_part": p.per_part, "reason": p.reason, "detail": p.detail}  # fmt: skip

    def _check_template(self, account: str, t: Template) -> None:
        """The template rules (policy/templates.py), then the account's content rules on its fixed text:
        signature, banned words, opt-out wording (a value is checked on its own when rendered)."""
        problem = templates.check(t.text, TEMPLATE_RULES)
        if problem is not None:
            raise InvalidRequest(f"{problem.reason}: {problem.detail}", field="args.text")
        fixed = templates.skeleton(t.text)
        ctx = self._ctx
        verdict = ctx.policy.text(account, t.message_class, fixed, ctx.routing.router.scan_text(fixed))
        if verdict.reject:
            raise InvalidRequest(f"{verdict.reject}: {verdict.detail}", field="args.text")

    # --- batches --------------------------------------------------------------------------------------

    async def edit(self, account: str, command: BatchEdit) -> dict[str, Any]:
        store = self._ctx.store
        batch_id = command.batch_id
        if command.action == "create":
            return await self._create(account, command)
        b = store.batch_def(account, batch_id)
        if b is None:
            raise NotFound(f"no batch {batch_id!r} of account {account!r}")
        if command.action == "add":
            rows = tuple(records.pack_batch_row(to, dict(values)) for to, values in command.rows)
            await self._put(BatchRows(account, batch_id, command.first, rows), field="args.first")
        elif command.action == "send":
            await self._send(account, batch_id, b)
        else:
            cancelled = await self.stop(account, batch_id)
            b = store.batch_def(account, batch_id)
            assert b is not None
            return {"account": account, **describe(batch_id, b, counters(store, account, batch_id, b)),
                    "cancelled": cancelled}  # fmt: skip
        b = store.batch_def(account, batch_id)
        assert b is not None
        return {"account": account, **describe(batch_id, b, counters(store, account, batch_id, b))}

    async def _create(self, account: str, command: BatchEdit) -> dict[str, Any]:
        ctx = self._ctx
        batch_id = command.batch_id
        if not command.template and ctx.policy.requires_template(account, command.message_class):
            raise InvalidRequest(f"template_required: {command.message_class} from this account is sent from an "
                                 "approved template", field="args.text")  # fmt: skip
        if command.template:
            t = ctx.store.template(account, command.template)
            if t is None:
                raise NotFound(f"no template {command.template!r} of account {account!r}")
            if t.state != "approved":
                raise InvalidRequest(f"template {command.template!r} is {t.state}: a batch sends an approved one",
                                     field="args.template")  # fmt: skip
            if t.message_class != command.message_class:
                raise InvalidRequest(f"template {command.template!r} is for {t.message_class}, not "
                                     f"{command.message_class}", field="args.class")  # fmt: skip
        start_ms, end_ms = int(command.at * 1000), int(command.until * 1000)
        problem = recurrence.check(recurrence.Recurrence(command.every, start_ms, end_ms, command.time_zone))
        if problem is not None:
            raise InvalidRequest(problem, field="args.time_zone" if "zone" in problem else "args.every")
        now = ctx.wall_ms()
        new = BatchDef(
            command.message_class, command.sender, command.text, command.template, command.every, start_ms, end_ms,
            command.time_zone, command.validity_seconds, command.receipt, DRAFT, created_ms=now, updated_ms=now,
        )  # fmt: skip
        old = ctx.store.batch_def(account, batch_id)
        if old is not None:
            # The same create again (an answer lost with its connection) is answered as the first was.
            # (`send` set a batch sent "now" to start when it was sent.)
            same = replace(old, state=DRAFT, recipients=0, runs=0, cursor=0, next_ms=0, created_ms=now,
                           updated_ms=now, stopped_ms=0, reason="", rev=0,
                           start_ms=old.start_ms if start_ms else 0)  # fmt: skip
            if same != new:
                raise InvalidRequest(f"batch {batch_id!r} exists already, made otherwise", field="args.batch_id")
            return {"account": account, **describe(batch_id, old, counters(ctx.store, account, batch_id, old))}
        await self._put(PutBatch(account, batch_id, 0, records.pack_batch_def(new)))
        log.info("batch_created", account=account, batch_id=batch_id, every=command.every,
                 template=command.template or None)  # fmt: skip
        b = ctx.store.batch_def(account, batch_id)
        assert b is not None
        return {"account": account, **describe(batch_id, b, counters(ctx.store, account, batch_id, b))}

    async def _send(self, account: str, batch_id: str, b: BatchDef) -> None:
        if b.state != DRAFT:
            if b.state in (PENDING, SENDING, SENT):
                return  # sent already: the same request again
            raise InvalidRequest(f"batch {batch_id!r} is {b.state}: only a draft is sent", field="args.action")
        if not b.recipients:
            raise InvalidRequest(f"batch {batch_id!r} has no recipients: add them first", field="args.action")
        now = self._ctx.wall_ms()
        if b.every == "once":
            first: int | None = max(b.start_ms, now)  # a time that passed meanwhile: now
        else:
            rule = recurrence.Recurrence(b.every, b.start_ms, b.end_ms, b.time_zone)
            first = recurrence.next_run_ms(rule, now - 1)
        if first is None:  # every run is in the past
            raise InvalidRequest(f"batch {batch_id!r} has no run after now: its until has passed", field="args.action")
        if not b.start_ms:
            b = replace(b, start_ms=first)
        sent = replace(b, state=PENDING, next_ms=max(first, 1), updated_ms=now)
        await self._put(PutBatch(account, batch_id, b.rev, records.pack_batch_def(sent)))
        log.info("batch_sent", account=account, batch_id=batch_id, recipients=b.recipients,
                 first_run_ms=first)  # fmt: skip
        self.wake()

    async def stop(self, account: str, batch_id: str) -> int:
        """Stopped: no further chunk or run; what of its current run no carrier has yet is cancelled.
        Returns how many messages were cancelled."""
        store = self._ctx.store
        for _ in range(100):  # the runner may move the cursor meanwhile: read again and retry
            b = store.batch_def(account, batch_id)
            if b is None:
                raise NotFound(f"no batch {batch_id!r} of account {account!r}")
            if b.state in (STOPPED, FAILED) or (
                b.state == SENT and not counters(store, account, batch_id, b).in_progress
            ):
                break  # stopped, or ended: as it stands
            now = self._ctx.wall_ms()
            stopped = replace(b, state=STOPPED, next_ms=0, stopped_ms=now, updated_ms=now)
            (result,) = await self._ctx.apply([PutBatch(account, batch_id, b.rev, records.pack_batch_def(stopped))])
            if not isinstance(result, WrongState):
                if isinstance(result, GatewayError):
                    raise result
                log.info("batch_stopped", account=account, batch_id=batch_id, runs=b.runs, cursor=b.cursor)
                break
            await trio.lowlevel.checkpoint()
        b = store.batch_def(account, batch_id)
        assert b is not None
        ids = run_ids(batch_id, b)
        return await self._cancel_waiting(account, ids[-1]) if ids else 0

    async def _cancel_waiting(self, account: str, run_id: str) -> int:
        ctx = self._ctx
        cancelled, after = 0, 0
        while True:
            page, after = ctx.store.batch_details(account, run_id, "waiting", after, CHUNK)
            due = [m for m in page if m.state in DUE_STATES]
            if due:
                results = await ctx.apply([Advance(m.id, None, Event(Ev.CANCEL)) for m in due])
                cancelled += sum(not isinstance(r, GatewayError) for r in results)
            if not after:
                return cancelled

    # --- the runner -----------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Runs every batch whose run is due, chunk by chunk, then sleeps until the next is due (or `wake`)."""
        ctx = self._ctx
        task_status.started()
        retry_at: dict[tuple[str, str], float] = {}
        while True:
            now = ctx.wall_ms()
            worked = False
            for at, account, batch_id in ctx.store.due_batches(now):
                if retry_at.get((account, batch_id), 0.0) > trio.current_time():
                    continue
                try:
                    await self._run(account, batch_id, at)
                    retry_at.pop((account, batch_id), None)
                    worked = True
                except GatewayError as err:  # the store full, a bug in one record: tried again later
                    self.failed_runs += 1
                    retry_at[(account, batch_id)] = trio.current_time() + RETRY_SECONDS
                    log.warning("batch_run_retried", account=account, batch_id=batch_id, error=str(err),
                                retry_seconds=RETRY_SECONDS)  # fmt: skip
            if worked:
                continue
            due = ctx.store.next_batch_ms()
            wait = 60.0 if not due else max(0.0, min(60.0, (due - ctx.wall_ms()) / 1000))
            if retry_at:
                wait = max(min(wait, min(retry_at.values()) - trio.current_time()), 0.05)
            with trio.move_on_after(wait if math.isfinite(wait) else 60.0):
                await self._wake.wait()
            self._wake = trio.Event()

    async def _run(self, account: str, batch_id: str, at: int) -> None:
        ctx = self._ctx
        store = ctx.store
        b = store.batch_def(account, batch_id)
        if b is None or b.next_ms != at:
            return
        if b.state == PENDING:  # a run begins
            now = ctx.wall_ms()
            begun = replace(b, state=SENDING, runs=b.runs + 1, cursor=0, updated_ms=now)
            (result,) = await ctx.apply([PutBatch(account, batch_id, b.rev, records.pack_batch_def(begun))])
            if isinstance(result, GatewayError):
                return  # stopped meanwhile: read again
            self.runs_started += 1
            log.info("batch_run_started", account=account, batch_id=batch_id, run=begun.runs, recipients=b.recipients)
            b = replace(begun, rev=b.rev + 1)
        elif b.state == SENDING:  # a run a restart (or a failed write) cut: from its last committed chunk
            log.info("batch_run_resumed", account=account, batch_id=batch_id, run=b.runs, cursor=b.cursor,
                     recipients=b.recipients)  # fmt: skip
        if b.state != SENDING:
            return
        compiled = None
        if b.template:
            t = store.template(account, b.template)
            if t is None or t.state != "approved":
                why = f"template {b.template!r} is {t.state if t else 'deleted'}: no longer approved"
                failed = replace(b, state=FAILED, reason=why, next_ms=0, updated_ms=ctx.wall_ms())
                await ctx.apply([PutBatch(account, batch_id, b.rev, records.pack_batch_def(failed))])
                log.warning("batch_failed", account=account, batch_id=batch_id, reason=why)
                return
            compiled = templates.compile_template(t.text)
        run_id = run_ids(batch_id, b)[-1]
        backend = self._backend
        # `b` is the definition as stored; `moved` where the run is once the chunks committed so far count.
        # That position is written in the transaction of the next chunk (one commit a chunk: a chunk is
        # never counted before it is stored), and the next chunk is prepared while one commits.
        moved, unsaved = b, False
        rows = store.batch_rows(account, batch_id, b.cursor, CHUNK)
        op = backend.batch_submit(account, b, run_id, rows, compiled, TEMPLATE_RULES) if rows else None
        while op is not None:
            ops: list[Any] = [PutBatch(account, batch_id, b.rev, records.pack_batch_def(moved))] if unsaved else []
            ops.append(op)
            results: list[Any] = []
            after = rows[-1][0] + 1
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._commit, ops, results)
                await trio.lowlevel.checkpoint()  # the group is on its way to the writer process
                rows = store.batch_rows(account, batch_id, after, CHUNK)
                op = backend.batch_submit(account, b, run_id, rows, compiled, TEMPLATE_RULES) if rows else None
            if unsaved:
                if isinstance(results[0], WrongState):  # stopped meanwhile: what was queued is cancelled too
                    await self._cancel_waiting(account, run_id)
                    return
                if isinstance(results[0], GatewayError):
                    raise results[0]
                b = replace(moved, rev=b.rev + 1)
            if isinstance(results[-1], GatewayError):
                raise results[-1]
            backend.submitted()
            self.chunks += 1
            moved, unsaved = replace(b, cursor=after, updated_ms=ctx.wall_ms()), True
        now = ctx.wall_ms()
        nxt = None
        if b.every != "once":
            rule = recurrence.Recurrence(b.every, b.start_ms, b.end_ms, b.time_zone)
            nxt = recurrence.next_run_ms(rule, max(at, now))  # runs missed while the gateway was down: one
        done = replace(moved, state=PENDING if nxt else SENT, next_ms=nxt or 0, updated_ms=now)
        (result,) = await ctx.apply([PutBatch(account, batch_id, b.rev, records.pack_batch_def(done))])
        if isinstance(result, WrongState):  # stopped while its last chunk committed
            await self._cancel_waiting(account, run_id)
        elif isinstance(result, GatewayError):
            raise result
        log.info("batch_run_done", account=account, batch_id=batch_id, run=b.runs, recipients=moved.cursor,
                 next_run_ms=nxt)  # fmt: skip

    async def _commit(self, ops: list[Any], results: list[Any]) -> None:
        shared = self._ctx.shared
        if shared is not None:  # several nodes: every node's lists and caps (docs/scaling.md)
            ops = [await self._shared_checked(op) if isinstance(op, Submit) else op for op in ops]
        results.extend(await self._ctx.apply(ops))

    async def _shared_checked(self, op: Submit) -> Submit:
        """A chunk with the recipients the cluster refuses refused; a chunk of a class that waits while the
        cluster's Valkey is unreachable waits for it here (the run goes on where it stopped)."""
        shared = self._ctx.shared
        assert shared is not None
        while True:
            (verdicts,) = await shared.check([op])
            if not isinstance(verdicts, Exception):
                return refused_by_cluster(op, [(r, "") for r in op.recipients], verdicts)[0]
            await shared.until_reachable()


def refused_by_cluster(
    submit: Submit, checked: list[tuple[Recipient, str]], verdicts: Sequence[tuple[str, str]]
) -> tuple[Submit, list[tuple[Recipient, str]]]:
    """`submit` with the recipients the cluster refused (gateway.cluster.Shared.check) refused, each with its
    reason and the detail for a person."""
    if not any(reason for reason, _ in verdicts):
        return submit, checked
    recipients = list(submit.recipients)
    checked = list(checked)
    for j, (reason, detail) in enumerate(verdicts):
        if reason:
            recipients[j] = replace(recipients[j], reject=reason, route=(), defer_until_ms=0)
            checked[j] = (recipients[j], detail)
    return replace(submit, recipients=tuple(recipients)), checked
