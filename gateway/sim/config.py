"""Simulator configuration: frozen dataclasses, from CLI options or a TOML file (`[sim]` table or top level)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from gateway.config import choices, limits
from gateway.errors import ConfigError
from gateway.smpp.constants import CommandStatus, MessageState


class IdFormat(StrEnum):
    HEX = "hex"
    DECIMAL = "decimal"


class ReceiptStyle(StrEnum):
    """How a receipt deliver_sm is written (styles seen from real carriers; receipts.py builds each):

    TLV          Appendix B text with the id as the submit_sm_resp gave it, plus receipted_message_id,
                 message_state and network_error_code TLVs (SMPP 3.4 5.3.2)
    PADDED       no TLVs; the text's id zero-padded to ten characters (`id:000018c5a3`)
    DECIMAL      no TLVs; the text's id in decimal, whatever base the response used
    COMPACT      no TLVs; upper-case keys without spaces, the id in decimal padded to ten digits, 12-digit
                 dates with a four-digit year (`ID:0000012345 SUB:001 DLVRD:001 SUBMITDATE:202612031045
                 DONEDATE:202612031046 STAT:DELIVRD ERR:000 TEXT:`)
    FAILED       no TLVs; `stat:FAILED` for every outcome, with its err (001 when it has none)
    """

    TLV = "tlv"
    PADDED = "padded"
    DECIMAL = "decimal"
    COMPACT = "compact"
    FAILED = "failed"


# SMPP 3.4 Appendix B: the `stat:` word of each final state, and its message_state (5.2.28).
STAT_WORDS: dict[str, MessageState] = {
    "DELIVRD": MessageState.DELIVERED,
    "EXPIRED": MessageState.EXPIRED,
    "DELETED": MessageState.DELETED,
    "UNDELIV": MessageState.UNDELIVERABLE,
    "ACCEPTD": MessageState.ACCEPTED,
    "UNKNOWN": MessageState.UNKNOWN,
    "REJECTD": MessageState.REJECTED,
    "ENROUTE": MessageState.ENROUTE,
}


@dataclass(frozen=True, slots=True)
class ReceiptOutcome:
    """One entry of the receipt mix: a final state, its `err:` code, and a relative weight."""

    stat: str = field(default="DELIVRD", metadata=choices(*STAT_WORDS))
    err: int = field(default=0, metadata=limits(0, None))
    weight: float = field(default=1.0, metadata=limits(0.0, None))

    @property
    def message_state(self) -> MessageState:
        return STAT_WORDS[self.stat]


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    # system_id -> password; binds with another system_id get ESME_RINVSYSID, a wrong password ESME_RINVPASWD.
    credentials: tuple[tuple[str, str], ...] = (("test", "secret"),)
    system_id: str = "gatewaysim"
    id_format: IdFormat = IdFormat.HEX
    # First receipt id; None starts from the wall clock so ids stay unique across restarts too.
    id_start: int | None = field(default=None, metadata=limits(0, None))
    receipt_delay_seconds: float = field(default=0.0, metadata=limits(0.0, None))
    receipt_mix: tuple[ReceiptOutcome, ...] = (ReceiptOutcome(),)
    # The styles receipts are written in, each with a relative weight (TOML: {tlv = 1, decimal = 1}, or one
    # style's name; options: "tlv:1,compact:2"). The gateway's [simulators.settings] takes the table or
    # [["tlv", 1.0], ...] (gateway.config reads a tuple of pairs from either).
    receipt_styles: tuple[tuple[ReceiptStyle, float], ...] = ((ReceiptStyle.TLV, 1.0),)
    # Share of receipts sent before the submit_sm_resp (SMSCs do this under load; the engine must cope).
    receipt_before_response_rate: float = field(default=0.0, metadata=limits(0.0, 1.0))
    # Hold every successful submit_sm_resp this long (a slow SMSC). With receipt_before_response_rate, the
    # receipt then reaches the ESME well before the response it must be matched to.
    response_delay_seconds: float = field(default=0.0, metadata=limits(0.0, None))
    # Above this many submit_sm a second (per bind), answer ESME_RTHROTTLED; 0 disables.
    throttle_tps: float = field(default=0.0, metadata=limits(0.0, None))
    error_rate: float = field(default=0.0, metadata=limits(0.0, 1.0))
    error_status: int = field(default=CommandStatus.ESME_RSYSERR, metadata=limits(1, 0xFFFFFFFF))
    # Destination prefixes answered with this command_status instead of a message_id (the longest prefix
    # wins; TOML: {"4479" = 0x08}).
    destination_errors: tuple[tuple[str, int], ...] = ()
    # Close the connection, unanswered, on every Nth PDU received on it; 0 disables.
    drop_every_pdus: int = field(default=0, metadata=limits(0, None))
    mo_interval_seconds: float = field(default=0.0, metadata=limits(0.0, None))
    mo_source: str = "447700900001"
    mo_destination: str = "ACME"
    # deliver_sm outstanding per connection, and how long to wait for deliver_sm_resp.
    window: int = field(default=1000, metadata=limits(1, None))
    response_timeout_seconds: float = field(default=30.0, metadata=limits(0.1, None))
    seed: int | None = None
    # A receipt that cannot be delivered now (no receiver bound, window full) waits; at most this many.
    max_pending_receipts: int = field(default=1_000_000, metadata=limits(0, None))

    def __post_init__(self) -> None:
        # The server takes the first prefix that matches: the longest must come first, however written.
        object.__setattr__(self, "destination_errors", tuple(sorted(self.destination_errors, key=lambda p: -len(p[0]))))

    def mistakes(self) -> list[tuple[str, str]]:
        """What no one value's limits say, as (key, reason) (gateway.config and `from_mapping` report them)."""
        found = []
        if not sum(o.weight for o in self.receipt_mix) > 0:
            found.append(("receipt_mix", "needs an outcome with a weight above 0"))
        weights = [w for _, w in self.receipt_styles]
        if any(w < 0 for w in weights) or not sum(weights) > 0:
            found.append(("receipt_styles", "needs a style with a weight above 0, and no weight below 0"))
        for prefix, status in self.destination_errors:
            if not 0 < status <= 0xFFFFFFFF:
                found.append(("destination_errors", f"{prefix!r}: {status} is not an error command_status"))
        return found

    def password_for(self, system_id: str) -> str | None:
        for sid, password in self.credentials:
            if sid == system_id:
                return password
        return None


_SIMPLE = {f.name for f in fields(SimConfig)} - {
    "credentials", "receipt_mix", "id_format", "receipt_styles", "destination_errors",
}  # fmt: skip


def parse_mix(text: str) -> tuple[ReceiptOutcome, ...]:
    """`DELIVRD:0.9,UNDELIV/1:0.1` -> receipt mix (stat, optional /err, weight)."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        head, _, weight = part.partition(":")
        stat, _, err = head.partition("/")
        stat = stat.upper()
        if stat not in STAT_WORDS:
            raise ValueError(f"unknown stat {stat!r}; one of {', '.join(STAT_WORDS)}")
        out.append(ReceiptOutcome(stat, int(err or 0), float(weight or 1)))
    if not out:
        raise ValueError("empty receipt mix")
    return tuple(out)


def parse_styles(value: Any) -> tuple[tuple[ReceiptStyle, float], ...]:
    """`compact`, `tlv:1,decimal:2`, {"tlv": 1, "decimal": 2} or [["tlv", 1], ...] -> receipt styles."""
    if isinstance(value, str):
        pairs = [p.strip().partition(":") for p in value.split(",") if p.strip()]
        items: list[tuple[Any, Any]] = [(name, weight or 1) for name, _, weight in pairs]
    elif isinstance(value, dict):
        items = list(value.items())
    else:
        items = [tuple(v) for v in value]
    out = tuple((ReceiptStyle(str(name).strip()), float(weight)) for name, weight in items)
    if not out or any(w < 0 for _, w in out) or not sum(w for _, w in out) > 0:
        raise ValueError("receipt styles need a style with a positive weight")
    return out


def parse_destination_errors(value: Any) -> tuple[tuple[str, int], ...]:
    """{"4479": 8} or "4479:0x08,4470:11" -> (prefix, command_status) pairs, the longest prefix first."""
    if isinstance(value, str):
        pairs = [p.strip().partition(":") for p in value.split(",") if p.strip()]
        value = {prefix: status for prefix, _, status in pairs}
    items = value.items() if isinstance(value, dict) else (tuple(v) for v in value)
    out = []
    for prefix, status in items:
        code = int(status, 0) if isinstance(status, str) else int(status)
        if not 0 < code <= 0xFFFFFFFF:
            raise ValueError(f"{prefix}: {code} is not an error command_status")
        out.append((str(prefix), code))
    return tuple(sorted(out, key=lambda p: -len(p[0])))


def from_mapping(data: dict[str, Any], source: str = "<options>", base: SimConfig | None = None) -> SimConfig:
    """Build a SimConfig from plain values, reporting every bad key at once."""
    problems: list[tuple[str, str, str]] = []
    changes: dict[str, Any] = {}
    defaults = base or SimConfig()
    for key, value in data.items():
        try:
            changes[key] = _convert(key, value, getattr(defaults, key, None))
        except (ValueError, TypeError, KeyError) as err:
            problems.append((source, key, str(err)))
    if problems:
        raise ConfigError(problems)
    cfg = replace(defaults, **changes)
    mistakes = [(source, key, reason) for key, reason in cfg.mistakes()]
    if mistakes:
        raise ConfigError(mistakes)
    return cfg


def _convert(key: str, value: Any, default: Any) -> Any:
    if key == "credentials":
        if isinstance(value, dict):
            return tuple((str(k), str(v)) for k, v in value.items())
        return tuple((str(k), str(v)) for k, v in (item.split(":", 1) for item in value))
    if key == "receipt_mix":
        if isinstance(value, str):
            return parse_mix(value)
        return tuple(
            ReceiptOutcome(str(e["stat"]).upper(), int(e.get("err", 0)), float(e.get("weight", 1))) for e in value
        )
    if key == "id_format":
        return IdFormat(value)
    if key == "receipt_styles":
        return parse_styles(value)
    if key == "destination_errors":
        return parse_destination_errors(value)
    if key not in _SIMPLE:
        raise KeyError("unknown option")
    if default is None or value is None:
        return None if value is None else int(value)
    return type(default)(value)


def load_toml(path: str | Path, base: SimConfig | None = None) -> SimConfig:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError([(str(path), "", str(err))]) from err
    table = data.get("sim", data)
    return from_mapping({k: v for k, v in table.items() if k not in ("host", "port")}, str(path), base)
