"""Generated receipts: any bytes are safe, and every field written in any dialect is read back."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from hypothesis import given
from hypothesis import strategies as st

from gateway.smpp.constants import MessageState, Tag
from gateway.smpp.receipt import ReceiptError, parse_receipt, parse_receipt_status, stat_to_state

_TLV_VALUES = st.one_of(st.integers(min_value=-(2**40), max_value=2**40), st.text(max_size=70), st.binary(max_size=8))
_TLVS = st.lists(
    st.tuples(
        st.sampled_from([*map(int, Tag), 0x0000, 0x1400, 0xFFFF]),
        _TLV_VALUES,
    ),
    max_size=5,
)

# Keys a receipt text tends to contain, so random mixtures reach the field parser, not just "no id".
_FRAGMENTS = st.sampled_from(
    [
        b"id:",
        b"sub:",
        b"dlvrd:",
        b"submit date:",
        b"done_date:",
        b"stat:",
        b"err:",
        b"text:",
        b" ",
        b",",
        b";",
        b"\t",
        b"\x00",
        b"DELIVRD",
        b"2311221000",
        b"231122100059",
        b"\xe9",
        b"\xff",
        b"\xc3\xa9",
        b"ID :",
        b" : ",
        b"\xc5\xbftat:",
    ]
)
_RECEIPTISH = st.lists(st.one_of(_FRAGMENTS, st.binary(max_size=6)), max_size=25).map(b"".join)


@given(data=st.one_of(st.binary(max_size=300), _RECEIPTISH), tlvs=_TLVS)
def test_any_input_gives_a_receipt_or_receipt_error(data: bytes, tlvs: list[tuple[int, int | str | bytes]]) -> None:
    try:
        r = parse_receipt(data, tlvs)
    except ReceiptError:  # the one error a receipt may raise: no message id anywhere
        return
    assert r.message_id
    assert isinstance(r.state, MessageState)


@given(data=st.one_of(st.binary(max_size=300), _RECEIPTISH), tlvs=_TLVS)
def test_the_engines_short_parse_reads_id_state_and_err_as_the_full_one(
    data: bytes, tlvs: list[tuple[int, int | str | bytes]]
) -> None:
    # The gateway matches receipts with parse_receipt_status; it must never read a receipt differently.
    try:
        full = parse_receipt(data, tlvs)
    except ReceiptError:
        try:
            parse_receipt_status(data, tlvs)
        except ReceiptError:
            return
        raise AssertionError("parse_receipt_status accepted what parse_receipt refused") from None
    assert parse_receipt_status(data, tlvs) == (full.message_id, full.state, full.err, full.from_tlv)


@dataclass(frozen=True, slots=True)
class Spec:
    """What a generated receipt says, and how it is written."""

    message_id: str
    sub: int
    dlvrd: int
    submit_date: datetime
    done_date: datetime
    seconds: bool
    stat: str
    err: str
    text: str | None
    order: list[int]
    upper_keys: list[bool]
    date_key: str
    separator: str


_ID_ALPHABET = "0123456789abcdefABCDEFxyz-_."
_STAT_WORDS = [
    "DELIVRD",
    "EXPIRED",
    "DELETED",
    "UNDELIV",
    "ACCEPTD",
    "UNKNOWN",
    "REJECTD",
    "ENROUTE",
    "FAILED",
    "BUFFRED",
    "ACKED",
    "delivrd",
]


@st.composite
def _specs(draw: st.DrawFn) -> Spec:
    seconds = draw(st.booleans())
    dates = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31, 23, 59, 59))
    submit = draw(dates).replace(microsecond=0)
    done = draw(dates).replace(microsecond=0)
    if not seconds:
        submit, done = submit.replace(second=0), done.replace(second=0)
    return Spec(
        message_id=draw(st.text(_ID_ALPHABET, min_size=1, max_size=64)),
        sub=draw(st.integers(0, 999)),
        dlvrd=draw(st.integers(0, 999)),
        submit_date=submit,
        done_date=done,
        seconds=seconds,
        stat=draw(
            st.one_of(st.sampled_from(_STAT_WORDS), st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=5, max_size=8))
        ),
        err=draw(st.text("0123456789ABCDEFX_", max_size=12)),
        # Text is user content: anything, including things that look like keys.
        text=draw(
            st.none()
            | st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
            | st.sampled_from(["stat:DELIVRD", "id:1 err:9", " leading blank"])
        ),
        order=draw(st.permutations(list(range(7)))),
        upper_keys=draw(st.lists(st.booleans(), min_size=8, max_size=8)),
        date_key=draw(st.sampled_from([" ", "", "_"])),
        separator=draw(st.sampled_from([" ", ",", "  ", ";", "\r\n"])),
    )


def _write(spec: Spec) -> bytes:
    fmt = "%y%m%d%H%M%S" if spec.seconds else "%y%m%d%H%M"
    fields = [
        ("id", spec.message_id),
        ("sub", f"{spec.sub:03d}"),
        ("dlvrd", f"{spec.dlvrd:03d}"),
        (f"submit{spec.date_key}date", spec.submit_date.strftime(fmt)),
        (f"done{spec.date_key}date", spec.done_date.strftime(fmt)),
        ("stat", spec.stat),
        ("err", spec.err),
    ]
    parts = []
    for index in spec.order:
        key, value = fields[index]
        parts.append(f"{key.upper() if spec.upper_keys[index] else key}:{value}")
    if spec.text is not None:
        parts.append(f"{'TEXT' if spec.upper_keys[7] else 'text'}:{spec.text}")
    return spec.separator.join(parts).encode()


@given(spec=_specs())
def test_generated_receipt_round_trips_every_field(spec: Spec) -> None:
    r = parse_receipt(_write(spec))
    assert r.message_id == r.text_id == spec.message_id
    assert (r.sub, r.dlvrd) == (spec.sub, spec.dlvrd)
    assert (r.submit_date, r.done_date) == (spec.submit_date, spec.done_date)
    assert (r.stat, r.state, r.err) == (spec.stat, stat_to_state(spec.stat), spec.err)
    assert r.text == (spec.text or "")


@given(spec=_specs())
def test_appendix_b_order_and_any_other_layout_read_alike(spec: Spec) -> None:
    # The exact Appendix B layout takes a fast path; a leading blank forces the general scan. Same answer.
    canonical = replace(spec, order=list(range(7)), upper_keys=[False] * 8, date_key=" ", separator=" ")
    written = _write(canonical)
    assert parse_receipt(written) == parse_receipt(b" " + written)
    # The engine's short parse reads the octets up to text: on its own fast path; it must agree too, with
    # the message text in any encoding after it (here the start of a UCS-2 message, not UTF-8).
    full = parse_receipt(written)
    status = (full.message_id, full.state, full.err, False)
    assert parse_receipt_status(written) == parse_receipt_status(b" " + written) == status
    if canonical.text is not None:
        ucs2 = written[: written.rindex(b"text:") + 5] + "您好订单".encode("utf-16-be")
        assert parse_receipt_status(ucs2) == status


@given(spec=_specs(), tlv_id=st.text(_ID_ALPHABET, min_size=1, max_size=64), state=st.sampled_from(MessageState))
def test_tlvs_win_over_the_text(spec: Spec, tlv_id: str, state: MessageState) -> None:
    r = parse_receipt(_write(spec), [(Tag.MESSAGE_STATE, int(state)), (Tag.RECEIPTED_MESSAGE_ID, tlv_id)])
    assert (r.message_id, r.text_id, r.state, r.stat) == (tlv_id, spec.message_id, state, spec.stat)
