"""A receipt op with its candidate keys, raw id and text crosses to the writer process unchanged."""

from __future__ import annotations

from gateway.lifecycle import Ev
from gateway.store import Receipt
from gateway.store.wire import pack_request, unpack_request


def test_receipt_candidates_raw_id_and_text_cross_the_wire() -> None:
    ops = [
        Receipt("carA", "662316", Ev.RECEIPT_DELIVERED, "", ("a1b2c", "6693654"), "0000662316", b"id:0000662316 \xff"),
        Receipt("carA", "cid-10", Ev.RECEIPT_UNDELIVERABLE, "undeliverable:001"),
    ]
    now, back = unpack_request(pack_request(7, ops))
    assert (now, back) == (7, ops)
    first = back[0]
    assert isinstance(first, Receipt)
    assert isinstance(first.alternatives, tuple)


def test_early_receipt_seconds_reaches_the_writer_process() -> None:
    from gateway.store import StoreConfig
    from gateway.store.wire import config_fields, config_from_fields

    assert (
        config_from_fields(config_fields(StoreConfig(path="x", early_receipt_seconds=5.0))).early_receipt_seconds == 5
    )
