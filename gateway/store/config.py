"""Store configuration (the lead maps the [store] TOML table onto it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from gateway.config import choices, limits


class Recovery(Enum):
    """What a segment left in "submitting" by a crash becomes when the store reopens."""

    # Send it again, flagged as a possible duplicate: nothing is lost, a handset may get it twice.
    AT_LEAST_ONCE = "at_least_once"
    # Mark it "unknown": never sent twice, may be lost if the carrier never got it.
    AT_MOST_ONCE = "at_most_once"


MESSAGE_CLASSES = ("marketing", "notification", "verification")


def _default_recovery() -> dict[str, Recovery]:
    # A marketing text twice annoys; a one-time password that never arrives locks the user out.
    return {
        "marketing": Recovery.AT_MOST_ONCE,
        "notification": Recovery.AT_LEAST_ONCE,
        "verification": Recovery.AT_LEAST_ONCE,
    }


@dataclass(frozen=True, slots=True)
class StoreConfig:
    path: str
    map_size_bytes: int = field(default=1 << 30, metadata=limits(1 << 20, None))
    # Double the map (up to the disk) when it fills, instead of refusing new work.
    map_grow: bool = True
    # A group commit closes at this many operations ...
    group_max: int = field(default=2000, metadata=limits(1, None))
    # ... or when callers stop adding to it, but never lingers longer than this (see writer.py).
    group_wait_seconds: float = field(default=0.002, metadata=limits(0.0, 1.0))
    # Operations waiting for the writer; callers block (backpressure) when it is full.
    queue_max: int = field(default=10000, metadata=limits(1, None))
    # fsync at every commit. Off only for tests and throwaway benchmarks: acked work could be lost.
    sync: bool = True
    # 0: a final message is removed at the next retention sweep.
    retention_days: float = field(default=30.0, metadata=limits(0.0, 36500.0))
    # By message class; a class the table leaves out keeps its default (`_default_recovery`).
    recovery: dict[str, Recovery] = field(default_factory=_default_recovery, metadata=choices(*MESSAGE_CLASSES))
    # Rows per retention / recovery transaction, so the writer is never held for long.
    sweep_batch: int = field(default=500, metadata=limits(1, None))
    # A receipt whose submit_sm_resp has not come after this long leaves the early-receipt table for the
    # unmatched one (kept, counted and listed for the operator; purged after retention_days). The retention
    # sweep moves it, so it may wait one housekeeping interval longer.
    early_receipt_seconds: float = field(default=600.0, metadata=limits(1.0, 30 * 86400.0))
    # Each carrier's receipt timeout (seconds): recovery gives a segment it marks unknown after a crash its
    # carrier's receipt deadline. The gateway fills it from [[carriers]] receipt_timeout_seconds; a carrier
    # not named here gets lifecycle.RECEIPT_TIMEOUT_MS.
    receipt_timeouts: dict[str, float] = field(default_factory=dict)
    # Run the write transactions in a child process (gateway/store/worker.py), on another core than the
    # event loop; false: in a thread of the gateway process (tests with a store of their own do).
    writer_process: bool = True

    def __post_init__(self) -> None:
        # `[store] recovery = { notification = "at_most_once" }` changes notification alone: marketing keeps
        # at-most-once, which a table replacing the defaults whole would have silently turned to at-least-once.
        object.__setattr__(self, "recovery", {**_default_recovery(), **self.recovery})

    def recovery_for(self, message_class: str) -> Recovery:
        return self.recovery.get(message_class, Recovery.AT_LEAST_ONCE)
