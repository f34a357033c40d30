"""Message schema of the upstream socket: request parsing and validation, result encoding (pure).

`parse_request(obj)` turns an unpacked frame into an `Envelope` (id, op, typed body) or raises an
`UpstreamError` naming the field at fault; `result_frame` / `error_frame` / `event_frame` build what the
server sends; the `*_from_wire` functions are the client's side of the same contract. docs/protocol.md
is the prose of this file: change both together.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple, TypeVar

from gateway.fastinit import fast_init
from gateway.upstream.errors import (
    BadFrame,
    InvalidNumber,
    InvalidRequest,
    NotAuthenticated,
    TextTooLong,
    UnknownOp,
    UpstreamError,
)

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)

# The account an admin-socket hello names to act as the operator, for no account (docs/admin.md).
OPERATOR = "*"
MAX_RECIPIENTS = 1000
MAX_TEXT_CHARS = 10_000
MAX_REF_CHARS = 64
MAX_ACCOUNT_CHARS = 64
MAX_SECRET_CHARS = 1024
MAX_ALPHA_SENDER_CHARS = 11
# Numeric ranges (docs/protocol.md, "Numeric ranges"): every number a client sends is checked here, so no
# value reaches the engine or the store that their integer keys (big-endian u64) or arithmetic cannot take.
MAX_VALIDITY_SECONDS = 30 * 86400
MAX_ID = 2**63 - 1
# Event sequences and cursors: the store keys events by u64 and reads from `after + 1`; 2^63-1 leaves room
# for that and is the largest value a signed 64-bit integer (Java, Go int64, SQL BIGINT) holds.
MAX_SEQ = 2**63 - 1
MAX_WINDOW = 2**32 - 1
MAX_VERSION = 65_535
# 9999-12-31T23:59:59Z, the last second ISO 8601 and most date libraries can write: as milliseconds
# (2.5e14) it fits the store's u64 time keys with room to spare.
MAX_SCHEDULE_AT = 253_402_300_799

# E.164 (ITU-T E.164 6.1) allows 15 digits; national and short-code forms are accepted up to 20 and left
# to the router to normalise.
_NUMBER = re.compile(r"\+?[0-9]{1,20}")
# A recipient's longest writing ("+44 (0) 7911 123 456 ext. 1234"); the number check reads at most as much.
MAX_NUMBER_CHARS = 64
# Recipients joined by commas (a comma is in no valid number): one match checks a whole list at once.
_NUMBER_LIST = re.compile(r"\+?[0-9]{1,20}(?:,\+?[0-9]{1,20})*")
# 3GPP TS 23.040 9.1.2.5: an alphanumeric TP-OA holds 11 GSM 7-bit characters; we take the portable subset.
_ALPHA_SENDER = re.compile(r"[A-Za-z0-9 .\-_&]{1,11}")


class Op(StrEnum):
    HELLO = "hello"
    SUBMIT = "submit"
    STATUS = "status"
    CANCEL = "cancel"
    PREVIEW = "preview"
    SUBSCRIBE = "subscribe"
    ACK = "ack"
    PING = "ping"
    LISTS = "lists"
    # The operator's commands: served on the admin socket only (docs/admin.md).
    ADMIN = "admin"
    ACCOUNT = "account"


class ListName(StrEnum):
    """The account's suppression lists an application edits (docs/protocol.md, "lists")."""

    OPTOUT = "optout"
    BLACKLIST = "blacklist"


class ListAction(StrEnum):
    ADD = "add"
    REMOVE = "remove"
    CHECK = "check"
    PAGE = "page"


class MessageClass(StrEnum):
    MARKETING = "marketing"
    NOTIFICATION = "notification"
    VERIFICATION = "verification"


class EventKind(StrEnum):
    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    FAILED = "failed"
    MO = "mo"


# --- request bodies ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    version: int
    account: str
    secret: str


@dataclass(frozen=True, slots=True)
class SubmitRequest:
    to: tuple[str, ...]
    text: str
    message_class: MessageClass
    sender: str
    schedule_at: float | None = None
    validity_seconds: int | None = None
    receipt: bool = True
    client_ref: str | None = None
    batch_id: str | None = None


@dataclass(frozen=True, slots=True)
class MessageQuery:
    """Exactly one of the two is set: a message id, or the client reference of a submit."""

    message_id: str | None = None
    client_ref: str | None = None


@dataclass(frozen=True, slots=True)
class PreviewRequest:
    text: str
    # With a class, the account's policy is applied first (its opt-out wording appended, its signature and
    # banned-word rules checked), so the parts counted are the parts a submit of this class would take.
    message_class: MessageClass | None = None


@dataclass(frozen=True, slots=True)
class Subscribe:
    after: int | None = None
    window: int | None = None
    # Only these kinds of event (None: every kind). The others are skipped, as if already acknowledged.
    kinds: tuple[EventKind, ...] | None = None


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class ListRequest:
    """add, remove or check `numbers` (1-1000) on one of the account's lists, or read a page of it: the
    entries after the number `after` ("" from the start), at most `limit`."""

    list: ListName
    action: ListAction
    numbers: tuple[str, ...] = ()
    after: str | None = None
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class AdminRequest:
    """One operator's command (docs/admin.md); `args` is checked by gateway/admin/commands.py."""

    command: str
    args: Mapping[str, Any]


Body = Hello | SubmitRequest | MessageQuery | PreviewRequest | Subscribe | Ack | Ping | ListRequest | AdminRequest


@dataclass(frozen=True, slots=True)
class Envelope:
    id: int
    op: Op
    body: Body


# --- results ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubmittedMessage:
    to: str
    message_id: str
    # "accepted", "scheduled", or "rejected" with `reason` (a reason code such as opted_out, no_route).
    state: str = "accepted"
    reason: str | None = None
    # The recipient as the gateway normalised it (E.164 without "+", as status and events name it), when
    # it could: `to` is echoed as the client sent it.
    number: str | None = None
    # Why a rejected recipient was refused, for a person: the number's fault (too_short: ...), the route
    # and the word a carrier blocks, the carrier that cannot take the text's length.
    detail: str | None = None


# Built once per recipient: by the engine for each submit result, by the client for each one it reads.
fast_init(SubmittedMessage)


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """One message per recipient, in request order; `duplicate` when a client_ref was seen before."""

    messages: tuple[SubmittedMessage, ...]
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class MessageStatus:
    message_id: str
    to: str
    state: str
    segments: int = 0
    reason: str | None = None
    carrier: str | None = None
    client_ref: str | None = None
    batch_id: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    # Sent (or possibly sent) twice to the carrier: at-least-once recovery resent it after a crash or lost link.
    possible_duplicate: bool = False
    # The carriers it left, in order, each with why: (carrier, reason code or "no_bind").
    trail: tuple[tuple[str, str], ...] = ()
    # A `scheduled` message: when it is due to go (its schedule time, send window or retry back-off).
    due_at: float | None = None


fast_init(MessageStatus)


@dataclass(frozen=True, slots=True)
class CancelResult:
    cancelled: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PreviewResult:
    """`chars` and `chars_left` count the encoding's units: GSM septets (an escape counts two) or UTF-16."""

    encoding: str
    parts: int
    chars: int
    chars_left: int
    per_part: int
    # With a class: the text as a submit would send it (the opt-out wording appended), and the policy's
    # refusal (reason code and why) when a submit of it would be refused.
    text: str | None = None
    reason: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class AdminResult:
    """An admin command's answer: a map of plain values (docs/admin.md gives each command's keys)."""

    body: Mapping[str, Any]


class Event(NamedTuple):
    """An event pushed on a subscription. A NamedTuple: thousands a second are built and encoded."""

    seq: int
    kind: EventKind
    at: float
    message_id: str | None = None
    to: str | None = None
    sender: str | None = None
    text: str | None = None
    reason: str | None = None
    carrier: str | None = None
    client_ref: str | None = None
    batch_id: str | None = None
    # The message may have reached the carrier twice (docs/protocol.md, possible_duplicate).
    possible_duplicate: bool = False


class EncodedEvent(NamedTuple):
    """An event a backend has already encoded as a whole frame (prefix included): the server pushes the
    bytes as they are. For backends that read events in bulk and can skip building an `Event`."""

    seq: int
    frame: bytes


@dataclass(frozen=True, slots=True)
class HelloResult:
    version: int
    account: str
    max_frame_bytes: int
    max_inflight: int


@dataclass(frozen=True, slots=True)
class SubscribeResult:
    after: int
    window: int


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One number of a list request: `to` as sent (a page: the stored number), `number` its E.164 digits
    (None when it is no number: then `reason` invalid_number and `detail`), whether it is on the list, and
    since when and how (`source`: "mo:CARRIER" for a reply, "api", "import"; `note`: the reply's words)."""

    to: str
    number: str | None
    listed: bool
    at: float | None = None
    source: str | None = None
    note: str | None = None
    reason: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class ListResult:
    entries: tuple[ListEntry, ...]
    # A page's last number, to pass as `after` for the next page; None when the list has no more.
    next: str | None = None


Result = (
    HelloResult | SubmitResult | tuple[MessageStatus, ...] | CancelResult | PreviewResult | SubscribeResult | Ack
    | Ping | ListResult | AdminResult
)


# --- field readers ----------------------------------------------------------------------------------

T = TypeVar("T")


def _get(body: Mapping[str, Any], key: str, kind: type[T], required: bool) -> T | None:
    value = body.get(key)
    if value is None:
        if required:
            raise InvalidRequest(f"{key} is required", field=key)
        return None
    # bool is an int in Python; on the wire they are different types and must not mix.
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise InvalidRequest(f"{key} must be {kind.__name__}", field=key)
    return value


def _req(body: Mapping[str, Any], key: str, kind: type[T]) -> T:
    value = _get(body, key, kind, True)
    if value is None:  # _get raised already; this narrows the type without an assert
        raise InvalidRequest(f"{key} is required", field=key)
    return value


def _text(body: Mapping[str, Any], key: str, max_chars: int, required: bool = False) -> str | None:
    value = _get(body, key, str, required)
    if value is not None and not 1 <= len(value) <= max_chars:
        raise InvalidRequest(f"{key} must be 1 to {max_chars} characters", field=key)
    return value


def _req_text(body: Mapping[str, Any], key: str, max_chars: int) -> str:
    value = _text(body, key, max_chars, True)
    if value is None:
        raise InvalidRequest(f"{key} is required", field=key)
    return value


def _int(body: Mapping[str, Any], key: str, low: int, high: int, required: bool = False) -> int | None:
    value = _get(body, key, int, required)
    if value is not None and not low <= value <= high:
        raise InvalidRequest(f"{key} must be an integer in {low}..{high}", field=key)
    return value


def _req_int(body: Mapping[str, Any], key: str, low: int, high: int) -> int:
    value = _int(body, key, low, high, True)
    if value is None:
        raise InvalidRequest(f"{key} is required", field=key)
    return value


def _seconds(body: Mapping[str, Any], key: str, low: int, high: int) -> float | None:
    """An int or a finite float in low..high (NaN and the infinities are refused by name, not compared)."""
    value = body.get(key)
    if value is None:
        return None
    if type(value) is bool or not isinstance(value, int | float):
        raise InvalidRequest(f"{key} must be a number of seconds", field=key)
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidRequest(f"{key} must be a finite number in {low}..{high}, got {value}", field=key)
    if not low <= value <= high:
        raise InvalidRequest(f"{key} must be in {low}..{high}", field=key)
    return float(value)


def _only_keys(body: Mapping[str, Any], allowed: frozenset[str]) -> None:
    # Unknown keys are refused, so a typo ("scheduled_at") is an error and not a silently ignored option.
    for key in body:
        if key not in allowed:
            raise InvalidRequest(f"unknown key {key!r}", field=str(key))


def check_number(value: str, field: str) -> str:
    """A recipient as a person may write it: "+44 7911 123456", "(0)7911-123456", full-width digits. Only
    what cannot be a number in any writing fails the request here (empty, too long, control characters);
    the numbering-plan check refuses the others one recipient at a time, with the cause (docs/protocol.md)."""
    if _NUMBER.fullmatch(value) or (0 < len(value) <= MAX_NUMBER_CHARS and value.isprintable()):
        return value
    raise InvalidNumber(
        f"{field} must be a phone number of 1-{MAX_NUMBER_CHARS} printable characters, got {value[:70]!r}",
        field=field,
    )


def check_sender(value: str) -> str:
    if _NUMBER.fullmatch(value) or (_ALPHA_SENDER.fullmatch(value) and not value.isspace()):
        return value
    raise InvalidNumber(
        "sender must be a number ('+' and 1-20 digits) or 1-11 of A-Z a-z 0-9 space . - _ &", field="sender"
    )


# --- request parsing --------------------------------------------------------------------------------

_ENVELOPE_KEYS = frozenset({"op", "id"})


def request_id(obj: object) -> int | None:
    """The request id if there is a valid one, so that even a refused request is answered by id."""
    if isinstance(obj, dict):
        value = obj.get("id")
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID:
            return value
    return None


def parse_request(obj: object, *, authenticated: bool = True) -> Envelope:
    """Validate one unpacked frame as a request (docs/protocol.md, "Requests"). Before a successful hello
    (`authenticated` False) anything but a hello is `NotAuthenticated`, however malformed its other keys:
    an unauthenticated client learns nothing about the operations."""
    if not isinstance(obj, dict):
        raise BadFrame("a request frame must be a msgpack map")
    if not authenticated and obj.get("op") != Op.HELLO:
        raise NotAuthenticated("send hello first")
    ident = request_id(obj)
    if ident is None:
        raise InvalidRequest(f"id must be an integer in 0..{MAX_ID}", field="id")
    op_name = _req(obj, "op", str)
    try:
        op = Op(op_name)
    except ValueError:
        raise UnknownOp(f"unknown op {op_name!r}", field="op") from None
    return Envelope(ident, op, _PARSERS[op](obj))


def _parse_hello(body: Mapping[str, Any]) -> Hello:
    _only_keys(body, _ENVELOPE_KEYS | {"version", "account", "secret"})
    version = _req_int(body, "version", 0, MAX_VERSION)
    return Hello(version, _req_text(body, "account", MAX_ACCOUNT_CHARS), _req_text(body, "secret", MAX_SECRET_CHARS))


_SUBMIT_KEYS = _ENVELOPE_KEYS | {
    "to",
    "text",
    "class",
    "sender",
    "schedule_at",
    "validity_seconds",
    "receipt",
    "client_ref",
    "batch_id",
}


def _parse_recipients(body: Mapping[str, Any]) -> tuple[str, ...]:
    value = body.get("to")
    if isinstance(value, str):
        return (check_number(value, "to"),)
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_RECIPIENTS:
        raise InvalidRequest(f"to must be a number or a list of 1 to {MAX_RECIPIENTS} numbers", field="to")
    if _all_numbers(value):
        return tuple(value)
    return _checked_recipients(value)


def _all_numbers(value: list[Any]) -> bool:
    """Whether every item is a valid number, checked by one match over the items joined by commas; the
    comma count tells that no item held a comma of its own. False sends the list to the item-by-item check
    that names the first bad item."""
    try:
        joined = ",".join(value)
    except TypeError:  # an item that is not a str
        return False
    return _NUMBER_LIST.fullmatch(joined) is not None and joined.count(",") == len(value) - 1


def _checked_recipients(value: list[Any]) -> tuple[str, ...]:
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise InvalidRequest(f"to[{index}] must be str", field=f"to[{index}]")
        check_number(item, f"to[{index}]")
    return tuple(value)


def _parse_submit(body: Mapping[str, Any]) -> SubmitRequest:
    _only_keys(body, _SUBMIT_KEYS)
    to = _parse_recipients(body)
    text = _submit_text(_req(body, "text", str))
    message_class = _submit_class(_req(body, "class", str))
    schedule_at = _seconds(body, "schedule_at", 0, MAX_SCHEDULE_AT)
    receipt = _get(body, "receipt", bool, False)
    return SubmitRequest(
        to=to,
        text=text,
        message_class=message_class,
        sender=check_sender(_req(body, "sender", str)),
        schedule_at=schedule_at,
        validity_seconds=_int(body, "validity_seconds", 1, MAX_VALIDITY_SECONDS),
        receipt=True if receipt is None else receipt,
        client_ref=_text(body, "client_ref", MAX_REF_CHARS),
        batch_id=_text(body, "batch_id", MAX_REF_CHARS),
    )


def _submit_text(text: str) -> str:
    if not text:
        raise InvalidRequest("text must not be empty", field="text")
    if len(text) > MAX_TEXT_CHARS:
        raise TextTooLong(f"text is over {MAX_TEXT_CHARS} characters", field="text")
    return text


def _submit_class(name: str) -> MessageClass:
    try:
        return MessageClass(name)
    except ValueError:
        raise InvalidRequest("class must be marketing, notification or verification", field="class") from None


def submit_request(
    to: Sequence[str], text: str, message_class: str, sender: str, *, schedule_at: float | None = None,
    validity_seconds: int | None = None, receipt: bool = True,
) -> SubmitRequest:
    """A submit checked as a frame's body is (_parse_submit), from values: the SMPP server face builds one
    per upstream submit_sm, and skips the map."""
    recipients = _parse_recipients({"to": list(to)})
    text = _submit_text(text)
    kind = _submit_class(message_class)
    if schedule_at is not None and not (math.isfinite(schedule_at) and 0 <= schedule_at <= MAX_SCHEDULE_AT):
        raise InvalidRequest(f"schedule_at must be in 0..{MAX_SCHEDULE_AT}", field="schedule_at")
    if validity_seconds is not None and not 1 <= validity_seconds <= MAX_VALIDITY_SECONDS:
        raise InvalidRequest(f"validity_seconds must be an integer in 1..{MAX_VALIDITY_SECONDS}",
                             field="validity_seconds")  # fmt: skip
    return SubmitRequest(recipients, text, kind, check_sender(sender), schedule_at, validity_seconds, receipt)


def _parse_query(body: Mapping[str, Any]) -> MessageQuery:
    _only_keys(body, _ENVELOPE_KEYS | {"message_id", "client_ref"})
    message_id = _text(body, "message_id", MAX_REF_CHARS)
    client_ref = _text(body, "client_ref", MAX_REF_CHARS)
    if (message_id is None) == (client_ref is None):
        raise InvalidRequest("exactly one of message_id and client_ref is required", field="message_id")
    return MessageQuery(message_id, client_ref)


def _parse_preview(body: Mapping[str, Any]) -> PreviewRequest:
    _only_keys(body, _ENVELOPE_KEYS | {"text", "class"})
    text = _req(body, "text", str)
    if len(text) > MAX_TEXT_CHARS:
        raise TextTooLong(f"text is over {MAX_TEXT_CHARS} characters", field="text")
    name = _get(body, "class", str, False)
    if name is None:
        return PreviewRequest(text)
    try:
        return PreviewRequest(text, MessageClass(name))
    except ValueError:
        known = ", ".join(MessageClass)
        raise InvalidRequest(f"class must be one of {known}", field="class") from None


def _parse_subscribe(body: Mapping[str, Any]) -> Subscribe:
    _only_keys(body, _ENVELOPE_KEYS | {"after", "window", "kinds"})
    return Subscribe(_int(body, "after", 0, MAX_SEQ), _int(body, "window", 1, MAX_WINDOW), _event_kinds(body))


def _event_kinds(body: Mapping[str, Any]) -> tuple[EventKind, ...] | None:
    names = _get(body, "kinds", list, False)
    if names is None:
        return None
    known = ", ".join(EventKind)
    if not names or not all(isinstance(name, str) for name in names):
        raise InvalidRequest(f"kinds must be a non-empty list of event kinds ({known})", field="kinds")
    try:
        return tuple(dict.fromkeys(EventKind(name) for name in names))
    except ValueError:
        raise InvalidRequest(f"kinds: unknown event kind; the kinds are {known}", field="kinds") from None


def _parse_ack(body: Mapping[str, Any]) -> Ack:
    _only_keys(body, _ENVELOPE_KEYS | {"seq"})
    return Ack(_req_int(body, "seq", 0, MAX_SEQ))


def _parse_ping(body: Mapping[str, Any]) -> Ping:
    _only_keys(body, _ENVELOPE_KEYS)
    return Ping()


MAX_LIST_PAGE = 10_000


def _parse_lists(body: Mapping[str, Any]) -> ListRequest:
    _only_keys(body, _ENVELOPE_KEYS | {"list", "action", "numbers", "after", "limit"})
    return parse_list_body(body)


def parse_list_body(body: Mapping[str, Any]) -> ListRequest:
    """The keys of a `lists` request (the admin socket's `lists` command takes the same); the caller has
    refused any other key."""
    try:
        name = ListName(_req(body, "list", str))
    except ValueError:
        raise InvalidRequest("list must be optout or blacklist", field="list") from None
    try:
        action = ListAction(_req(body, "action", str))
    except ValueError:
        raise InvalidRequest("action must be add, remove, check or page", field="action") from None
    if action is ListAction.PAGE:
        if "numbers" in body:
            raise InvalidRequest("a page takes after and limit, not numbers", field="numbers")
        return ListRequest(name, action, after=_text(body, "after", MAX_NUMBER_CHARS) or "",
                           limit=_int(body, "limit", 1, MAX_LIST_PAGE) or 1000)  # fmt: skip
    for key in ("after", "limit"):
        if key in body:
            raise InvalidRequest(f"{action} takes numbers, not after or limit", field=key)
    value = body.get("numbers")
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_RECIPIENTS:
        raise InvalidRequest(f"numbers must be a list of 1 to {MAX_RECIPIENTS} numbers", field="numbers")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise InvalidRequest(f"numbers[{index}] must be str", field=f"numbers[{index}]")
        check_number(item, f"numbers[{index}]")
    return ListRequest(name, action, tuple(value))


MAX_COMMAND_CHARS = 32


def _parse_admin(body: Mapping[str, Any]) -> AdminRequest:
    _only_keys(body, _ENVELOPE_KEYS | {"command", "args"})
    command = _req_text(body, "command", MAX_COMMAND_CHARS)
    args = _get(body, "args", dict, False)
    return AdminRequest(command, args or {})


_PARSERS: dict[Op, Any] = {
    Op.HELLO: _parse_hello,
    Op.SUBMIT: _parse_submit,
    Op.STATUS: _parse_query,
    Op.CANCEL: _parse_query,
    Op.PREVIEW: _parse_preview,
    Op.SUBSCRIBE: _parse_subscribe,
    Op.ACK: _parse_ack,
    Op.PING: _parse_ping,
    Op.LISTS: _parse_lists,
    Op.ADMIN: _parse_admin,
    Op.ACCOUNT: _parse_admin,
}


# --- requests as the clients send them --------------------------------------------------------------


def _compact(mapping: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in mapping.items() if value is not None}


def request_body(body: Body) -> dict[str, Any]:
    """The wire map of a request body, without op and id (the client adds those)."""
    if isinstance(body, SubmitRequest):
        return _compact(
            {
                "to": list(body.to),
                "text": body.text,
                "class": str(body.message_class),
                "sender": body.sender,
                "schedule_at": body.schedule_at,
                "validity_seconds": body.validity_seconds,
                "receipt": body.receipt,
                "client_ref": body.client_ref,
                "batch_id": body.batch_id,
            }
        )
    if isinstance(body, PreviewRequest):
        return _compact({"text": body.text, "class": str(body.message_class) if body.message_class else None})
    if isinstance(body, AdminRequest):
        return {"command": body.command, "args": dict(body.args)}
    if isinstance(body, Hello | MessageQuery | Subscribe | Ack):
        return _compact({name: getattr(body, name) for name in body.__slots__})
    if isinstance(body, ListRequest):
        out: dict[str, Any] = {"list": str(body.list), "action": str(body.action)}
        if body.action is ListAction.PAGE:
            return {**out, **_compact({"after": body.after or None, "limit": body.limit})}
        return {**out, "numbers": list(body.numbers)}
    return {}


# --- frames the server sends ------------------------------------------------------------------------


def _status_map(status: MessageStatus) -> dict[str, Any]:
    out = _compact({name: getattr(status, name) for name in MessageStatus.__slots__})
    if not status.possible_duplicate:  # sent only when true, as in events
        del out["possible_duplicate"]
    out["trail"] = [list(step) for step in status.trail]
    return out


def result_map(result: Result) -> dict[str, Any]:
    """The wire map of a result (docs/protocol.md lists each op's result keys)."""
    if isinstance(result, SubmitResult):
        # One map per recipient, keys in field order; `reason` and `number` are optional (the others are str).
        return {"messages": [_submitted_map(m) for m in result.messages], "duplicate": result.duplicate}
    if isinstance(result, tuple):
        return {"messages": [_status_map(status) for status in result]}
    if isinstance(result, CancelResult):
        return {"cancelled": list(result.cancelled)}
    if isinstance(result, ListResult):
        return {
            "entries": [_compact({name: getattr(e, name) for name in ListEntry.__slots__}) for e in result.entries],
            "next": result.next,
        }
    if isinstance(result, Ping):
        return {}
    if isinstance(result, AdminResult):
        return dict(result.body)
    if isinstance(result, PreviewResult):
        return _compact({name: getattr(result, name) for name in result.__slots__})
    return {name: getattr(result, name) for name in result.__slots__}


def _submitted_map(m: SubmittedMessage) -> dict[str, Any]:
    out = {"to": m.to, "message_id": m.message_id, "state": m.state}
    if m.reason is not None:
        out["reason"] = m.reason
    if m.number is not None:
        out["number"] = m.number
    if m.detail is not None:
        out["detail"] = m.detail
    return out


def result_frame(ident: int, result: Result) -> dict[str, Any]:
    return {"type": "result", "id": ident, "result": result_map(result)}


def error_frame(ident: int | None, error: UpstreamError, *, fatal: bool = False) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "id": ident, "code": str(error.code), "message": error.message}
    if error.field is not None:
        frame["field"] = error.field
    if fatal:
        frame["fatal"] = True
    return frame




def event_frame(event: Event) -> dict[str, Any]:
    """The frame of an event: its fields that are set (possible_duplicate only when true). Spelled out, not a
    loop over the fields: a subscriber receives two of these per message."""
    seq, kind, at, message_id, to, sender, text, reason, carrier, client_ref, batch_id, duplicate = event
    fields: dict[str, Any] = {"type": "event", "seq": seq, "kind": kind.value, "at": at}
    if message_id is not None:
        fields["message_id"] = message_id
    if to is not None:
        fields["to"] = to
    if sender is not None:
        fields["sender"] = sender
    if text is not None:
        fields["text"] = text
    if reason is not None:
        fields["reason"] = reason
    if carrier is not None:
        fields["carrier"] = carrier
    if client_ref is not None:
        fields["client_ref"] = client_ref
    if batch_id is not None:
        fields["batch_id"] = batch_id
    if duplicate:
        fields["possible_duplicate"] = True
    return fields


# --- the client's reading of server frames ----------------------------------------------------------


def _wire(mapping: object, what: str) -> dict[str, Any]:
    if not isinstance(mapping, dict):
        raise BadFrame(f"{what} must be a map")
    return mapping


def _optional_server_field(body: Mapping[str, Any], key: str, kind: type[T]) -> T | None:
    return _server_field(body, key, kind) if body.get(key) is not None else None


def _server_field(body: Mapping[str, Any], key: str, kind: type[T]) -> T:
    try:
        return _req(body, key, kind)
    except InvalidRequest as err:
        raise BadFrame(f"server sent a bad {key!r}: {err.message}") from None


def submit_result_from_wire(result: object) -> SubmitResult:
    body = _wire(result, "submit result")
    items = body.get("messages")
    messages = _submitted_fast(items) if type(items) is list else None
    if messages is None:
        return _submit_result_checked(body)
    return SubmitResult(messages, bool(body.get("duplicate", False)))


def _submitted_fast(items: list[Any]) -> tuple[SubmittedMessage, ...] | None:
    """The messages of a well-formed submit result (what the server sends: maps of str values), or None
    for anything else, which `_submit_result_checked` then reads or refuses with the error it names."""
    out = []
    for m in items:
        if type(m) is not dict:
            return None
        get = m.get
        to, message_id, state, reason = get("to"), get("message_id"), get("state", "accepted"), get("reason")
        number, detail = get("number"), get("detail")
        if type(to) is not str or type(message_id) is not str or type(state) is not str:
            return None
        if (reason is not None and type(reason) is not str) or (number is not None and type(number) is not str):
            return None
        if detail is not None and type(detail) is not str:
            return None
        out.append(SubmittedMessage(to, message_id, state, reason, number, detail))
    return tuple(out)


def _submit_result_checked(body: dict[str, Any]) -> SubmitResult:
    messages = tuple(
        SubmittedMessage(
            _server_field(m, "to", str),
            _server_field(m, "message_id", str),
            str(m.get("state", "accepted")),
            _opt_str(m, "reason"),
            _opt_str(m, "number"),
            _opt_str(m, "detail"),
        )
        for m in (_wire(item, "message") for item in _server_field(body, "messages", list))
    )
    return SubmitResult(messages, bool(body.get("duplicate", False)))


def _float(body: Mapping[str, Any], key: str) -> float:
    value = body.get(key, 0.0)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise BadFrame(f"server sent a bad {key!r}")
    return float(value)


def _opt_float(body: Mapping[str, Any], key: str) -> float | None:
    return None if body.get(key) is None else _float(body, key)


def _opt_str(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise BadFrame(f"server sent a bad {key!r}")
    return value


def statuses_from_wire(result: object) -> tuple[MessageStatus, ...]:
    body = _wire(result, "status result")
    out = []
    for item in _server_field(body, "messages", list):
        m = _wire(item, "status")
        out.append(
            MessageStatus(
                message_id=_server_field(m, "message_id", str),
                to=_server_field(m, "to", str),
                state=_server_field(m, "state", str),
                segments=int(m.get("segments", 0)),
                reason=_opt_str(m, "reason"),
                carrier=_opt_str(m, "carrier"),
                client_ref=_opt_str(m, "client_ref"),
                batch_id=_opt_str(m, "batch_id"),
                created_at=_float(m, "created_at"),
                updated_at=_float(m, "updated_at"),
                possible_duplicate=m.get("possible_duplicate") is True,
                trail=_trail(m.get("trail", [])),
                due_at=_opt_float(m, "due_at"),
            )
        )
    return tuple(out)


def _trail(raw: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, list) or not all(
        isinstance(s, list) and len(s) == 2 and all(isinstance(x, str) for x in s) for s in raw
    ):
        raise BadFrame(f"server sent a bad trail {raw!r}")
    return tuple((s[0], s[1]) for s in raw)


def list_result_from_wire(result: object) -> ListResult:
    body = _wire(result, "lists result")
    entries = []
    for item in _server_field(body, "entries", list):
        e = _wire(item, "list entry")
        at = e.get("at")
        entries.append(ListEntry(
            str(_server_field(e, "to", str)), e.get("number"), bool(_server_field(e, "listed", bool)),
            None if at is None else float(at), e.get("source"), e.get("note"), e.get("reason"), e.get("detail"),
        ))  # fmt: skip
    after = body.get("next")
    return ListResult(tuple(entries), None if after is None else str(after))


def cancel_result_from_wire(result: object) -> CancelResult:
    body = _wire(result, "cancel result")
    return CancelResult(tuple(str(item) for item in _server_field(body, "cancelled", list)))


def preview_result_from_wire(result: object) -> PreviewResult:
    body = _wire(result, "preview result")
    return PreviewResult(
        encoding=_server_field(body, "encoding", str),
        parts=_server_field(body, "parts", int),
        chars=_server_field(body, "chars", int),
        chars_left=_server_field(body, "chars_left", int),
        per_part=_server_field(body, "per_part", int),
        text=_optional_server_field(body, "text", str),
        reason=_optional_server_field(body, "reason", str),
        detail=_optional_server_field(body, "detail", str),
    )


def hello_result_from_wire(result: object) -> HelloResult:
    body = _wire(result, "hello result")
    return HelloResult(
        version=_server_field(body, "version", int),
        account=_server_field(body, "account", str),
        max_frame_bytes=_server_field(body, "max_frame_bytes", int),
        max_inflight=_server_field(body, "max_inflight", int),
    )


def subscribe_result_from_wire(result: object) -> SubscribeResult:
    body = _wire(result, "subscribe result")
    return SubscribeResult(_server_field(body, "after", int), _server_field(body, "window", int))


_EVENT_KINDS = {str(kind): kind for kind in EventKind}
_new_tuple = tuple.__new__


def event_from_wire(frame: Mapping[str, Any]) -> Event:
    """An event frame as an `Event`: one per event pushed, so the frames the server sends (exact types,
    a float `at`) are read without per-field calls; any other frame takes `_event_checked`, which reads it
    the same way or refuses it with the error it names."""
    get = frame.get
    seq, name, at = get("seq"), get("kind"), get("at")
    kind = _EVENT_KINDS.get(name) if type(name) is str else None
    if kind is not None and type(seq) is int and type(at) is float:
        # Event's fields in order; the optional ones are str or absent.
        values = (seq, kind, at, get("message_id"), get("to"), get("sender"), get("text"), get("reason"),
                  get("carrier"), get("client_ref"), get("batch_id"))  # fmt: skip
        for value in values[3:]:
            if value is not None and type(value) is not str:
                return _event_checked(frame)
        return _new_tuple(Event, (*values, get("possible_duplicate") is True))
    return _event_checked(frame)


def _event_checked(frame: Mapping[str, Any]) -> Event:
    try:
        kind = EventKind(_server_field(frame, "kind", str))
    except ValueError:
        raise BadFrame(f"server sent an unknown event kind {frame.get('kind')!r}") from None
    return Event(
        seq=_server_field(frame, "seq", int),
        kind=kind,
        at=_float(frame, "at"),
        **{name: _opt_str(frame, name) for name in Event._fields if name not in _NOT_STR},
        possible_duplicate=frame.get("possible_duplicate") is True,
    )


_NOT_STR = ("seq", "kind", "at", "possible_duplicate")
