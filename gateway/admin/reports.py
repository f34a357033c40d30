"""A batch's report and its recipients' details as a platform shows them (pure; docs/admin.md).

The store keeps counters in the transactions that change its messages (records.BatchCounters), so a report
of a batch of a million recipients reads one record. Failures are counted by carrier and stored reason
(`undeliverable:001`, `carrier_rejected:0x00000045`): the carrier's failure table (config
`[carriers.NAME.failure_reasons]`, policy/categories.py) maps them to what a user understands (absent
handset, blacklisted by the carrier, ...) when the report is read, so a table fixed later applies to old
batches too, and the raw codes stay in the report beside the categories.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.lifecycle import State
from gateway.policy.categories import FailureTable
from gateway.store.records import BatchCounters, Message

STATES = ("delivered", "failed", "refused", "waiting")


def report(batch_id: str, counters: BatchCounters, table: FailureTable) -> dict[str, Any]:
    """targeted, valid, refused by reason, submitted, delivered, failed by category and by raw reason,
    waiting for a receipt, in progress, parts billed (carriers took) and charged (delivered)."""
    by_category: dict[str, int] = {}
    raw: list[dict[str, Any]] = []
    for key, n in sorted(counters.failed_at.items()):
        carrier, _, reason = key.partition("\x1f")
        category = table.category(carrier, reason)
        by_category[category] = by_category.get(category, 0) + n
        raw.append({"carrier": carrier or None, "reason": reason, "category": category, "count": n})
    return {
        "batch_id": batch_id,
        "targeted": counters.targeted,
        "valid": counters.valid,
        "refused": sum(counters.refused.values()),
        "refused_by_reason": dict(sorted(counters.refused.items())),
        "submitted": counters.submitted,
        "delivered": counters.delivered,
        "failed": sum(counters.failed.values()),
        "failed_by_category": dict(sorted(by_category.items())),
        "failed_by_reason": raw,
        "waiting_receipt": counters.waiting_receipt,
        "in_progress": counters.in_progress,
        "parts_billed": counters.billed,
        "parts_charged": counters.charged,
    }


def merged(parts: Iterable[BatchCounters]) -> BatchCounters:
    """The counters of several runs of a recurring batch added up."""
    sums: dict[str, Any] = {name: 0 for name in _INTS}
    maps: dict[str, Any] = {name: {} for name in _MAPS}
    for c in parts:
        for name in _INTS:
            sums[name] += getattr(c, name)
        for name in _MAPS:
            into = maps[name]
            for key, n in getattr(c, name).items():
                into[key] = into.get(key, 0) + n
    return BatchCounters(**sums, **maps)


_INTS = ("targeted", "valid", "submitted", "delivered", "billed", "ended", "ended_submitted", "charged")
_MAPS = ("failed", "refused", "failed_at")


def outcome(m: Message) -> str:
    """Which of STATES a batch message is in: refused at accept (the policy's REJECTED; a carrier's refusal
    is REJECTED with a carrier_rejected: reason, and counts as failed), ended delivered or failed, or
    still waiting."""
    state = m.state
    if not state.is_final:
        return "waiting"
    if state is State.DELIVERED:
        return "delivered"
    if state is State.REJECTED and not m.reason.startswith("carrier_rejected:"):
        return "refused"
    return "failed"


def recipient(m: Message, table: FailureTable) -> dict[str, Any]:
    """One recipient's row of a batch's details (and of its CSV export)."""
    state = outcome(m)
    reason = m.reason or None
    return {
        "message_id": str(m.id),
        "to": m.recipient,
        "state": state,
        "status": m.state.name.lower(),
        "reason": reason,
        "category": table.category(m.carrier, m.reason) if state == "failed" and reason else None,
        "carrier": m.carrier or None,
        "parts": len(m.segments),
        "created_at": m.created_ms / 1000,
        "final_at": m.final_ms / 1000 if m.final_ms else None,
    }


CSV_COLUMNS = ("message_id", "to", "state", "status", "reason", "category", "carrier", "parts", "created_at",
               "final_at")  # fmt: skip
