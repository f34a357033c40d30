"""[trio] The built-in carrier SMSC simulator (receipt mix, throttling, faults, MO injection, counters)."""

from gateway.sim.config import IdFormat, ReceiptOutcome, SimConfig
from gateway.sim.counters import Counters
from gateway.sim.server import Simulator

__all__ = ["Counters", "IdFormat", "ReceiptOutcome", "SimConfig", "Simulator"]
