"""Encodings and long-message segmentation (pure: no I/O, no clock).

Outbound: `segment(text, route, ref=...)` picks the encoding that needs the fewest parts (GSM 7-bit with
optional national shift tables, ASCII, Latin-1, UCS-2) and splits it (UDH 8/16-bit, SAR, message_payload);
`preview` tells an operator the same without building parts; `rereference` restamps a
segmented text with another concatenation reference; `segment_bytes` passes 8-bit data through.
Inbound: `decode_text` by data_coding, `mo_part` from deliver_sm fields, `Reassembler` for long MOs.
References: `RefAllocator` per destination.
"""

from gateway.segmenting.decode import DecodedText, decode_text
from gateway.segmenting.gsm import gsm_codec, pack_septets, unpack_septets
from gateway.segmenting.reassembly import MoMessage, MoPart, Reassembler, mo_part
from gateway.segmenting.refs import RefAllocator
from gateway.segmenting.route import DefaultAlphabet, Encoding, RouteEncoding, SplitMethod
from gateway.segmenting.split import Part, Plan, Preview, preview, rereference, segment, segment_bytes
from gateway.segmenting.tables import NationalLanguage
from gateway.segmenting.translit import Replacement, transliterate
from gateway.segmenting.udh import Concat, Udh, UdhError, parse_udh
from gateway.smpp.errors import MessageTooLong, NotEncodable, SegmentingError

__all__ = [
    "Concat",
    "DecodedText",
    "DefaultAlphabet",
    "Encoding",
    "MessageTooLong",
    "MoMessage",
    "MoPart",
    "NationalLanguage",
    "NotEncodable",
    "Part",
    "Plan",
    "Preview",
    "Reassembler",
    "RefAllocator",
    "Replacement",
    "RouteEncoding",
    "SegmentingError",
    "SplitMethod",
    "Udh",
    "UdhError",
    "decode_text",
    "gsm_codec",
    "mo_part",
    "pack_septets",
    "parse_udh",
    "preview",
    "rereference",
    "segment",
    "segment_bytes",
    "transliterate",
    "unpack_septets",
]
