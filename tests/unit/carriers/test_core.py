"""The carrier bind's decisions (gateway/carriers/core.py) without sockets, tasks or a clock: time is a float
the test moves, the random source is a stub."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest

from gateway.carriers.config import BindConfig
from gateway.carriers.core import (
    TRANSITIONS,
    BindCore,
    BindState,
    BindStateError,
    Input,
    Pending,
)
from gateway.smpp.constants import CommandId, CommandStatus
from gateway.smpp.session import Outstanding

CONFIG = BindConfig(
    window=8,
    reconnect_min_seconds=1.0,
    reconnect_max_seconds=60.0,
    throttle_backoff_min_seconds=0.5,
    throttle_backoff_max_seconds=4.0,
    bind_refused_retry_seconds=300.0,
)


class FixedRandom(random.Random):
    """`random()` always returns `value`: the jitter's two ends are then exact."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def bound_core(config: BindConfig = CONFIG, now: float = 0.0, rng: float = 0.5) -> BindCore:
    core = BindCore(config, now, rng=FixedRandom(rng))
    core.connect(now)
    core.connected(now)
    core.bound(now)
    return core


def send(core: BindCore, n: int, now: float = 0.0, batch: int = 1) -> list[Pending]:
    items = [core.take(f"job{core.submitted + i}", batch) for i in range(n)]
    core.sent(n, now)
    return items


# --- the state table ----------------------------------------------------------------------------------


def test_a_bind_goes_idle_connecting_binding_bound() -> None:
    core = BindCore(CONFIG, 0.0)
    seen = [(core.state, core.since)]
    core.connect(1.0)
    seen.append((core.state, core.since))
    core.connected(2.0)
    seen.append((core.state, core.since))
    core.bound(3.0)
    seen.append((core.state, core.since))
    assert seen == [
        (BindState.IDLE, 0.0),
        (BindState.CONNECTING, 1.0),
        (BindState.BINDING, 2.0),
        (BindState.BOUND, 3.0),
    ]
    assert core.is_bound


def test_an_input_the_table_lacks_raises_bind_state_error() -> None:
    core = BindCore(CONFIG, 0.0)
    with pytest.raises(BindStateError) as info:
        core.bound(0.0)  # bind_resp without a connection
    assert (info.value.state, info.value.event) == (BindState.IDLE, Input.BIND_OK)
    core.connect(0.0)
    with pytest.raises(BindStateError):
        core.connect(0.0)


def test_every_state_is_reachable_and_every_non_final_state_can_stop_or_lose_its_link() -> None:
    reached = {BindState.IDLE} | set(TRANSITIONS.values())
    assert reached == set(BindState)
    for state in BindState:
        inputs = {event for (s, event) in TRANSITIONS if s is state}
        assert Input.STOP in inputs or Input.LINK_LOST in inputs, state


def test_stop_while_bound_unbinds_then_stops_when_the_link_closes() -> None:
    core = bound_core()
    assert core.stop(1.0) is BindState.UNBINDING
    assert core.link_lost(None, 2.0) is BindState.UNBINDING
    assert core.state is BindState.STOPPED
    assert core.stop(3.0) is BindState.STOPPED


# --- window, slow start, TPS ----------------------------------------------------------------------------


def test_a_fresh_bind_may_fill_its_whole_window() -> None:
    core = bound_core()
    assert core.room(0.0, in_flight=0) == CONFIG.window
    assert core.room(0.0, in_flight=5) == 3
    assert core.ready_at(0.0, in_flight=CONFIG.window) == math.inf


def test_tps_limits_room_and_says_when_the_next_token_comes() -> None:
    core = bound_core(replace(CONFIG, tps=10.0))
    assert core.room(0.0, 0) == 1  # a tenth of a second's worth saved up: one token
    send(core, 1, now=0.0)
    assert core.room(0.0, 1) == 0
    assert core.ready_at(0.0, 1) == pytest.approx(0.1)
    assert core.room(0.35, 1) == 1  # the bucket holds at most a tenth of a second's worth


def test_after_a_throttle_the_window_restarts_at_one_and_grows_per_acceptance() -> None:
    core = bound_core()
    items = send(core, 8)
    for _ in items[:4]:
        core.on_accepted()
    pause = core.on_throttled(items[4], 0.0, in_flight=3)
    assert pause == CONFIG.throttle_backoff_min_seconds
    for item in items[5:]:
        assert core.on_throttled(item, 0.0, in_flight=0) is None  # one pause per burst
    assert core.room(0.1, 0) == 0
    assert core.ready_at(0.1, 0) == 0.5
    assert core.ready_at(0.5, 0) == 0.5  # over: resumed
    assert core.state is BindState.BOUND
    windows = []
    for _ in range(12):
        windows.append(core.room(0.5, 0))
        core.on_accepted()
    # Slow start to half of what was in flight (4 of 8, then 2), then one more per window of acceptances.
    assert windows == [1, 2, 2, 3, 3, 3, 4, 4, 4, 4, 5, 5]


def test_pause_doubles_while_refusals_go_on_and_resets_on_an_acceptance() -> None:
    core = bound_core()
    pauses = []
    now = 0.0
    for _ in range(5):
        (item,) = send(core, 1, now)
        pause = core.on_throttled(item, now, in_flight=0)
        assert pause is not None
        pauses.append(pause)
        now = core.ready_at(now, 0)
    assert pauses == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert core.throttles == 5
    core.on_accepted()
    (item,) = send(core, 1, now)
    assert core.on_throttled(item, now, in_flight=0) == 0.5


# --- retry order --------------------------------------------------------------------------------------


def test_refused_and_held_submits_go_first_in_the_order_taken() -> None:
    core = bound_core()
    items = send(core, 6)
    core.on_accepted()  # items[0]
    # The SMSC refuses 3 and 1 (answers may come in any order); 2, 4 and 5 are accepted.
    core.on_throttled(items[3], 0.0, in_flight=4)
    core.on_throttled(items[1], 0.0, in_flight=3)
    # A job taken while the pause began, never written: it must not overtake the refused ones.
    late = core.take("late", batch=2)
    core.hold(late)
    assert core.next_retry(batch=3) is None  # paused
    assert core.has_retry
    assert core.ready_at(0.2, 0) == 0.5
    core.ready_at(0.5, 0)
    order = []
    while (item := core.next_retry(batch=3)) is not None:
        order.append(item.job)
        assert item.batch == 3
    assert order == ["job1", "job3", "late"]
    assert not core.has_retry


# --- link loss ----------------------------------------------------------------------------------------


def _outstanding(seq: int, item: Pending) -> Outstanding:
    return Outstanding(seq, CommandId.SUBMIT_SM, 30.0, item, None)


def test_a_lost_link_splits_written_from_unwritten_and_hands_retries_back_in_order() -> None:
    core = bound_core()
    first = send(core, 3, batch=1)  # written (the writer took batch 1)
    second = send(core, 2, batch=2)  # queued, never written
    core.on_throttled(first[0], 0.0, in_flight=4)
    lost = [_outstanding(i + 2, item) for i, item in enumerate(first[1:] + second)]
    lost.append(Outstanding(99, CommandId.ENQUIRE_LINK, 30.0, None, None))
    written, unwritten = core.unsent(lost, batches_written=1)
    assert [req.context.job for req in written] == ["job1", "job2"]
    assert [item.job for item in unwritten] == ["job0", "job3", "job4"]
    assert not core.has_retry


# --- reconnecting -------------------------------------------------------------------------------------


def test_network_back_off_grows_with_jitter_and_resets_when_tcp_connects() -> None:
    def delays(rng: float) -> list[float]:
        core = BindCore(CONFIG, 0.0, rng=FixedRandom(rng))
        out = []
        for _ in range(8):
            core.connect(0.0)
            core.link_lost("connect failed", 0.0)
            out.append(core.retry_at)
        return out

    # Full jitter between half the minimum and a ceiling that doubles per failure up to the maximum.
    assert delays(1.0) == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert delays(0.0) == [0.5] * 8
    core = BindCore(CONFIG, 0.0, rng=FixedRandom(1.0))
    for _ in range(6):
        core.connect(0.0)
        core.link_lost("connect failed", 0.0)
    core.connect(100.0)
    core.connected(100.0)  # the SMSC is back: TCP works
    core.link_lost("no bind response in time", 101.0)
    assert core.retry_at == 101.0 + CONFIG.reconnect_min_seconds
    assert core.reconnects == 6


def test_a_credential_refusal_retries_on_its_own_schedule_and_is_news_once() -> None:
    core = BindCore(CONFIG, 0.0, rng=FixedRandom(0.5))
    news = []
    for attempt in range(3):
        now = attempt * 300.0
        core.connect(now)
        core.connected(now)
        news.append(core.bind_refused(CommandStatus.ESME_RINVPASWD, "bind refused with ESME_RINVPASWD", now))
        assert core.state is BindState.REFUSED
        assert core.retry_at == now + 300.0  # the middle of its +-10% jitter
        assert core.link_lost("bind refused with ESME_RINVPASWD", now) is BindState.REFUSED
        assert core.state is BindState.REFUSED
    core.connect(900.0)
    core.connected(900.0)
    news.append(core.bind_refused(CommandStatus.ESME_RINVSYSID, "bind refused with ESME_RINVSYSID", 900.0))
    assert news == [True, False, False, True]
    assert core.last_error == "bind refused with ESME_RINVSYSID"
    low = BindCore(CONFIG, 0.0, rng=FixedRandom(0.0))
    low.connect(0.0)
    low.connected(0.0)
    low.bind_refused(CommandStatus.ESME_RBINDFAIL, "refused", 0.0)
    assert low.retry_at == pytest.approx(270.0)


def test_a_refusal_that_is_not_about_credentials_backs_off_like_a_network_error() -> None:
    core = BindCore(CONFIG, 0.0, rng=FixedRandom(1.0))
    core.connect(0.0)
    core.connected(0.0)
    assert core.bind_refused(CommandStatus.ESME_RSYSERR, "bind refused with ESME_RSYSERR", 0.0)
    assert core.state is BindState.BINDING
    core.link_lost("bind refused with ESME_RSYSERR", 0.0)
    assert (core.state, core.retry_at) == (BindState.BACKING_OFF, 1.0)


def test_unbound_since_marks_when_the_bind_stopped_being_bound() -> None:
    core = BindCore(CONFIG, 0.0)
    before = (core.unbound_since, core.ever_bound)
    assert before == (None, False)
    core.connect(0.0)
    core.connected(0.0)
    core.bound(1.0)
    (item,) = send(core, 1, 2.0)
    core.on_throttled(item, 2.0, in_flight=0)
    throttled = core.unbound_since
    core.link_lost("peer closed the connection", 5.0)
    assert throttled is None  # throttled is still bound
    assert (core.unbound_since, core.ever_bound, core.is_bound) == (5.0, True, False)
    core.connect(6.0)
    core.connected(6.0)
    core.bound(7.0)
    assert core.unbound_since is None


def test_nothing_may_go_unless_bound() -> None:
    core = bound_core()
    core.stop(0.0)  # unbinding: the sender must wait (and so see its cancellation), not spin on no room
    assert core.ready_at(0.0, 0) == math.inf
    assert core.room(0.0, 0) == 0
