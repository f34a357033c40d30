"""[pure] Is the gateway ready for traffic? One answer for the HTTP /ready and the admin socket.

Ready means the gateway can do what it promises an upstream app: accept (the store is open, so a submit
can be made durable) and send (every carrier has at least one bind up, bound or in a throttle pause, so no
route waits on a carrier that has no connection at all). A carrier whose binds are all down makes the whole
gateway not ready even when its routes have another carrier: an operator (or a load balancer in front of
several nodes) wants to hear of it, and the answer names the carrier and each bind's state and last error,
so the reason is on the page without a look at the log.

Liveness is not decided here: a process that answers /live at all is alive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a type only: importing gateway.carriers.bind would import trio
    from gateway.carriers.bind import BindStatus

# BindState values (gateway/carriers/core.py) in which a bind holds a usable SMPP session: a throttle pause is
# the carrier asking us to slow down, not a bind that is down.
UP_STATES = frozenset({"bound", "throttled"})


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    problems: tuple[str, ...]  # one line each, empty when ready

    def describe(self) -> str:
        """The text /ready answers: "ready", or one problem a line."""
        return "ready\n" if self.ready else "".join(f"{p}\n" for p in self.problems)


def readiness(
    binds: Mapping[str, Sequence[BindStatus]], store_open: bool, *, stopping: bool = False
) -> Readiness:
    """`binds`: each carrier's binds (CarrierPool.status()); `store_open`: a submit can be committed now;
    `stopping`: the graceful shutdown has begun (traffic should go elsewhere while the gateway drains)."""
    problems: list[str] = []
    if stopping:
        problems.append("gateway: stopping")
    if not store_open:
        problems.append("store: not open")
    for carrier, statuses in binds.items():
        if not statuses:
            problems.append(f"carrier {carrier}: no binds configured")
        elif not any(s.state in UP_STATES for s in statuses):
            problems.append(f"carrier {carrier}: no bind up ({'; '.join(_bind_line(s) for s in statuses)})")
    return Readiness(not problems, tuple(problems))


def _bind_line(status: BindStatus) -> str:
    line = f"{status.bind} {status.state}"
    return f"{line}: {status.last_error}" if status.last_error else line
