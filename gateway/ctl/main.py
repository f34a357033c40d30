"""`gatewayctl`: the operator's tool, on the gateway's admin socket (docs/admin.md).

It finds the admin socket from --socket, $GATEWAY_ADMIN_SOCKET, or the config's [server] table (-c, default
$GATEWAY_CONFIG, else conf/gateway.toml here or in the project), and reads nothing else of the config: no
secrets. The socket's file mode is the credential; an account's commands act for -a ACCOUNT (default: the
gateway's first account).

    gatewayctl status                                   # the gateway: uptime, store, queues, throughput
    gatewayctl binds                                    # every bind of every carrier
    gatewayctl carrier pause|resume|drain NAME
    gatewayctl find --to 447700900123                   # a number's messages, newest first
    gatewayctl show MESSAGE_ID                          # or --ref REF: a message's whole record
    gatewayctl reload                                   # the config again: what changed, or why not
    gatewayctl top                                      # a live view of the above
    gatewayctl send 447700900123 "Your code is 123456" --sender ACME
    gatewayctl status MESSAGE_ID                        # or --client-ref REF: as the account sees it
    gatewayctl events --follow
    gatewayctl preview "Grüße 👋" [--class marketing]
    gatewayctl optout|blacklist add|remove|check|import|export [--scope gateway|account:X|carrier:X]
    gatewayctl receipts --unmatched
    gatewayctl batch list|show|details|export [ID] --account A   # a batch's report and its recipients
    gatewayctl batch send FILE.csv --account A --batch-id ID --sender S --template T [--at WHEN] [--every daily]
    gatewayctl batch stop ID --account A
    gatewayctl template list|show|approve|reject|official|delete [ID] --account A [--reason TEXT]
    gatewayctl balance show|statement|topup|unlimited --account A

Exit codes: 0 done, 1 refused or not found (`send` when any recipient was refused, `health` when not ready,
`reload` when refused), 2 usage, 3 cannot reach the gateway. `--json` prints JSON on every command, errors
included ({"error": {"code", "message"}}).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.admin.commands import (
    EVERY,
    MAX_NAME_CHARS,
    MAX_ROWS,
    MAX_TOPUP,
    MAX_VALUE_CHARS,
    MAX_VARIABLES,
    OUTCOMES,
)
from gateway.admin.reports import CSV_COLUMNS
from gateway.ctl import render
from gateway.ctl.connect import admin_socket, default_config
from gateway.errors import ConfigError
from gateway.upstream import BlockingClient, EventKind, MessageClass, SubmitRequest, UpstreamError
from gateway.upstream.schema import MAX_ID, MAX_NUMBER_CHARS, OPERATOR, ListResult, list_result_from_wire

# Exit codes.
OK, REFUSED, USAGE, UNREACHABLE = 0, 1, 2, 3
_REFUSED_STATES = frozenset({"rejected", "failed"})
# Commands that act for an account (the upstream protocol's operations, on the admin socket).
_ACCOUNT_COMMANDS = frozenset({"send", "cancel", "events", "preview"})


def _u64(text: str) -> int:
    value = int(text)
    if not 0 <= value < 1 << 64:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 2**64-1")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def _count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100_000:
        raise argparse.ArgumentTypeError(f"{text} is not between 1 and 100000")
    return value


def _limit(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"{text} is not between 1 and 1000")
    return value


def _cursor(text: str) -> str:
    try:
        bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a cursor (the hex gatewayctl printed)") from None
    return text


def _since(text: str) -> float:
    """An ISO date or time (UTC), or a span back from now: 90s, 15m, 2h, 3d."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units and text[:-1].isdigit():
        return time.time() - int(text[:-1]) * units[text[-1]]
    for form in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            return float(time.mktime(time.strptime(text.rstrip("Z"), form)) - time.timezone)
        except ValueError:
            continue
    raise argparse.ArgumentTypeError(f"{text!r} is not a date (2026-12-03, 2026-12-03T09:30) or a span (15m, 2h)")


def _epoch(text: str) -> float:
    """Seconds since the epoch, or what `_since` reads (a date, a span back from now)."""
    try:
        value = float(text)
    except ValueError:
        return _since(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text} is not a time (seconds since the epoch)")
    return value


def _instant(text: str, zone: str = "UTC") -> float:
    """Seconds since the epoch, or an ISO date or time: with an offset (Z, +01:00) as written, without one
    read in `zone` (a batch's --time-zone, so --at 09:00 is nine o'clock where its recipients are).
    ValueError when it is neither; ZoneInfoNotFoundError for an unknown zone."""
    try:
        value = float(text)
    except ValueError:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=ZoneInfo(zone))
        return moment.timestamp()
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{text} is not seconds since the epoch")
    return value


def _when(text: str) -> str:
    """A time ahead, checked here and read in the batch's time zone by `_instant` once that is known."""
    try:
        _instant(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time (seconds since the epoch, 2026-12-03T09:30, 2026-12-03T09:30+01:00)"
        ) from None
    return text


def _batch_id(text: str) -> str:
    if not 1 <= len(text) <= MAX_NAME_CHARS:
        raise argparse.ArgumentTypeError(f"a batch id is 1 to {MAX_NAME_CHARS} characters")
    return text


def _new_batch_id(text: str) -> str:
    if "#" in text:  # "ID#n" names a run of a recurring batch (docs/admin.md, "batch")
        raise argparse.ArgumentTypeError("a batch id may not hold '#': it names a run of a recurring batch")
    return _batch_id(text)


def _template_id(text: str) -> str:
    if not 1 <= len(text) <= MAX_NAME_CHARS:
        raise argparse.ArgumentTypeError(f"a template id is 1 to {MAX_NAME_CHARS} characters")
    return text


def _message_id(text: str) -> str:
    if not (text.isascii() and text.isdigit() and int(text) <= MAX_ID):
        raise argparse.ArgumentTypeError(f"{text!r} is not a message id (the --after a page printed)")
    return text


def _parts(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not (value and abs(value) <= MAX_TOPUP):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of parts (not 0; negative takes back)")
    return value


def _note(text: str) -> str:
    if not 1 <= len(text) <= _MAX_NOTE_CHARS:
        raise argparse.ArgumentTypeError(f"a note is 1 to {_MAX_NOTE_CHARS} characters")
    return text


# A balance note's limit on the admin socket (gateway/admin/commands.py): checked here, as the others are, so a
# bad command line is a usage error (exit 2), not the gateway's refusal (exit 1).
_MAX_NOTE_CHARS = 160
# A recurring batch's periods (gateway/admin/commands.py EVERY, without "once": that is no --every).
_EVERY = tuple(e for e in EVERY if e != "once")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gatewayctl", description="operate a running gateway")
    p.add_argument(
        "-c", "--config", default=None,
        help="the gateway's config file, read for its [server] table only (default: $GATEWAY_CONFIG, else "
             "conf/gateway.toml here or in the project)",
    )  # fmt: skip
    p.add_argument("-s", "--socket", help="the admin socket (default: $GATEWAY_ADMIN_SOCKET, else from the config)")
    p.add_argument("-a", "--account", help="the account an account's command acts for (default: the first)")
    p.add_argument("--json", action="store_true", help="machine-readable output (errors too)")
    cmds = p.add_subparsers(dest="command", required=True)

    status = cmds.add_parser("status", help="the gateway's status; with an id or --client-ref, a message's")
    status.add_argument("message_id", nargs="?")
    status.add_argument("--client-ref")
    binds = cmds.add_parser("binds", help="every bind of every carrier: state, window, TPS, errors")
    binds.add_argument("carrier", nargs="?")
    carrier = cmds.add_parser("carrier", help="pause, resume or drain a carrier (its binds stay up)")
    carrier.add_argument("action", choices=("pause", "resume", "drain"))
    carrier.add_argument("name")
    find = cmds.add_parser("find", help="a number's messages, newest first")
    find.add_argument("--to", required=True)
    find.add_argument("--since", type=_since, help="a date (2026-12-03T09:30, UTC) or a span back (15m, 2h, 3d)")
    find.add_argument("--limit", type=_limit, default=50)
    show = cmds.add_parser("show", help="a message's whole record: parts, carrier ids, carriers tried and why")
    show.add_argument("message_id", nargs="?")
    show.add_argument("--ref", help="the client reference of a submit (of -a ACCOUNT)")
    cmds.add_parser("reload", help="read the config again: what changed, or every reason it was refused")
    cmds.add_parser("accounts", help="the gateway's accounts")
    cmds.add_parser("health", help="live and ready (every carrier has a bind up), or what is not")
    top = cmds.add_parser("top", help="a live view of throughput, queues and binds")
    top.add_argument("--interval", type=_seconds, default=1.0)
    top.add_argument("--iterations", type=_count, help="stop after this many refreshes (default: until Ctrl-C)")
    completion = cmds.add_parser("completion", help="print a shell completion script: eval \"$(gatewayctl "
                                                    "completion bash)\"")  # fmt: skip
    completion.add_argument("shell", choices=("bash", "zsh"))

    send = cmds.add_parser("send", help="submit a message to one or more numbers")
    send.add_argument("to", nargs="+", help="recipient numbers (E.164, or national with the default country)")
    send.add_argument("text")
    send.add_argument("--sender", default="ACME")
    send.add_argument("--class", dest="message_class", default="notification", choices=[c.value for c in MessageClass])
    send.add_argument("--client-ref")
    send.add_argument("--batch")
    send.add_argument("--schedule-in", type=_seconds, help="seconds from now")
    send.add_argument("--validity", type=_count, help="seconds")
    send.add_argument("--no-receipt", action="store_true")
    cancel = cmds.add_parser("cancel", help="cancel messages not yet submitted to a carrier")
    cancel.add_argument("message_id", nargs="?")
    cancel.add_argument("--client-ref")
    events = cmds.add_parser("events", help="print events (submitted, delivered, failed, mo)")
    events.add_argument("--after", type=_u64, help="start after this sequence (default: the stored cursor)")
    events.add_argument("--follow", action="store_true", help="keep waiting for new events")
    events.add_argument("--timeout", type=_seconds, default=2.0, help="without --follow: stop after this idle time")
    events.add_argument("--ack", action="store_true", help="acknowledge what was printed (moves the cursor)")
    events.add_argument(
        "--kind", action="append", choices=[str(k) for k in EventKind], dest="kinds",
        help="only events of this kind (repeat for several; default: all)",
    )  # fmt: skip
    preview = cmds.add_parser("preview", help="encoding and part count of a text")
    preview.add_argument("text")
    preview.add_argument("--class", dest="message_class", choices=[c.value for c in MessageClass],
                         help="as a submit of this class would send it (the account's opt-out wording appended, "
                              "its content rules checked)")  # fmt: skip
    for name, what in (("optout", "numbers that opted out of marketing"),
                       ("blacklist", "numbers never sent to")):  # fmt: skip
        lst = cmds.add_parser(name, help=f"the {name} list: {what}")
        lst.add_argument(
            "--scope",
            help="gateway (every account), account:NAME, or carrier:NAME (blacklists: numbers the carrier "
                 "reported); default: the account's own list",
        )  # fmt: skip
        actions = lst.add_subparsers(dest="action", required=True)
        for action, helps in (("add", "put numbers on it"), ("remove", "take numbers off it"),
                              ("check", "whether numbers are on it, since when and why")):  # fmt: skip
            actions.add_parser(action, help=helps).add_argument("numbers", nargs="+")
        imp = actions.add_parser("import", help="add every number of a CSV file (the first column; - for stdin)")
        imp.add_argument("file")
        actions.add_parser("export", help="print the whole list as CSV: number,at,source,note")
    receipts = cmds.add_parser("receipts", help="receipts no submit_sm_resp claimed in time")
    receipts.add_argument(
        "--unmatched", action="store_true", required=True,
        help="receipts no submit_sm_resp claimed within [store] early_receipt_seconds",
    )  # fmt: skip
    receipts.add_argument("--limit", type=_limit, default=100)
    receipts.add_argument("--after", type=_cursor, default="", help="the cursor printed after the last one read")
    _batch_parser(cmds)
    _template_parser(cmds)
    _balance_parser(cmds)
    return p


def _account_option(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: absent here, the top-level -a (if any) stays; required by _owner, not argparse, so either works.
    p.add_argument("-a", "--account", default=argparse.SUPPRESS, help="the account (required)")


def _batch_parser(cmds: Any) -> None:
    batch = cmds.add_parser("batch", help="an account's batches: counters, failures by category, recipients")
    actions = batch.add_subparsers(dest="action", required=True)
    listed = actions.add_parser("list", help="the account's batches and their counters, by id")
    listed.add_argument("--after", type=_batch_id, help="the batch id the previous page ended with")
    listed.add_argument("--limit", type=_limit, default=100)
    shown = actions.add_parser("show", help="a batch's report: counters, refusals by reason, failures by category")
    details = actions.add_parser("details", help="a page of a batch's recipients, by outcome and reason")
    export = actions.add_parser("export", help="every recipient of a batch as CSV (JSON lines with --json)")
    for sub in (shown, details, export):
        sub.add_argument("batch_id", type=_batch_id)
    for sub in (details, export):
        sub.add_argument("--outcome", choices=OUTCOMES, help="only recipients that ended so (waiting: not ended)")
        sub.add_argument("--reason", help="only recipients whose reason starts with this (undeliverable:, opted_out)")
    details.add_argument("--after", type=_message_id, help="the message id the previous page ended with")
    details.add_argument("--limit", type=_limit, default=100)
    export.add_argument("-o", "--output", help="write to this file (default: stdout)")
    stop = actions.add_parser("stop", help="stop a batch made with `batch send`: no further run; what no carrier "
                                           "has yet is cancelled")  # fmt: skip
    stop.add_argument("batch_id", type=_batch_id)
    _batch_send_parser(actions)
    for sub in (listed, shown, details, export, stop):
        _account_option(sub)


def _batch_send_parser(actions: Any) -> None:
    send = actions.add_parser("send", help="make a batch of a CSV's recipients and send it: now, --at, or --every")
    send.add_argument("file", help="CSV: a number a row (the `to` column, else the first), every other column a "
                                   "template value named by its header (- for stdin)")  # fmt: skip
    send.add_argument("--batch-id", type=_new_batch_id, required=True,
                      help="the batch's id (the same command again carries on where it stopped)")  # fmt: skip
    send.add_argument("--sender", required=True)
    what = send.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", help="the text every recipient gets")
    what.add_argument("--template", type=_template_id, help="an approved template, filled from the CSV's columns")
    send.add_argument("--class", dest="message_class", choices=[c.value for c in MessageClass],
                      help="default: the template's, else marketing")  # fmt: skip
    send.add_argument("--at", type=_when, help="when (the first run): seconds since the epoch or an ISO time, "
                                               "read in --time-zone without an offset (default: now)")  # fmt: skip
    send.add_argument("--every", choices=_EVERY, help="run again every day, week or month at --at's time of day")
    send.add_argument("--until", type=_when, help="no run after this (with --every; default: none)")
    send.add_argument("--time-zone", default="UTC", help="the recipients' zone: Europe/London (default: UTC)")
    _account_option(send)


def _template_parser(cmds: Any) -> None:
    template = cmds.add_parser("template", help="an account's templates: list, show, review (approve, reject)")
    actions = template.add_subparsers(dest="action", required=True)
    helps = {
        "list": "the account's templates: state, class, variables, text",
        "show": "a template: its text, state and why, variables",
        "approve": "approve a template: batches may send it",
        "reject": "reject a template, with --reason (kept, and shown to the account)",
        "official": "approve a template and mark it as needing no review",
        "delete": "delete a template (a batch that sends it fails at its next run)",
    }
    # `create` is the account's own (docs/protocol.md, `account`).
    for action, what in helps.items():
        sub = actions.add_parser(action, help=what)
        if action != "list":
            sub.add_argument("template_id", type=_template_id)
        if action == "reject":
            sub.add_argument("--reason", type=_note, help="why (required; up to 160 characters)")
        _account_option(sub)


def _balance_parser(cmds: Any) -> None:
    balance = cmds.add_parser("balance", help="an account's balance of parts: show, statement, top up")
    actions = balance.add_subparsers(dest="action", required=True)
    shown = actions.add_parser("show", help="parts available, reserved by live messages, charged")
    statement = actions.add_parser("statement", help="the balance and what moved in it, a row a second")
    statement.add_argument("--since", type=_epoch, help="seconds since the epoch, a date (UTC) or a span (2h, 3d)")
    statement.add_argument("--limit", type=_limit, default=100)
    topup = actions.add_parser("topup", help="add parts to the balance (negative: take back); creates one")
    topup.add_argument("parts", type=_parts)
    unlimited = actions.add_parser("unlimited", help="remove the balance: the account is unlimited again")
    for sub in (topup, unlimited):
        sub.add_argument("--note", type=_note, help="why, kept in the statement (up to 160 characters)")
    for sub in (shown, statement, topup, unlimited):
        _account_option(sub)


class UsageError(Exception):
    """A command line that names something the gateway does not have."""


def _out(args: argparse.Namespace, obj: Any, line: str) -> None:
    """One record: a JSON line, or a line of text."""
    if args.json:
        print(json.dumps(obj, default=str, ensure_ascii=False), flush=True)
    else:
        print(line, flush=True)


def _json(obj: Any) -> None:
    print(json.dumps(obj, default=str, ensure_ascii=False, indent=2), flush=True)


# --- the account's commands (the upstream protocol) ---------------------------------------------------


def _run(args: argparse.Namespace, client: BlockingClient) -> int:
    """An account's command on a client connected for that account (the admin socket, or the upstream
    socket with its secret, as the tests do)."""
    if args.command in ("optout", "blacklist"):
        return _lists(args, _ListApi(client, args.command, getattr(args, "scope", None)))
    if args.command == "send":
        req = SubmitRequest(
            to=tuple(args.to),
            text=args.text,
            message_class=MessageClass(args.message_class),
            sender=args.sender,
            schedule_at=time.time() + args.schedule_in if args.schedule_in else None,
            validity_seconds=args.validity,
            receipt=not args.no_receipt,
            client_ref=args.client_ref,
            batch_id=args.batch,
        )
        result = client.submit(req)
        for m in result.messages:
            reason = f" ({m.reason}{': ' + m.detail if m.detail else ''})" if m.reason else ""
            _out(args, asdict(m), f"{m.message_id}  {m.to}  {m.state}{reason}")
        # A script must see a refusal (an invalid number, no route, blocked content) without parsing.
        return REFUSED if any(m.state in _REFUSED_STATES for m in result.messages) else OK
    if args.command in ("status", "cancel"):
        if not args.message_id and not args.client_ref:
            raise UsageError("give a message id or --client-ref")
        if args.command == "cancel":
            done = client.cancel(message_id=args.message_id, client_ref=args.client_ref)
            _out(args, asdict(done), "cancelled: " + " ".join(done.cancelled))
            return OK
        for s in client.status(message_id=args.message_id, client_ref=args.client_ref):
            due = time.strftime("  due %Y-%m-%d %H:%M:%SZ", time.gmtime(s.due_at)) if s.due_at else ""
            _out(args, asdict(s), f"{s.message_id}  {s.to}  {s.state}  {s.reason or ''}  parts={s.segments}{due}")
        return OK
    if args.command == "events":
        sub = client.subscribe(after=args.after, kinds=args.kinds)
        last = sub.after
        for ev in client.events(timeout=None if args.follow else args.timeout):
            detail = ev.reason or ev.text or ""
            who = ev.to if ev.kind != "mo" else f"{ev.sender} -> {ev.to}"
            _out(args, ev._asdict(), f"#{ev.seq}  {ev.kind:<9} {ev.message_id or '-'}  {who}  {detail}")
            last = ev.seq
            if args.ack:
                client.ack(ev.seq)
        if args.ack and last > sub.after:
            client.ack(last)
        return OK
    p = client.preview(args.text, getattr(args, "message_class", None))
    line = f"{p.encoding}: {p.parts} part(s), {p.chars} units, {p.chars_left} left in the last part"
    if p.text is not None and p.text != args.text:
        line += f"\nas sent: {p.text}"
    if p.reason:
        line += f"\nrefused: {p.reason}: {p.detail}"
    _out(args, asdict(p), line)
    return REFUSED if p.reason else OK


class _ListApi:
    """A list of one scope: the account's own (the upstream `lists` op) or, with --scope, any (the admin
    socket's `lists` command)."""

    def __init__(self, client: BlockingClient, name: str, scope: str | None) -> None:
        self.client, self.name, self.scope = client, name, scope

    def edit(self, action: str, numbers: Sequence[str]) -> ListResult:
        if self.scope is None:
            return self.client.lists(self.name, action, numbers)
        return list_result_from_wire(
            self.client.admin("lists", scope=self.scope, list=self.name, action=action, numbers=list(numbers))
        )

    def page(self, after: str, limit: int) -> ListResult:
        if self.scope is None:
            return self.client.lists(self.name, "page", after=after, limit=limit)
        answer = self.client.admin(
            "lists", scope=self.scope, list=self.name, action="page", after=after or None, limit=limit
        )
        return list_result_from_wire(answer)

    def add_many(self, chunks: Sequence[Sequence[str]]) -> list[ListResult]:
        if self.scope is None:
            return self.client.lists_many(self.name, "add", chunks)
        args = [{"scope": self.scope, "list": self.name, "action": "add", "numbers": list(c)} for c in chunks]
        return [list_result_from_wire(r) for r in self.client.admin_many("lists", args)]


def _lists(args: argparse.Namespace, api: _ListApi) -> int:
    """gatewayctl optout|blacklist add|remove|check|import|export."""
    if args.action == "export":  # CSV, or with --json one object a line
        writer = csv.writer(sys.stdout, lineterminator="\n")
        if not args.json:
            writer.writerow(["number", "at", "source", "note"])
        after: str | None = ""
        while after is not None:
            page = api.page(after, _PAGE)
            for e in page.entries:
                at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e.at)) if e.at else ""
                if args.json:
                    _out(args, {"number": e.number, "at": e.at, "source": e.source, "note": e.note}, "")
                else:
                    writer.writerow([e.number, at, e.source or "", e.note or ""])
            after = page.next
        return OK
    if args.action == "import":
        return _import(args, api)
    refused = 0
    for e in api.edit(args.action, args.numbers).entries:
        refused += e.reason is not None
        since = time.strftime(" since %Y-%m-%d %H:%M:%SZ", time.gmtime(e.at)) if e.at else ""
        how = f" ({e.source}{': ' + repr(e.note) if e.note else ''})" if e.source else ""
        state = f"{e.reason}: {e.detail}" if e.reason else ("listed" + since + how if e.listed else "not listed")
        _out(args, asdict(e), f"{e.number or e.to}  {state}")
    return REFUSED if refused else OK


def _import(args: argparse.Namespace, api: _ListApi) -> int:
    """A CSV of numbers (the first column; a header row and blank or # lines skipped), sent a thousand at
    a time: millions of rows stream, never held whole."""
    try:
        source = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8-sig", newline="")  # noqa: SIM115
    except OSError as err:
        raise UsageError(f"{args.file}: {err.strerror or err}") from None
    added = refused = 0
    first = True
    progress = _Progress(source)
    try:
        numbers: list[str] = []
        for row in csv.reader(source):
            number = row[0].strip() if row else ""
            header, first = first and not any(c.isdigit() for c in number), False
            if not number or number.startswith("#") or header:  # the first row without a digit: a header
                continue
            if len(number) > MAX_NUMBER_CHARS:  # junk (a pasted paragraph, an unclosed quote): refused here
                refused += 1
                if refused <= 10:
                    print(f"gatewayctl: {number[:40]!r}...: not a number (over {MAX_NUMBER_CHARS} characters)",
                          file=sys.stderr)  # fmt: skip
                continue
            numbers.append(number)
            if len(numbers) == _PAGE * _IN_FLIGHT:
                a, r = _send_chunks(api, numbers)
                added, refused, numbers = added + a, refused + r, []
                progress.update(f"{added:,} added, {refused:,} refused")
        if numbers:
            a, r = _send_chunks(api, numbers)
            added, refused = added + a, refused + r
    except UnicodeDecodeError as err:
        what = f"{args.file}: not UTF-8 at byte {err.start} of a read; {added:,} listed before it"
        raise UsageError(f"{what} (save the file as UTF-8 and import it again)") from None
    finally:
        progress.close()
        if source is not sys.stdin:
            source.close()
    _out(args, {"listed": added, "refused": refused}, f"{added:,} listed, {refused:,} refused (not numbers)")
    return REFUSED if refused else OK


class _Progress:
    """An import's progress on stderr: a bar (bytes of the file read) on a terminal, else a line a step."""

    def __init__(self, source: Any, label: str = "importing", *, lines: bool = True) -> None:
        self._source = source
        self._lines = lines  # off a terminal, a line a step (else nothing)
        self._bar: Any = None
        try:
            size = os.fstat(source.fileno()).st_size if source is not sys.stdin else 0
        except (OSError, ValueError):
            size = 0
        if sys.stderr.isatty() and size:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn(),
                                 console=render.errors, transient=True)  # fmt: skip
            self._task = self._bar.add_task(label, total=size)
            self._bar.start()

    def update(self, description: str) -> None:
        if self._bar is None:
            if self._lines:
                print(description, file=sys.stderr, flush=True)
            return
        try:
            done = self._source.buffer.tell()
        except (AttributeError, OSError, ValueError):
            done = 0
        self._bar.update(self._task, completed=done, description=description)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _send_chunks(api: _ListApi, numbers: list[str]) -> tuple[int, int]:
    """Add `numbers`, a thousand a request, the requests in flight together; (added, refused)."""
    chunks = [numbers[k : k + _PAGE] for k in range(0, len(numbers), _PAGE)]
    entries = [e for result in api.add_many(chunks) for e in result.entries]
    refused = [e for e in entries if e.reason]
    for e in refused[:10]:
        print(f"gatewayctl: {e.to!r}: {e.reason}: {e.detail}", file=sys.stderr)
    return len(entries) - len(refused), len(refused)


# Numbers per lists request (the protocol's limit) and per page read; requests an import keeps in flight.
_PAGE = 1000
_IN_FLIGHT = 4


# --- the operator's commands (the admin socket) -------------------------------------------------------


def _admin(args: argparse.Namespace, client: BlockingClient) -> int:
    command = args.command
    if command == "status":
        answer = client.admin("status")
        _json(answer) if args.json else render.show(render.status_view(answer))
        return OK
    if command == "binds":
        answer = client.admin("binds", carrier=args.carrier)
        _json(answer) if args.json else render.show(render.binds_view(answer["binds"]))
        return OK
    if command == "accounts":
        answer = client.admin("accounts")
        _json(answer) if args.json else print("\n".join(answer["accounts"]))
        return OK
    if command == "carrier":
        answer = client.admin("carrier", action=args.action, name=args.name)
        line = f"{answer['carrier']}: {answer['held'] or 'resumed'}"
        if answer["held"]:
            line += f"; {answer['taken_back']} message(s) taken back from its queue"
        elif answer.get("binds_retried"):
            line += f"; {answer['binds_retried']} bind(s) that were down connect again now"
        _out(args, answer, line)
        return OK
    if command == "find":
        answer = client.admin("find", to=args.to, since=args.since, limit=args.limit)
        if args.json:
            _json(answer)
        else:
            render.show(render.messages_view(answer["messages"]))
            print(f"{len(answer['messages'])} message(s) to {answer['number']}")
        return OK if answer["messages"] else REFUSED
    if command == "show":
        if (args.message_id is None) == (args.ref is None):
            raise UsageError("give a message id or --ref")
        account = args.account
        if args.ref is not None and account is None:  # a client reference is an account's: the first's
            account = (client.admin("accounts")["accounts"] or [None])[0]
        answer = client.admin("show", message_id=args.message_id, client_ref=args.ref, account=account)
        _json(answer) if args.json else render.show(*(render.message_view(m) for m in answer["messages"]))
        return OK
    if command == "reload":
        answer = client.admin("reload")
        if args.json:
            _json(answer)
        else:
            changed = answer["applied"] or answer["restart_needed"] or answer["problems"]
            print("refused: the running config stays" if answer["refused"] else
                  "reloaded" if changed else "reloaded: nothing changed")  # fmt: skip
            for key in answer["applied"]:
                print(f"  applied: {key}")
            for key in answer["restart_needed"]:
                print(f"  needs a restart: {key}")
            for problem in answer["problems"]:
                print(f"  {problem}")
        return REFUSED if answer["refused"] or answer["problems"] else OK
    if command == "health":
        answer = client.admin("health")
        _out(args, answer, "ready" if answer["ready"] else "not ready:\n  " + "\n  ".join(answer["problems"]))
        return OK if answer["ready"] else REFUSED
    if command == "receipts":
        answer = client.admin("receipts", after=args.after or None, limit=args.limit)
        if args.json:
            _json(answer)
            return OK
        for r in answer["receipts"]:
            print(f"{render.when(r['at'])}  {r['carrier']}  id:{r['id']}  {r['status']}  {r['reason']}  {r['text']!r}")
        more = f" (next: --after {answer['next']})" if answer["next"] else ""
        print(f"{answer['unmatched']} unmatched{more}")
        return OK
    if command == "batch":
        return _batch(args, client)
    if command == "template":
        return _template(args, client)
    if command == "balance":
        return _balance(args, client)
    if command == "top":
        return _top(args, client)
    raise UsageError(f"unknown command {command}")


def _owner(args: argparse.Namespace, client: BlockingClient) -> str:
    """The account a batch or balance command is about: named, never a default (a top-up of the wrong
    account is not undone by reading the output), and one the gateway has (else a usage error, exit 2, as
    for an account's commands)."""
    if not args.account:
        raise UsageError(f"{args.command} {args.action}: name the account with --account (gatewayctl accounts)")
    if args.account not in client.admin("accounts")["accounts"]:
        raise UsageError(f"no account {args.account!r} on this gateway")
    return str(args.account)


def _batch(args: argparse.Namespace, client: BlockingClient) -> int:
    """gatewayctl batch list|show|details|export (the admin socket's `batch`)."""
    account = _owner(args, client)
    if args.action == "export":
        return _export(args, client, account)
    if args.action == "list":
        answer = client.admin("batch", action="list", account=account, batch_id=args.after, limit=args.limit)
        if args.json:
            _json(answer)
            return OK
        render.show(render.batches_view(answer["batches"]))
        more = f" (next: --after {answer['next']})" if answer["next"] else ""
        print(f"{len(answer['batches'])} batch(es) of {account}{more}")
        return OK
    if args.action == "show":
        answer = client.admin("batch", action="show", account=account, batch_id=args.batch_id)
        _json(answer) if args.json else render.show(render.batch_view(answer))
        return OK
    if args.action == "send":
        return _batch_send(args, client, account)
    if args.action == "stop":
        answer = client.admin("batch", action="stop", account=account, batch_id=args.batch_id)
        if args.json:
            _json(answer)
        else:
            print(f"batch {args.batch_id} of {account}: {answer['state']}; {answer['cancelled']:,} message(s) "
                  "no carrier had yet cancelled")  # fmt: skip
        return OK
    answer = _details(args, client, account, args.after, args.limit)
    if args.json:
        _json(answer)
        return OK
    render.show(render.recipients_view(answer["recipients"]))
    more = f" (next: --after {answer['next']})" if answer["next"] else ""
    print(f"{len(answer['recipients'])} recipient(s) of batch {args.batch_id}{more}")
    return OK


def _details(
    args: argparse.Namespace, client: BlockingClient, account: str, after: str | None, limit: int
) -> dict[str, Any]:
    return client.admin("batch", action="details", account=account, batch_id=args.batch_id, outcome=args.outcome,
                        reason=args.reason, after=after, limit=limit)  # fmt: skip


def _export(args: argparse.Namespace, client: BlockingClient, account: str) -> int:
    """Every recipient of a batch, a page of a thousand a request following `next`: CSV with a header
    (reports.CSV_COLUMNS; nil as an empty cell), or with --json a JSON object a line. The first page is read
    before the file is opened, so an unknown batch leaves no empty file behind."""
    page = _details(args, client, account, None, _PAGE)
    try:
        sink = sys.stdout if args.output in (None, "-") else open(args.output, "w", encoding="utf-8", newline="")  # noqa: SIM115
    except OSError as err:
        raise UsageError(f"{args.output}: {err.strerror or err}") from None
    live = not args.json and sys.stderr.isatty()  # a count in place on a terminal, for a person
    written = 0
    try:
        writer = csv.writer(sink, lineterminator="\n")
        if not args.json:
            writer.writerow(CSV_COLUMNS)
        while True:
            for row in page["recipients"]:
                if args.json:
                    sink.write(json.dumps(row, default=str, ensure_ascii=False) + "\n")
                else:
                    writer.writerow(["" if row.get(c) is None else row[c] for c in CSV_COLUMNS])
            written += len(page["recipients"])
            if live:
                print(f"\r{written:,} exported", end="", file=sys.stderr, flush=True)
            if page["next"] is None:
                break
            page = _details(args, client, account, page["next"], _PAGE)
    finally:
        if sink is not sys.stdout:
            sink.close()
    if not args.json:
        where = f" to {args.output}" if sink is not sys.stdout else ""
        start = "\r" if live else ""
        print(f"{start}{written:,} recipient(s) of batch {args.batch_id} exported{where}", file=sys.stderr)
    return OK


def _batch_send(args: argparse.Namespace, client: BlockingClient, account: str) -> int:
    """The batch made (`create`), the CSV's recipients added a thousand a request by their index (four requests
    in flight; a chunk sent again overwrites itself, so the same command again after a lost connection adds
    nobody twice), then sent (`send`). The header and first row are read before anything is asked of the
    gateway: an empty file or a bad header leaves nothing behind. Exit 1 when a row was skipped (the rest are
    sent)."""
    try:
        source = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8-sig", newline="")  # noqa: SIM115
    except OSError as err:
        raise UsageError(f"{args.file}: {err.strerror or err}") from None
    progress = _Progress(source, "adding recipients", lines=False)
    added = 0
    try:
        recipients = _CsvRecipients(source, args.file, with_values=args.template is not None)
        rows = iter(recipients)
        first = next(rows, None)
        if first is None:
            raise UsageError(f"{args.file}: no recipients")
        made = client.admin("batch", **_definition(args, client, account))
        if made["state"] == "draft":
            added = _add_rows(client, account, args.batch_id, [first], rows, progress)
        else:  # sent already (the same command again): `send` answers it as it is
            print(f"gatewayctl: batch {args.batch_id} is {made['state']} already: no recipient added",
                  file=sys.stderr)  # fmt: skip
    except UnicodeDecodeError as err:
        what = f"{args.file}: not UTF-8 at byte {err.start} of a read; {added:,} recipient(s) added before it"
        raise UsageError(f"{what} (save the file as UTF-8 and run the same command again)") from None
    finally:
        progress.close()
        if source is not sys.stdin:
            source.close()
    answer = client.admin("batch", action="send", account=account, batch_id=args.batch_id)
    _json(answer) if args.json else print(_sent_line(answer, account))
    if recipients.skipped:
        print(f"gatewayctl: {recipients.skipped:,} row(s) skipped", file=sys.stderr)
    return REFUSED if recipients.skipped else OK


def _definition(args: argparse.Namespace, client: BlockingClient, account: str) -> dict[str, Any]:
    """The admin `batch create` arguments of a `batch send` command line: times read in its --time-zone, the
    class the template's when none is given (a batch sends a template of its own class)."""
    try:
        ZoneInfo(args.time_zone)
    except (ZoneInfoNotFoundError, ValueError):  # ValueError: a malformed name ("../x")
        raise UsageError(f"unknown time zone {args.time_zone!r} (an IANA name: Europe/London)") from None
    at = _instant(args.at, args.time_zone) if args.at else None
    until = _instant(args.until, args.time_zone) if args.until else None
    if args.every and at is None:
        raise UsageError("--every needs --at: the first run, whose time of day the next ones keep")
    if until is not None and not args.every:
        raise UsageError("--until ends a recurring batch: give --every too")
    if at is not None and not args.every and at < time.time():
        raise UsageError(f"--at {args.at} is in the past")
    message_class = args.message_class
    if args.template and message_class is None:
        shown = client.admin("template", action="show", account=account, template_id=args.template)
        message_class = shown["class"]
    return {
        "action": "create", "account": account, "batch_id": args.batch_id, "class": message_class,
        "sender": args.sender, "text": args.text, "template": args.template, "at": at, "every": args.every,
        "until": until, "time_zone": args.time_zone,
    }  # fmt: skip


def _add_rows(
    client: BlockingClient, account: str, batch_id: str, head: list[Any], rows: Iterator[Any], progress: _Progress
) -> int:
    """Every row added from index 0 (`head` first), _IN_FLIGHT requests of MAX_ROWS at a time; how many."""
    added = 0
    pending = head
    for row in rows:
        pending.append(row)
        if len(pending) == MAX_ROWS * _IN_FLIGHT:
            added = _add_chunks(client, account, batch_id, added, pending)
            pending = []
            progress.update(f"{added:,} recipient(s) added")
    if pending:
        added = _add_chunks(client, account, batch_id, added, pending)
    return added


def _add_chunks(client: BlockingClient, account: str, batch_id: str, first: int, rows: list[Any]) -> int:
    """`rows` added from index `first`, MAX_ROWS a request, the requests in flight together; the next index."""
    requests = [
        {"action": "add", "account": account, "batch_id": batch_id, "first": first + k, "rows": rows[k : k + MAX_ROWS]}
        for k in range(0, len(rows), MAX_ROWS)
    ]
    client.admin_many("batch", requests)
    return first + len(rows)


def _sent_line(answer: dict[str, Any], account: str) -> str:
    line = f"batch {answer['batch_id']} of {account}: {answer['state']}, {answer['recipients']:,} recipient(s)"
    if answer["next_run_at"]:
        line += f", next run {render.when(answer['next_run_at'])}"
    if answer["every"] != "once":
        line += f", {answer['every']} ({answer['time_zone']})"
        line += f" until {render.when(answer['until'])}" if answer["until"] else ""
    return line


class _CsvRecipients:
    """A batch's CSV, a recipient a row: the number (the `to` column, else the first) and, for a template, the
    other columns' values named by the header row (an empty cell is no value: the report counts it missing).
    Blank and # rows are skipped; so is a row the admin socket would refuse whole with its chunk (a number over
    64 characters, a value over 160), named on stderr. The header is read when this is made."""

    def __init__(self, source: Any, name: str, *, with_values: bool) -> None:
        self.skipped = 0
        self._name = name
        self._reader = csv.reader(source)
        self._column = 0
        self._names: dict[int, str] = {}
        self._first: list[str] | None = next((r for r in self._reader if not _blank(r)), None)
        if self._first is None:
            return
        cells = [c.strip() for c in self._first]
        if "to" in (c.lower() for c in cells):
            self._column = [c.lower() for c in cells].index("to")
        elif any(c.isdigit() for c in cells[0]):  # no header: numbers from the first row on
            if with_values and len(cells) > 1:
                raise UsageError(f"{name}: no header row: a template's values are named by their column's header")
            return
        self._first = None  # a header
        if with_values:
            self._names = {i: c for i, c in enumerate(cells) if i != self._column and c}
        if len(self._names) > MAX_VARIABLES or any(len(c) > 32 for c in self._names.values()):
            raise UsageError(f"{name}: at most {MAX_VARIABLES} value columns, each named in up to 32 characters")

    def __iter__(self) -> Iterator[Any]:
        if self._first is not None:
            row = self._row(self._first)
            if row is not None:
                yield row
        for cells in self._reader:
            if not _blank(cells):
                row = self._row(cells)
                if row is not None:
                    yield row

    def _row(self, cells: list[str]) -> Any:
        number = cells[self._column].strip() if self._column < len(cells) else ""
        values = {n: cells[i].strip() for i, n in self._names.items() if i < len(cells) and cells[i].strip()}
        problem = (f"not a number (over {MAX_NUMBER_CHARS} characters)" if len(number) > MAX_NUMBER_CHARS else
                   "no number" if not number else
                   next((f"{n}: over {MAX_VALUE_CHARS} characters" for n, v in values.items()
                         if len(v) > MAX_VALUE_CHARS), None))  # fmt: skip
        if problem is not None:
            self.skipped += 1
            if self.skipped <= 10:
                print(f"gatewayctl: {self._name}: {number[:40]!r}: skipped: {problem}", file=sys.stderr)
            return None
        return {"to": number, "vars": values} if values else number


def _blank(cells: list[str]) -> bool:
    return not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#")


def _template(args: argparse.Namespace, client: BlockingClient) -> int:
    """gatewayctl template list|show|approve|reject|official|delete (the admin socket's `template`)."""
    if args.action == "reject" and not args.reason:
        raise UsageError("template reject: say why with --reason (the account reads it)")
    account = _owner(args, client)
    if args.action == "list":
        answer = client.admin("template", action="list", account=account)
        if args.json:
            _json(answer)
            return OK
        render.show(render.templates_view(answer["templates"]))
        print(f"{len(answer['templates'])} template(s) of {account}")
        return OK
    answer = client.admin("template", action=args.action, account=account, template_id=args.template_id,
                          reason=getattr(args, "reason", None))  # fmt: skip
    if args.json:
        _json(answer)
    elif args.action == "delete":
        print(f"template {args.template_id} of {account} deleted")
    else:
        render.show(render.template_view(answer))
    return OK


def _balance(args: argparse.Namespace, client: BlockingClient) -> int:
    """gatewayctl balance show|statement|topup|unlimited (the admin socket's `balance`)."""
    account = _owner(args, client)
    action = args.action
    if action == "statement":
        answer = client.admin("balance", action=action, account=account, since=args.since, limit=args.limit)
    elif action == "topup":
        answer = client.admin("balance", action=action, account=account, parts=args.parts, note=args.note)
    elif action == "unlimited":
        answer = client.admin("balance", action=action, account=account, note=args.note)
    else:
        answer = client.admin("balance", action=action, account=account)
    if args.json:
        _json(answer)
        return OK
    render.show(render.balance_view(answer))
    rows = answer.get("statement")
    if rows and len(rows) == args.limit:  # oldest first, a row a second: the next page starts a second on
        print(f"(next: --since {rows[-1]['at'] + 1})")
    return OK


def _top(args: argparse.Namespace, client: BlockingClient) -> int:
    """Status and binds, refreshed in place (rich Live) until Ctrl-C or --iterations."""
    from rich.console import Group
    from rich.live import Live

    def view() -> Group:
        binds = render.binds_view(client.admin("binds")["binds"], "binds")
        return render.spaced([render.status_view(client.admin("status")), binds])

    n = 0
    try:
        with Live(view(), console=render.console, auto_refresh=False, transient=False) as live:
            while args.iterations is None or n < args.iterations:
                n += 1
                time.sleep(args.interval)
                live.update(view(), refresh=True)
    except KeyboardInterrupt:
        pass
    return OK


# --- shell completion -----------------------------------------------------------------------------------


def _completion(shell: str) -> str:
    """A completion script for bash (zsh through bashcompinit): commands, their subcommands and options."""
    parser = _parser()
    words: dict[str, list[str]] = {"": []}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                words[""].append(name)
                opts = [o for a in sub._actions for o in a.option_strings]
                subs = [n for a in sub._actions if isinstance(a, argparse._SubParsersAction) for n in a.choices]
                choices = [str(c) for a in sub._actions if a.choices and not a.option_strings
                           and not isinstance(a, argparse._SubParsersAction) for c in a.choices]  # fmt: skip
                # The options of its own subcommands too (batch details --outcome, balance topup --note).
                inner = [a.choices for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
                nested = [o for c in inner for i in c.values() for b in i._actions for o in b.option_strings]
                words[name] = list(dict.fromkeys(subs + choices + opts + nested))
        else:
            words[""].extend(action.option_strings)
    cases = "\n".join(f'        {name}) opts="{" ".join(w)}" ;;' for name, w in words.items() if name)
    script = f"""_gatewayctl() {{
    local cur cmd i opts
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    cmd=""
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in -*) ;; *) cmd="${{COMP_WORDS[i]}}"; break ;; esac
    done
    case "$cmd" in
{cases}
        *) opts="{" ".join(words[""])}" ;;
    esac
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}}
complete -F _gatewayctl gatewayctl
"""
    return ("autoload -U +X bashcompinit && bashcompinit\n" + script) if shell == "zsh" else script


# --- main -------------------------------------------------------------------------------------------------


def _connect(path: str, account: str) -> BlockingClient:
    # The admin socket ignores the secret: its file mode is the credential (docs/admin.md).
    return BlockingClient.connect_unix(path, account=account, secret="-", timeout=30.0)


def _account_of(args: argparse.Namespace, path: str) -> str:
    if args.account:
        return str(args.account)
    with _connect(path, OPERATOR) as client:
        accounts = client.admin("accounts")["accounts"]
    if not accounts:
        raise UsageError("the gateway has no account")
    return str(accounts[0])


def _is_account_command(args: argparse.Namespace) -> bool:
    if args.command in ("optout", "blacklist"):
        return args.scope is None
    if args.command == "status":
        return bool(args.message_id or args.client_ref)
    return args.command in _ACCOUNT_COMMANDS


def _fail(args: argparse.Namespace, code: str, message: str, exit_code: int) -> int:
    if args is not None and getattr(args, "json", False):
        _json({"error": {"code": code, "message": message}})
    else:
        print(f"gatewayctl: {message if code in ('usage', 'config', 'unreachable') else code + ': ' + message}",
              file=sys.stderr)  # fmt: skip
    return exit_code


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    for value in vars(args).values():  # bytes the shell passed that are no text (a terminal in Latin-1)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                try:
                    item.encode()
                except UnicodeEncodeError:
                    return _fail(args, "usage", f"{item!r} is not valid UTF-8 text", USAGE)
    if args.command == "completion":
        print(_completion(args.shell), end="")
        return OK
    path = ""
    try:
        path = admin_socket(args.socket, args.config or default_config())
        if _is_account_command(args):
            account = _account_of(args, path)
            run: Callable[[argparse.Namespace, BlockingClient], int] = _run
        else:
            account, run = OPERATOR, _admin
            if args.command in ("optout", "blacklist"):  # a --scope list: the operator's
                run = _run
        with _connect(path, account) as client:
            return run(args, client)
    except ConfigError as err:
        return _fail(args, "config", str(err), USAGE)
    except UsageError as err:
        return _fail(args, "usage", str(err), USAGE)
    except UpstreamError as err:
        if str(err.code) == "auth_failed" and args.account:
            return _fail(args, "usage", f"no account {args.account!r} on this gateway", USAGE)
        return _fail(args, str(err.code), err.message, REFUSED)
    except KeyboardInterrupt:  # Ctrl-C: `events --follow` and `top` end there, without a traceback
        return OK if args.command in ("events", "top") else 130
    except BrokenPipeError:  # `gatewayctl optout export | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return OK
    except OSError as err:
        reason = err.strerror or str(err)
        return _fail(args, "unreachable", f"cannot reach the gateway at {path!r}: {reason}", UNREACHABLE)


if __name__ == "__main__":
    raise SystemExit(main())
