"""[trio] ESME binds to carrier SMSCs and the per-carrier bind pools.

Public API: `CarrierPool`, `Bind`, `BindStatus`, configs (`CarrierConfig`, `BindConfig`, `BindMode`), and the
records exchanged with the engine (`SubmitJob`, `SubmitOutcome`, `OutcomeKind`, `Inbound`).
"""

from gateway.carriers.bind import Bind, BindState, BindStatus
from gateway.carriers.config import BindConfig, BindMode, CarrierConfig
from gateway.carriers.jobs import Inbound, OutcomeKind, SubmitJob, SubmitOutcome
from gateway.carriers.pool import CarrierPool

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
