"""Carrier and bind configuration as frozen dataclasses.

The TOML loader (gateway/config.py) builds these; every field has a default that suits a typical carrier
account, so a test or a benchmark names only what it changes. Secrets never live here: a bind names the
environment variable or the file that holds its password, and `resolve_password()` reads it when binding,
so the password is never in a repr, a log line or a config dump.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

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
    # deliver_sm/data_sm handed to the engine and not yet acknowledged; reading stops at this bound.
    max_unacked_inbound: int = 1000
    stop_grace_seconds: float = 5.0

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
