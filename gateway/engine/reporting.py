"""Batch reports and balances as answers [reads the store]: the same maps on the admin socket (any account,
docs/admin.md) and on the upstream socket's `account` op (the connection's own account, docs/protocol.md).

Each answer reads counters and indexes the store keeps in the transactions that change the messages: a
report of a batch of a million recipients reads one record, a page of its failures reads a page.
"""

from __future__ import annotations

from typing import Any

from gateway.admin import reports
from gateway.admin.commands import Balance, Batch
from gateway.engine.batches import counters as run_counters
from gateway.engine.batches import describe
from gateway.policy.categories import FailureTable
from gateway.store.ops import BalanceResult
from gateway.upstream.errors import NotFound

# The store's read methods these answers use (gateway.store.Store; a Protocol would repeat its signatures).
Store = Any


def batch_answer(store: Store, table: FailureTable, command: Batch, account: str) -> dict[str, Any]:
    if command.action == "list":
        # The batches with counters (submits that named one, runs "ID#n") and those made with `batch create`
        # (a draft or a pending one has no counters yet), merged by id: a made batch with its definition.
        after, limit = command.batch_id or "", command.limit
        with_counters = dict(store.batch_ids(account, after, limit))
        made = dict(store.batch_defs(account, after, limit))
        ids = sorted(with_counters.keys() | made.keys())[:limit]
        batches = []
        for batch_id in ids:
            b = made.get(batch_id)
            total = run_counters(store, account, batch_id, b) if b is not None else with_counters[batch_id]
            entry = reports.report(batch_id, total, table)
            if b is not None:
                entry["batch"] = describe(batch_id, b, total)
            batches.append(entry)
        return {"account": account, "batches": batches, "next": ids[-1] if len(ids) == limit else None}
    batch_id = command.batch_id or ""
    definition = store.batch_def(account, batch_id) if "#" not in batch_id else None
    if definition is not None and command.action == "show":
        # A batch made with `batch create`: its definition, and its runs' counters added up (each run
        # of a recurring batch is reported on its own as "ID#n").
        counted = run_counters(store, account, batch_id, definition)
        answer = reports.report(batch_id, counted, table)
        return {"account": account, **answer, "batch": describe(batch_id, definition, counted)}
    counters = store.batch(account, batch_id)
    if counters is None:
        raise NotFound(f"no batch {batch_id!r} of account {account!r}")
    if command.action == "show":
        return {"account": account, **reports.report(batch_id, counters, table)}
    page, after = store.batch_details(account, batch_id, command.outcome, command.after, command.limit, command.reason)
    return {
        "account": account,
        "batch_id": batch_id,
        "recipients": [reports.recipient(m, table) for m in page],
        "next": str(after) if after else None,
    }


def balance_answer(store: Store, command: Balance, account: str, bal: BalanceResult | None = None) -> dict[str, Any]:
    """The balance (`bal` when a top-up just answered it), and its statement when asked."""
    if bal is None:
        bal = store.balance(account)
    body: dict[str, Any] = {
        "account": account, "limited": bal.limited, "available": bal.available if bal.limited else None,
        "reserved": bal.reserved, "charged": bal.charged,
    }  # fmt: skip
    if command.action == "statement":
        entries = store.statement(account, int(command.since * 1000), command.limit)
        body["statement"] = [
            {"at": e.at_ms // 1000, "reserved": e.reserved, "charged": e.charged, "released": e.released,
             "topped_up": e.topped_up, "note": e.note or None}
            for e in entries
        ]  # fmt: skip
        # the statement runs oldest first; a full page names where the next one starts
        body["next"] = entries[-1].at_ms // 1000 + 1 if len(entries) >= command.limit else None
    return body
