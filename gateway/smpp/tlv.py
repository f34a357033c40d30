"""SMPP 3.4 5.3: optional parameters (TLVs), their wire types and sizes.

A known tag decodes to a typed value: an int for the 1, 2 and 4 octet integers, a str for the C-Octet Strings,
bytes for octet strings. An unknown tag (vendor-specific 0x1400-0x3FFF, or anything else) keeps its raw bytes,
and encoding gives back exactly the bytes that came in.
"""

from __future__ import annotations

from collections.abc import Callable
from struct import Struct

from gateway.smpp.constants import Tag

INT = "int"
CSTR = "cstr"
OCTETS = "octets"
EMPTY = "empty"

# tag -> (kind, min length, max length) in octets on the wire. For INT, min == max == the integer's width.
# For CSTR the lengths include the terminating NUL.
SPEC: dict[int, tuple[str, int, int]] = {
    Tag.DEST_ADDR_SUBUNIT: (INT, 1, 1),
    Tag.DEST_NETWORK_TYPE: (INT, 1, 1),
    Tag.DEST_BEARER_TYPE: (INT, 1, 1),
    Tag.DEST_TELEMATICS_ID: (INT, 2, 2),
    Tag.SOURCE_ADDR_SUBUNIT: (INT, 1, 1),
    Tag.SOURCE_NETWORK_TYPE: (INT, 1, 1),
    Tag.SOURCE_BEARER_TYPE: (INT, 1, 1),
    Tag.SOURCE_TELEMATICS_ID: (INT, 1, 1),
    Tag.QOS_TIME_TO_LIVE: (INT, 4, 4),
    Tag.PAYLOAD_TYPE: (INT, 1, 1),
    Tag.ADDITIONAL_STATUS_INFO_TEXT: (CSTR, 1, 256),
    Tag.RECEIPTED_MESSAGE_ID: (CSTR, 1, 65),
    Tag.MS_MSG_WAIT_FACILITIES: (INT, 1, 1),
    Tag.PRIVACY_INDICATOR: (INT, 1, 1),
    Tag.SOURCE_SUBADDRESS: (OCTETS, 2, 23),
    Tag.DEST_SUBADDRESS: (OCTETS, 2, 23),
    Tag.USER_MESSAGE_REFERENCE: (INT, 2, 2),
    Tag.USER_RESPONSE_CODE: (INT, 1, 1),
    Tag.SOURCE_PORT: (INT, 2, 2),
    Tag.DESTINATION_PORT: (INT, 2, 2),
    Tag.SAR_MSG_REF_NUM: (INT, 2, 2),
    Tag.LANGUAGE_INDICATOR: (INT, 1, 1),
    Tag.SAR_TOTAL_SEGMENTS: (INT, 1, 1),
    Tag.SAR_SEGMENT_SEQNUM: (INT, 1, 1),
    Tag.SC_INTERFACE_VERSION: (INT, 1, 1),
    Tag.CALLBACK_NUM_PRES_IND: (INT, 1, 1),
    Tag.CALLBACK_NUM_ATAG: (OCTETS, 0, 65),
    Tag.NUMBER_OF_MESSAGES: (INT, 1, 1),
    Tag.CALLBACK_NUM: (OCTETS, 4, 19),
    Tag.DPF_RESULT: (INT, 1, 1),
    Tag.SET_DPF: (INT, 1, 1),
    Tag.MS_AVAILABILITY_STATUS: (INT, 1, 1),
    # 5.3.2.31: network type (1 octet) then error code (2 octets); kept as 3 raw octets.
    Tag.NETWORK_ERROR_CODE: (OCTETS, 3, 3),
    Tag.MESSAGE_PAYLOAD: (OCTETS, 0, 65535),
    Tag.DELIVERY_FAILURE_REASON: (INT, 1, 1),
    Tag.MORE_MESSAGES_TO_SEND: (INT, 1, 1),
    Tag.MESSAGE_STATE: (INT, 1, 1),
    Tag.USSD_SERVICE_OP: (INT, 1, 1),
    Tag.DISPLAY_TIME: (INT, 1, 1),
    Tag.SMS_SIGNAL: (INT, 2, 2),
    Tag.MS_VALIDITY: (INT, 1, 1),
    Tag.ALERT_ON_MESSAGE_DELIVERY: (EMPTY, 0, 0),
    Tag.ITS_REPLY_TYPE: (INT, 1, 1),
    Tag.ITS_SESSION_INFO: (OCTETS, 2, 2),
}

_TL = Struct(">HH")
pack_tl = _TL.pack
unpack_tl = _TL.unpack_from


def _dec_int(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def _dec_cstr(raw: bytes) -> str:
    # The NUL is part of the value on the wire (5.3.1), but many SMSCs leave it out of a
    # receipted_message_id, or pad with several: read it as a C reader would, up to the first NUL or the
    # end. Refusing the PDU would lose the receipt (the SMSC gets an error and gives up or loops).
    return raw.split(b"\x00", 1)[0].decode("ascii")


def _dec_octets(raw: bytes) -> bytes:
    return raw


# tag -> (decoder, min, max); a decoder raises ValueError or UnicodeDecodeError on a bad value.
DECODERS: dict[int, tuple[Callable[[bytes], int | str | bytes], int, int]] = {}
for _tag, (_kind, _lo, _hi) in SPEC.items():
    _fn: Callable[[bytes], int | str | bytes] = (
        _dec_int if _kind == INT else _dec_cstr if _kind == CSTR else _dec_octets
    )
    DECODERS[_tag] = (_fn, _lo, _hi)


def encode_value(tag: int, value: int | str | bytes) -> bytes:
    """The wire octets of one TLV value. Raises ValueError/TypeError/OverflowError when it cannot fit."""
    spec = SPEC.get(tag)
    if spec is None:
        if not isinstance(value, bytes):
            raise TypeError(f"unknown TLV 0x{tag:04X} needs bytes, got {type(value).__name__}")
        raw = value
    else:
        kind, lo, hi = spec
        if kind == INT:
            if not isinstance(value, int):
                raise TypeError(f"TLV 0x{tag:04X} needs an int")
            raw = value.to_bytes(hi, "big")
        elif kind == CSTR:
            if not isinstance(value, str):
                raise TypeError(f"TLV 0x{tag:04X} needs a str")
            raw = value.encode("ascii") + b"\x00"
        else:
            if not isinstance(value, bytes):
                raise TypeError(f"TLV 0x{tag:04X} needs bytes")
            raw = value
        if not lo <= len(raw) <= hi:
            raise ValueError(f"TLV 0x{tag:04X} length {len(raw)} outside {lo}..{hi}")
    if len(raw) > 0xFFFF:
        raise ValueError(f"TLV 0x{tag:04X} longer than 65535 octets")
    return pack_tl(tag, len(raw)) + raw


def encode_tlvs(tlvs: tuple[tuple[int, int | str | bytes], ...]) -> bytes:
    return b"".join([encode_value(tag, value) for tag, value in tlvs])


def decode_tlvs(data: bytes, offset: int) -> tuple[tuple[int, int | str | bytes], ...]:
    """Every TLV from `offset` to the end of `data`.

    Raises ValueError (or struct.error, UnicodeDecodeError) on anything malformed; `codec.diagnose` turns that
    into the precise command_status, so this hot path does no bookkeeping of its own.
    """
    out: list[tuple[int, int | str | bytes]] = []
    end = len(data)
    decoders = DECODERS
    while offset < end:
        tag, length = unpack_tl(data, offset)
        offset += 4
        raw = data[offset : offset + length]
        if len(raw) != length:
            raise ValueError("TLV runs past the end of the PDU")
        offset += length
        spec = decoders.get(tag)
        if spec is None:
            out.append((tag, raw))
        else:
            fn, lo, hi = spec
            if not lo <= length <= hi:
                raise ValueError("TLV length outside its range")
            out.append((tag, fn(raw)))
    return tuple(out)
