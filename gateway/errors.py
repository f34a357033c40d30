"""The gateway's error tree: its root, and the errors that carry no SMPP status.

This is the ground floor: it imports nothing of the gateway. The errors that answer with an SMPP
`command_status` (the codec's and the session's, segmenting's, a full store) subclass `WireError` in
`gateway/smpp/errors.py`, beside the constants they name. Business refusals (policy says no) are return values,
not exceptions.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""


def forget_traceback(exc: BaseException) -> BaseException:
    """`exc` (and the errors it was raised from or during) without their tracebacks, once it is handled: a
    refusal kept as a value or answered to a client. A traceback holds the frames it passed through, and
    those frames hold the error (`error = ...`, `results` holding it): a reference cycle that only the
    cyclic collector frees, and gctune.py makes that wait for 50,000 allocations. A soak showed each cycle
    keeping a whole request or write group alive, 5-6 MB per process between collections, every 30
    minutes. Returns `exc`."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        e.__traceback__ = None
        e = e.__cause__ or e.__context__
    return exc


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
