"""Per-message and per-PDU detail, at debug level only.

The hot paths (a submit_sm, an answer, a receipt: thousands a second) test `enabled` before they build a log
line, so with the log at info or above they pay one attribute load and nothing else: no keyword dict, no
processor chain. `gateway.app.setup_logging` sets it from `[server] log_level`, and a reload changes it.
"""

from __future__ import annotations

enabled = False


def set_level(level: str) -> None:
    global enabled
    enabled = level == "debug"
