"""One SMPP connection's I/O shell, shared by our binds and the simulator.

The sans-IO `Session` decides; a `Link` carries out: one writer task that sends everything the session has
queued in ONE `send_all` per turn (however many PDUs that is), and one ticker task that runs `session.tick`
at the session's next deadline. Readers belong to the users (bind or simulator), since what to do with the
events differs; they feed whole reads to `session.receive_data` and call `kick()` once per read.

A link ends by `fail(reason)`: it records why and cancels the connection's scope, which the owner opened;
I/O errors never escape as exception groups out of the connection nursery.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import trio

from gateway.smpp.session import Event, Session

_IO_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)
# How long `finish` waits for what is queued to be written before the link closes anyway.
FINISH_TIMEOUT_SECONDS = 5.0


class LinkLost(Exception):
    """The connection is gone (peer closed, I/O error, dead link)."""


class Link:
    __slots__ = (
        "_dirty",
        "_finish",
        "_sent",
        "_sleep_until",
        "_tick_wake",
        "batches_taken",
        "error",
        "scope",
        "session",
        "stream",
    )

    def __init__(self, stream: trio.abc.Stream, session: Session) -> None:
        self.stream = stream
        self.session = session
        self.scope = trio.CancelScope()
        self.error: str | None = None
        # How many buffers the writer has taken from the session: a request queued while this was n is in
        # buffer n + 1, so the owner can tell "never written" from "maybe written" after a failure.
        self.batches_taken = 0
        self._dirty = trio.Event()
        self._sent = trio.Event()  # set (and replaced) after each write
        self._finish: str | None = None
        self._tick_wake = trio.Event()
        self._sleep_until = math.inf

    @property
    def closed(self) -> bool:
        return self.error is not None

    def fail(self, reason: str) -> None:
        if self.error is None:
            self.error = reason
        self.scope.cancel()

    def finish(self, reason: str) -> None:
        """End the link once the writer has sent what is queued now (an unbind_resp, a refusal)."""
        self._finish = reason
        self.kick()

    def kick(self) -> None:
        """Something was queued in the session: the writer sends it on its next turn."""
        self._dirty.set()

    def deadline_hint(self, when: float) -> None:
        """A session deadline at `when` may now exist; wake the ticker if it sleeps past it."""
        if when < self._sleep_until:
            self._tick_wake.set()

    async def writer(self) -> None:
        session, stream = self.session, self.stream
        try:
            while True:
                await self._dirty.wait()
                # One more turn of the scheduler before taking the data: the tasks woken by the same read
                # (sender, acks) add their PDUs, and all of it leaves in one write, one syscall.
                await trio.lowlevel.cancel_shielded_checkpoint()
                self._dirty = trio.Event()
                finish = self._finish
                data = session.data_to_send()
                if data:
                    self.batches_taken += 1
                    if finish is None:
                        await stream.send_all(data)
                        self._sent.set()
                        self._sent = trio.Event()
                    else:
                        # The last words (unbind_resp, generic_nack) to a peer that may not read them.
                        with trio.move_on_after(FINISH_TIMEOUT_SECONDS):
                            await stream.send_all(data)
                if finish is not None:
                    self.fail(finish)
                    return
        except _IO_ERRORS as err:
            self.fail(f"write failed: {err!r}")

    async def written(self) -> None:
        """Until the writer's next write has gone out (a reader waits here while the peer reads too slowly)."""
        await self._sent.wait()

    async def flush(self) -> None:
        """Write what is queued now, from the calling task (used on the way out, after the writer stopped)."""
        data = self.session.data_to_send()
        if data:
            self.batches_taken += 1
            await self.stream.send_all(data)

    async def ticker(self, on_events: Callable[[list[Event]], Awaitable[None]]) -> None:
        """Run `session.tick` at each deadline; `on_events` gets what it returns."""
        session = self.session
        while True:
            deadline = session.next_deadline()
            self._sleep_until = math.inf if deadline is None else deadline
            with trio.move_on_at(self._sleep_until):
                await self._tick_wake.wait()
            self._tick_wake = trio.Event()
            self._sleep_until = -math.inf  # awake: hints are moot until we sleep again
            events = session.tick(trio.current_time())
            if events:
                await on_events(events)
            self.kick()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """One read; raises LinkLost when the peer closed or the socket failed."""
        try:
            data = await self.stream.receive_some(max_bytes)
        except _IO_ERRORS as err:
            raise LinkLost(f"read failed: {err!r}") from err
        if not data:
            raise LinkLost("peer closed the connection")
        return bytes(data)

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)
