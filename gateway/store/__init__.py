"""Durable message store on LMDB and its single group-commit writer.

    store = await trio.to_thread.run_sync(Store.open, StoreConfig(path=...))   # runs recovery
    writer = Writer(store)
    await nursery.start(writer.run)
    result = await writer.do(Submit(...))        # returns after the group commit, never before
    store.due(now_ms, after=cursor)              # short read transactions, never across an await

`config`, `keys`, `ops` and `records` import no lmdb and no trio; `Store` (LMDB) and `Writer` (trio) are imported
on first use (PEP 562), so a pure module that needs an op or a record (the engine's plan) loads neither.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gateway.store.config import MESSAGE_CLASSES, Recovery, StoreConfig
from gateway.store.ops import (
    Advance,
    AdvanceResult,
    CapCheck,
    Done,
    ForgetEarly,
    KeepMoPart,
    Mo,
    Op,
    Outcome,
    Overdue,
    Prepare,
    PrepareResult,
    Receipt,
    ReceiptResult,
    Recipient,
    Reroute,
    Result,
    SetBlacklist,
    SetCursor,
    SetOptOut,
    Submit,
    SubmitResult,
    Sweep,
    SweepResult,
)
from gateway.store.records import BatchCounters, CorruptRecord, EventKind, LogEvent, Message

if TYPE_CHECKING:
    from gateway.store.store import DueEntry, InvalidField, OpFailed, RecoveryReport, Store, UnknownMessage, WrongState
    from gateway.store.writer import Writer, WriterClosed

_SHELL = {
    "DueEntry": "store",
    "InvalidField": "store",
    "OpFailed": "store",
    "RecoveryReport": "store",
    "Store": "store",
    "UnknownMessage": "store",
    "WrongState": "store",
    "Writer": "writer",
    "WriterClosed": "writer",
}

__all__ = [
    "MESSAGE_CLASSES",
    "Advance",
    "AdvanceResult",
    "BatchCounters",
    "CapCheck",
    "CorruptRecord",
    "Done",
    "DueEntry",
    "EventKind",
    "ForgetEarly",
    "InvalidField",
    "KeepMoPart",
    "LogEvent",
    "Message",
    "Mo",
    "Op",
    "OpFailed",
    "Outcome",
    "Overdue",
    "Prepare",
    "PrepareResult",
    "Receipt",
    "ReceiptResult",
    "Recipient",
    "Recovery",
    "RecoveryReport",
    "Reroute",
    "Result",
    "SetBlacklist",
    "SetCursor",
    "SetOptOut",
    "Store",
    "StoreConfig",
    "Submit",
    "SubmitResult",
    "Sweep",
    "SweepResult",
    "UnknownMessage",
    "Writer",
    "WriterClosed",
    "WrongState",
]


def __getattr__(name: str) -> Any:
    module = _SHELL.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway.store' has no attribute {name!r}")
    return getattr(importlib.import_module(f"gateway.store.{module}"), name)
