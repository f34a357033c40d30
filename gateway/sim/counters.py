"""What the simulator saw and did, for test assertions, `--stats-json` and the benchmark."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(slots=True)
class Counters:
    binds: int = 0
    binds_refused: int = 0
    submits: int = 0
    submits_ok: int = 0
    throttled: int = 0
    errors_injected: int = 0
    drops: int = 0
    receipts_sent: int = 0
    receipts_acked: int = 0
    receipts_expired: int = 0
    receipts_pending: int = 0
    receipts_discarded: int = 0
    mo_sent: int = 0
    mo_acked: int = 0
    mo_refused: int = 0  # deliver_sm_resp with an error status
    concat_complete: int = 0
    concat_incomplete: int = 0
    concat_inconsistent: int = 0
    unbinds: int = 0

    def snapshot(self) -> dict[str, int]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.snapshot(), sort_keys=True)

    def render(self) -> str:
        return "\n".join(f"{name:22} {value}" for name, value in self.snapshot().items())
