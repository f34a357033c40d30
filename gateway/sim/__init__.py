"""[trio] The built-in carrier SMSC simulator (receipt mix, throttling, faults, MO injection, counters)."""

from gateway.sim.config import IdFormat, ReceiptOutcome, ReceiptStyle, SimConfig
from gateway.sim.counters import Counters
from gateway.sim.server import Simulator

__all__ = ["Counters", "IdFormat", "ReceiptOutcome", "ReceiptStyle", "SimConfig", "Simulator"]
