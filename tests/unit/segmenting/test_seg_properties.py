"""Properties over arbitrary text: nothing lost, nothing over capacity, nothing cut in half."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.segmenting import (
    Encoding,
    NationalLanguage,
    RouteEncoding,
    SplitMethod,
    parse_udh,
    preview,
    rereference,
    segment,
    transliterate,
)
from tests.unit.segmenting.seg_helpers import (
    GRAPHEME,
    UDHI,
    decode_part,
    grapheme_boundaries,
    gsm_texts,
    joined,
    part_payload,
    routes,
    texts,
)

ESC = 0x1B


def _capacity(encoding: Encoding, udh_octets: int) -> int:
    # TS 23.040 9.2.3.24: 140 octets of user data; a UDH in 7-bit is padded to a septet boundary.
    if encoding is Encoding.GSM7:
        return (140 - udh_octets) * 8 // 7
    if encoding is Encoding.UCS2:
        return (140 - udh_octets) // 2
    return 140 - udh_octets


def _udh_octets(part_udh: int, route: RouteEncoding, total: int) -> int:
    if total > 1 and route.split is SplitMethod.SAR:
        return (part_udh or 1) + 5  # the SMSC adds an 8-bit concatenation IE
    return part_udh


@settings(max_examples=200)
@given(text=texts, route=routes)
def test_parts_join_back_to_the_sent_text_within_capacity(text: str, route: RouteEncoding) -> None:
    plan = segment(text, route, ref=0xA5)  # UCS-2 is allowed: every scalar value is encodable
    expected = transliterate(text)[0] if plan.replacements else text
    assert joined(plan, route) == expected
    assert "".join(p.text for p in plan) == expected
    if route.split is SplitMethod.PAYLOAD and len(plan) == 1 and plan[0].tlvs:
        return
    for part in plan:
        data = part_payload(part)
        udh_len = parse_udh(data)[0].length if part.esm_class & UDHI else 0
        capacity = _capacity(plan.encoding, _udh_octets(udh_len, route, part.total))
        assert part.units <= capacity
        if plan.encoding is Encoding.UCS2:
            assert (len(data) - udh_len) % 2 == 0
        if plan.encoding is Encoding.GSM7 and not route.packed:
            assert data[-1:] != bytes((ESC,)), "escape pair split across parts"


@settings(max_examples=150)
@given(text=texts)
def test_boundaries_never_split_a_surrogate_pair_or_a_fitting_cluster(text: str) -> None:
    route = RouteEncoding(max_parts=255)
    plan = segment(text, route, ref=1)
    bounds = grapheme_boundaries(text)
    clusters = {}
    for cluster in GRAPHEME.finditer(text):
        for i in range(cluster.start(), cluster.end()):
            clusters[i] = cluster[0]
    capacity = 67 if plan.encoding is Encoding.UCS2 else 153
    position = 0
    for part in plan.parts[:-1]:
        position += len(part.text)
        if plan.encoding is Encoding.UCS2:
            last_unit = int.from_bytes(part.short_message[-2:], "big")
            assert not 0xD800 <= last_unit <= 0xDBFF, "surrogate pair split"
        if position not in bounds:
            cluster = clusters[position]
            units = len(cluster.encode("utf-16-le")) // 2 if plan.encoding is Encoding.UCS2 else len(cluster)
            assert units > capacity, f"fitting cluster {cluster!r} split"
    assert "".join(p.text for p in plan) == text


@settings(max_examples=150)
@given(text=texts, split=st.sampled_from(list(SplitMethod)))
def test_chosen_encoding_never_needs_more_parts_than_ucs2(text: str, split: SplitMethod) -> None:
    national = frozenset(NationalLanguage)
    route = RouteEncoding(split=split, national=national, transliterate=True, max_parts=255)
    ucs2_only = RouteEncoding(encodings=frozenset({Encoding.UCS2}), split=split, max_parts=255)
    assert len(segment(text, route, ref=1)) <= len(segment(text, ucs2_only, ref=1))


@settings(max_examples=100)
@given(text=texts, route=routes)
def test_every_part_reads_back_alone(text: str, route: RouteEncoding) -> None:
    plan = segment(text, route, ref=3)
    for part in plan:
        assert decode_part(part, route) == part.text


@settings(max_examples=200)
@given(text=gsm_texts, route=routes)
def test_gsm_text_stays_gsm_and_never_splits_an_escape_pair(text: str, route: RouteEncoding) -> None:
    plan = segment(text, route, ref=0x1234 if route.split is not SplitMethod.UDH8 else 0x12)
    assert plan.encoding in (Encoding.GSM7, Encoding.UCS2)
    if "\x1b" not in text and "`" not in text:
        assert plan.encoding is Encoding.GSM7
    assert joined(plan, route) == text
    for part in plan:
        data = part_payload(part)
        udh_len = parse_udh(data)[0].length if part.esm_class & UDHI else 0
        if plan.encoding is Encoding.GSM7 and not route.packed:
            assert data[-1] != ESC
            assert len(data) - udh_len == part.units


# BMP text with characters that join clusters (combining marks, ZWJ, jamo, CR LF) among Chinese: the
# splitter must still fill each part up to the last grapheme boundary that fits.
bmp_texts = st.lists(
    st.sampled_from(["中", "文", "a", " ", "\u0301", "\u200d", "한", "\u1100", "\u1161", "\u11a8", "\r", "\n"])
    | st.characters(max_codepoint=0xFFFF, exclude_categories=["Cs"]),
    min_size=60,
    max_size=400,
).map("".join)


@settings(max_examples=100)
@given(text=bmp_texts)
def test_ucs2_parts_end_at_the_last_grapheme_boundary_that_fits(text: str) -> None:
    route = RouteEncoding(encodings=frozenset({Encoding.UCS2}), max_parts=255)
    plan = segment(text, route, ref=1)
    bounds = grapheme_boundaries(text)
    start = 0
    for part in plan.parts[:-1]:
        end = start + len(part.text)
        fitting = [b for b in bounds if start < b <= start + 67]
        if start in bounds:  # after a cut forced inside an over-long cluster, clusters are read afresh
            assert end == (max(fitting) if fitting else start + 67)
        start = end
    assert "".join(p.text for p in plan) == text


@settings(max_examples=200)
@given(text=texts, route=routes, refs=st.tuples(st.integers(0, 255), st.integers(0, 255)), wide=st.booleans())
def test_rereference_equals_segmenting_with_that_reference(
    text: str, route: RouteEncoding, refs: tuple[int, int], wide: bool
) -> None:
    # The engine segments a bulk text once and restamps each recipient's reference: every part, UDH, SAR
    # TLV and shift IE must come out exactly as a fresh segment() with that reference builds them.
    first, second = refs
    if wide and route.split is not SplitMethod.UDH8:
        first, second = first * 257, second * 257  # 16-bit references, both octets set
    once = segment(text, route, ref=first)
    assert rereference(once, second) == segment(text, route, ref=second)


# Runs of characters outside the BMP (two UTF-16 units each): a run as long as a part made the splitter
# loop forever (one preview hung the gateway) and shorter ones cut parts far too early (4 parts for 60 emoji).
astral_texts = st.lists(
    st.sampled_from(["😀", "👍🏽", "👨\u200d👩\u200d👧\u200d👦", "🇫🇷", "𠀀", "中", "a", " ", "\u0301"]),
    min_size=30,
    max_size=300,
).map("".join)


@settings(max_examples=150)
@given(text=astral_texts)
def test_ucs2_parts_fill_up_to_the_last_cluster_that_fits_with_astral_characters(text: str) -> None:
    route = RouteEncoding(encodings=frozenset({Encoding.UCS2}), max_parts=255)
    plan = segment(text, route, ref=1)
    assert "".join(p.text for p in plan) == text
    units = len(text.encode("utf-16-be")) // 2
    assert sum(p.units for p in plan) == units
    assert preview(text, route).units == units
    if units <= 70:
        assert len(plan.parts) == 1
        return
    # Each part but the last could not take the next cluster (or the next code point, inside a cluster
    # longer than a part): no part is cut short.
    start = 0
    for part in plan.parts[:-1]:
        end = start + len(part.text)
        assert part.units <= 67
        rest = text[end:]
        following = GRAPHEME.match(rest)
        assert following is not None
        nxt = following.group(0) if end in grapheme_boundaries(text) else rest[0]
        if len(nxt.encode("utf-16-be")) // 2 <= 67:
            assert part.units + len(nxt.encode("utf-16-be")) // 2 > 67, (start, end, nxt)
        start = end
