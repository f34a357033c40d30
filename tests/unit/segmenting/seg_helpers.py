"""Shared strategies and an independent decoder of plans, for the segmenting tests."""

from __future__ import annotations

import regex
from hypothesis import strategies as st

from gateway.segmenting import (
    NationalLanguage,
    Part,
    Plan,
    RouteEncoding,
    SplitMethod,
    decode_text,
    parse_udh,
    unpack_septets,
)

UDHI = 0x40
# Characters chosen to hit every rule: GSM basics, extension characters (two septets), CR LF, Turkish and
# Portuguese letters (national tables), typographic characters (transliteration), combining marks,
# emoji with skin tones, ZWJ families, flags (regional indicator pairs), Chinese, a literal ESC.
TOKENS = [
    "a", "Z", " ", "0", "@", "£", "é", "Ä", "Δ", "§", "\n", "\r\n", "\r",
    "{", "}", "[", "]", "~", "^", "\\", "|", "€", "\x0c",
    "ş", "Ş", "ğ", "İ", "\u0131", "ç", "ã", "õ", "Á", "ê", "ú", "º", "∞",
    "“", "”", "—", "…", "\u00a0",
    "e\u0301", "a\u0308\u0323", "\u0301",
    "👍", "👍🏽", "👨\u200d👩\u200d👧\u200d👦", "🇫🇷", "🇩🇪🇫", "❤\ufe0f",
    "中", "文", "한", "\x1b", "`",
]  # fmt: skip
tokens = st.sampled_from(TOKENS) | st.characters(codec="utf-8")
texts = (st.lists(tokens, max_size=60) | st.lists(tokens, min_size=60, max_size=400)).map("".join)
gsm_texts = st.lists(st.sampled_from(TOKENS[:23]), min_size=120, max_size=500).map("".join)
routes = st.builds(
    RouteEncoding,
    split=st.sampled_from(list(SplitMethod)),
    packed=st.booleans(),
    national=st.frozensets(st.sampled_from(list(NationalLanguage))),
    transliterate=st.booleans(),
    max_parts=st.just(255),
)

GRAPHEME = regex.compile(r"\X")


def part_payload(part: Part) -> bytes:
    """The user data of a part: message_payload when present, else short_message."""
    for tag, value in part.tlvs:
        if tag == 0x0424 and isinstance(value, bytes):
            return value
    return part.short_message


def decode_part(part: Part, route: RouteEncoding) -> str:
    """Read a part back the way a receiver would (septet count known, as TP-UDL gives it)."""
    data = part_payload(part)
    udhi = bool(part.esm_class & UDHI)
    if route.packed and part.data_coding == 0:
        udh_len = parse_udh(data)[0].length if udhi else 0
        fill = (7 - udh_len * 8 % 7) % 7
        septets = unpack_septets(data[udh_len:], fill, part.units)
        data = data[:udh_len] + septets
    return decode_text(data, part.data_coding, udhi=udhi).text


def joined(plan: Plan, route: RouteEncoding) -> str:
    return "".join(decode_part(p, route) for p in plan)


def grapheme_boundaries(text: str) -> set[int]:
    return {m.end() for m in GRAPHEME.finditer(text)} | {0}
