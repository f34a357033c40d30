"""The five receipt styles of issue 11 (TLVs; zero-padded, decimal, compact upper-case and `stat:FAILED`
texts), written from generated values: every one parses to its id, state, err and dates, and its id yields a
candidate key equal to the key of the submit_sm_resp that gave it, under the default id forms."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.engine.plan import receipt_op
from gateway.lifecycle import Ev
from gateway.smpp.constants import MessageState, Tag
from gateway.smpp.msgid import CarrierIdFormats, IdBase, IdFormat
from gateway.smpp.receipt import parse_receipt, parse_receipt_status

STYLES = ("tlv", "padded", "decimal", "compact", "failed")
HEX_DECLARED = CarrierIdFormats(IdFormat(IdBase.HEX, fold_case=True), IdFormat(IdBase.HEX, fold_case=True))
FORMATS = (CarrierIdFormats(), HEX_DECLARED)
# A four-digit year written in 12 digits (YYYYMMDDhhmm) reads right from 2013 on (see receipt._date).
_DATES = st.datetimes(min_value=datetime(2013, 1, 1), max_value=datetime(2099, 12, 31, 23, 59)).map(
    lambda d: d.replace(second=0, microsecond=0)
)


def write(style: str, response_id: str, value: int, when: datetime, stat: str, err: int) -> tuple[bytes, list]:  # type: ignore[type-arg]
    """(short_message, tlvs) of a receipt in `style` for the message whose submit_sm_resp said `response_id`."""
    short = when.strftime("%y%m%d%H%M")
    if style == "compact":
        long = when.strftime("%Y%m%d%H%M")
        text = f"ID:{value:010d} SUB:001 DLVRD:001 SUBMITDATE:{long} DONEDATE:{long} STAT:{stat} ERR:{err:03d} TEXT:hi"
        return text.encode(), []
    text_id = {"padded": response_id.rjust(10, "0"), "decimal": str(value)}.get(style, response_id)
    stat = "FAILED" if style == "failed" else stat
    text = f"id:{text_id} sub:001 dlvrd:001 submit date:{short} done date:{short} stat:{stat} err:{err:03d} text:hi"
    tlvs = [(Tag.RECEIPTED_MESSAGE_ID, response_id), (Tag.MESSAGE_STATE, 2)] if style == "tlv" else []
    return text.encode(), tlvs


@given(
    style=st.sampled_from(STYLES),
    value=st.integers(min_value=1, max_value=2**63),
    upper=st.booleans(),
    pad=st.integers(0, 4),
    when=_DATES,
    stat=st.sampled_from(["DELIVRD", "UNDELIV", "EXPIRED", "REJECTD", "ACCEPTD", "ENROUTE", "DELETED", "UNKNOWN"]),
    err=st.integers(0, 999),
    ids=st.sampled_from(FORMATS),
)
def test_every_style_parses_and_matches_its_response(
    style: str, value: int, upper: bool, pad: int, when: datetime, stat: str, err: int, ids: CarrierIdFormats
) -> None:
    response_id = "0" * pad + (f"{value:X}" if upper else f"{value:x}")
    short_message, tlvs = write(style, response_id, value, when, stat, err)
    full = parse_receipt(short_message, tlvs)
    status = parse_receipt_status(short_message, tlvs)
    assert status == (full.message_id, full.state, full.err, full.from_tlv)
    assert (full.submit_date, full.done_date) == (when, when)
    assert full.from_tlv is (style == "tlv")
    if style == "failed":
        assert (full.state, full.err) == (MessageState.UNDELIVERABLE, f"{err:03d}")
    op = receipt_op(status, "uk", ids, short_message)
    assert ids.response_key(response_id) in (op.carrier_id, *op.alternatives)
    if style == "tlv":  # SMPP 3.4 5.3.2.12: the TLV is the response's own id, tried first in its form
        assert op.carrier_id == ids.response_key(response_id)


def test_failed_stat_is_undeliverable_with_its_err() -> None:
    status = parse_receipt_status(
        b"id:123 sub:001 dlvrd:000 submit date:2612031045 done date:2612031046 stat:FAILED err:034 text:x"
    )
    op = receipt_op(status, "uk", CarrierIdFormats(), b"")
    assert (op.kind, op.reason) == (Ev.RECEIPT_UNDELIVERABLE, "undeliverable:034")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2612031045", datetime(2026, 12, 3, 10, 45)),  # Appendix B YYMMDDhhmm
        ("261203104507", datetime(2026, 12, 3, 10, 45, 7)),  # with seconds
        ("202612031045", datetime(2026, 12, 3, 10, 45)),  # four-digit year
        ("20261203104507", datetime(2026, 12, 3, 10, 45, 7)),  # four-digit year with seconds
        ("201312031045", datetime(2013, 12, 3, 10, 45)),  # month 13 as YYMMDD: a four-digit year
        ("2026120310451", None),  # 13 digits
        ("202613031045", None),  # month 13 either way
    ],
)
def test_date_forms(value: str, expected: datetime | None) -> None:
    r = parse_receipt(f"id:1 submit date:{value} done_date:{value} stat:DELIVRD".encode())
    assert r.submit_date == r.done_date == expected


@pytest.mark.parametrize("key", ["submit-date", "SUBMIT_DATE", "SubmitDate"])
def test_more_submit_date_spellings(key: str) -> None:
    assert parse_receipt(f"ID:7 {key}:2612031045 STAT:DELIVRD".encode()).submit_date == datetime(2026, 12, 3, 10, 45)


@pytest.mark.parametrize(
    ("stat", "state"),
    [("FAILED", MessageState.UNDELIVERABLE), ("EXPIRE", MessageState.EXPIRED),
     ("UNDELIVERD", MessageState.UNDELIVERABLE), ("DELIVERED", MessageState.DELIVERED),
     ("ACCEPTD", MessageState.ACCEPTED), ("REJECTD", MessageState.REJECTED)],
)  # fmt: skip
def test_stat_words_seen_in_the_field(stat: str, state: MessageState) -> None:
    assert parse_receipt_status(f"ID:7 STAT:{stat} ERR:5".encode()).state is state
