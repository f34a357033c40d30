"""The admin socket's commands and their arguments (pure; docs/admin.md is the prose of this file).

An `admin` request names a command and a map of arguments; `parse_command` checks them and returns the
command's typed arguments, or raises `InvalidRequest` naming the argument (`args.NAME`) at fault. No I/O
here: the service (gateway/admin/service.py) runs what this returns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gateway.upstream.errors import InvalidRequest, UnknownOp
from gateway.upstream.schema import MAX_ID, ListName, ListRequest, parse_list_body

MAX_FIND = 1000
MAX_NAME_CHARS = 64


class CarrierAction(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    DRAIN = "drain"


@dataclass(frozen=True, slots=True)
class Status:
    pass


@dataclass(frozen=True, slots=True)
class Binds:
    carrier: str | None = None


@dataclass(frozen=True, slots=True)
class Carrier:
    action: CarrierAction
    name: str


@dataclass(frozen=True, slots=True)
class Find:
    to: str
    since: float | None = None  # seconds since the epoch
    limit: int = 50


@dataclass(frozen=True, slots=True)
class Show:
    """A message by id, or the messages of an account's client reference."""

    message_id: int | None = None
    client_ref: str | None = None
    account: str | None = None


@dataclass(frozen=True, slots=True)
class Reload:
    pass


@dataclass(frozen=True, slots=True)
class Lists:
    """A list of any scope: "gateway" (every account), "account:NAME" or "carrier:NAME" (blacklists)."""

    request: ListRequest
    scope: str


@dataclass(frozen=True, slots=True)
class Health:
    pass


@dataclass(frozen=True, slots=True)
class Accounts:
    pass


@dataclass(frozen=True, slots=True)
class Receipts:
    """Unmatched receipts, a page after the cursor (hex of the last key shown)."""

    after: bytes = b""
    limit: int = 100


@dataclass(frozen=True, slots=True)
class Batch:
    """A batch's report (`show`), a page of its recipients (`details`: by outcome and reason, after a
    message id), or an account's batches (`list`)."""

    action: str
    account: str | None = None
    batch_id: str | None = None
    outcome: str | None = None
    reason: str | None = None
    after: int = 0
    limit: int = 100


@dataclass(frozen=True, slots=True)
class BatchEdit:
    """A batch made and sent: `create` (a text or an approved template, when: now, `at`, or `every`
    day/week/month from `at` until `until` in `time_zone`), `add` recipients by index from `first` (a chunk
    sent again overwrites itself), `send` (a draft becomes pending: it runs at its time), `stop`."""

    action: str
    account: str | None
    batch_id: str
    message_class: str = "marketing"
    sender: str = ""
    text: str = ""
    template: str = ""
    at: float = 0.0
    every: str = "once"
    until: float = 0.0
    time_zone: str = "UTC"
    validity_seconds: int = 0
    receipt: bool = True
    first: int = 0
    # (number as written, its template values)
    rows: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class TemplateCommand:
    """An account's templates: `create` (or replace: pending again), `show`, `list`, `delete`, `preview`;
    the operator's `approve`, `reject` (with a `reason`) and `official` (approved as the platform's own
    wording; a create that replaces it is a new text, reviewed again)."""

    action: str
    account: str | None = None
    template_id: str | None = None
    text: str = ""
    message_class: str = "marketing"
    reason: str = ""
    # `preview`: a sample recipient's values
    values: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Balance:
    """An account's balance (`show`), `topup` by parts (negative: take back), `unlimited` (remove it), or
    its `statement` since a time."""

    action: str
    account: str | None = None
    parts: int = 0
    note: str = ""
    since: float = 0.0
    limit: int = 100


Command = (
    Status | Binds | Carrier | Find | Show | Reload | Lists | Health | Accounts | Receipts | Batch | BatchEdit
    | Balance | TemplateCommand
)

BATCH_ACTIONS = ("list", "show", "details", "create", "add", "send", "stop")
BATCH_EDITS = ("create", "add", "send", "stop")
TEMPLATE_ACTIONS = ("create", "show", "list", "delete", "preview", "approve", "reject", "official")
OPERATOR_TEMPLATE_ACTIONS = ("approve", "reject", "official")
MESSAGE_CLASSES = ("marketing", "notification", "verification")
EVERY = ("once", "daily", "weekly", "monthly")
MAX_ROWS = 1000
MAX_TEXT_CHARS = 1000
MAX_VALUE_CHARS = 160
MAX_VARIABLES = 32
MAX_BATCH_ROWS = 10_000_000
BALANCE_ACTIONS = ("show", "topup", "unlimited", "statement")
OUTCOMES = ("delivered", "failed", "refused", "waiting")
MAX_DETAILS = 1000
MAX_TOPUP = 10**12


def parse_command(command: str, args: Mapping[str, Any]) -> Command:
    parser = _COMMANDS.get(command)
    if parser is None:
        known = ", ".join(sorted(_COMMANDS))
        raise UnknownOp(f"unknown admin command {command!r}; the commands are {known}", field="command")
    return parser(args)


def _only(args: Mapping[str, Any], *names: str) -> None:
    for key in args:
        if key not in names:
            allowed = ", ".join(names) or "none"
            raise InvalidRequest(f"unknown argument {key!r} (allowed: {allowed})", field=f"args.{key}")


def _text(args: Mapping[str, Any], key: str, required: bool = False, limit: int = MAX_NAME_CHARS) -> str | None:
    value = args.get(key)
    if value is None:
        if required:
            raise InvalidRequest(f"{key} is required", field=f"args.{key}")
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidRequest(f"{key} must be a string of 1 to {limit} characters", field=f"args.{key}")
    return value


def _int(args: Mapping[str, Any], key: str, low: int, high: int, default: int) -> int:
    value = args.get(key)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidRequest(f"{key} must be an integer in {low}..{high}", field=f"args.{key}")
    return value


def _status(args: Mapping[str, Any]) -> Status:
    _only(args)
    return Status()


def _binds(args: Mapping[str, Any]) -> Binds:
    _only(args, "carrier")
    return Binds(_text(args, "carrier"))


def _carrier(args: Mapping[str, Any]) -> Carrier:
    _only(args, "action", "name")
    action = _text(args, "action", required=True) or ""
    try:
        chosen = CarrierAction(action)
    except ValueError:
        raise InvalidRequest("action must be pause, resume or drain", field="args.action") from None
    return Carrier(chosen, _text(args, "name", required=True) or "")


def _find(args: Mapping[str, Any]) -> Find:
    _only(args, "to", "since", "limit")
    since = args.get("since")
    if since is not None and (not isinstance(since, int | float) or isinstance(since, bool) or since < 0):
        raise InvalidRequest("since must be seconds since the epoch", field="args.since")
    return Find(_text(args, "to", required=True) or "", since, _int(args, "limit", 1, MAX_FIND, 50))


def _show(args: Mapping[str, Any]) -> Show:
    _only(args, "message_id", "client_ref", "account")
    message_id, client_ref = _text(args, "message_id", limit=20), _text(args, "client_ref")
    if (message_id is None) == (client_ref is None):
        raise InvalidRequest("exactly one of message_id and client_ref is required", field="args.message_id")
    if message_id is not None:
        if not message_id.isdigit() or not 0 < int(message_id) <= MAX_ID:
            raise InvalidRequest("message_id must be a message id the gateway gave", field="args.message_id")
        return Show(message_id=int(message_id))
    return Show(client_ref=client_ref, account=_text(args, "account"))


def _reload(args: Mapping[str, Any]) -> Reload:
    _only(args)
    return Reload()


def _lists(args: Mapping[str, Any]) -> Lists:
    _only(args, "scope", "list", "action", "numbers", "after", "limit")
    scope = _text(args, "scope", limit=MAX_NAME_CHARS + 8) or "gateway"
    kind, _, name = scope.partition(":")
    if not (scope == "gateway" or (kind in ("account", "carrier") and name)):
        raise InvalidRequest("scope must be gateway, account:NAME or carrier:NAME", field="args.scope")
    body = {key: value for key, value in args.items() if key != "scope"}
    try:
        request = parse_list_body(body)
    except InvalidRequest as err:
        raise InvalidRequest(err.message, field=f"args.{err.field}" if err.field else "args") from None
    if kind == "carrier" and request.list is ListName.OPTOUT:
        raise InvalidRequest("carriers have blacklists, not opt-outs", field="args.scope")
    return Lists(request, scope)


def _health(args: Mapping[str, Any]) -> Health:
    _only(args)
    return Health()


def _accounts(args: Mapping[str, Any]) -> Accounts:
    _only(args)
    return Accounts()


def _receipts(args: Mapping[str, Any]) -> Receipts:
    _only(args, "after", "limit")
    after = _text(args, "after", limit=1024) or ""
    try:
        cursor = bytes.fromhex(after)
    except ValueError:
        raise InvalidRequest("after must be the hex cursor a page gave", field="args.after") from None
    return Receipts(cursor, _int(args, "limit", 1, MAX_FIND, 100))


def _action(args: Mapping[str, Any], allowed: tuple[str, ...]) -> str:
    action = _text(args, "action", required=True) or ""
    if action not in allowed:
        raise InvalidRequest(f"action must be one of {', '.join(allowed)}", field="args.action")
    return action


def _batch(args: Mapping[str, Any]) -> Batch | BatchEdit:
    action = _action(args, BATCH_ACTIONS)
    if action in BATCH_EDITS:
        return _batch_edit(action, args)
    _only(args, "action", "account", "batch_id", "outcome", "reason", "after", "limit")
    batch_id = _text(args, "batch_id", required=action != "list")
    outcome = _text(args, "outcome")
    if outcome is not None and outcome not in OUTCOMES:
        raise InvalidRequest(f"outcome must be one of {', '.join(OUTCOMES)}", field="args.outcome")
    after = _text(args, "after", limit=20) or "0"
    if not after.isdigit() or int(after) > MAX_ID:
        raise InvalidRequest("after must be the message id a page ended with", field="args.after")
    limit = _int(args, "limit", 1, MAX_DETAILS, 100)
    return Batch(action, _text(args, "account"), batch_id, outcome, _text(args, "reason"), int(after), limit)


def _seconds(args: Mapping[str, Any], key: str) -> float:
    value = args.get(key, 0)
    if value is None:
        return 0.0
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < 253402300800:
        raise InvalidRequest(f"{key} must be seconds since the epoch", field=f"args.{key}")
    return float(value)


def _choice(args: Mapping[str, Any], key: str, allowed: tuple[str, ...], default: str) -> str:
    value = args.get(key)
    if value is None:
        return default
    if value not in allowed:
        raise InvalidRequest(f"{key} must be one of {', '.join(allowed)}", field=f"args.{key}")
    return str(value)


def _rows(args: Mapping[str, Any]) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """`rows`: 1-1000 recipients, each a number (str) or {"to": str, "vars": {name: str}}."""
    rows = args.get("rows")
    if not isinstance(rows, list) or not 1 <= len(rows) <= MAX_ROWS:
        raise InvalidRequest(f"rows must be an array of 1 to {MAX_ROWS} recipients", field="args.rows")
    out = []
    for i, row in enumerate(rows):
        where = f"args.rows[{i}]"
        if isinstance(row, str):
            row = {"to": row}
        if not isinstance(row, Mapping) or set(row) - {"to", "vars"}:
            raise InvalidRequest("a recipient is a number or {to, vars}", field=where)
        to = row.get("to")
        if not isinstance(to, str) or not 1 <= len(to) <= 64:
            raise InvalidRequest("to must be a number of 1 to 64 characters", field=f"{where}.to")
        out.append((to, _values(row.get("vars"), f"{where}.vars")))
    return tuple(out)


def _values(values: Any, where: str) -> tuple[tuple[str, str], ...]:
    """A recipient's template values: {name: str (or int)}, at most MAX_VARIABLES."""
    if values is None:
        return ()
    if not isinstance(values, Mapping) or len(values) > MAX_VARIABLES:
        raise InvalidRequest(f"vars must be a map of at most {MAX_VARIABLES} values", field=where)
    pairs = []
    for name, value in values.items():
        if not isinstance(name, str) or not 1 <= len(name) <= 32 or not isinstance(value, str | int):
            raise InvalidRequest("vars maps names to strings", field=where)
        text = str(value)
        if len(text) > MAX_VALUE_CHARS:
            raise InvalidRequest(f"a value has at most {MAX_VALUE_CHARS} characters", field=f"{where}.{name}")
        pairs.append((name, text))
    return tuple(pairs)


def _batch_edit(action: str, args: Mapping[str, Any]) -> BatchEdit:
    account = _text(args, "account")
    batch_id = _text(args, "batch_id", required=True) or ""
    if "#" in batch_id:
        raise InvalidRequest("batch_id may not hold '#': it names a run of a recurring batch", field="args.batch_id")
    if action == "add":
        _only(args, "action", "account", "batch_id", "first", "rows")
        first = _int(args, "first", 0, MAX_BATCH_ROWS, 0)
        return BatchEdit(action, account, batch_id, first=first, rows=_rows(args))
    if action != "create":
        _only(args, "action", "account", "batch_id")
        return BatchEdit(action, account, batch_id)
    _only(args, "action", "account", "batch_id", "class", "sender", "text", "template", "at", "every", "until",
          "time_zone", "validity_seconds", "receipt")  # fmt: skip
    text = _text(args, "text", limit=MAX_TEXT_CHARS) or ""
    template = _text(args, "template") or ""
    if bool(text) == bool(template):
        raise InvalidRequest("a batch sends a text or a template (one of them)", field="args.text")
    receipt = args.get("receipt", True)
    if not isinstance(receipt, bool):
        raise InvalidRequest("receipt must be true or false", field="args.receipt")
    every = _choice(args, "every", EVERY, "once")
    at, until = _seconds(args, "at"), _seconds(args, "until")
    if until and until < at:
        raise InvalidRequest("until is before at: the batch would never run", field="args.until")
    if every != "once" and not at:
        raise InvalidRequest("a recurring batch needs at: its first run, whose time of day it keeps",
                             field="args.at")  # fmt: skip
    return BatchEdit(
        action, account, batch_id, _choice(args, "class", MESSAGE_CLASSES, "marketing"),
        _text(args, "sender", required=True, limit=21) or "", text, template, at, every, until,
        _text(args, "time_zone") or "UTC", _int(args, "validity_seconds", 0, 30 * 86400, 0), receipt,
    )  # fmt: skip


def _template(args: Mapping[str, Any]) -> TemplateCommand:
    action = _action(args, TEMPLATE_ACTIONS)
    account = _text(args, "account")
    if action == "list":
        _only(args, "action", "account")
        return TemplateCommand(action, account)
    template_id = _text(args, "template_id", required=True)
    if action == "create":
        _only(args, "action", "account", "template_id", "text", "class")
        text = _text(args, "text", required=True, limit=MAX_TEXT_CHARS) or ""
        return TemplateCommand(action, account, template_id, text, _choice(args, "class", MESSAGE_CLASSES, "marketing"))
    if action == "preview":
        _only(args, "action", "account", "template_id", "vars")
        return TemplateCommand(action, account, template_id, values=_values(args.get("vars"), "args.vars"))
    if action == "reject":
        _only(args, "action", "account", "template_id", "reason")
        reason = _text(args, "reason", required=True, limit=160) or ""
        return TemplateCommand(action, account, template_id, reason=reason)
    _only(args, "action", "account", "template_id")
    return TemplateCommand(action, account, template_id)


def _balance(args: Mapping[str, Any]) -> Balance:
    _only(args, "action", "account", "parts", "note", "since", "limit")
    action = _action(args, BALANCE_ACTIONS)
    parts = _int(args, "parts", -MAX_TOPUP, MAX_TOPUP, 0)
    if action == "topup" and not parts:
        raise InvalidRequest("parts: a top-up adds (or takes back) at least one part", field="args.parts")
    since = args.get("since", 0)
    if not isinstance(since, int | float) or isinstance(since, bool) or since < 0:
        raise InvalidRequest("since must be seconds since the epoch", field="args.since")
    note = _text(args, "note", limit=160) or ""
    return Balance(action, _text(args, "account"), parts, note, float(since), _int(args, "limit", 1, MAX_FIND, 100))


_COMMANDS: dict[str, Callable[[Mapping[str, Any]], Command]] = {
    "status": _status,
    "binds": _binds,
    "carrier": _carrier,
    "find": _find,
    "show": _show,
    "reload": _reload,
    "lists": _lists,
    "health": _health,
    "accounts": _accounts,
    "receipts": _receipts,
    "batch": _batch,
    "balance": _balance,
    "template": _template,
}
