"""Store operations, results and errors as msgpack, for the writer process (`gateway/store/worker.py`).

No LMDB and no trio here (only the error types of store.py). A group crosses as one frame each way:

    request   [now_ms, [op, ...]]                    ops as [tag, *fields]
    reply     [last_seq, [result, ...]]              results as [tag, *fields]; a per-op error as
                                                     [ERROR, kind, *args]
              [last_seq, None, kind, message]        the whole group failed (StoreFull, a bug)

The two results of every segment's round trip have a short form for their usual value: an
AdvanceResult that was neither ignored nor applied an early receipt is [tag, message_id, state], a
matched ReceiptResult with a state that was not ignored and did not end its message [tag, message_id,
segment, state].

Tags are positions in OP_TYPES / RESULT_TYPES: add new types at the end. Fields go in dataclass field
order; nested values (recipients, the frequency cap, lifecycle events) are arrays of their fields, enums
their ints, portability rows [number, network] pairs. Decoding rebuilds the same objects, so the writer's
callers cannot tell the two writers apart.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import fields
from operator import attrgetter
from typing import Any

import msgpack

from gateway.errors import ClientRefReused, GatewayError, StoreError
from gateway.lifecycle import Ev, Event, InvalidReason, InvalidTransition, State
from gateway.smpp.errors import StoreFull
from gateway.store.config import Recovery, StoreConfig
from gateway.store.ops import (
    Advance,
    AdvanceResult,
    BalanceResult,
    BatchRows,
    CapCheck,
    Done,
    ForgetEarly,
    KeepMoPart,
    Mo,
    Op,
    Outcome,
    Overdue,
    PortedPurge,
    PortedPurged,
    PortedRows,
    PortedSwitch,
    Prepare,
    PrepareResult,
    PutBatch,
    PutTemplate,
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
    TopUp,
)
from gateway.store.store import InvalidField, OpFailed, UnknownMessage, WrongState

OP_TYPES: tuple[type, ...] = (
    Submit, Prepare, Advance, Receipt, Mo, SetOptOut, SetBlacklist, SetCursor, Sweep, Reroute, Overdue, KeepMoPart,
    PortedRows, PortedSwitch, PortedPurge, TopUp, PutTemplate, PutBatch, BatchRows, ForgetEarly,
)  # fmt: skip
RESULT_TYPES: tuple[type, ...] = (
    SubmitResult, PrepareResult, AdvanceResult, ReceiptResult, SweepResult, Done, PortedPurged, BalanceResult,
)  # fmt: skip
ERROR = 99

_STATES = {int(s): s for s in State}
_EVS = {int(e): e for e in Ev}
_EVENT_FIELDS = len(Event._fields)
_new_tuple = tuple.__new__


class WireFormatError(GatewayError):
    """A frame between the gateway and its writer process that neither side could have sent (a bug)."""


def _getter(cls: type) -> Callable[[Any], tuple[Any, ...]]:
    names = [f.name for f in fields(cls)]
    if len(names) == 1:
        one = attrgetter(names[0])
        return lambda obj: (one(obj),)
    return attrgetter(*names)


_OP_TAGS = {cls: tag for tag, cls in enumerate(OP_TYPES)}
_OP_FIELDS = {cls: _getter(cls) for cls in OP_TYPES}
_RESULT_TAGS = {cls: tag for tag, cls in enumerate(RESULT_TYPES)}
_RESULT_FIELDS = {cls: _getter(cls) for cls in RESULT_TYPES}
_SUBMIT, _PREPARE, _ADVANCE, _RECEIPT = 0, 1, 2, 3
_PORTED_ROWS = OP_TYPES.index(PortedRows)
_BATCH_ROWS = OP_TYPES.index(BatchRows)
_SUBMIT_RESULT, _ADVANCE_RESULT, _RECEIPT_RESULT = 0, 2, 3


# --- framing and the opening frame ---------------------------------------------------------------------

LENGTH = struct.Struct(">I")


def config_fields(cfg: StoreConfig) -> dict[str, Any]:
    """StoreConfig as the worker's first frame carries it."""
    return {
        "path": cfg.path,
        "map_size_bytes": cfg.map_size_bytes,
        "map_grow": cfg.map_grow,
        "sync": cfg.sync,
        "retention_days": cfg.retention_days,
        "recovery": {k: v.value for k, v in cfg.recovery.items()},
        "sweep_batch": cfg.sweep_batch,
        "early_receipt_seconds": cfg.early_receipt_seconds,
        "receipt_timeouts": dict(cfg.receipt_timeouts),
    }


def config_from_fields(f: dict[str, Any]) -> StoreConfig:
    return StoreConfig(
        path=f["path"],
        map_size_bytes=f["map_size_bytes"],
        map_grow=f["map_grow"],
        sync=f["sync"],
        retention_days=f["retention_days"],
        recovery={k: Recovery(v) for k, v in f["recovery"].items()},
        sweep_batch=f["sweep_batch"],
        early_receipt_seconds=f["early_receipt_seconds"],
        receipt_timeouts=f["receipt_timeouts"],
    )


def frame(body: bytes) -> bytes:
    """A frame on the gateway <-> worker socket: a 4-byte big-endian length, then the body."""
    return LENGTH.pack(len(body)) + body


# --- operations -------------------------------------------------------------------------------------


def _op_fields(op: Op) -> list[Any]:
    cls = type(op)
    tag = _OP_TAGS[cls]
    if tag == _ADVANCE:  # the hot one first: an Event is a NamedTuple, msgpack packs it as an array
        return [tag, op.message_id, op.segment, op.event]  # type: ignore[union-attr]
    values = [tag, *_OP_FIELDS[cls](op)]
    if tag == _SUBMIT:
        assert isinstance(op, Submit)
        values[5] = [(r.number, r.reject, r.defer_until_ms, r.route, r.text, r.parts) for r in op.recipients]
        values[12] = [(c.rule, c.scope, c.window_seconds, c.limit, c.give_back) for c in op.caps]
    return values


def pack_request(now_ms: int, ops: Sequence[Op]) -> bytes:
    return msgpack.packb([now_ms, [_op_fields(op) for op in ops]])  # type: ignore[no-any-return]


def _op(f: list[Any]) -> Op:
    tag = f[0]
    if type(tag) is not int or not 0 <= tag < len(OP_TYPES):
        raise ValueError(f"unknown operation tag {tag!r}")
    if tag == _ADVANCE:
        ev = f[3]
        if len(ev) != _EVENT_FIELDS:
            raise ValueError(f"an event has {_EVENT_FIELDS} fields, not {len(ev)}")
        ev[0] = _EVS[ev[0]]
        return Advance(f[1], f[2], _new_tuple(Event, ev))  # Event._make without its own length check
    if tag == _RECEIPT:
        return Receipt(f[1], f[2], _EVS[f[3]], f[4], tuple(f[5]), f[6], f[7])
    if tag == _SUBMIT:
        recipients = tuple(Recipient(n, r, d, tuple(route), t, p) for n, r, d, route, t, p in f[5])
        caps = tuple(CapCheck(*c) for c in f[12])
        return Submit(f[1], f[2], f[3], f[4], recipients, f[6], f[7], f[8], f[9], f[10], f[11], caps)
    if tag == _PORTED_ROWS:  # msgpack gives the rows back as lists: pairs again, and nothing else
        _, generation, rows = f
        return PortedRows(generation, tuple([(number, network) for number, network in rows]))
    if tag == _BATCH_ROWS:
        return BatchRows(f[1], f[2], f[3], tuple(f[4]))
    cls: type[Op] = OP_TYPES[tag]
    return cls(*f[1:])


def unpack_request(data: bytes) -> tuple[int, list[Op]]:
    try:
        now_ms, raw = msgpack.unpackb(data)
        return now_ms, [_op(f) for f in raw]
    except (ValueError, TypeError, KeyError, IndexError, msgpack.ExtraData) as err:
        raise WireFormatError(f"bad request frame: {err!r}") from err


# --- results ----------------------------------------------------------------------------------------


def _error_fields(err: GatewayError) -> list[Any]:
    if isinstance(err, InvalidTransition):
        return [ERROR, "InvalidTransition", int(err.state), int(err.event)]
    if isinstance(err, InvalidReason):
        return [ERROR, "InvalidReason", int(err.event), err.reason]
    return [ERROR, type(err).__name__, str(err)]


def _short_receipt(r: ReceiptResult) -> bool:
    return r.matched and r.state is not None and not (r.ignored or r.early or r.ended)


def _result_fields(result: Result | GatewayError) -> list[Any]:
    if type(result) is AdvanceResult:  # the hot ones first, in their short form when they can
        if result.ignored or result.early_receipt_applied:
            return [_ADVANCE_RESULT, result.message_id, result.state, result.ignored, result.early_receipt_applied]
        return [_ADVANCE_RESULT, result.message_id, result.state]
    if type(result) is ReceiptResult and _short_receipt(result):
        return [_RECEIPT_RESULT, result.message_id, result.segment, result.state]
    cls = type(result)
    tag = _RESULT_TAGS.get(cls)
    if tag is None:
        assert isinstance(result, GatewayError), result
        return _error_fields(result)
    values = [tag, *_RESULT_FIELDS[cls](result)]
    if tag == _SUBMIT_RESULT:
        assert isinstance(result, SubmitResult)
        values[1] = [(o.message_id, o.state, o.reason, o.detail) for o in result.outcomes]
    return values


def pack_reply(last_seq: int, results: Sequence[Result | GatewayError]) -> bytes:
    return msgpack.packb([last_seq, [_result_fields(r) for r in results]])  # type: ignore[no-any-return]


def pack_failure(last_seq: int, err: BaseException) -> bytes:
    """The whole group failed: nothing of it was committed."""
    kind = "StoreFull" if isinstance(err, StoreFull) else "StoreError" if isinstance(err, StoreError) else "Crash"
    return msgpack.packb([last_seq, None, kind, str(err) or repr(err)])  # type: ignore[no-any-return]


def _error(f: list[Any]) -> GatewayError:
    kind = f[1]
    if kind == "InvalidTransition":
        return InvalidTransition(_STATES[f[2]], _EVS[f[3]])
    if kind == "InvalidReason":
        return InvalidReason(_EVS[f[2]], f[3])
    cls = _ERRORS.get(kind)
    if cls is None:
        return StoreError(f"{kind}: {f[2]}")
    return cls(f[2])


def _result(f: list[Any]) -> Result | GatewayError:
    tag = f[0]
    if type(tag) is not int or not (0 <= tag < len(RESULT_TYPES) or tag == ERROR):
        raise ValueError(f"unknown result tag {tag!r}")
    if tag == _ADVANCE_RESULT:
        if len(f) == 3:
            return AdvanceResult(f[1], _STATES[f[2]])
        return AdvanceResult(f[1], _STATES[f[2]], f[3], f[4])
    if tag == _RECEIPT_RESULT:
        if len(f) == 4:
            return ReceiptResult(True, f[1], f[2], _STATES[f[3]])
        state, ended = f[4], f[7] if len(f) > 7 else None
        return ReceiptResult(
            f[1], f[2], f[3], None if state is None else _STATES[state], f[5], f[6],
            None if ended is None else _STATES[ended],
        )  # fmt: skip
    if tag == _SUBMIT_RESULT:
        return SubmitResult(tuple(Outcome(i, _STATES[s], r, d) for i, s, r, d in f[1]), f[2])
    if tag == ERROR:
        return _error(f)
    cls: type[Result] = RESULT_TYPES[tag]
    return cls(*f[1:])


class GroupFailed(StoreError):
    """The writer process refused a whole group (a store error such as a full disk)."""


class WorkerCrashed(GatewayError):
    """The writer process hit a bug: the gateway must stop rather than guess what was committed."""


def unpack_reply(data: bytes) -> tuple[int, list[Result | GatewayError] | GatewayError]:
    """(last event seq, the group's results), or the error that refused the whole group (StoreFull,
    GroupFailed, or WorkerCrashed for a bug in the worker). Raises WireFormatError for nonsense."""
    try:
        reply = msgpack.unpackb(data)
        seq, raw = reply[0], reply[1]
        if raw is not None:
            return seq, [_result(f) for f in raw]
        kind, message = reply[2], reply[3]
    except (ValueError, TypeError, KeyError, IndexError, msgpack.ExtraData) as err:
        raise WireFormatError(f"bad reply frame: {err!r}") from err
    if kind == "StoreFull":
        return seq, StoreFull(message)
    if kind == "StoreError":
        return seq, GroupFailed(message)
    return seq, WorkerCrashed(f"store writer process failed: {message}")


_ERRORS: dict[str, Callable[[str], GatewayError]] = {
    "UnknownMessage": UnknownMessage,
    "InvalidField": InvalidField,
    "WrongState": WrongState,
    "OpFailed": OpFailed,
    "StoreFull": StoreFull,
    "ClientRefReused": ClientRefReused,
}
