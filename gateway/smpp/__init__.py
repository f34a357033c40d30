"""SMPP 3.4, sans-IO: constants, PDUs, codec, framing, session state machine, receipts.

Pure: no trio, no lmdb, no socket. Bytes in, PDUs and events out.

The errors that answer with an SMPP status are in `gateway.smpp.errors`. The names below are imported on first
use (PEP 562), so a module that needs only `constants` or `errors` (segmenting, carrier config) does not build
the codec's PDU tables, which are most of this package's import time.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.smpp.codec import decode, encode, encode_many
    from gateway.smpp.framing import Framer
    from gateway.smpp.msgid import CarrierIdFormats, IdBase, IdFormat, normalize_id
    from gateway.smpp.receipt import Receipt, ReceiptError, parse_receipt
    from gateway.smpp.session import Session, SessionConfig
    from gateway.smpp.state import Role, State

_WHERE = {
    "decode": "codec",
    "encode": "codec",
    "encode_many": "codec",
    "Framer": "framing",
    "CarrierIdFormats": "msgid",
    "IdBase": "msgid",
    "IdFormat": "msgid",
    "normalize_id": "msgid",
    "Receipt": "receipt",
    "ReceiptError": "receipt",
    "parse_receipt": "receipt",
    "Session": "session",
    "SessionConfig": "session",
    "Role": "state",
    "State": "state",
}
__all__ = [
    "CarrierIdFormats",
    "Framer",
    "IdBase",
    "IdFormat",
    "Receipt",
    "ReceiptError",
    "Role",
    "Session",
    "SessionConfig",
    "State",
    "decode",
    "encode",
    "encode_many",
    "normalize_id",
    "parse_receipt",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway.smpp' has no attribute {name!r}")
    return getattr(importlib.import_module(f"gateway.smpp.{module}"), name)
