"""SMPP codec throughput on one core, ours against smpplib in the same run.

    .venv/bin/python bench/codec.py [--seconds 1.0]

Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

import smpplib.smpp

from gateway.smpp import codec
from gateway.smpp import pdu as P
from gateway.smpp.constants import Tag
from gateway.smpp.receipt import parse_receipt

# A 200-octet submit_sm: the second part of a concatenated GSM message with its UDH, one TLV.
SUBMIT = P.SubmitSm(
    sequence_number=123456,
    source_addr_ton=5,
    source_addr="ACMEBANK",
    dest_addr_ton=1,
    dest_addr_npi=1,
    destination_addr="447700900123",
    esm_class=0x40,
    registered_delivery=1,
    data_coding=0,
    short_message=b"\x05\x00\x03\x2a\x02\x02" + b"Your verification code is 123456. " * 4 + b"Thanks.",
    tlvs=((Tag.USER_MESSAGE_REFERENCE, 4242),),
)
RECEIPT_TEXT = (
    b"id:0A1B2C3D4E sub:001 dlvrd:001 submit date:2611221030 done date:2611221031 "
    b"stat:DELIVRD err:000 text:Your verification"
)
DELIVER = P.DeliverSm(
    sequence_number=99,
    source_addr_ton=1,
    source_addr_npi=1,
    source_addr="447700900123",
    dest_addr_ton=5,
    destination_addr="ACMEBANK",
    esm_class=0x04,
    short_message=RECEIPT_TEXT,
    tlvs=((Tag.RECEIPTED_MESSAGE_ID, "0A1B2C3D4E"), (Tag.MESSAGE_STATE, 2), (Tag.NETWORK_ERROR_CODE, b"\x03\x00\x00")),
)


class _Client:
    def next_sequence(self) -> int:
        return 1


def rate(fn: Callable[[], Any], seconds: float) -> float:
    """Calls per second, best of three timed runs of about `seconds` / 3 each."""
    n = 1
    while True:  # calibrate
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt > 0.05:
            break
        n *= 4
    per_run = max(1, int(n * (seconds / 3) / dt))
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(per_run):
            fn()
        best = max(best, per_run / (time.perf_counter() - t0))
    return best


def smpplib_submit() -> Any:
    pdu = smpplib.smpp.make_pdu(
        "submit_sm",
        client=_Client(),
        source_addr_ton=5,
        source_addr="ACMEBANK",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="447700900123",
        esm_class=0x40,
        registered_delivery=1,
        data_coding=0,
        short_message=SUBMIT.short_message,
        user_message_reference=4242,
    )
    pdu.sequence = 123456
    return pdu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=1.5)
    args = ap.parse_args()
    try:
        os.sched_setaffinity(0, {0})  # one core, as the issue measures
    except (AttributeError, OSError):
        pass
    wire = codec.encode(SUBMIT)
    dwire = codec.encode(DELIVER)
    assert codec.decode(wire) == SUBMIT
    theirs_wire = smpplib_submit().generate()
    decoded = codec.decode(theirs_wire)
    assert isinstance(decoded, P.SubmitSm)
    assert decoded.short_message == SUBMIT.short_message
    client = _Client()
    sec = args.seconds
    result = {
        "submit_sm_octets": len(wire),
        "submit_sm_encode_per_s": rate(lambda: codec.encode(SUBMIT), sec),
        "submit_sm_decode_per_s": rate(lambda: codec.decode(wire), sec),
        "deliver_sm_decode_per_s": rate(lambda: codec.decode(dwire), sec),
        "receipt_parse_per_s": rate(lambda: parse_receipt(RECEIPT_TEXT), sec),
        "deliver_sm_decode_and_parse_per_s": rate(lambda: _decode_and_parse(dwire), sec),
        # smpplib builds a PDU object and generates it: that is what an encode costs a user of it.
        "smpplib_submit_sm_encode_per_s": rate(lambda: smpplib_submit().generate(), sec),
        "smpplib_submit_sm_decode_per_s": rate(lambda: smpplib.smpp.parse_pdu(theirs_wire, client=client), sec),
    }
    result["encode_vs_smpplib"] = result["submit_sm_encode_per_s"] / result["smpplib_submit_sm_encode_per_s"]
    result["decode_vs_smpplib"] = result["submit_sm_decode_per_s"] / result["smpplib_submit_sm_decode_per_s"]
    result["loadavg_1m"] = os.getloadavg()[0]
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}))


def _decode_and_parse(frame: bytes) -> object:
    pdu = codec.decode(frame)
    assert isinstance(pdu, P.DeliverSm)
    return parse_receipt(pdu.short_message, pdu.tlvs)


if __name__ == "__main__":
    main()
