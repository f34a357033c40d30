"""The gateway's error tree: its root, and the errors that carry no SMPP status.

This is the ground floor: it imports nothing of the gateway. The errors that answer with an SMPP
`command_status` (the codec's and the session's, segmenting's, a full store) subclass `WireError` in
`gateway/smpp/errors.py`, beside the constants they name. Business refusals (policy says no) are return values,
not exceptions.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""


# --- store ------------------------------------------------------------------------------------------


class StoreError(GatewayError):
    """The durable store failed."""


class ClientRefReused(GatewayError):
    """A submit named a client reference the account used before for another request (other recipients,
    sender or text): nothing is stored, and the first submit's message ids are not handed out for it."""


# --- configuration ----------------------------------------------------------------------------------


class ConfigError(GatewayError):
    """One or more problems in configuration files, each with file, key and reason."""

    def __init__(self, problems: list[tuple[str, str, str]]) -> None:
        self.problems = problems
        lines = [f"{file}: {key}: {reason}" for file, key, reason in problems]
        super().__init__("invalid configuration:\n  " + "\n  ".join(lines))
