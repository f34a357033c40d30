"""ESME binds to carrier SMSCs and the per-carrier bind pools.

Public API: `CarrierPool`, `Bind`, `BindStatus`, configs (`CarrierConfig`, `BindConfig`, `BindMode`), and the
records exchanged with the engine (`SubmitJob`, `SubmitOutcome`, `OutcomeKind`, `Inbound`).

`core.py` (what a bind decides), `config.py`, `jobs.py` and `bucket.py` are pure; `bind.py`, `link.py` and
`pool.py` run under trio. The names below are imported on first use (PEP 562), so importing a pure module of
this package (`gateway.carriers.core`, or `jobs` from the engine's pure plan) does not import trio.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.carriers.bind import Bind, BindStatus
    from gateway.carriers.config import BindConfig, BindMode, CarrierConfig
    from gateway.carriers.core import BindState
    from gateway.carriers.jobs import Inbound, OutcomeKind, SubmitJob, SubmitOutcome
    from gateway.carriers.pool import CarrierPool

_WHERE = {
    "Bind": "bind",
    "BindStatus": "bind",
    "BindConfig": "config",
    "BindMode": "config",
    "CarrierConfig": "config",
    "BindState": "core",
    "Inbound": "jobs",
    "OutcomeKind": "jobs",
    "SubmitJob": "jobs",
    "SubmitOutcome": "jobs",
    "CarrierPool": "pool",
}
__all__ = [
    "Bind",
    "BindConfig",
    "BindMode",
    "BindState",
    "BindStatus",
    "CarrierConfig",
    "CarrierPool",
    "Inbound",
    "OutcomeKind",
    "SubmitJob",
    "SubmitOutcome",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway.carriers' has no attribute {name!r}")
    return getattr(importlib.import_module(f"gateway.carriers.{module}"), name)
