"""Carrier and bind configuration as frozen dataclasses.

The TOML loader (gateway/config.py) builds these; every field has a default that suits a typical carrier
account, so a test or a benchmark names only what it changes. Secrets never live here: a bind names the
environment variable or the file that holds its password, and `resolve_password()` reads it when binding,
so the password is never in a repr, a log line or a config dump.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError
from gateway.smpp.constants import INTERFACE_VERSION_34


class BindMode(StrEnum):
    """SMPP 3.4 2.2: the three bind types, plus a transmitter and a receiver opened together."""

    TRANSMITTER = "transmitter"
    RECEIVER = "receiver"
    TRANSCEIVER = "transceiver"
    TX_RX_PAIR = "tx+rx"

    @property
    def transmits(self) -> bool:
        return self is not BindMode.RECEIVER

    @property
    def receives(self) -> bool:
        return self is not BindMode.TRANSMITTER


@dataclass(frozen=True, slots=True, kw_only=True)
class BindConfig:
    name: str = "bind"
    host: str = "127.0.0.1"
    port: int = 2775
    # TLS: on when `tls` is true; `tls_ca_file` replaces the system trust store, the cert/key pair is the
    # client certificate some carriers ask for.
    tls: bool = False
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_server_name: str | None = None
    system_id: str = ""
    password_env: str | None = None
    password_file: str | None = None
    system_type: str = ""
    mode: BindMode = BindMode.TRANSCEIVER
    interface_version: int = INTERFACE_VERSION_34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""
    # Outstanding submit_sm allowed on the wire (SMPP 3.4 2.5 calls this the window).
    window: int = 10
    # Submits per second; 0 means no limit.
    tps: float = 0.0
    response_timeout_seconds: float = 30.0
    bind_timeout_seconds: float = 10.0
    enquire_link_interval_seconds: float = 30.0
    reconnect_min_seconds: float = 1.0
    reconnect_max_seconds: float = 60.0
    throttle_backoff_min_seconds: float = 0.5
    throttle_backoff_max_seconds: float = 30.0
    # After a bind refused for its credentials (ESME_RBINDFAIL, ESME_RINVPASWD, ESME_RINVSYSID): retry this
    # often (give or take 10%), not on the network back-off: credentials rarely fix themselves.
    bind_refused_retry_seconds: float = 300.0
    # deliver_sm/data_sm handed to the engine and not yet acknowledged; reading stops at this bound.
    max_unacked_inbound: int = 1000
    stop_grace_seconds: float = 5.0

    def __post_init__(self) -> None:
        problems = _check(self, _BIND_RANGES)
        if self.reconnect_min_seconds > self.reconnect_max_seconds:
            problems.append(
                f"reconnect_min_seconds: must be at most reconnect_max_seconds ({self.reconnect_max_seconds}), "
                f"got {self.reconnect_min_seconds}"
            )
        if self.throttle_backoff_min_seconds > self.throttle_backoff_max_seconds:
            problems.append(
                "throttle_backoff_min_seconds: must be at most throttle_backoff_max_seconds "
                f"({self.throttle_backoff_max_seconds}), got {self.throttle_backoff_min_seconds}"
            )
        if problems:
            raise ValueError("; ".join(problems))

    def resolve_password(self) -> str:
        """The password, read now from the environment or the file. Raises ConfigError when missing."""
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError([("<env>", self.password_env, "environment variable not set")])
            return value
        if self.password_file is not None:
            try:
                return Path(self.password_file).read_text(encoding="utf-8").strip("\r\n")
            except OSError as err:
                raise ConfigError([(self.password_file, "password_file", str(err))]) from err
        return ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CarrierConfig:
    name: str
    binds: tuple[BindConfig, ...] = ()
    # Bounded channels between the engine and the pool (STYLE: never math.inf).
    job_queue_size: int = 1000
    results_queue_size: int = 1000
    inbound_queue_size: int = 1000
    # The account's contracted submits a second over all its binds (and, in a cluster, every node's binds:
    # docs/scaling.md); 0: only each bind's own `tps`.
    account_tps: float = 0.0

    def __post_init__(self) -> None:
        problems = _check(self, _CARRIER_RANGES)
        if problems:
            raise ValueError("; ".join(problems))


# (low, high) of each number, inclusive; None leaves a side open. `_POSITIVE` excludes 0 itself.
_POSITIVE = 1e-9
_BIND_RANGES: dict[str, tuple[float | None, float | None]] = {
    "port": (1, 65535),
    "interface_version": (0, 255),
    "addr_ton": (0, 255),
    "addr_npi": (0, 255),
    # SMPP 3.4 5.2.1: sequence numbers are 31 bits, but no SMSC grants a window anywhere near that.
    "window": (1, 65535),
    "tps": (0, None),
    "response_timeout_seconds": (_POSITIVE, None),
    "bind_timeout_seconds": (_POSITIVE, None),
    "enquire_link_interval_seconds": (0, None),  # 0 disables
    "reconnect_min_seconds": (_POSITIVE, None),
    "reconnect_max_seconds": (_POSITIVE, None),
    "throttle_backoff_min_seconds": (_POSITIVE, None),
    "throttle_backoff_max_seconds": (_POSITIVE, None),
    "bind_refused_retry_seconds": (_POSITIVE, None),
    "max_unacked_inbound": (1, None),
    "stop_grace_seconds": (0, None),
}
_CARRIER_RANGES: dict[str, tuple[float | None, float | None]] = {
    "job_queue_size": (1, None),
    "results_queue_size": (1, None),
    "inbound_queue_size": (1, None),
    "account_tps": (0, None),
}


def _check(obj: Any, ranges: dict[str, tuple[float | None, float | None]]) -> list[str]:
    """Every number of `obj` outside its range, as "name: must be ..., got value"."""
    problems = []
    for f in fields(obj):
        if f.name not in ranges:
            continue
        value = getattr(obj, f.name)
        low, high = ranges[f.name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"{f.name}: must be a number, got {value!r}")
        elif not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
            problems.append(f"{f.name}: must be {_describe(low, high)}, got {value!r}")
    return problems


def _describe(low: float | None, high: float | None) -> str:
    if low == _POSITIVE:
        return "a finite number above 0"
    if high is None:
        return f"a finite number, at least {low:g}" if low is not None else "a finite number"
    return f"{low:g}..{high:g}"
