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


Command = Status | Binds | Carrier | Find | Show | Reload | Lists | Health | Accounts | Receipts


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
}
