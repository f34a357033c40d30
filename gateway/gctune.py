"""Garbage collector settings for the gateway's long-running processes (event loop, store writer, simulator).

CPython's default (700, 10, 10) runs a young collection every 700 net allocations of container objects. The
gateway allocates a handful of short-lived objects per PDU (decoded PDUs, events, ops, results), nearly all
freed by reference counting, yet the net count still crosses 700 about every millisecond at full rate, and
every tenth young collection scans the middle generation, every hundredth everything alive: the windows of
PDUs in flight, the queues, the session state. Measured in the end-to-end benchmark (bench/e2e.py, UCS-2):
1,282 young, 116 middle and 10 full collections took 0.94 s of the event loop's 4.5 s of CPU.

`tune()` freezes what start-up allocated (modules, config, tables: never garbage, never scanned again) and
raises the young threshold so that a collection runs per 50,000 net allocations. Cycles are still
collected, just later: at most that many objects of cyclic garbage wait for the next pass.
"""

from __future__ import annotations

import gc

# Net container allocations between young collections; middle every 20 of those, full every 100 middle
# (and only when the long-lived set grew by a quarter, CPython's own rule).
THRESHOLDS = (50_000, 20, 100)


def tune() -> None:
    """Call once, after start-up and before the main loop."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
