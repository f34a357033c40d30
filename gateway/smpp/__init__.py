"""SMPP 3.4, sans-IO: constants, PDUs, codec, framing, session state machine, receipts.

Pure: no trio, no lmdb, no socket. Bytes in, PDUs and events out.
"""
