"""SMPP 3.4 PDUs as frozen slotted dataclasses.

Each mandatory field is declared once, in wire order, with its wire type and the command_status to answer with
when it is malformed (SMPP 3.4 section 4 gives the order, section 5.2 the sizes). `codec.py` compiles these
declarations into straight-line encode and decode functions, so the table here is the single source of truth.

Sizes are the spec's maximums *including* the terminating NUL of a C-Octet String, as the spec writes them.
Optional parameters (TLVs, section 5.3) travel in `tlvs` as `(tag, value)` pairs in wire order; known tags
carry typed values (see `tlv.py`), unknown tags their raw bytes, and both are re-emitted unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from gateway.smpp.constants import CommandId
from gateway.smpp.constants import CommandStatus as S

TlvValue = int | str | bytes
Tlvs = tuple[tuple[int, TlvValue], ...]

# Field kinds the codec compiler understands.
CSTR = "cstr"  # C-Octet String, ASCII, NUL-terminated, `size` includes the NUL
TIME = "time"  # C-Octet String holding an SMPP time (5.2.23): empty or exactly 16 characters
U8 = "u8"
U32 = "u32"
SM = "sm"  # sm_length (1 octet) followed by that many octets of short_message (max 254)
DESTS = "dests"  # submit_multi: number_of_dests then the dest_address list (4.5.1)
UNSUCCESS = "unsuccess"  # submit_multi_resp: no_unsuccess then the unsuccess_sme list (4.5.2)


def _meta(kind: str, size: int = 0, status: S = S.ESME_RSYSERR) -> dict[str, Any]:
    return {"smpp": (kind, size, status)}


def cstr(size: int, status: S) -> str:
    return field(default="", metadata=_meta(CSTR, size, status))


def time_field(status: S) -> str:
    return field(default="", metadata=_meta(TIME, 17, status))


def u8(status: S = S.ESME_RSYSERR, default: int = 0) -> int:
    return field(default=default, metadata=_meta(U8, 1, status))


def u32(status: S = S.ESME_RSYSERR) -> int:
    return field(default=0, metadata=_meta(U32, 4, status))


def short_message() -> bytes:
    return field(default=b"", metadata=_meta(SM, 254, S.ESME_RINVMSGLEN))


@dataclass(frozen=True, slots=True, kw_only=True)
class Pdu:
    """Header fields common to every PDU (SMPP 3.4 3.2). command_length is derived, never stored."""

    command_id: ClassVar[CommandId]
    # Whether optional parameters may follow the mandatory fields of this PDU.
    takes_tlvs: ClassVar[bool] = False
    # Responses whose body is omitted when command_status is not ESME_ROK (SMPP 3.4 4.4.2, 4.6.2, 4.7.2).
    body_only_on_ok: ClassVar[bool] = False

    sequence_number: int = 0
    command_status: int = 0

    def tlv(self, tag: int, default: TlvValue | None = None) -> TlvValue | None:
        """The first value of optional parameter `tag`, or `default`."""
        for t, v in getattr(self, "tlvs", ()):
            if t == tag:
                return v  # type: ignore[no-any-return]
        return default


# --- session management (4.1, 4.2, 4.3, 4.11, 4.12) --------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Bind(Pdu):
    system_id: str = cstr(16, S.ESME_RINVSYSID)
    password: str = cstr(9, S.ESME_RINVPASWD)
    system_type: str = cstr(13, S.ESME_RINVSYSTYP)
    interface_version: int = u8(default=0x34)
    addr_ton: int = u8()
    addr_npi: int = u8()
    address_range: str = cstr(41, S.ESME_RBINDFAIL)


@dataclass(frozen=True, slots=True, kw_only=True)
class BindTransmitter(_Bind):
    command_id = CommandId.BIND_TRANSMITTER


@dataclass(frozen=True, slots=True, kw_only=True)
class BindReceiver(_Bind):
    command_id = CommandId.BIND_RECEIVER


@dataclass(frozen=True, slots=True, kw_only=True)
class BindTransceiver(_Bind):
    command_id = CommandId.BIND_TRANSCEIVER


@dataclass(frozen=True, slots=True, kw_only=True)
class _BindResp(Pdu):
    takes_tlvs = True  # sc_interface_version (4.1.2)
    system_id: str = cstr(16, S.ESME_RINVSYSID)
    tlvs: Tlvs = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class BindTransmitterResp(_BindResp):
    command_id = CommandId.BIND_TRANSMITTER_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class BindReceiverResp(_BindResp):
    command_id = CommandId.BIND_RECEIVER_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class BindTransceiverResp(_BindResp):
    command_id = CommandId.BIND_TRANSCEIVER_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class Outbind(Pdu):
    command_id = CommandId.OUTBIND
    system_id: str = cstr(16, S.ESME_RINVSYSID)
    password: str = cstr(9, S.ESME_RINVPASWD)


@dataclass(frozen=True, slots=True, kw_only=True)
class Unbind(Pdu):
    command_id = CommandId.UNBIND


@dataclass(frozen=True, slots=True, kw_only=True)
class UnbindResp(Pdu):
    command_id = CommandId.UNBIND_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class EnquireLink(Pdu):
    command_id = CommandId.ENQUIRE_LINK


@dataclass(frozen=True, slots=True, kw_only=True)
class EnquireLinkResp(Pdu):
    command_id = CommandId.ENQUIRE_LINK_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class GenericNack(Pdu):
    command_id = CommandId.GENERIC_NACK


# --- message submission and delivery (4.4 - 4.7) -----------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _ShortMessagePdu(Pdu):
    """submit_sm (4.4.1) and deliver_sm (4.6.1) share one body layout."""

    takes_tlvs = True
    service_type: str = cstr(6, S.ESME_RINVSERTYP)
    source_addr_ton: int = u8(S.ESME_RINVSRCTON)
    source_addr_npi: int = u8(S.ESME_RINVSRCNPI)
    source_addr: str = cstr(21, S.ESME_RINVSRCADR)
    dest_addr_ton: int = u8(S.ESME_RINVDSTTON)
    dest_addr_npi: int = u8(S.ESME_RINVDSTNPI)
    destination_addr: str = cstr(21, S.ESME_RINVDSTADR)
    esm_class: int = u8(S.ESME_RINVESMCLASS)
    protocol_id: int = u8()
    priority_flag: int = u8(S.ESME_RINVPRTFLG)
    schedule_delivery_time: str = time_field(S.ESME_RINVSCHED)
    validity_period: str = time_field(S.ESME_RINVEXPIRY)
    registered_delivery: int = u8(S.ESME_RINVREGDLVFLG)
    replace_if_present_flag: int = u8(S.ESME_RINVREPFLAG)
    data_coding: int = u8()
    sm_default_msg_id: int = u8(S.ESME_RINVDFTMSGID)
    short_message: bytes = short_message()
    tlvs: Tlvs = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitSm(_ShortMessagePdu):
    command_id = CommandId.SUBMIT_SM


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverSm(_ShortMessagePdu):
    command_id = CommandId.DELIVER_SM


@dataclass(frozen=True, slots=True, kw_only=True)
class _MessageIdResp(Pdu):
    takes_tlvs = True  # not in 3.4 for submit_sm_resp, but SMSCs send them (SMPP 5.0 allows); keep them
    body_only_on_ok = True
    message_id: str = cstr(65, S.ESME_RINVMSGID)
    tlvs: Tlvs = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitSmResp(_MessageIdResp):
    command_id = CommandId.SUBMIT_SM_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverSmResp(_MessageIdResp):
    command_id = CommandId.DELIVER_SM_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class DataSmResp(_MessageIdResp):
    command_id = CommandId.DATA_SM_RESP


@dataclass(frozen=True, slots=True)
class DestAddress:
    """submit_multi dest_address with dest_flag 1 (SME address), SMPP 3.4 5.2.25."""

    ton: int = 0
    npi: int = 0
    address: str = ""


@dataclass(frozen=True, slots=True)
class DistributionList:
    """submit_multi dest_address with dest_flag 2 (distribution list name)."""

    name: str = ""


@dataclass(frozen=True, slots=True)
class UnsuccessSme:
    """submit_multi_resp unsuccess_sme entry (4.5.2): an address and why it failed."""

    ton: int = 0
    npi: int = 0
    address: str = ""
    error_status_code: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitMulti(Pdu):
    command_id = CommandId.SUBMIT_MULTI
    takes_tlvs = True
    service_type: str = cstr(6, S.ESME_RINVSERTYP)
    source_addr_ton: int = u8(S.ESME_RINVSRCTON)
    source_addr_npi: int = u8(S.ESME_RINVSRCNPI)
    source_addr: str = cstr(21, S.ESME_RINVSRCADR)
    dest_addresses: tuple[DestAddress | DistributionList, ...] = field(
        default=(), metadata=_meta(DESTS, 254, S.ESME_RINVNUMDESTS)
    )
    esm_class: int = u8(S.ESME_RINVESMCLASS)
    protocol_id: int = u8()
    priority_flag: int = u8(S.ESME_RINVPRTFLG)
    schedule_delivery_time: str = time_field(S.ESME_RINVSCHED)
    validity_period: str = time_field(S.ESME_RINVEXPIRY)
    registered_delivery: int = u8(S.ESME_RINVREGDLVFLG)
    replace_if_present_flag: int = u8(S.ESME_RINVREPFLAG)
    data_coding: int = u8()
    sm_default_msg_id: int = u8(S.ESME_RINVDFTMSGID)
    short_message: bytes = short_message()
    tlvs: Tlvs = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitMultiResp(Pdu):
    command_id = CommandId.SUBMIT_MULTI_RESP
    message_id: str = cstr(65, S.ESME_RINVMSGID)
    unsuccess_smes: tuple[UnsuccessSme, ...] = field(
        default=(), metadata=_meta(UNSUCCESS, 254, S.ESME_RINVNUMDESTS)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class DataSm(Pdu):
    """data_sm (4.7.1): addresses up to 65 octets, the payload travels in message_payload."""

    command_id = CommandId.DATA_SM
    takes_tlvs = True
    service_type: str = cstr(6, S.ESME_RINVSERTYP)
    source_addr_ton: int = u8(S.ESME_RINVSRCTON)
    source_addr_npi: int = u8(S.ESME_RINVSRCNPI)
    source_addr: str = cstr(65, S.ESME_RINVSRCADR)
    dest_addr_ton: int = u8(S.ESME_RINVDSTTON)
    dest_addr_npi: int = u8(S.ESME_RINVDSTNPI)
    destination_addr: str = cstr(65, S.ESME_RINVDSTADR)
    esm_class: int = u8(S.ESME_RINVESMCLASS)
    registered_delivery: int = u8(S.ESME_RINVREGDLVFLG)
    data_coding: int = u8()
    tlvs: Tlvs = ()


# --- ancillary operations (4.8 - 4.10, 4.12) ---------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class QuerySm(Pdu):
    command_id = CommandId.QUERY_SM
    message_id: str = cstr(65, S.ESME_RINVMSGID)
    source_addr_ton: int = u8(S.ESME_RINVSRCTON)
    source_addr_npi: int = u8(S.ESME_RINVSRCNPI)
    source_addr: str = cstr(21, S.ESME_RINVSRCADR)


@dataclass(frozen=True, slots=True, kw_only=True)
class QuerySmResp(Pdu):
    command_id = CommandId.QUERY_SM_RESP
    message_id: str = cstr(65, S.ESME_RINVMSGID)
    final_date: str = time_field(S.ESME_RQUERYFAIL)
    message_state: int = u8()
    error_code: int = u8()


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelSm(Pdu):
    command_id = CommandId.CANCEL_SM
    service_type: str = cstr(6, S.ESME_RINVSERTYP)
    message_id: str = cstr(65, S.ESME_RINVMSGID)
    source_addr_ton: int = u8(S.ESME_RINVSRCTON)
    source_addr_npi: int = u8(S.ESME_RINVSRCNPI)
    source_addr: str = cstr(21, S.ESME_RINVSRCADR)
    dest_addr_ton: int = u8(S.ESME_RINVDSTTON)
    dest_addr_npi: int = u8(S.ESME_RINVDSTNPI)
    destination_addr: str = cstr(21, S.ESME_RINVDSTADR)


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelSmResp(Pdu):
    command_id = CommandId.CANCEL_SM_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplaceSm(Pdu):
    command_id = CommandId.REPLACE_SM
    message_id: str = cstr(65, S.ESME_RINVMSGID)
    source_addr_ton: int = u8(S.ESME_RINVSRCTON)
    source_addr_npi: int = u8(S.ESME_RINVSRCNPI)
    source_addr: str = cstr(21, S.ESME_RINVSRCADR)
    schedule_delivery_time: str = time_field(S.ESME_RINVSCHED)
    validity_period: str = time_field(S.ESME_RINVEXPIRY)
    registered_delivery: int = u8(S.ESME_RINVREGDLVFLG)
    sm_default_msg_id: int = u8(S.ESME_RINVDFTMSGID)
    short_message: bytes = short_message()


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplaceSmResp(Pdu):
    command_id = CommandId.REPLACE_SM_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertNotification(Pdu):
    command_id = CommandId.ALERT_NOTIFICATION
    takes_tlvs = True  # ms_availability_status (4.12.1)
    source_addr_ton: int = u8(S.ESME_RINVSRCTON)
    source_addr_npi: int = u8(S.ESME_RINVSRCNPI)
    source_addr: str = cstr(65, S.ESME_RINVSRCADR)
    esme_addr_ton: int = u8()
    esme_addr_npi: int = u8()
    esme_addr: str = cstr(65, S.ESME_RINVDSTADR)
    tlvs: Tlvs = ()


PDU_CLASSES: tuple[type[Pdu], ...] = (
    BindTransmitter,
    BindTransmitterResp,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    Outbind,
    Unbind,
    UnbindResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    SubmitSm,
    SubmitSmResp,
    DeliverSm,
    DeliverSmResp,
    SubmitMulti,
    SubmitMultiResp,
    DataSm,
    DataSmResp,
    QuerySm,
    QuerySmResp,
    CancelSm,
    CancelSmResp,
    ReplaceSm,
    ReplaceSmResp,
    AlertNotification,
)
BY_COMMAND_ID: dict[int, type[Pdu]] = {cls.command_id: cls for cls in PDU_CLASSES}

# Request -> the response class that answers it (SMPP 3.4 section 4).
RESPONSE_FOR: dict[CommandId, type[Pdu]] = {
    CommandId.BIND_TRANSMITTER: BindTransmitterResp,
    CommandId.BIND_RECEIVER: BindReceiverResp,
    CommandId.BIND_TRANSCEIVER: BindTransceiverResp,
    CommandId.UNBIND: UnbindResp,
    CommandId.ENQUIRE_LINK: EnquireLinkResp,
    CommandId.SUBMIT_SM: SubmitSmResp,
    CommandId.DELIVER_SM: DeliverSmResp,
    CommandId.SUBMIT_MULTI: SubmitMultiResp,
    CommandId.DATA_SM: DataSmResp,
    CommandId.QUERY_SM: QuerySmResp,
    CommandId.CANCEL_SM: CancelSmResp,
    CommandId.REPLACE_SM: ReplaceSmResp,
}


def _fast_init(cls: type[Pdu]) -> None:
    """Replace the dataclass __init__ with one that writes the slots through their member descriptors.

    A frozen dataclass sets every field through object.__setattr__; for a 20-field submit_sm that is most of
    the cost of building one. The generated __init__ has the same keyword-only signature and defaults (all
    immutable), so behaviour and equality are unchanged; it runs for every PDU the gateway builds.
    """
    names = [f.name for f in fields(cls)]
    scope: dict[str, Any] = {}
    params = []
    body = []
    for name in names:
        scope[f"_d_{name}"] = cls.__dataclass_fields__[name].default
        scope[f"_s_{name}"] = getattr(cls, name).__set__
        params.append(f"{name}=_d_{name}")
        body.append(f"    _s_{name}(self, {name})")
    src = f"def __init__(self, *, {', '.join(params)}):\n" + "\n".join(body or ["    pass"])
    exec(src, scope)
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[method-assign]


for _cls in PDU_CLASSES:
    _fast_init(_cls)
    # IntEnum members hash through a Python-level Enum.__hash__; the session looks command ids up in
    # frozensets for every PDU, so the class attribute is the plain int (== the member, same hash as int).
    type.__setattr__(_cls, "command_id", int(_cls.command_id))
