"""A long message's parts go to the carrier one after the other (ARCHITECTURE.md step 5).

Part i+1 is written only once the carrier accepted part i. A part refused for good stops the parts after it,
which were never written: no handset gets half a text because part 2 left after part 1 was rejected. Many
messages are in flight at once, so the window stays full; only one message's own parts wait for each other.

The parts waiting here are "queued" in the store (Prepare dispatches only the first): after a crash the
scheduler finds them due and sends them in order again. Pure bookkeeping, no trio.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from gateway.carriers.jobs import SubmitJob


class Sequencer:
    def __init__(self) -> None:
        self._waiting: dict[int, deque[SubmitJob]] = {}

    def __contains__(self, message_id: int) -> bool:
        return message_id in self._waiting

    def __len__(self) -> int:
        return len(self._waiting)

    def start(self, message_id: int, jobs: Sequence[SubmitJob]) -> SubmitJob:
        """The job to send now (the first part); the others wait for `next`."""
        if len(jobs) > 1:
            self._waiting[message_id] = deque(jobs[1:])
        return jobs[0]

    def next(self, message_id: int) -> SubmitJob | None:
        """After the carrier accepted a part: the next part to send (None when none waits)."""
        waiting = self._waiting.get(message_id)
        if not waiting:
            return None
        job = waiting.popleft()
        if not waiting:
            del self._waiting[message_id]
        return job

    def stop(self, message_id: int) -> list[SubmitJob]:
        """The parts that will not be sent now (a part failed, or the message left its carrier)."""
        return list(self._waiting.pop(message_id, ()))
