"""The event-loop watchdog: re-armed while the loop runs, so only a loop stuck for WATCHDOG_SECONDS dumps
every thread's stack to the log (a gateway stuck in a computation answers nothing, not even SIGTERM)."""

from __future__ import annotations

import faulthandler
from itertools import pairwise
from typing import Any

import pytest
import trio
import trio.testing

from gateway import app


async def test_the_watchdog_is_rearmed_while_the_loop_runs_and_disarmed_at_the_end(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    armed: list[tuple[float, float, bool]] = []
    cancelled: list[float] = []

    def arm(timeout: float, *, exit: bool = False, **_: Any) -> None:
        armed.append((trio.current_time(), timeout, exit))

    monkeypatch.setattr(faulthandler, "dump_traceback_later", arm)
    monkeypatch.setattr(faulthandler, "cancel_dump_traceback_later", lambda: cancelled.append(trio.current_time()))
    with trio.move_on_after(app.WATCHDOG_SECONDS * 3):
        await app._watchdog()
    times = [t for t, _, _ in armed]
    # Armed again well before it could fire: a loop that runs never dumps.
    assert max(b - a for a, b in pairwise(times)) < app.WATCHDOG_SECONDS / 2
    assert {(timeout, exit) for _, timeout, exit in armed} == {(app.WATCHDOG_SECONDS, False)}  # dump, never kill
    assert cancelled  # a clean stop leaves no timer behind
