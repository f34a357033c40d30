"""The SMPP server face's decisions (pure): what an upstream ESME's PDUs ask, what the gateway answers.

Upstream applications bind to the gateway as ESMEs (docs/smpp_server.md). The shell (`smpp_server`) runs the
sockets and the sans-IO `gateway.smpp.session.Session` in the SMSC role; everything it decides comes from here:

- `read_submit`: a submit_sm, data_sm or submit_multi as a `Piece` (sender, recipients, text, class, times,
  its place in a long message), or a `Refused` carrying the command_status to answer;
- `Assembly`: the parts of a long message (UDH 8/16-bit, SAR) held, unanswered, until the whole text is
  there; the gateway splits it again per carrier. A group whose parts stop coming is refused, never cut;
- `status_for_reason` / `status_for_error`: the documented table of refusals to command_status values;
- `receipt_pdu`, `mo_pdu`, `query_answer`: what goes back (SMPP 3.4 Appendix B receipts with
  receipted_message_id and message_state, MO, query_sm_resp);
- `AuthGuard`: failed binds per source address, with a lock-out; `Outbox`: the receipts and MO in flight to
  an account's receivers, and the contiguous cursor their deliver_sm_resp allow to be stored.
"""

from __future__ import annotations

import calendar
import datetime
import heapq
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gateway.config import choices, limits
from gateway.lifecycle import POLICY_REASONS
from gateway.segmenting.decode import decode_text
from gateway.segmenting.gsm import gsm_codec
from gateway.segmenting.udh import UdhError
from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandId, DataCoding, EsmClass, MessageState, Npi, Tag, Ton
from gateway.smpp.constants import CommandStatus as S
from gateway.upstream.errors import ErrorCode, UpstreamError
from gateway.upstream.schema import Event, EventKind, MessageClass, MessageStatus

BIND_TYPES = ("transmitter", "receiver", "transceiver")
_BIND_TYPE = {
    CommandId.BIND_TRANSMITTER: "transmitter",
    CommandId.BIND_RECEIVER: "receiver",
    CommandId.BIND_TRANSCEIVER: "transceiver",
}
# SMPP 3.4 4.1.1: system_id is a C-Octet String of at most 16 octets, password of at most 9 (NUL included).
MAX_SYSTEM_ID = 15
MAX_PASSWORD = 8
# SMPP 3.4 4.5.1: submit_multi names at most 254 destinations.
MAX_DESTINATIONS = 254
# The texts a submit may carry (docs/protocol.md: 10,000 characters).
MAX_TEXT = 10_000
MESSAGE_CLASSES = tuple(str(c) for c in MessageClass)


def bind_type(command_id: int) -> str:
    return _BIND_TYPE[CommandId(command_id)]


# --- configuration ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SmppAccountConfig:
    """[[smpp_server.accounts]]: an upstream account that may bind by SMPP. The password comes from the
    environment or a file (never TOML); an account of [[accounts]] may have several system_ids."""

    account: str
    system_id: str
    password_env: str | None = None
    password_file: str | None = None
    bind_types: tuple[str, ...] = field(default=BIND_TYPES, metadata=choices(*BIND_TYPES))
    max_binds: int = field(default=4, metadata=limits(1, 1000))
    # Requests read and not yet answered, per bind; one more is answered ESME_RTHROTTLED at once.
    window: int = field(default=100, metadata=limits(1, 100_000))
    # submit_sm (each part) a second across all binds of this system_id; 0: no limit.
    tps: float = field(default=0.0, metadata=limits(0.0, 1_000_000.0))
    # The class of a submit whose service_type names none ("marketing", "notification", "verification").
    message_class: str = field(default="notification", metadata=choices(*MESSAGE_CLASSES))
    # What data_coding 0 (the SMSC default alphabet) means from this ESME: GSM 03.38 or Latin-1.
    default_alphabet: str = field(default="gsm7", metadata=choices("gsm7", "latin1"))
    # Receipts and MO in flight (deliver_sm without their response) per receiver bind.
    receipt_window: int = field(default=100, metadata=limits(1, 10_000))

    def mistakes(self) -> list[tuple[str, str]]:
        found = []
        if not 0 < len(self.system_id) <= MAX_SYSTEM_ID or not self.system_id.isascii():
            found.append(("system_id", f"1 to {MAX_SYSTEM_ID} ASCII characters (SMPP 3.4 4.1.1)"))
        if not self.password_env and not self.password_file:
            found.append(("password_env", "needs password_env or password_file (never the password itself)"))
        if not self.bind_types:
            found.append(("bind_types", "at least one of transmitter, receiver, transceiver"))
        return found


@dataclass(frozen=True, slots=True)
class SmppServerConfig:
    """[smpp_server]: upstream ESMEs bind here (docs/smpp_server.md)."""

    host: str = "127.0.0.1"
    port: int = field(default=2778, metadata=limits(0, 65535))
    system_id: str = "gateway"  # answered in every bind_resp
    # TLS: both files (PEM, the key unencrypted) or neither.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # A refused bind is answered after this long; after lockout_failures refusals from one address within
    # lockout_seconds, every bind from it is refused (ESME_RBINDFAIL) until they have passed.
    auth_failure_delay_seconds: float = field(default=1.0, metadata=limits(0.0, 60.0))
    lockout_failures: int = field(default=5, metadata=limits(1, 1000))
    lockout_seconds: float = field(default=300.0, metadata=limits(1.0, 86400.0))
    # A connection that does not bind within this long is closed.
    bind_timeout_seconds: float = field(default=30.0, metadata=limits(0.1, 3600.0))
    # enquire_link to an idle ESME after this long; its response (or any PDU) is due within response_timeout.
    enquire_link_seconds: float = field(default=30.0, metadata=limits(1.0, 3600.0))
    response_timeout_seconds: float = field(default=30.0, metadata=limits(0.1, 3600.0))
    # The parts of a long message must all arrive within this long of the first (else each is refused).
    reassembly_timeout_seconds: float = field(default=60.0, metadata=limits(1.0, 3600.0))
    # A deliver_sm answered with an error (or not at all) goes again after this long, on any receiver; after
    # redeliver_attempts such failures it is given up (logged smpp_deliver_given_up).
    redeliver_seconds: float = field(default=10.0, metadata=limits(0.1, 3600.0))
    redeliver_attempts: int = field(default=50, metadata=limits(1, 1_000_000))
    # The command_status of a recipient the compliance policy refuses (opted out, blacklisted, capped, ...).
    refused_status: str = "ESME_RSUBMITFAIL"
    accounts: tuple[SmppAccountConfig, ...] = ()

    def mistakes(self) -> list[tuple[str, str]]:
        found = []
        if parse_status(self.refused_status) is None:
            found.append(("refused_status", f"{self.refused_status!r} is no command_status: a name such as "
                          "ESME_RSUBMITFAIL or a hex code such as 0x00000045"))  # fmt: skip
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            found.append(("tls_cert_file", "TLS needs both tls_cert_file and tls_key_file"))
        seen: set[str] = set()
        for i, a in enumerate(self.accounts):
            if a.system_id in seen:
                found.append((f"accounts[{i}].system_id", f"{a.system_id!r} is defined twice"))
            seen.add(a.system_id)
        return found

    def status_refused(self) -> int:
        return parse_status(self.refused_status) or int(S.ESME_RSUBMITFAIL)


def parse_status(text: str) -> int | None:
    """A command_status by name (ESME_RSUBMITFAIL) or hex (0x00000045); None when it is neither."""
    if text in S.__members__:
        return int(S[text])
    try:
        value = int(text, 16) if text.lower().startswith("0x") else None
    except ValueError:
        return None
    return value if value is not None and 0 < value <= 0xFFFFFFFF else None


# --- what a submit asks ----------------------------------------------------------------------------


class Refused(Exception):
    """A request the gateway answers with `command_status` (and nothing stored)."""

    def __init__(self, command_status: int, reason: str) -> None:
        super().__init__(reason)
        self.command_status = int(command_status)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Piece:
    """One submit as the gateway reads it: a whole text, or one part of a long one (`total` > 1)."""

    sender: str
    to: tuple[str, ...]
    text: str
    message_class: str
    receipt: bool
    schedule_at: float | None
    validity_seconds: int | None
    ref: int = 0
    total: int = 1
    seq: int = 1
    # submit_multi: the destinations refused before any check (distribution lists, bad entries).
    unsuccess: tuple[P.UnsuccessSme, ...] = ()


# Codings a text arrives in besides GSM / Latin-1 / IA5 / UCS-2, as Python names them (SMPP 3.4 5.2.19).
_CODECS = {
    DataCoding.CYRILLIC: "iso8859_5",
    DataCoding.HEBREW: "iso8859_8",
    DataCoding.ISO_2022_JP: "iso2022_jp",
    0x0E: "euc_kr",  # KS C 5601
}
_BINARY = frozenset({int(DataCoding.BINARY), int(DataCoding.BINARY_8BIT_2)})


def read_submit(pdu: P.SubmitSm | P.DataSm | P.SubmitMulti, account: SmppAccountConfig, now: float) -> Piece:
    """What one submit asks for; raises `Refused` with the status to answer (SMPP 3.4 4.4.1, 4.5.1, 4.7.1)."""
    tlvs = dict(pdu.tlvs)
    payload = tlvs.get(Tag.MESSAGE_PAYLOAD)
    short = b"" if isinstance(pdu, P.DataSm) else pdu.short_message
    if isinstance(payload, bytes) and payload and short:
        # SMPP 3.4 5.3.2.32: message_payload and a short_message together are an error.
        raise Refused(S.ESME_RINVPARLEN, "short_message and message_payload both set")
    data = payload if isinstance(payload, bytes) and payload else short
    if not data:
        raise Refused(S.ESME_RINVMSGLEN, "no text: short_message and message_payload are empty")
    udhi = bool(pdu.esm_class & EsmClass.UDHI)
    text, concat = _user_data(data, pdu.data_coding, udhi, account.default_alphabet)
    if concat is None:
        ref, total, seq = (tlvs.get(t) for t in (Tag.SAR_MSG_REF_NUM, Tag.SAR_TOTAL_SEGMENTS, Tag.SAR_SEGMENT_SEQNUM))
        concat = (ref, total, seq) if isinstance(ref, int) and isinstance(total, int) and isinstance(seq, int) else None
    if concat is not None and not (1 <= concat[2] <= concat[1] and concat[1] <= 255):
        raise Refused(S.ESME_RINVESMCLASS, f"part {concat[2]} of {concat[1]}: not a place in a long message")
    if concat is not None and concat[1] == 1:
        concat = None
    if concat is None and _SURROGATE.search(text):
        # Half a pair is whole again only with the other part of a long message (UDH or SAR): Assembly.
        raise Refused(S.ESME_RSUBMITFAIL, "UCS-2 text with half a surrogate pair")
    if len(text) > MAX_TEXT:
        raise Refused(S.ESME_RINVMSGLEN, f"text over {MAX_TEXT} characters")
    schedule = "" if isinstance(pdu, P.DataSm) else pdu.schedule_delivery_time
    validity = "" if isinstance(pdu, P.DataSm) else pdu.validity_period
    schedule_at = _time(schedule, now, S.ESME_RINVSCHED, "schedule_delivery_time")
    expires_at = _time(validity, now, S.ESME_RINVEXPIRY, "validity_period")
    validity_seconds = None
    if expires_at is not None:
        validity_seconds = int(expires_at - now)
        if validity_seconds < 1:
            raise Refused(S.ESME_RINVEXPIRY, "validity_period has passed")
    to, unsuccess = _destinations(pdu)
    ref, total, seq = concat if concat is not None else (0, 1, 1)
    return Piece(
        sender=pdu.source_addr, to=to, text=text, message_class=message_class(pdu.service_type, account),
        receipt=pdu.registered_delivery & 0x03 != 0, schedule_at=schedule_at, validity_seconds=validity_seconds,
        ref=ref, total=total, seq=seq, unsuccess=unsuccess,
    )  # fmt: skip


def _destinations(pdu: P.SubmitSm | P.DataSm | P.SubmitMulti) -> tuple[tuple[str, ...], tuple[P.UnsuccessSme, ...]]:
    if not isinstance(pdu, P.SubmitMulti):
        if not pdu.destination_addr:
            raise Refused(S.ESME_RINVDSTADR, "destination_addr is empty")
        return (pdu.destination_addr,), ()
    if not 0 < len(pdu.dest_addresses) <= MAX_DESTINATIONS:
        raise Refused(S.ESME_RINVNUMDESTS, f"1 to {MAX_DESTINATIONS} destinations")
    to, unsuccess = [], []
    for d in pdu.dest_addresses:
        if isinstance(d, P.DistributionList):  # the gateway keeps no distribution lists
            unsuccess.append(P.UnsuccessSme(address=d.name[:20], error_status_code=int(S.ESME_RINVDLNAME)))
        elif not d.address:
            unsuccess.append(P.UnsuccessSme(d.ton, d.npi, "", int(S.ESME_RINVDSTADR)))
        else:
            to.append(d.address)
    if not to:
        raise Refused(S.ESME_RINVDSTADR, "no destination the gateway can send to")
    return tuple(to), tuple(unsuccess)


# service_type is at most 5 characters (SMPP 3.4 5.2.11): short names of the classes, and the full names an
# ESME that ignores the limit sends.
SERVICE_TYPES = {"mkt": "marketing", "ntf": "notification", "notif": "notification", "otp": "verification",
                 "verif": "verification", **{c: c for c in ("marketing", "notification", "verification")}}  # fmt: skip


def message_class(service_type: str, account: SmppAccountConfig) -> str:
    """service_type may name a class (SERVICE_TYPES: "MKT", "NTF", "OTP", ...); else the account's."""
    return SERVICE_TYPES.get(service_type.strip().lower(), account.message_class)


def _user_data(data: bytes, data_coding: int, udhi: bool, alphabet: str) -> tuple[str, tuple[int, int, int] | None]:
    """The text of user data and its (ref, total, seq) when a UDH makes it part of a long message."""
    dc = _alphabet(data_coding)
    if dc != data_coding and dc == DataCoding.DEFAULT:
        alphabet = "gsm7"  # TS 23.038 4: these codings name the GSM 7-bit default alphabet itself
    if dc in _BINARY:
        raise Refused(S.ESME_RSUBMITFAIL, f"data_coding 0x{data_coding:02X} is binary: the gateway sends text")
    codec = _CODECS.get(dc)
    try:
        if codec is not None:
            if udhi:
                decoded = decode_text(data, DataCoding.BINARY, udhi=True)
                body = decoded.text.encode("latin-1").decode(codec)
            else:
                decoded, body = None, data.decode(codec)
        elif dc in (DataCoding.DEFAULT, DataCoding.IA5, DataCoding.LATIN1, DataCoding.UCS2):
            decoded = decode_text(data, dc, default_is_gsm=alphabet == "gsm7", udhi=udhi)
            body = decoded.text
        else:
            raise Refused(S.ESME_RSUBMITFAIL, f"data_coding 0x{data_coding:02X} is not one the gateway reads")
    except UdhError as err:
        raise Refused(S.ESME_RINVESMCLASS, f"UDHI set and the user data header is unreadable: {err}") from err
    except (UnicodeDecodeError, ValueError) as err:
        if isinstance(err, Refused):
            raise
        raise Refused(S.ESME_RSUBMITFAIL, f"user data unreadable in data_coding 0x{data_coding:02X}: {err}") from err
    concat = decoded.udh.concat if decoded is not None and decoded.udh is not None else None
    return body, (concat.ref, concat.total, concat.seq) if concat is not None else None


def _alphabet(data_coding: int) -> int:
    """3GPP TS 23.038 4: data_coding 0x10-0x1F and 0xF0-0xFF carry a message class beside the alphabet."""
    if 0x10 <= data_coding <= 0x1F:
        return (DataCoding.DEFAULT, DataCoding.BINARY, DataCoding.UCS2, DataCoding.BINARY)[(data_coding >> 2) & 3]
    if data_coding >= 0xF0:
        return DataCoding.BINARY if data_coding & 0x04 else DataCoding.DEFAULT
    return data_coding


# A surrogate code point in a decoded text: half of a pair (UCS-2 keeps them as they came, 'surrogatepass').
_SURROGATE = re.compile("[\ud800-\udfff]")


def _time(value: str, now: float, status: int, name: str) -> float | None:
    """An SMPP time (3.4 7.1.1) as seconds since the epoch: absolute "YYMMDDhhmmsstnnp" with p "+" or "-"
    (nn quarter hours from UTC), or relative "YYMMDDhhmmss000R" from `now`; "" is None."""
    if not value:
        return None
    if len(value) != 16 or not value[:15].isdigit() or value[15] not in "+-R":
        raise Refused(status, f"{name} {value!r} is not an SMPP time (YYMMDDhhmmsstnnp)")
    yy, mo, dd, hh, mi, ss = (int(value[i : i + 2]) for i in range(0, 12, 2))
    if value[15] == "R":
        days = (yy * 365 + mo * 30 + dd) * 86400  # SMPP 3.4 7.1.1.2: years and months as the SMSC counts
        return now + days + hh * 3600 + mi * 60 + ss
    try:  # 31 February, hour 24: no moment (datetime checks every field against the calendar)
        utc = calendar.timegm(datetime.datetime(2000 + yy, mo, dd, hh, mi, ss).timetuple())
    except ValueError as err:
        raise Refused(status, f"{name} {value!r} names no moment") from err
    quarters = int(value[13:15])
    if quarters > 48:  # SMPP 3.4 7.1.1.1: nn is 00-48 quarter hours from UTC
        raise Refused(status, f"{name} {value!r}: a UTC offset of at most 48 quarter hours")
    offset = quarters * 900
    return utc + int(value[12]) / 10 - (offset if value[15] == "+" else -offset)


def smpp_time(at: float) -> str:
    """An absolute SMPP time in UTC (7.1.1): "YYMMDDhhmmss000+"."""
    return time.strftime("%y%m%d%H%M%S", time.gmtime(at)) + "000+"


# --- long messages ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Group:
    first_seen: float
    pieces: dict[int, Piece] = field(default_factory=dict)
    waiting: list[Any] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Whole:
    """A long message complete: its first part's fields with the whole text, and every part's token."""

    piece: Piece
    tokens: tuple[Any, ...]


class Assembly:
    """The parts of upstream long messages, keyed by (account, sender, recipients, ref, total) as TS 23.040
    9.2.3.24.1 identifies a concatenated message. No part is answered before the whole is stored: the caller
    keeps each part's token (its connection and sequence number) and answers them all at once."""

    __slots__ = ("_groups", "max_groups", "timeout_seconds")

    def __init__(self, timeout_seconds: float, max_groups: int = 10_000) -> None:
        self.timeout_seconds = timeout_seconds
        self.max_groups = max_groups
        self._groups: dict[tuple[Any, ...], _Group] = {}

    def add(self, account: str, piece: Piece, token: Any, now: float) -> Whole | None:
        """Hold a part; the whole message once its last part came. A group over `max_groups` is refused
        (Refused: the store of half messages is full), never grown without end."""
        key = (account, piece.sender, piece.to, piece.ref, piece.total)
        group = self._groups.get(key)
        if group is None:
            if len(self._groups) >= self.max_groups:
                raise Refused(S.ESME_RMSGQFUL, "too many long messages waiting for their parts")
            group = self._groups[key] = _Group(now)
        group.waiting.append(token)
        group.pieces.setdefault(piece.seq, piece)  # a part sent twice: the first copy's text, both answered
        if len(group.pieces) < piece.total:
            return None
        del self._groups[key]
        pieces = [group.pieces[s] for s in sorted(group.pieces)]
        first = pieces[0]
        text = "".join(p.text for p in pieces)
        # A UCS-2 sender may cut a surrogate pair across parts: joined, the halves make the character again.
        text = text.encode("utf-16-be", "surrogatepass").decode("utf-16-be", "replace")
        if len(text) > MAX_TEXT:
            raise TooLong(tuple(group.waiting))
        whole = Piece(first.sender, first.to, text, first.message_class, first.receipt, first.schedule_at,
                      first.validity_seconds, unsuccess=first.unsuccess)  # fmt: skip
        return Whole(whole, tuple(group.waiting))

    def expire(self, now: float) -> list[tuple[Any, ...]]:
        """The tokens of groups whose first part is older than the timeout (each to be refused)."""
        late = [k for k, g in self._groups.items() if now - g.first_seen >= self.timeout_seconds]
        return [tuple(self._groups.pop(k).waiting) for k in late]

    def forget(self, owner: Any) -> None:
        """A connection closed: its held parts can no longer be answered. Groups left without tokens go."""
        for key in list(self._groups):
            group = self._groups[key]
            group.waiting = [t for t in group.waiting if t[0] is not owner]
            if not group.waiting:
                del self._groups[key]

    @property
    def pending(self) -> int:
        return len(self._groups)

    def next_deadline(self) -> float | None:
        first = min((g.first_seen for g in self._groups.values()), default=None)
        return None if first is None else first + self.timeout_seconds


class TooLong(Refused):
    """A long message whose parts add up to more than a submit may carry: every part is refused."""

    def __init__(self, tokens: tuple[Any, ...]) -> None:
        super().__init__(S.ESME_RINVMSGLEN, f"text over {MAX_TEXT} characters")
        self.tokens = tokens



# --- refusals --------------------------------------------------------------------------------------

# A recipient's refusal (a reason code, docs/protocol.md) as a command_status; the others take the
# configured refused_status (the compliance policy's refusals).
_REASON_STATUS = {
    "invalid_number": S.ESME_RINVDSTADR,
    "no_route": S.ESME_RINVDSTADR,
    "message_too_long": S.ESME_RINVMSGLEN,
    "not_encodable": S.ESME_RINVMSGLEN,
}
# A refused request (an upstream error code) as a command_status.
_ERROR_STATUS: dict[str, S] = {
    ErrorCode.INVALID_NUMBER: S.ESME_RINVDSTADR,
    ErrorCode.TOO_LONG: S.ESME_RINVMSGLEN,
    ErrorCode.NOT_ENCODABLE: S.ESME_RINVMSGLEN,
    ErrorCode.STORE_FULL: S.ESME_RMSGQFUL,
    ErrorCode.OVERLOADED: S.ESME_RTHROTTLED,
    ErrorCode.SHUTTING_DOWN: S.ESME_RSYSERR,
    ErrorCode.NOT_FOUND: S.ESME_RINVMSGID,
}


def status_for_reason(reason: str, refused_status: int) -> int:
    return int(_REASON_STATUS.get(reason, refused_status))


def status_for_error(error: UpstreamError) -> int:
    """A refused request's status: an invalid sender is ESME_RINVSRCADR, a class that needs a template
    ESME_RINVSERTYP, the rest by error code (ESME_RSYSERR for what has no better one)."""
    fld = getattr(error, "field", None)
    if error.code is ErrorCode.INVALID_NUMBER and fld == "sender":
        return int(S.ESME_RINVSRCADR)
    if error.code is ErrorCode.INVALID_REQUEST:
        if fld == "sender":
            return int(S.ESME_RINVSRCADR)
        if fld == "class":
            return int(S.ESME_RINVSERTYP)
        if fld == "text":
            return int(S.ESME_RINVMSGLEN)
        if fld in ("schedule_at",):
            return int(S.ESME_RINVSCHED)
        if fld in ("validity_seconds",):
            return int(S.ESME_RINVEXPIRY)
        return int(S.ESME_RSUBMITFAIL)
    return int(_ERROR_STATUS.get(error.code, S.ESME_RSYSERR))


# --- what goes back ------------------------------------------------------------------------------


# The receipt's stat (SMPP 3.4 Appendix B) and message_state of a final event.
def final_state(kind: EventKind, reason: str | None) -> tuple[str, MessageState, int]:
    """(stat, message_state, err) of a delivered or failed event: err is the carrier's receipt code when the
    reason carries one (undeliverable:001), else 0."""
    if kind is EventKind.DELIVERED:
        return "DELIVRD", MessageState.DELIVERED, 0
    reason = reason or ""
    if reason == "expired" or reason == "no_receipt":
        return "EXPIRED", MessageState.EXPIRED, 0
    if reason == "cancelled":
        return "DELETED", MessageState.DELETED, 0
    if reason.startswith("undeliverable:"):
        code = reason.partition(":")[2]
        return "UNDELIV", MessageState.UNDELIVERABLE, int(code) % 1000 if code.isdigit() else 0
    if reason.startswith("carrier_rejected:") or reason in POLICY_REASONS:
        return "REJECTD", MessageState.REJECTED, 0
    if reason == "unknown_after_timeout":
        return "UNKNOWN", MessageState.UNKNOWN, 0
    return "UNDELIV", MessageState.UNDELIVERABLE, 0


def refused_at_accept(event: Event) -> bool:
    """A failed event of a recipient the policy refused when it was submitted: its ESME had an error status
    (or an unsuccess_sme entry) and no message id, so no receipt goes back."""
    reason = event.reason or ""
    return (
        event.kind is EventKind.FAILED
        and reason in POLICY_REASONS
        and reason not in ("message_too_long", "not_encodable")  # also at dispatch, after a reload
    )


def receipt_pdu(event: Event, submitted_at: float) -> P.DeliverSm:
    """A delivery receipt for a final event (SMPP 3.4 Appendix B text, receipted_message_id and
    message_state TLVs, network_error_code when the carrier gave one). One receipt per message, however many
    parts it took: sub 001, dlvrd 001 or 000. Dates are UTC."""
    stat, state, err = final_state(event.kind, event.reason)
    msg_id = event.message_id or ""
    sender = event.sender or ""
    text = (
        f"id:{msg_id} sub:001 dlvrd:{'001' if stat == 'DELIVRD' else '000'} "
        f"submit date:{_date(submitted_at)} done date:{_date(event.at)} stat:{stat} err:{err:03d} text:"
    )
    tlvs: list[tuple[int, int | str | bytes]] = [
        (Tag.RECEIPTED_MESSAGE_ID, msg_id),
        (Tag.MESSAGE_STATE, int(state)),
    ]
    if err:
        tlvs.append((Tag.NETWORK_ERROR_CODE, bytes((3, (err >> 8) & 0xFF, err & 0xFF))))  # 3: GSM
    return P.DeliverSm(
        source_addr_ton=int(Ton.INTERNATIONAL), source_addr_npi=int(Npi.ISDN),
        source_addr=(event.to or "")[:20], dest_addr_ton=_ton(sender), dest_addr_npi=_npi(sender),
        destination_addr=sender[:20], esm_class=int(EsmClass.DELIVERY_RECEIPT),
        short_message=text.encode("ascii", "replace"), tlvs=tuple(tlvs),
    )  # fmt: skip


def _date(at: float) -> str:
    minute = int(at // 60)
    text = _DATES.get(minute)
    if text is None:  # Appendix B dates change once a minute: formatted once a minute, not per receipt
        if len(_DATES) > 1024:
            _DATES.clear()
        text = _DATES[minute] = time.strftime("%y%m%d%H%M", time.gmtime(minute * 60))
    return text


_DATES: dict[int, str] = {}


def _ton(address: str) -> int:
    if address.isdigit():
        return int(Ton.INTERNATIONAL) if len(address) > 8 else int(Ton.NATIONAL)
    return int(Ton.ALPHANUMERIC)


def _npi(address: str) -> int:
    return int(Npi.ISDN) if address.isdigit() else int(Npi.UNKNOWN)


_GSM = gsm_codec()
# What fits a short_message (SMPP 3.4 5.2.22: at most 254 octets); a longer MO goes in message_payload.
_SHORT_MESSAGE_MAX = 254


def mo_pdu(event: Event, alphabet: str) -> P.DeliverSm:
    """An MO as deliver_sm: from the number that sent it to the address it was sent to; GSM 03.38 (or
    Latin-1, as the ESME reads data_coding 0) when the text fits it, else UCS-2; message_payload when
    longer than a short_message."""
    text = event.text or ""
    data_coding, data = _encode_mo(text, alphabet)
    short, tlvs = (data, ()) if len(data) <= _SHORT_MESSAGE_MAX else (b"", ((Tag.MESSAGE_PAYLOAD, data),))
    sender, to = event.sender or "", event.to or ""
    return P.DeliverSm(
        source_addr_ton=_ton(sender), source_addr_npi=_npi(sender), source_addr=sender[:20],
        dest_addr_ton=_ton(to), dest_addr_npi=_npi(to), destination_addr=to[:20],
        data_coding=data_coding, short_message=short, tlvs=tlvs,
    )  # fmt: skip


def _encode_mo(text: str, alphabet: str) -> tuple[int, bytes]:
    if alphabet == "gsm7":
        compact = _GSM.compact(text)
        if isinstance(compact, bytes):
            return int(DataCoding.DEFAULT), _GSM.escaped(compact)
    else:
        try:
            return int(DataCoding.DEFAULT), text.encode("latin-1")
        except UnicodeEncodeError:
            pass
    return int(DataCoding.UCS2), text.encode("utf-16-be", "surrogatepass")


_QUERY_STATES = {
    "accepted": MessageState.ENROUTE,
    "scheduled": MessageState.ENROUTE,
    "queued": MessageState.ENROUTE,
    "submitted": MessageState.ENROUTE,
    "delivered": MessageState.DELIVERED,
    "expired": MessageState.EXPIRED,
    "cancelled": MessageState.DELETED,
    "unknown": MessageState.UNKNOWN,
}
_FINAL = frozenset({"delivered", "failed", "expired", "cancelled"})


def query_answer(status: MessageStatus) -> tuple[str, int, int]:
    """query_sm_resp's (final_date, message_state, error_code) for a message (SMPP 3.4 4.8.2)."""
    if status.state == "failed":
        kind = EventKind.FAILED
        _, state, err = final_state(kind, status.reason)
    else:
        state, err = _QUERY_STATES.get(status.state, MessageState.UNKNOWN), 0
    final = smpp_time(status.updated_at) if status.state in _FINAL else ""
    return final, int(state), err % 256


# --- binds -----------------------------------------------------------------------------------------


class AuthGuard:
    """Refused binds per source address: after `failures` within `window` seconds, every bind from there is
    refused until `window` has passed since the last (a password cannot be guessed at line rate)."""

    __slots__ = ("_seen", "failures", "max_sources", "window")

    def __init__(self, failures: int, window: float, max_sources: int = 10_000) -> None:
        self.failures = failures
        self.window = window
        self.max_sources = max_sources
        self._seen: dict[str, deque[float]] = {}

    def locked(self, source: str, now: float) -> bool:
        """`failures` refusals within `window` of each other, the last less than `window` ago."""
        times = self._seen.get(source)
        if not times:
            return False
        if now - times[-1] >= self.window:
            del self._seen[source]  # quiet for a whole window: forgiven
            return False
        return len(times) >= self.failures and times[-1] - times[0] < self.window

    def failed(self, source: str, now: float) -> None:
        if source not in self._seen and len(self._seen) >= self.max_sources:
            self._seen.pop(next(iter(self._seen)))  # bounded: the oldest source is forgotten
        times = self._seen.setdefault(source, deque(maxlen=self.failures))
        times.append(now)

    def succeeded(self, source: str) -> None:
        self._seen.pop(source, None)


# --- receipts and MO in flight ---------------------------------------------------------------------


class Outbox:
    """An account's events on their way to its receivers, in log order. Each is taken, sent as deliver_sm,
    and done when its deliver_sm_resp says ESME_ROK (or a permanent refusal); one that failed or timed out
    is taken again after `retry_after`, until `max_failures` answers refused it or never came: then it is
    given up (done, for the caller to log), so that one receipt an ESME never takes cannot hold the cursor, and
    everything read after it, for ever. `cursor` is the last seq such that every event up to it is done: what
    may be stored, so a restart or a rebind sends nothing twice that was answered."""

    __slots__ = ("_done", "_failures", "_open", "_retry", "cursor", "max_failures", "read_to", "retry_after")

    def __init__(self, cursor: int, retry_after: float, max_failures: int = 50) -> None:
        self.cursor = cursor  # every event up to here is done
        self.read_to = cursor  # events up to here have been read from the log
        self.retry_after = retry_after
        self.max_failures = max_failures
        self._open: dict[int, Any] = {}  # seq -> event, taken and not done (log order)
        self._done: set[int] = set()
        self._failures: dict[int, int] = {}  # seq -> refusals and timeouts so far
        self._retry: list[tuple[float, int]] = []  # a heap of (when, seq)

    def add(self, seq: int, item: Any) -> None:
        """An event read from the log (seq above read_to), about to be sent."""
        self._open[seq] = item
        self.read_to = max(self.read_to, seq)

    def skip(self, seq: int) -> None:
        """An event read that goes to no ESME (a refused recipient's failure): done at once."""
        self.read_to = max(self.read_to, seq)
        self._open[seq] = None
        self.done(seq)

    def done(self, seq: int) -> bool:
        """Its deliver_sm_resp came; True when the cursor moved."""
        if seq not in self._open:
            return False
        self._done.add(seq)
        self._failures.pop(seq, None)
        moved = False
        while self._open:
            s = next(iter(self._open))  # the oldest: dicts keep insertion (log) order
            if s not in self._done:
                break
            del self._open[s]
            self._done.discard(s)
            self.cursor = s
            moved = True
        if not self._open:
            self.cursor = max(self.cursor, self.read_to)
        return moved

    def again(self, seq: int, now: float, *, failed: bool = True) -> bool:
        """Not delivered: sent again later, True. `failed` (an error status, no answer in time; not a bind that
        went) counts towards `max_failures`: past it the event is given up (done), False."""
        if seq not in self._open or seq in self._done:
            return True
        if failed:
            failures = self._failures[seq] = self._failures.get(seq, 0) + 1
            if failures >= self.max_failures:
                self.done(seq)
                return False
        heapq.heappush(self._retry, (now + self.retry_after, seq))
        return True

    def due(self, now: float, limit: int) -> list[tuple[int, Any]]:
        """Up to `limit` events whose retry time has come, the earliest first (the rest stay due)."""
        out: list[tuple[int, Any]] = []
        while self._retry and self._retry[0][0] <= now and len(out) < limit:
            _, seq = heapq.heappop(self._retry)
            if seq in self._open and seq not in self._done:
                out.append((seq, self._open[seq]))
        return out

    def next_retry(self) -> float | None:
        return self._retry[0][0] if self._retry else None

    @property
    def in_flight(self) -> int:
        return len(self._open) - len(self._done)


# SMPP 3.4 5.1.3: deliver_sm_resp statuses that say the ESME will never take this one: done, not resent.
PERMANENT_REFUSALS = frozenset({int(S.ESME_RX_P_APPN), int(S.ESME_RX_R_APPN), int(S.ESME_RINVDSTADR),
                                int(S.ESME_RINVSRCADR)})  # fmt: skip
