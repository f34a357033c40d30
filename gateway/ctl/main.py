"""`gatewayctl`: send a message, look it up, watch events, preview a text.

It reads the same config file as the gateway (-c, default conf/gateway.toml) for the socket path and the
account's secret, and speaks the documented upstream protocol (docs/protocol.md) with the blocking client.

    gatewayctl send 447700900123 "Your code is 123456" --sender ACME
    gatewayctl status 123456789
    gatewayctl events --follow
    gatewayctl preview "Grüße 👋"
    gatewayctl receipts --unmatched                   # receipts no submit_sm_resp claimed (read from the store)
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gateway.app import GatewayConfig, load_config
from gateway.config import read_secret
from gateway.errors import ConfigError
from gateway.upstream import BlockingClient, EventKind, MessageClass, SubmitRequest, UpstreamError


def _default_config() -> str:
    """$GATEWAY_CONFIG, else conf/gateway.toml here, else the project's own (gatewayctl run from anywhere)."""
    chosen = os.environ.get("GATEWAY_CONFIG")
    if chosen:
        return chosen
    here = Path("conf/gateway.toml")
    project = Path(__file__).resolve().parents[2] / "conf" / "gateway.toml"
    return str(here if here.exists() or not project.exists() else project)


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


def _cursor(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a cursor (the hex gatewayctl printed)") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gatewayctl", description="operate a running gateway")
    p.add_argument(
        "-c", "--config", default=_default_config(),
        help="the gateway's config file (default: $GATEWAY_CONFIG, else conf/gateway.toml here or in the project)",
    )  # fmt: skip
    p.add_argument("-a", "--account", help="upstream account (default: the first in the config)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    cmds = p.add_subparsers(dest="command", required=True)
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
    status = cmds.add_parser("status", help="state of a message (by id) or of a submit (by client reference)")
    status.add_argument("message_id", nargs="?")
    status.add_argument("--client-ref")
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
    for name, what in (("optout", "numbers that opted out of the account's marketing"),
                       ("blacklist", "numbers the account never sends to")):  # fmt: skip
        lst = cmds.add_parser(name, help=f"the account's {name} list: {what}")
        actions = lst.add_subparsers(dest="action", required=True)
        for action, helps in (("add", "put numbers on it"), ("remove", "take numbers off it"),
                              ("check", "whether numbers are on it, since when and why")):  # fmt: skip
            actions.add_parser(action, help=helps).add_argument("numbers", nargs="+")
        imp = actions.add_parser("import", help="add every number of a CSV file (the first column; - for stdin)")
        imp.add_argument("file")
        actions.add_parser("export", help="print the whole list as CSV: number,at,source,note")
    receipts = cmds.add_parser(
        "receipts", help="receipts kept by the store (read-only from its files, beside a running gateway)"
    )
    receipts.add_argument(
        "--unmatched",
        action="store_true",
        required=True,
        help="receipts no submit_sm_resp claimed within [store] early_receipt_seconds",
    )
    receipts.add_argument("--limit", type=_count, default=100)
    receipts.add_argument("--after", type=_cursor, default=b"", help="the cursor printed after the last one read")
    return p


def _connect(cfg: GatewayConfig, account_name: str | None) -> BlockingClient:
    accounts = {a.name: a for a in cfg.accounts}
    if account_name and account_name not in accounts:
        raise UsageError(f"no account {account_name!r} in the config (accounts: {', '.join(accounts)})")
    account = accounts[account_name] if account_name else cfg.accounts[0]
    secret = read_secret(
        env=account.secret_env,
        file=Path(account.secret_file) if account.secret_file else None,
        what=f"account {account.name}",
    )
    return BlockingClient.connect_unix(cfg.server.socket_path, account=account.name, secret=secret, timeout=10.0)


# Exit codes: 0 done, 1 refused or not found (a recipient refused by send), 2 usage, 3 cannot reach the gateway.
_REFUSED = frozenset({"rejected", "failed"})


class UsageError(Exception):
    """A command line that names something the config does not have."""


def _out(args: argparse.Namespace, obj: Any, line: str) -> None:
    print(json.dumps(obj, default=str) if args.json else line, flush=True)


def _lists(args: argparse.Namespace, client: BlockingClient) -> int:
    """gatewayctl optout|blacklist add|remove|check|import|export."""
    name = args.command
    if args.action == "export":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["number", "at", "source", "note"])
        after: str | None = ""
        while after is not None:
            page = client.lists(name, "page", after=after, limit=_PAGE)
            for e in page.entries:
                at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e.at)) if e.at else ""
                writer.writerow([e.number, at, e.source or "", e.note or ""])
            after = page.next
        return 0
    if args.action == "import":
        return _import(args, client, name)
    refused = 0
    for e in client.lists(name, args.action, args.numbers).entries:
        refused += e.reason is not None
        since = time.strftime(" since %Y-%m-%d %H:%M:%SZ", time.gmtime(e.at)) if e.at else ""
        how = f" ({e.source}{': ' + repr(e.note) if e.note else ''})" if e.source else ""
        state = f"{e.reason}: {e.detail}" if e.reason else ("listed" + since + how if e.listed else "not listed")
        _out(args, asdict(e), f"{e.number or e.to}  {state}")
    return 1 if refused else 0


def _import(args: argparse.Namespace, client: BlockingClient, name: str) -> int:
    """A CSV of numbers (the first column; a header row and blank or # lines skipped), sent a thousand at
    a time: millions of rows stream, never held whole."""
    try:
        source = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8-sig", newline="")  # noqa: SIM115
    except OSError as err:
        raise UsageError(f"{args.file}: {err.strerror or err}") from None
    added = refused = 0
    first = True
    try:
        numbers: list[str] = []
        for row in csv.reader(source):
            number = row[0].strip() if row else ""
            header, first = first and not any(c.isdigit() for c in number), False
            if not number or number.startswith("#") or header:  # the first row without a digit: a header
                continue
            numbers.append(number)
            if len(numbers) == _PAGE * _IN_FLIGHT:
                a, r = _send_chunks(client, name, numbers)
                added, refused, numbers = added + a, refused + r, []
                print(f"{added:,} added, {refused:,} refused", file=sys.stderr, flush=True)
        if numbers:
            a, r = _send_chunks(client, name, numbers)
            added, refused = added + a, refused + r
    except UnicodeDecodeError as err:
        what = f"{args.file}: not UTF-8 at byte {err.start} of a read; {added:,} listed before it"
        raise UsageError(f"{what} (save the file as UTF-8 and import it again)") from None
    finally:
        if source is not sys.stdin:
            source.close()
    _out(args, {"listed": added, "refused": refused}, f"{added:,} listed, {refused:,} refused (not numbers)")
    return 1 if refused else 0


def _send_chunks(client: BlockingClient, name: str, numbers: list[str]) -> tuple[int, int]:
    """Add `numbers`, a thousand a request, the requests in flight together; (added, refused)."""
    chunks = [numbers[k : k + _PAGE] for k in range(0, len(numbers), _PAGE)]
    entries = [e for result in client.lists_many(name, "add", chunks) for e in result.entries]
    refused = [e for e in entries if e.reason]
    for e in refused[:10]:
        print(f"gatewayctl: {e.to!r}: {e.reason}: {e.detail}", file=sys.stderr)
    return len(entries) - len(refused), len(refused)


# Numbers per lists request (the protocol's limit) and per page read; requests an import keeps in flight.
_PAGE = 1000
_IN_FLIGHT = 4


def _run(args: argparse.Namespace, client: BlockingClient) -> int:
    if args.command in ("optout", "blacklist"):
        return _lists(args, client)
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
        return 1 if any(m.state in _REFUSED for m in result.messages) else 0
    if args.command in ("status", "cancel"):
        if not args.message_id and not args.client_ref:
            print("gatewayctl: give a message id or --client-ref", file=sys.stderr)
            return 2
        if args.command == "cancel":
            done = client.cancel(message_id=args.message_id, client_ref=args.client_ref)
            _out(args, asdict(done), "cancelled: " + " ".join(done.cancelled))
            return 0
        for s in client.status(message_id=args.message_id, client_ref=args.client_ref):
            due = time.strftime("  due %Y-%m-%d %H:%M:%SZ", time.gmtime(s.due_at)) if s.due_at else ""
            _out(args, asdict(s), f"{s.message_id}  {s.to}  {s.state}  {s.reason or ''}  parts={s.segments}{due}")
        return 0
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
        return 0
    p = client.preview(args.text)
    _out(args, asdict(p), f"{p.encoding}: {p.parts} part(s), {p.chars} units, {p.chars_left} left in the last part")
    return 0


def _receipts(args: argparse.Namespace, cfg: GatewayConfig) -> int:
    """The unmatched receipts, straight from the store's files (the upstream protocol has no request for
    them): oldest first, then the total and the cursor for --after."""
    import lmdb  # only this command reads the store

    from gateway.store.store import read_unmatched

    try:
        count, rows = read_unmatched(cfg.store.path, args.after, args.limit)
    except lmdb.Error as err:
        print(f"gatewayctl: {cfg.store.path}: cannot read the store: {err}", file=sys.stderr)
        return 1
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.at_ms / 1000))
        text = r.text.decode("utf-8", "replace")
        obj = {
            "cursor": r.key.hex(), "at_ms": r.at_ms, "expired_ms": r.expired_ms, "carrier": r.carrier,
            "id": r.raw_id, "keys": list(r.keys), "outcome": r.kind.name.lower(), "reason": r.reason, "text": text,
        }  # fmt: skip
        _out(args, obj, f"{when}  {r.carrier}  id:{r.raw_id}  {r.kind.name.lower()}  {r.reason}  {text!r}")
    cursor = rows[-1].key.hex() if rows else ""
    _out(
        args,
        {"unmatched": count, "cursor": cursor},
        f"{count} unmatched" + (f" (next: --after {cursor})" if cursor and len(rows) == args.limit else ""),
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = load_config(Path(args.config))
        if args.command == "receipts":
            return _receipts(args, cfg)
        with _connect(cfg, args.account) as client:
            return _run(args, client)
    except (ConfigError, UsageError) as err:
        print(f"gatewayctl: {err}", file=sys.stderr)
        return 2
    except UpstreamError as err:
        print(f"gatewayctl: {err.code}: {err.message}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `gatewayctl optout export | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 0
    except OSError as err:
        print(f"gatewayctl: cannot reach the gateway: {err}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    raise SystemExit(main())
