"""SMPP 3.4 encode and decode, compiled from the field declarations in `pdu.py`.

Why compile: a gateway pushing thousands of submits a second spends its CPU here. An interpreted walk over a
field table costs a loop iteration and a branch per field; the compiled functions below are the straight-line
code one would write by hand for each PDU (one `bytes.index` per C-Octet String, one `Struct` call per run of
fixed-width fields), generated once at import from the same table the rest of the code reads.

Errors cost nothing on the fast path: a compiled decoder lets `ValueError`/`IndexError`/`struct.error` escape,
and `decode` then runs `diagnose`, a slow, careful walk that finds the first bad field and the command_status
SMPP 3.4 prescribes for it (5.1.3). Encoding works the same way with `_diagnose_encode`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from gateway.smpp import pdu as P
from gateway.smpp import tlv
from gateway.smpp.constants import HEADER_SIZE, RESPONSE_BIT, CommandId
from gateway.smpp.constants import CommandStatus as S
from gateway.smpp.errors import DecodeError, EncodeError

_HEADER = struct.Struct(">IIII")
pack_header = _HEADER.pack
unpack_header = _HEADER.unpack_from

_Decoder = Callable[[bytes, int, int], P.Pdu]
_Encoder = Callable[[Any, int], bytes]

_FAST_DECODE_ERRORS = (ValueError, IndexError, UnicodeDecodeError, struct.error)
_FAST_ENCODE_ERRORS = (ValueError, UnicodeEncodeError, struct.error, TypeError, OverflowError, AttributeError)


def _layout(cls: type[P.Pdu]) -> list[tuple[str, str, int, S]]:
    """(name, kind, size, status) of each mandatory field in wire order."""
    out = []
    for f in fields(cls):
        spec = f.metadata.get("smpp")
        if spec is not None:
            kind, size, status = spec
            out.append((f.name, kind, size, status))
    return out


# --- compiler ----------------------------------------------------------------------------------------


def _compile_decoder(cls: type[P.Pdu], env: dict[str, Any]) -> _Decoder:
    lines = ["def decode(b, seq, status):", "    o = 16"]
    names = []
    pending_u8: list[str] = []

    def flush_u8() -> None:
        if not pending_u8:
            return
        targets = ", ".join(pending_u8)
        values = ", ".join(f"b[o + {i}]" for i in range(len(pending_u8)))
        lines.append(f"    {targets}{',' if len(pending_u8) == 1 else ''} = {values}")
        lines.append(f"    o += {len(pending_u8)}")
        pending_u8.clear()

    for name, kind, size, _status in _layout(cls):
        names.append(name)
        if kind == P.U8:
            pending_u8.append(name)
            continue
        flush_u8()
        if kind in (P.CSTR, P.TIME):
            lines.append(f"    n = b.index(0, o, o + {size})")
            lines.append(f"    {name} = b[o:n].decode('ascii')")
            lines.append("    o = n + 1")
            if kind == P.TIME:
                lines.append(f"    if len({name}) not in (0, 16): raise ValueError('bad time')")
        elif kind == P.U32:
            lines.append(f"    {name} = _u32(b, o)[0]")
            lines.append("    o += 4")
        elif kind == P.SM:
            lines.append("    n = b[o]")
            lines.append(f"    {name} = b[o + 1 : o + 1 + n]")
            lines.append(f"    if len({name}) != n or n > 254: raise ValueError('short_message')")
            lines.append("    o += 1 + n")
        elif kind == P.DESTS:
            lines.append(f"    {name}, o = _dec_dests(b, o)")
        elif kind == P.UNSUCCESS:
            lines.append(f"    {name}, o = _dec_unsuccess(b, o)")
        else:  # pragma: no cover - a typo in pdu.py
            raise AssertionError(kind)
    flush_u8()
    if cls.takes_tlvs:
        names.append("tlvs")
        lines.append("    tlvs = _dec_tlvs(b, o) if o < len(b) else ()")
    else:
        lines.append("    if o != len(b): raise ValueError('trailing octets')")
    # Frozen dataclasses set each field through object.__setattr__ in __init__; writing the slots through
    # their member descriptors builds the same object in well under half the time.
    lines.append("    r = _new(cls)")
    lines.append("    _set_sequence_number(r, seq)")
    lines.append("    _set_command_status(r, status)")
    for n in names:
        lines.append(f"    _set_{n}(r, {n})")
    lines.append("    return r")
    scope = dict(env, cls=cls, _new=object.__new__)
    for n in ["sequence_number", "command_status", *names]:
        scope[f"_set_{n}"] = getattr(cls, n).__set__
    exec("\n".join(lines), scope)
    fn: _Decoder = scope["decode"]
    return fn


def _compile_encoder(cls: type[P.Pdu], env: dict[str, Any]) -> _Encoder:
    """Builds `encode(p, seq) -> bytes`: header and body in one join."""
    lines = ["def encode(p, seq):"]
    checks: list[str] = []
    parts: list[str] = []
    fmt: list[str] = []
    fmt_args: list[str] = []
    struct_no = 0

    def flush_struct() -> None:
        nonlocal struct_no
        if not fmt:
            return
        key = f"_st{struct_no}"
        struct_no += 1
        env[key] = struct.Struct(">" + "".join(fmt)).pack
        parts.append(f"{key}({', '.join(fmt_args)})")
        fmt.clear()
        fmt_args.clear()

    for name, kind, size, _status in _layout(cls):
        if kind in (P.CSTR, P.TIME):
            flush_struct()
            var = f"v_{name}"
            lines.append(f"    {var} = p.{name}.encode('ascii')")
            if kind == P.TIME:
                checks.append(f"len({var}) not in (0, 16)")
            else:
                checks.append(f"len({var}) > {size - 1}")
            parts.append(var)
            fmt.append("x")  # the terminating NUL rides in the next struct
        elif kind == P.U8:
            fmt.append("B")
            fmt_args.append(f"p.{name}")
        elif kind == P.U32:
            fmt.append("I")
            fmt_args.append(f"p.{name}")
        elif kind == P.SM:
            lines.append(f"    sm = p.{name}")
            checks.append("len(sm) > 254")
            fmt.append("B")
            fmt_args.append("len(sm)")
            flush_struct()
            parts.append("sm")
        elif kind == P.DESTS:
            flush_struct()
            parts.append(f"_enc_dests(p.{name})")
        elif kind == P.UNSUCCESS:
            flush_struct()
            parts.append(f"_enc_unsuccess(p.{name})")
    flush_struct()
    if cls.takes_tlvs:
        parts.append("(_enc_tlvs(p.tlvs) if p.tlvs else b'')")
    if checks:
        lines.append(f"    if {' or '.join(checks)}: raise ValueError('field too long')")
    if parts:
        lines.append(f"    body = b''.join(({', '.join(parts)},))")
        if cls.body_only_on_ok:
            lines.append("    if p.command_status: body = b''")
    else:
        lines.append("    body = b''")
    lines.append(f"    return _hdr(16 + len(body), {int(cls.command_id)}, p.command_status, seq) + body")
    exec("\n".join(lines), env)
    fn: _Encoder = env["encode"]
    return fn


# --- submit_multi lists (4.5.1, 4.5.2) ----------------------------------------------------------------


def _cstr_at(b: bytes, o: int, size: int) -> tuple[str, int]:
    n = b.index(0, o, o + size)
    return b[o:n].decode("ascii"), n + 1


def _dec_dests(b: bytes, o: int) -> tuple[tuple[P.DestAddress | P.DistributionList, ...], int]:
    count = b[o]
    o += 1
    out: list[P.DestAddress | P.DistributionList] = []
    for _ in range(count):
        flag = b[o]
        if flag == 1:
            ton, npi = b[o + 1], b[o + 2]
            addr, o = _cstr_at(b, o + 3, 21)
            out.append(P.DestAddress(ton, npi, addr))
        elif flag == 2:
            name, o = _cstr_at(b, o + 1, 21)
            out.append(P.DistributionList(name))
        else:
            raise ValueError("dest_flag")
    return tuple(out), o


def _enc_dests(dests: tuple[P.DestAddress | P.DistributionList, ...]) -> bytes:
    if len(dests) > 254:
        raise ValueError("number_of_dests")
    out = [bytes((len(dests),))]
    for d in dests:
        if isinstance(d, P.DestAddress):
            addr = d.address.encode("ascii")
            if len(addr) > 20:
                raise ValueError("destination_addr")
            out.append(bytes((1, d.ton, d.npi)) + addr + b"\x00")
        else:
            name = d.name.encode("ascii")
            if len(name) > 20:
                raise ValueError("dl_name")
            out.append(b"\x02" + name + b"\x00")
    return b"".join(out)


def _dec_unsuccess(b: bytes, o: int) -> tuple[tuple[P.UnsuccessSme, ...], int]:
    count = b[o]
    o += 1
    out = []
    for _ in range(count):
        ton, npi = b[o], b[o + 1]
        addr, o = _cstr_at(b, o + 2, 21)
        (code,) = struct.unpack_from(">I", b, o)
        o += 4
        out.append(P.UnsuccessSme(ton, npi, addr, code))
    return tuple(out), o


def _enc_unsuccess(items: tuple[P.UnsuccessSme, ...]) -> bytes:
    if len(items) > 254:
        raise ValueError("no_unsuccess")
    out = [bytes((len(items),))]
    for u in items:
        addr = u.address.encode("ascii")
        if len(addr) > 20:
            raise ValueError("unsuccess address")
        out.append(bytes((u.ton, u.npi)) + addr + b"\x00" + struct.pack(">I", u.error_status_code))
    return b"".join(out)


_ENV: dict[str, Any] = {
    "_u32": struct.Struct(">I").unpack_from,
    "_dec_tlvs": tlv.decode_tlvs,
    "_enc_tlvs": tlv.encode_tlvs,
    "_dec_dests": _dec_dests,
    "_enc_dests": _enc_dests,
    "_dec_unsuccess": _dec_unsuccess,
    "_enc_unsuccess": _enc_unsuccess,
    "_hdr": pack_header,
}

DECODERS: dict[int, _Decoder] = {cls.command_id: _compile_decoder(cls, dict(_ENV)) for cls in P.PDU_CLASSES}
ENCODERS: dict[type[P.Pdu], _Encoder] = {cls: _compile_encoder(cls, dict(_ENV)) for cls in P.PDU_CLASSES}
_EMPTY_RESPONSES: dict[int, type[P.Pdu]] = {
    cls.command_id: cls for cls in P.PDU_CLASSES if cls.command_id & RESPONSE_BIT
}


# --- public API -------------------------------------------------------------------------------------


def decode(frame: bytes) -> P.Pdu:
    """One whole PDU (header included, as `framing.Framer` yields it) -> a PDU object.

    Raises `DecodeError` carrying the command_status to answer with and, when the header was readable, the
    sequence number and command_id.
    """
    if len(frame) < HEADER_SIZE:
        raise DecodeError("PDU shorter than its header", command_status=S.ESME_RINVCMDLEN)
    length, command_id, status, seq = unpack_header(frame, 0)
    if length != len(frame):
        raise DecodeError(
            f"command_length {length} but {len(frame)} octets",
            command_status=S.ESME_RINVCMDLEN,
            sequence_number=seq,
            command_id=command_id,
        )
    fn = DECODERS.get(command_id)
    if fn is None:
        raise DecodeError(
            f"unknown command_id 0x{command_id:08X}",
            command_status=S.ESME_RINVCMDID,
            sequence_number=seq,
            command_id=command_id,
        )
    if length == HEADER_SIZE and command_id & RESPONSE_BIT:
        # A response may omit its body when command_status is an error (SMPP 3.4 4.4.2 and peers).
        return _EMPTY_RESPONSES[command_id](sequence_number=seq, command_status=status)
    try:
        return fn(frame, seq, status)
    except _FAST_DECODE_ERRORS as exc:
        raise diagnose(frame) from exc


def encode(pdu: P.Pdu, sequence_number: int | None = None) -> bytes:
    """A PDU -> its wire octets. `sequence_number` overrides the one in the PDU (the session assigns them)."""
    seq = pdu.sequence_number if sequence_number is None else sequence_number
    try:
        return ENCODERS[type(pdu)](pdu, seq)
    except _FAST_ENCODE_ERRORS as exc:
        raise _diagnose_encode(pdu, seq, exc) from exc


def encode_many(pdus: list[P.Pdu]) -> bytes:
    """Several PDUs as one buffer, for one socket write."""
    return b"".join([ENCODERS[type(p)](p, p.sequence_number) for p in pdus])


# --- slow paths: find the precise error --------------------------------------------------------------


def diagnose(frame: bytes) -> DecodeError:
    """Walk a frame the compiled decoder refused and name the first bad field with its command_status."""
    _, command_id, _, seq = unpack_header(frame, 0)
    cls = P.BY_COMMAND_ID[command_id]

    def err(reason: str, status: S) -> DecodeError:
        return DecodeError(
            f"{cls.__name__}: {reason}", command_status=status, sequence_number=seq, command_id=command_id
        )

    o = HEADER_SIZE
    end = len(frame)
    for name, kind, size, status in _layout(cls):
        if o >= end:
            return err(f"body ends before {name}", S.ESME_RINVCMDLEN)
        if kind in (P.CSTR, P.TIME):
            nul = frame.find(0, o, min(o + size, end))
            if nul < 0:
                if frame.find(0, o) < 0:
                    return err(f"{name} has no terminating NUL before the end", S.ESME_RINVCMDLEN)
                return err(f"{name} longer than {size - 1} characters", status)
            try:
                text = frame[o:nul].decode("ascii")
            except UnicodeDecodeError:
                return err(f"{name} is not ASCII", status)
            if kind == P.TIME and len(text) not in (0, 16):
                return err(f"{name} must be empty or 16 characters, got {len(text)}", status)
            o = nul + 1
        elif kind in (P.U8, P.U32):
            o += size
        elif kind == P.SM:
            n = frame[o]
            if o + 1 + n > end:
                return err(f"sm_length {n} runs past the end of the PDU", S.ESME_RINVMSGLEN)
            if n > 254:
                return err(f"sm_length {n} above 254", S.ESME_RINVMSGLEN)
            o += 1 + n
        else:
            reader = _dec_dests if kind == P.DESTS else _dec_unsuccess
            try:
                _, o = reader(frame, o)
            except _FAST_DECODE_ERRORS:
                return err(f"malformed {name}", status)
    if o > end:
        return err("body ends inside a fixed-width field", S.ESME_RINVCMDLEN)
    if not cls.takes_tlvs:
        if o != end:
            return err(f"{end - o} octets after the last field", S.ESME_RINVCMDLEN)
        return err("malformed PDU", S.ESME_RSYSERR)
    return _diagnose_tlvs(frame, o, err)


def _diagnose_tlvs(frame: bytes, o: int, err: Callable[[str, S], DecodeError]) -> DecodeError:
    end = len(frame)
    while o < end:
        if end - o < 4:
            return err("truncated TLV header", S.ESME_RINVOPTPARSTREAM)
        tag, length = tlv.unpack_tl(frame, o)
        o += 4
        if o + length > end:
            return err(f"TLV 0x{tag:04X} runs past the end of the PDU", S.ESME_RINVOPTPARSTREAM)
        spec = tlv.DECODERS.get(tag)
        if spec is not None:
            fn, lo, hi = spec
            if not lo <= length <= hi:
                return err(f"TLV 0x{tag:04X} length {length} outside {lo}..{hi}", S.ESME_RINVPARLEN)
            try:
                fn(frame[o : o + length])
            except (ValueError, UnicodeDecodeError):
                return err(f"TLV 0x{tag:04X} has an invalid value", S.ESME_RINVOPTPARAMVAL)
        o += length
    return err("malformed optional parameters", S.ESME_RINVOPTPARSTREAM)


def salvage_response(frame: bytes) -> P.Pdu | None:
    """A response the strict decoder refused, read as far as its mandatory fields go, or None.

    What SMSCs get wrong in responses is mostly after what matters: optional parameters that do not parse,
    stray octets after the last field, a last C-octet string (the message_id) that runs to the end of the
    PDU without its NUL. Those are dropped or taken as they are: refusing the response would leave an
    accepted submit "unknown" (resent as a possible duplicate, or never reported). A mandatory field that
    cannot be read, or a request, gets None: the strict error stands.
    """
    if len(frame) < HEADER_SIZE:
        return None
    _, command_id, status, seq = unpack_header(frame, 0)
    cls = P.BY_COMMAND_ID.get(command_id)
    if cls is None or not command_id & RESPONSE_BIT:
        return None
    layout = _layout(cls)
    values: dict[str, Any] = {}
    o, end = HEADER_SIZE, len(frame)
    for i, (name, kind, size, _status) in enumerate(layout):
        if kind in (P.CSTR, P.TIME):
            nul = frame.find(0, o, end)
            if nul < 0 and i != len(layout) - 1:
                return None
            stop = end if nul < 0 else nul
            raw = frame[o:stop]
            if len(raw) > size - 1 or not raw.isascii() or (kind == P.TIME and len(raw) not in (0, 16)):
                return None
            values[name] = raw.decode("ascii")
            o = stop + 1
        elif kind in (P.U8, P.U32):
            if o + size > end:
                return None
            values[name] = frame[o] if kind == P.U8 else struct.unpack_from(">I", frame, o)[0]
            o += size
        else:  # an array (submit_multi_resp's unsuccess_sme): no guessing inside it
            return None
    pdu: P.Pdu = cls(sequence_number=seq, command_status=status, **values)
    return pdu


def _diagnose_encode(pdu: P.Pdu, seq: int, exc: Exception) -> EncodeError:
    name = type(pdu).__name__
    if not 0 <= seq <= 0xFFFFFFFF:
        return EncodeError(f"{name}: sequence_number {seq} out of range")
    for fname, kind, size, status in _layout(type(pdu)):
        value = getattr(pdu, fname)
        if kind in (P.CSTR, P.TIME):
            if not isinstance(value, str) or not value.isascii():
                return EncodeError(f"{name}.{fname}: must be an ASCII str", command_status=status)
            if kind == P.TIME and len(value) not in (0, 16):
                return EncodeError(f"{name}.{fname}: must be empty or 16 characters", command_status=status)
            if len(value) > size - 1:
                return EncodeError(f"{name}.{fname}: longer than {size - 1}", command_status=status)
        elif kind == P.U8 and not (isinstance(value, int) and 0 <= value <= 0xFF):
            return EncodeError(f"{name}.{fname}: {value!r} is not an octet", command_status=status)
        elif kind == P.U32 and not (isinstance(value, int) and 0 <= value <= 0xFFFFFFFF):
            return EncodeError(f"{name}.{fname}: {value!r} is not a 32-bit integer", command_status=status)
        elif kind == P.SM and not (isinstance(value, bytes) and len(value) <= 254):
            return EncodeError(f"{name}.{fname}: must be bytes of at most 254 octets", command_status=status)
    return EncodeError(f"{name}: {exc}")


__all__ = ["DECODERS", "ENCODERS", "CommandId", "decode", "diagnose", "encode", "encode_many", "salvage_response"]
