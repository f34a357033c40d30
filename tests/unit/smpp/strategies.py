"""Hypothesis strategies that build any SMPP 3.4 PDU from the same field table the codec compiles."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from hypothesis import strategies as st

from gateway.smpp import pdu as P
from gateway.smpp import tlv

_ASCII = st.characters(min_codepoint=1, max_codepoint=127)


def cstrings(size: int) -> st.SearchStrategy[str]:
    return st.text(_ASCII, max_size=size - 1)


smpp_times = st.one_of(st.just(""), st.text(_ASCII, min_size=16, max_size=16))
octet = st.integers(0, 0xFF)


def tlv_values(tag: int) -> st.SearchStrategy[Any]:
    spec = tlv.SPEC.get(tag)
    if spec is None:
        return st.binary(max_size=40)
    kind, lo, hi = spec
    if kind == tlv.INT:
        return st.integers(0, 2 ** (8 * hi) - 1)
    if kind == tlv.CSTR:
        return st.text(_ASCII, max_size=min(hi - 1, 80))
    if kind == tlv.EMPTY:
        return st.just(b"")
    return st.binary(min_size=lo, max_size=min(hi, 300))


known_tags = st.sampled_from(sorted(tlv.SPEC))
# Vendor-specific range (SMPP 3.4 5.3.2: 0x1400-0x3FFF) plus some tags 3.4 never defined.
unknown_tags = st.one_of(st.integers(0x1400, 0x3FFF), st.sampled_from([0x0001, 0x0600, 0x4000, 0xFFFF]))
tlv_pairs = st.one_of(known_tags, unknown_tags).flatmap(lambda tag: st.tuples(st.just(tag), tlv_values(tag)))
tlv_lists = st.lists(tlv_pairs, max_size=4).map(tuple)

dest_addresses = st.one_of(
    st.builds(P.DestAddress, octet, octet, cstrings(21)),
    st.builds(P.DistributionList, cstrings(21)),
)
unsuccess_smes = st.builds(P.UnsuccessSme, octet, octet, cstrings(21), st.integers(0, 0xFFFFFFFF))


def _field_strategy(kind: str, size: int) -> st.SearchStrategy[Any]:
    if kind == P.CSTR:
        return cstrings(size)
    if kind == P.TIME:
        return smpp_times
    if kind == P.U8:
        return octet
    if kind == P.U32:
        return st.integers(0, 0xFFFFFFFF)
    if kind == P.SM:
        return st.binary(max_size=254)
    if kind == P.DESTS:
        return st.lists(dest_addresses, max_size=5).map(tuple)
    return st.lists(unsuccess_smes, max_size=5).map(tuple)


def pdus_of(cls: type[P.Pdu]) -> st.SearchStrategy[P.Pdu]:
    kwargs: dict[str, st.SearchStrategy[Any]] = {"sequence_number": st.integers(0, 0xFFFFFFFF)}
    for f in fields(cls):
        spec = f.metadata.get("smpp")
        if spec is not None:
            kwargs[f.name] = _field_strategy(spec[0], spec[1])
        elif f.name == "tlvs":
            kwargs["tlvs"] = tlv_lists
    ok = st.builds(cls, command_status=st.just(0), **kwargs)
    if not cls.body_only_on_ok:
        return st.one_of(ok, st.builds(cls, command_status=st.integers(0, 0xFFFFFFFF), **kwargs))
    # An error response carries no body (SMPP 3.4 4.4.2), so only its header survives the wire.
    errors = st.builds(
        cls, command_status=st.integers(1, 0xFFFFFFFF), sequence_number=st.integers(0, 0xFFFFFFFF)
    )
    return st.one_of(ok, errors)


any_pdu = st.sampled_from(P.PDU_CLASSES).flatmap(pdus_of)
