"""MO reassembly: out of order, duplicated, interleaved, expiring."""

from __future__ import annotations

from gateway.segmenting import MoPart, Reassembler, RouteEncoding, SplitMethod, mo_part, segment

SRC, DST = "+447700900001", "12345"


def _parts(text: str, split: SplitMethod, ref: int) -> list[MoPart]:
    plan = segment(text, RouteEncoding(split=split), ref=ref)
    return [mo_part(SRC, DST, p.short_message, p.data_coding, p.esm_class, p.tlvs) for p in plan]


def test_out_of_order_duplicated_parts_come_out_once_in_order() -> None:
    text = "long message " * 30
    parts = _parts(text, SplitMethod.UDH8, 7)
    r = Reassembler(timeout_seconds=60)
    out = []
    for part in [parts[2], parts[0], parts[2], parts[1], parts[0]]:
        out += r.add(part, now=1.0)
    assert [(m.text, m.complete) for m in out] == [(text, True)]
    assert r.pending == 0


def test_interleaved_messages_from_one_number_are_kept_apart() -> None:
    a, b = "A" * 200, "B" * 400
    pa, pb = _parts(a, SplitMethod.UDH16, 0x1001), _parts(b, SplitMethod.SAR, 0x1002)
    r = Reassembler()
    out = []
    for part in [pa[0], pb[0], pb[1], pa[1], pb[2]]:
        out += r.add(part, now=0.0)
    assert [m.text for m in out] == [a, b]


def test_ucs2_and_emoji_reassemble_exactly() -> None:
    text = "你好 👨\u200d👩\u200d👧 " * 20
    r = Reassembler()
    out = [m for part in reversed(_parts(text, SplitMethod.UDH8, 3)) for m in r.add(part, now=0.0)]
    assert [m.text for m in out] == [text]


def test_a_surrogate_pair_split_by_a_sender_is_joined() -> None:
    high, low = "😀".encode("utf-16-be")[:2], "😀".encode("utf-16-be")[2:]
    r = Reassembler()
    first = mo_part(SRC, DST, bytes((5, 0, 3, 9, 2, 1)) + "a".encode("utf-16-be") + high, 8, 0x40)
    second = mo_part(SRC, DST, bytes((5, 0, 3, 9, 2, 2)) + low, 8, 0x40)
    assert r.add(first, 0.0) == []
    assert [m.text for m in r.add(second, 0.0)] == ["a😀"]


def test_incomplete_messages_expire_marked_incomplete_not_lost() -> None:
    parts = _parts("x" * 400, SplitMethod.UDH8, 5)
    r = Reassembler(timeout_seconds=30)
    r.add(parts[0], now=100.0)
    r.add(parts[2], now=110.0)
    assert r.expire(now=129.0) == []
    [expired] = r.expire(now=130.0)
    assert (expired.complete, expired.missing, expired.parts) == (False, (2,), 3)
    assert expired.text == parts[0].text + parts[2].text
    assert r.pending == 0


def test_a_late_duplicate_after_completion_does_not_start_a_new_message() -> None:
    parts = _parts("y" * 200, SplitMethod.UDH8, 6)
    r = Reassembler(timeout_seconds=30)
    r.add(parts[0], 0.0)
    assert len(r.add(parts[1], 1.0)) == 1
    assert r.add(parts[1], 2.0) == []
    assert r.expire(100.0) == []


def test_single_part_message_comes_straight_out() -> None:
    r = Reassembler()
    [msg] = r.add(mo_part(SRC, DST, b"STOP", 0, 0), now=0.0)
    assert (msg.text, msg.complete, msg.source) == ("STOP", True, SRC)


def test_pending_messages_are_bounded_and_the_oldest_comes_out_incomplete() -> None:
    r = Reassembler(max_pending=2)
    firsts = [_parts(ch * 200, SplitMethod.UDH8, ref)[0] for ch, ref in (("a", 1), ("b", 2), ("c", 3))]
    assert r.add(firsts[0], 0.0) == []
    assert r.add(firsts[1], 1.0) == []
    [evicted] = r.add(firsts[2], 2.0)
    assert (evicted.text, evicted.complete, evicted.missing) == ("a" * 153, False, (2,))
    assert r.pending == 2
