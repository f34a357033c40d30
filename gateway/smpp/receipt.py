"""Delivery receipts: the TLVs of a deliver_sm first, then the text of SMPP 3.4 Appendix B, leniently.

Appendix B suggests a receipt text of the form

    id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD err:E text:...

but calls the format SMSC-vendor specific, and carriers take it at its word: keys in any case and order,
`submit_date`, `submit-date` or `SUBMITDATE`, dates with seconds or four-digit years (see _date), stat words
that are not in the appendix (`FAILED` is undeliverable, with its err), err codes of any length, ids with
dashes or zero padding. The parser reads the SMPP 3.4 5.3.2 TLVs (receipted_message_id,
message_state, network_error_code) first, because they are typed and unambiguous, and fills in the rest
from the text.

Everything after `text:` is the start of the original message, so it is taken verbatim and never parsed
for fields: a user who sends "stat:DELIVRD" cannot forge a receipt state.

The parser is on the hot path (one call per receipt), so the text is read by one compiled regex pass.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from gateway.smpp.constants import CommandStatus, MessageState, Tag
from gateway.smpp.errors import DecodeError

__all__ = ["Receipt", "ReceiptError", "ReceiptStatus", "parse_receipt", "parse_receipt_status", "stat_to_state"]

TlvValue = int | str | bytes


class ReceiptError(DecodeError):
    """A delivery receipt that names no message id at all (neither TLV nor text): it cannot be matched."""

    command_status = CommandStatus.ESME_RINVOPTPARAMVAL


class ReceiptStatus(NamedTuple):
    """The fields of a receipt that decide what happened to which message (see parse_receipt_status)."""

    message_id: str
    state: MessageState
    err: str
    # The id is the receipted_message_id TLV (SMPP 3.4 5.3.2.12: the submit_sm_resp's own id, in its form),
    # not the text's `id:`.
    from_tlv: bool = False


@dataclass(frozen=True, slots=True)
class Receipt:
    """One parsed delivery receipt.

    `message_id` is the receipted_message_id TLV when present, else the text's `id:`; `text_id` is the
    text's `id:` as written (some carriers write the TLV and the text id in different bases). `state` is the
    message_state TLV when present, else the state of the text's stat word; `stat` is the stat word exactly
    as written ("" when the text has none). Dates are naive: Appendix B dates carry no time zone.
    """

    message_id: str
    state: MessageState
    stat: str = ""
    err: str = ""
    network_error: tuple[int, int] | None = None
    sub: int | None = None
    dlvrd: int | None = None
    submit_date: datetime | None = None
    done_date: datetime | None = None
    text: str = ""
    text_id: str | None = None
    # message_id is the receipted_message_id TLV, not the text's `id:` (see ReceiptStatus.from_tlv).
    from_tlv: bool = False

    @property
    def final(self) -> bool:
        """True when no further receipt is expected for this message.

        SMPP 3.4 5.2.28: ENROUTE is the only state in which the SMSC still holds the message; the other
        states (delivered, expired, deleted, undeliverable, accepted, unknown, rejected) are end states.
        """
        return self.state is not MessageState.ENROUTE


# Stat words seen in the field, upper-cased, to their SMPP 3.4 5.2.28 state. Appendix B's seven-letter words
# first, then long forms and vendor words (Kannel, Jasmin, Logica/CMG, Chinese and Indian SMSCs).
_STAT_WORDS: dict[str, MessageState] = {
    "ENROUTE": MessageState.ENROUTE,
    "DELIVRD": MessageState.DELIVERED,
    "EXPIRED": MessageState.EXPIRED,
    "DELETED": MessageState.DELETED,
    "UNDELIV": MessageState.UNDELIVERABLE,
    "ACCEPTD": MessageState.ACCEPTED,
    "UNKNOWN": MessageState.UNKNOWN,
    "REJECTD": MessageState.REJECTED,
    "DELIVERED": MessageState.DELIVERED,
    "DELIVERD": MessageState.DELIVERED,
    "EXPIRD": MessageState.EXPIRED,
    "EXPIRE": MessageState.EXPIRED,
    "UNDELIVERED": MessageState.UNDELIVERABLE,
    "UNDELIVERABLE": MessageState.UNDELIVERABLE,
    "UNDELIVRD": MessageState.UNDELIVERABLE,
    "UNDELIVERD": MessageState.UNDELIVERABLE,
    "FAILED": MessageState.UNDELIVERABLE,
    "FAIL": MessageState.UNDELIVERABLE,
    "ACCEPTED": MessageState.ACCEPTED,
    "REJECTED": MessageState.REJECTED,
    "REJECT": MessageState.REJECTED,
    "DELETE": MessageState.DELETED,
    # Held in the SMSC (buffered, acknowledged, sent to the network, retrying): not yet an end state.
    "BUFFRED": MessageState.ENROUTE,
    "BUFFERED": MessageState.ENROUTE,
    "ACKED": MessageState.ENROUTE,
    "SENT": MessageState.ENROUTE,
    "PENDING": MessageState.ENROUTE,
    "RETRY": MessageState.ENROUTE,
    "SCHEDULED": MessageState.ENROUTE,
}
# Some SMSCs write the message_state number itself as the stat word ("stat:2").
_STAT_WORDS.update({str(int(state)): state for state in MessageState})

# Positions in the field list _read_text returns.
_ID, _SUB, _DLVRD, _SUBMIT_DATE, _DONE_DATE, _STAT, _ERR, _TEXT = range(8)
_KEYS = {"id": _ID, "sub": _SUB, "dlvrd": _DLVRD, "stat": _STAT, "err": _ERR}
for _sep in ("", " ", "_", "-"):
    _KEYS[f"submit{_sep}date"] = _SUBMIT_DATE
    _KEYS[f"done{_sep}date"] = _DONE_DATE

# One pass over the text. A key starts the text or follows a separator (space, comma, semicolon), so the
# "id" inside "msgid:" or "dlvrd" is not a key. A value runs to the next separator; `text:` runs to the end.
# re.ASCII: Unicode case folding would let U+017F (long s) or U+212A (Kelvin) match a key.
# Blanks after the colon are skipped ("stat : DELIVRD") unless the next key follows them: "id: sub:001" has an
# empty id, not the id "sub:001".
_KEY = r"id|sub|dlvrd|submit[ _-]?date|done[ _-]?date|stat|err"
_FIELD_RE = re.compile(
    rf"(?<![^\s,;])(?:({_KEY})[ \t]*:(?:[ \t]+(?!(?:{_KEY}|text)[ \t]*:))?([^\s,;]*)|text[ \t]*:(.*))",
    re.IGNORECASE | re.DOTALL | re.ASCII,
)

# Most carriers write Appendix B's exact order, so one anchored match reads them in a third of the time of
# the scan; anything else (other order, key spellings, extra fields, separators) falls back to the scan.
# Values stop at the same separators as in the scan, so both paths agree on every text the fast one takes.
_APPENDIX_B_RE = re.compile(
    r"id:([^\s,;]*) sub:([^\s,;]*) dlvrd:([^\s,;]*) submit[ _-]?date:([^\s,;]*) done[ _-]?date:([^\s,;]*)"
    r" stat:([^\s,;]*) err:([^\s,;]*)(?: text:(.*)|)\Z",
    re.IGNORECASE | re.DOTALL | re.ASCII,
)

# The same, on the octets, up to `text:`: what matching a receipt needs (parse_receipt_status).
_APPENDIX_B_HEAD_RE = re.compile(
    rb"id:([^\s,;]*) sub:[^\s,;]* dlvrd:[^\s,;]* submit[ _-]?date:[^\s,;]* done[ _-]?date:[^\s,;]*"
    rb" stat:([^\s,;]*) err:([^\s,;]*)(?: text:|\Z)",
    re.IGNORECASE | re.ASCII,
)

# SMPP 3.4 5.3.2.31: network_error_code is 3 octets, the network type then a 2-octet error code.
_NETWORK_ERROR_CODE_LEN = 3
# Counts are three digits in Appendix B; anything much longer is garbage, and int() of very long digit
# strings is refused by Python (sys.int_info.default_max_str_digits) anyway.
_MAX_COUNT_DIGITS = 9


def stat_to_state(stat: str) -> MessageState:
    """The SMPP 3.4 5.2.28 state of a receipt stat word; UNKNOWN for words nobody taught us."""
    return _STAT_WORDS.get(stat.upper(), MessageState.UNKNOWN)


def parse_receipt(short_message: bytes, tlvs: Sequence[tuple[int, TlvValue]] = ()) -> Receipt:
    """Parse a delivery receipt from a deliver_sm's (or data_sm's) short_message and TLVs.

    Raises ReceiptError only when neither the receipted_message_id TLV nor the text names a message id.
    Any other oddity (unknown stat word, bad date, missing field) leaves that field at its default.
    """
    tlv_id, tlv_state, network_error, payload = _read_tlvs(tlvs)
    # SMPP 3.4 5.3.2.32: when short_message is empty the text may travel in message_payload instead.
    fields = _read_text(short_message or payload or b"")
    message_id, state = _id_and_state(tlv_id, tlv_state, fields[_ID], fields[_STAT])
    return Receipt(
        message_id=message_id,
        state=state,
        stat=fields[_STAT] or "",
        err=fields[_ERR] or "",
        network_error=network_error,
        sub=_count(fields[_SUB]),
        dlvrd=_count(fields[_DLVRD]),
        submit_date=_date(fields[_SUBMIT_DATE]),
        done_date=_date(fields[_DONE_DATE]),
        text=fields[_TEXT] or "",
        text_id=fields[_ID] or None,
        from_tlv=tlv_id is not None,
    )


def parse_receipt_status(short_message: bytes, tlvs: Sequence[tuple[int, TlvValue]] = ()) -> ReceiptStatus:
    """What matching a receipt to its message needs, as parse_receipt reads it: (message_id, state, err).

    The gateway's hot path takes this: it skips the dates, counts and the Receipt that parse_receipt also
    builds, about two thirds of its cost. Raises ReceiptError as parse_receipt does.
    """
    tlv_id, tlv_state, _, payload = _read_tlvs(tlvs)
    data = short_message or payload or b""
    # Appendix B's order, read from the octets up to `text:`: the message text after it (in any encoding:
    # the start of a UCS-2 message is not UTF-8) is neither decoded nor scanned. ASCII values only, since
    # the full parse decides between UTF-8 and Latin-1 on the whole text; anything else takes that path.
    head = _APPENDIX_B_HEAD_RE.match(data.rstrip(b"\x00"))
    if head is not None and head.group(0).isascii():
        text_id, stat, err = head.group(1).decode(), head.group(2).decode(), head.group(3).decode()
    else:
        fields = _read_text(data)
        text_id, stat, err = fields[_ID], fields[_STAT], fields[_ERR] or ""
    message_id, state = _id_and_state(tlv_id, tlv_state, text_id, stat)
    return ReceiptStatus(message_id, state, err, tlv_id is not None)


def _id_and_state(
    tlv_id: str | None, tlv_state: int | None, text_id: str | None, stat: str | None
) -> tuple[str, MessageState]:
    message_id = tlv_id or text_id
    if not message_id:
        raise ReceiptError("delivery receipt without a message id (no receipted_message_id, no id: field)")
    if tlv_state is not None:
        return message_id, _state_from_int(tlv_state)
    return message_id, stat_to_state(stat) if stat else MessageState.UNKNOWN


def _read_tlvs(
    tlvs: Sequence[tuple[int, TlvValue]],
) -> tuple[str | None, int | None, tuple[int, int] | None, bytes | None]:
    """The receipt TLVs: (receipted_message_id, message_state, network_error_code, message_payload)."""
    msg_id: str | None = None
    state: int | None = None
    network_error: tuple[int, int] | None = None
    payload: bytes | None = None
    for tag, value in tlvs:
        if tag == Tag.RECEIPTED_MESSAGE_ID:
            msg_id = _tlv_text(value) or None
        elif tag == Tag.MESSAGE_STATE and isinstance(value, int):
            state = value
        elif tag == Tag.NETWORK_ERROR_CODE:
            network_error = _network_error(value)
        elif tag == Tag.MESSAGE_PAYLOAD and isinstance(value, bytes):
            payload = value
    return msg_id, state, network_error, payload


def _tlv_text(value: TlvValue) -> str:
    # SMPP 3.4 5.3.2.12: receipted_message_id is a C-octet string; the codec hands it over as str, but a
    # NUL or padding left in by a sloppy SMSC must not become part of the key.
    if isinstance(value, bytes):
        value = _decode(value)
    elif not isinstance(value, str):
        return ""
    return value.strip(" \t\r\n\x00")


def _network_error(value: TlvValue) -> tuple[int, int] | None:
    if isinstance(value, bytes) and len(value) == _NETWORK_ERROR_CODE_LEN:
        return value[0], int.from_bytes(value[1:3], "big")
    return None


def _state_from_int(value: int) -> MessageState:
    # SMPP 5.0 added SCHEDULED (0) and SKIPPED (9); vendors add more. None is a 3.4 state. (A dict: the
    # enum's own lookup by value costs half a microsecond, once per receipt.)
    return _STATES_BY_INT.get(value, MessageState.UNKNOWN)


_STATES_BY_INT: dict[int, MessageState] = {int(state): state for state in MessageState}


def _decode(data: bytes) -> str:
    # Receipt texts are ASCII in practice; some SMSCs echo Latin-1 message text after `text:`, and Latin-1
    # maps every byte, so decoding never fails.
    try:
        return data.decode()
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _read_text(short_message: bytes) -> list[str | None]:
    """[id, sub, dlvrd, submit date, done date, stat, err, text]; None where the text has no such key."""
    if not short_message:
        return [None] * 8
    # Some SMSCs NUL-terminate short_message like a C-octet string.
    text = _decode(short_message.rstrip(b"\x00"))
    match = _APPENDIX_B_RE.match(text)
    if match is not None:
        return list(match.groups())
    return _scan_fields(text)


def _scan_fields(text: str) -> list[str | None]:
    """The lenient path of _read_text: keys in any order, case and spelling; the first occurrence wins."""
    fields: list[str | None] = [None] * 8
    keys = _KEYS
    for key, value, rest in _FIELD_RE.findall(text):
        if key:
            index = keys[key.lower()]
            if fields[index] is None:
                fields[index] = value
        elif fields[_TEXT] is None:
            fields[_TEXT] = rest
            break
    return fields


def _count(value: str | None) -> int | None:
    if value and len(value) <= _MAX_COUNT_DIGITS and value.isascii() and value.isdigit():
        return int(value)
    return None


def _date(value: str | None) -> datetime | None:
    """A receipt date; None when it is none of the forms carriers write:

    - 10 digits YYMMDDhhmm (Appendix B),
    - 12 digits YYMMDDhhmmss (Appendix B with seconds, most SMSCs) or YYYYMMDDhhmm (a four-digit year). The
      two-digit year is tried first: a four-digit year from 2013 on reads as month 13 or more that way, so
      only dates before 2013 could be misread, and no live receipt carries one;
    - 14 digits YYYYMMDDhhmmss.
    """
    if value is None or not value.isascii() or not value.isdigit():
        return None
    size = len(value)
    # Python 3.11 reads ISO 8601 basic format (20231122T1005[07]) in C: far faster than int() slices.
    if size == 10 or size == 12:
        try:
            return datetime.fromisoformat(f"20{value[:6]}T{value[6:]}")
        except ValueError:  # month 13, 31 February, hour 25 ... or a four-digit year
            if size == 10:
                return None
    elif size != 14:
        return None
    try:
        return datetime.fromisoformat(f"{value[:8]}T{value[8:]}")
    except ValueError:
        return None
