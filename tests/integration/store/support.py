"""Helpers shared by the store tests."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.errors import GatewayError
from gateway.lifecycle import Ev, Event
from gateway.store import Advance, Op, Prepare, Recipient, Result, Store, Submit

T0 = 1_800_000_000_000  # 2027-01-15, in ms


class FakeClock:
    def __init__(self) -> None:
        self.ms = T0

    def __call__(self) -> int:
        return self.ms


def submit(*numbers: str, **kwargs: object) -> Submit:
    fields: dict[str, object] = {"account": "acme", "message_class": "notification", "sender": "ACME"}
    fields["text"] = "hello"
    fields.update(kwargs)
    return Submit(recipients=tuple(Recipient(n) for n in numbers), **fields)  # type: ignore[arg-type]


def ok(store: Store, ops: Sequence[Op]) -> list[Result]:
    """Apply `ops` in one transaction and fail the test on any per-op error."""
    results = store.apply(ops)
    errors = [r for r in results if isinstance(r, GatewayError)]
    assert not errors, errors
    return [r for r in results if not isinstance(r, GatewayError)]


def send(store: Store, msg_id: int, carrier_id: str, carrier: str = "carA", parts: int = 1) -> None:
    """Prepare, dispatch and get a submit_sm_resp for every part (carrier ids `<carrier_id>-<n>` for n>0)."""
    ok(store, [Prepare(msg_id, carrier, parts)])
    for seg in range(parts):
        cid = carrier_id if seg == 0 else f"{carrier_id}-{seg}"
        ok(store, [Advance(msg_id, seg, Event(Ev.DISPATCH, bind="b1", sequence=seg + 1))])
        ok(store, [Advance(msg_id, seg, Event(Ev.SUBMIT_OK, carrier_id=cid))])
