"""SMPP 3.4, sans-IO: constants, PDUs, codec, framing, session state machine, receipts.

Pure: no trio, no lmdb, no socket. Bytes in, PDUs and events out.
"""

from gateway.smpp.codec import decode, encode, encode_many
from gateway.smpp.framing import Framer
from gateway.smpp.msgid import CarrierIdFormats, IdBase, IdFormat, normalize_id
from gateway.smpp.receipt import Receipt, ReceiptError, parse_receipt
from gateway.smpp.session import Session, SessionConfig
from gateway.smpp.state import Role, State

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
