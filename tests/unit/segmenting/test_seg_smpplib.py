"""Cross-check with smpplib.gsm (an independent implementation) where it is right, and pin where not."""

from __future__ import annotations

import smpplib.gsm
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.segmenting import Encoding, RouteEncoding, decode_text, segment
from tests.unit.segmenting.seg_helpers import joined

GSM = RouteEncoding(max_parts=255)
# Characters both tables agree on: smpplib's table has '`' where the spec has '§' (0x5F) and no form feed.
AGREED = list("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCXYZÄÖÑÜ¿abxyzäöñüà")
EXTENSION = list("^{}\\[~]|€")


@settings(max_examples=100)
@given(st.lists(st.sampled_from(AGREED + EXTENSION), min_size=1, max_size=160).map("".join))
def test_single_part_gsm_matches_smpplib(text: str) -> None:
    septets = len(text) + sum(ch in EXTENSION for ch in text)
    parts, encoding, esm_class = smpplib.gsm.make_parts(text)
    plan = segment(text, GSM, ref=0)
    if septets <= 160:
        assert (parts, encoding, esm_class) == ([plan[0].short_message], 0, 0)


@settings(max_examples=100)
@given(st.lists(st.sampled_from([c for c in AGREED if c != "\r"]), min_size=161, max_size=700).map("".join))
def test_multipart_gsm_without_extension_matches_smpplib_apart_from_the_reference(text: str) -> None:
    # No extension characters and no CR (we keep CR LF together; smpplib cuts anywhere).
    parts, encoding, esm_class = smpplib.gsm.make_parts(text)
    plan = segment(text, GSM, ref=parts[0][3])  # smpplib draws a random 8-bit reference
    assert (encoding, esm_class) == (0, 0x40)
    assert parts == [p.short_message for p in plan]


def test_smpplib_splits_an_escape_pair_across_parts_and_we_do_not() -> None:
    text = "a" * 152 + "{" + "b" * 20
    parts, _, _ = smpplib.gsm.make_parts(text)
    assert parts[0].endswith(b"\x1b")  # smpplib: the escape ends part 1, its '(' starts part 2
    plan = segment(text, GSM, ref=1)
    assert not plan[0].short_message.endswith(b"\x1b")
    assert joined(plan, GSM) == text


def test_smpplib_puts_backtick_at_0x5f_where_the_spec_has_section_sign() -> None:
    assert smpplib.gsm.gsm_encode("`") == b"\x5f"  # wrong: '`' is not in TS 23.038
    assert smpplib.gsm.make_parts("§")[1] == 0x08  # wrong: '§' is GSM 0x5F, it fell back to UCS-2
    assert segment("§", GSM)[0].short_message == b"\x5f"
    assert decode_text(b"\x5f", 0).text == "§"
    assert segment("`", GSM).encoding is Encoding.UCS2


def test_smpplib_lacks_form_feed_in_the_extension_table() -> None:
    assert smpplib.gsm.make_parts("page\x0cbreak")[1] == 0x08  # fell back to UCS-2
    plan = segment("page\x0cbreak", GSM)
    assert (plan.encoding, plan[0].short_message) == (Encoding.GSM7, b"page\x1b\x0abreak")
