"""Events as a subscriber decodes them: the engine reads stored event records as upstream events, the upstream
server encodes them as frames, and a client must read exactly the stored facts (kind, ids, numbers, reason,
references) for every kind."""

from __future__ import annotations

from pathlib import Path

from gateway.engine.backend import _event
from gateway.lifecycle import Ev, Event
from gateway.store import Advance, Mo, Prepare, Receipt, Recipient, Store, StoreConfig, Submit
from gateway.upstream import EventKind
from gateway.upstream.frames import PREFIX, decode_payload, encode_frame
from gateway.upstream.schema import Event as UpstreamEvent
from gateway.upstream.schema import event_frame, event_from_wire

T0 = 1_800_000_000_000


def _decoded(frame: bytes) -> UpstreamEvent:
    (size,) = PREFIX.unpack(frame[: PREFIX.size])
    assert size == len(frame) - PREFIX.size  # one whole frame, prefix included
    payload = decode_payload(frame[PREFIX.size :])
    assert isinstance(payload, dict)
    assert payload["type"] == "event"
    return event_from_wire(payload)


def test_every_event_kind_reaches_the_client_as_stored(tmp_path: Path) -> None:
    store = Store.open(StoreConfig(path=str(tmp_path / "db"), sync=False), clock=lambda: T0)
    try:
        (accepted,) = store.apply([
            Submit("acme", "notification", "ACME", "hi", (Recipient("447700900001"), Recipient("447700900002")),
                   client_ref="order-7", batch="spring"),
        ])  # fmt: skip
        ok_id, bad_id = accepted.message_ids  # type: ignore[union-attr]
        store.apply([Prepare(m, "uk", 1, dispatch_bind="uk") for m in (ok_id, bad_id)])
        store.apply([
            Advance(ok_id, 0, Event(Ev.SUBMIT_OK, carrier_id="a1")),
            Advance(bad_id, 0, Event(Ev.SUBMIT_OK, carrier_id="b2")),
        ])  # fmt: skip
        store.apply([
            Receipt("uk", "a1", Ev.RECEIPT_DELIVERED),
            Receipt("uk", "b2", Ev.RECEIPT_UNDELIVERABLE, "undeliverable:001"),
            Mo("acme", "uk", "447700900003", "ACME", "STOP"),
        ])  # fmt: skip
        events = [_decoded(encode_frame(event_frame(_event(f)))) for f in store.event_rows(0)]
    finally:
        store.close()

    by_kind: dict[tuple[EventKind, str | None], UpstreamEvent] = {(e.kind, e.message_id): e for e in events}
    assert [e.seq for e in events] == list(range(1, 6))
    assert all(e.at == T0 / 1000 for e in events)
    delivered = by_kind[EventKind.DELIVERED, str(ok_id)]
    assert (delivered.to, delivered.sender, delivered.reason) == ("447700900001", "ACME", "delivered")
    assert (delivered.client_ref, delivered.batch_id, delivered.carrier) == ("order-7", "spring", "uk")
    assert delivered.text is None
    failed = by_kind[EventKind.FAILED, str(bad_id)]
    assert (failed.to, failed.reason) == ("447700900002", "undeliverable:001")
    assert {(e.kind, e.message_id) for e in events if e.kind is EventKind.SUBMITTED} == {
        (EventKind.SUBMITTED, str(ok_id)), (EventKind.SUBMITTED, str(bad_id)),
    }  # fmt: skip
    mo = by_kind[EventKind.MO, None]
    # MO: the handset is the sender, the short code it wrote to is "to"; no message id, no references.
    assert (mo.sender, mo.to, mo.text, mo.carrier) == ("447700900003", "ACME", "STOP", "uk")
    assert (mo.client_ref, mo.batch_id, mo.reason) == (None, None, None)
