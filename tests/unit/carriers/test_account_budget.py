"""A carrier account's TPS budget (gateway/carriers/bucket.py AccountBudget), shared by the account's binds on
this node and, leased a tick at a time, by every node of a cluster; and BindCore's room and ready_at under it.
Time is a float the test moves."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest

from gateway.carriers.bucket import AccountBudget
from gateway.carriers.config import BindConfig
from gateway.carriers.core import BindCore

CONFIG = BindConfig(window=8, reconnect_min_seconds=1.0, reconnect_max_seconds=60.0)


def bound_core(budget: AccountBudget | None, config: BindConfig = CONFIG, now: float = 0.0) -> BindCore:
    core = BindCore(config, now, rng=random.Random(0), budget=budget)
    core.connect(now)
    core.connected(now)
    core.bound(now)
    return core


def send(core: BindCore, n: int, now: float) -> None:
    for _ in range(n):
        core.take(object(), 1)
    core.sent(n, now)


# --- unleased: a local bucket ---------------------------------------------------------------------------


def test_without_a_lease_it_is_a_token_bucket_at_the_rate() -> None:
    budget = AccountBudget(20.0, now=0.0)
    assert not budget.leased
    assert budget.available(0.0) == 2  # a tenth of a second's worth saved up
    budget.take(2, 0.0)
    assert budget.available(0.0) == 0
    assert budget.next_token_at(0.0) == pytest.approx(0.05)
    assert budget.available(0.05) == 1
    assert budget.available(10.0) == 2  # never more than the burst


def test_a_local_budget_counts_what_was_used_but_is_never_starved() -> None:
    budget = AccountBudget(10.0, now=0.0)
    budget.take(1, 0.0)
    budget.take(1, 0.1)
    assert budget.next_token_at(0.1) == pytest.approx(0.2)
    assert budget.demand() == (2, False)  # waiting on the local bucket is not a lease too small
    assert budget.demand() == (0, False)  # reset


def test_over_a_second_a_local_budget_lets_through_its_rate() -> None:
    budget = AccountBudget(50.0, now=0.0)
    now, sent = 0.0, 0
    while now < 1.0:
        n = budget.available(now)
        budget.take(n, now)
        sent += n
        now = budget.next_token_at(now)
    assert 50 <= sent <= 55  # the rate, plus the first burst


# --- leased ----------------------------------------------------------------------------------------------


def test_a_grant_is_exactly_the_tokens_until_its_time() -> None:
    budget = AccountBudget(100.0, now=0.0)
    budget.grant(7, until=0.1)
    assert budget.leased
    assert budget.available(0.0) == 7
    assert budget.next_token_at(0.0) == 0.0
    budget.take(4, 0.01)
    assert budget.available(0.02) == 3
    budget.take(3, 0.03)
    assert budget.available(0.03) == 0
    # Spent: the next tick's grant, looked at shortly after it should come.
    assert budget.next_token_at(0.04) == pytest.approx(0.105)
    assert budget.demand() == (7, True)
    assert budget.demand() == (0, False)


def test_tokens_left_when_the_tick_ends_are_void() -> None:
    budget = AccountBudget(100.0, now=0.0)
    budget.grant(10, until=0.1)
    budget.take(2, 0.05)
    assert budget.available(0.0999) == 8
    assert budget.available(0.1) == 0  # the tick is over: its tokens are gone, not saved up
    assert budget.available(5.0) == 0  # and no local refill either while leased
    assert budget.next_token_at(0.2) == pytest.approx(0.205)
    assert budget.demand() == (2, True)


def test_a_new_grant_replaces_what_the_last_one_left() -> None:
    budget = AccountBudget(100.0, now=0.0)
    budget.grant(10, until=0.1)
    budget.take(1, 0.0)
    budget.grant(2, until=0.2)
    assert budget.available(0.1) == 2  # not 9 + 2
    budget.grant(0, until=0.3)  # an idle node's tick, or a second's budget spent by the other nodes
    assert budget.available(0.2) == 0
    assert budget.next_token_at(0.2) == pytest.approx(0.305)


def test_a_grant_that_is_already_over_gives_nothing() -> None:
    budget = AccountBudget(100.0, now=0.0)
    budget.grant(5, until=1.0)
    assert budget.available(1.0) == 0
    assert budget.available(2.0) == 0


def test_demand_is_used_tokens_and_starvation_since_the_last_call() -> None:
    budget = AccountBudget(100.0, now=0.0)
    budget.grant(10, until=0.1)
    budget.take(3, 0.0)
    assert budget.next_token_at(0.0) == 0.0  # tokens left: not starved
    assert budget.demand() == (3, False)
    budget.grant(1, until=0.2)
    budget.take(1, 0.1)
    budget.next_token_at(0.1)
    budget.next_token_at(0.11)
    assert budget.demand() == (1, True)
    assert budget.demand() == (0, False)


# --- leased and back --------------------------------------------------------------------------------------


def test_unleased_switches_back_to_a_local_bucket_at_the_nodes_share() -> None:
    budget = AccountBudget(100.0, now=0.0)
    budget.grant(0, until=0.1)
    assert budget.available(0.05) == 0
    budget.unleased(50.0, now=0.1)  # Valkey cannot be asked: half of it with two nodes
    assert not budget.leased
    assert budget.rate == 100.0  # the account's rate, still what the cluster is asked for
    assert budget.available(0.1) == 5  # a fresh bucket at 50/s: a tenth of a second's worth
    budget.take(5, 0.1)
    assert budget.available(0.1) == 0
    assert budget.next_token_at(0.1) == pytest.approx(0.12)
    # Over one second it sends about its share, not the account's whole rate.
    now, sent = 0.12, 0
    while now < 1.12:
        n = budget.available(now)
        budget.take(n, now)
        sent += n
        now = budget.next_token_at(now)
    assert 48 <= sent <= 51


def test_unleased_again_at_the_same_share_keeps_the_bucket() -> None:
    budget = AccountBudget(100.0, now=0.0)
    budget.unleased(50.0, now=0.0)
    budget.take(5, 0.0)
    budget.unleased(50.0, now=0.0)  # every tick while Valkey stays away: the bucket is not refilled
    assert budget.available(0.0) == 0
    budget.unleased(25.0, now=0.0)  # another share (nodes changed): a fresh bucket at that rate
    assert budget.available(0.0) == 2
    assert budget.next_token_at(0.0) == 0.0


def test_a_lease_after_unleased_counts_only_the_grant() -> None:
    budget = AccountBudget(100.0, now=0.0)
    budget.unleased(50.0, now=0.0)
    budget.take(2, 0.0)
    budget.grant(1, until=0.2)
    assert budget.leased
    assert budget.available(0.1) == 1
    budget.take(1, 0.1)
    assert budget.available(0.1) == 0
    assert budget.demand() == (3, False)  # starvation is only counted when leased and spent
    budget.next_token_at(0.1)
    assert budget.demand() == (0, True)


# --- BindCore with a budget --------------------------------------------------------------------------------


def test_without_a_budget_only_the_window_and_the_binds_own_tps_count() -> None:
    core = bound_core(None)
    assert core.room(0.0, 0) == CONFIG.window
    assert core.ready_at(0.0, 0) == 0.0


def test_room_is_limited_by_a_local_budget() -> None:
    budget = AccountBudget(30.0, now=0.0)
    core = bound_core(budget)
    assert core.room(0.0, 0) == 3  # window 8, the bind's own TPS unlimited, the account's 3 a tick
    send(core, 3, 0.0)
    assert core.room(0.0, 3) == 0
    assert budget.available(0.0) == 0  # sent() took the account's tokens
    assert core.ready_at(0.0, 3) == pytest.approx(1 / 30)
    assert core.room(1 / 30, 3) == 1


def test_two_binds_of_one_account_share_its_budget() -> None:
    budget = AccountBudget(20.0, now=0.0)
    first, second = bound_core(budget), bound_core(budget)
    assert first.room(0.0, 0) == second.room(0.0, 0) == 2
    send(first, 2, 0.0)
    assert second.room(0.0, 0) == 0
    assert second.ready_at(0.0, 0) == pytest.approx(0.05)
    assert first.ready_at(0.0, 2) == pytest.approx(0.05)


def test_room_and_ready_at_follow_the_lease() -> None:
    budget = AccountBudget(100.0, now=0.0)
    core = bound_core(budget)
    budget.grant(5, until=0.1)
    assert core.room(0.0, 0) == 5
    send(core, 5, 0.0)
    assert core.room(0.01, 5) == 0
    assert core.ready_at(0.01, 5) == pytest.approx(0.105)  # the next tick's grant
    assert budget.demand() == (5, True)  # so the shell asks for a full tick next
    budget.grant(10, until=0.2)
    assert core.room(0.1, 5) == 3  # the window now: 8 - 5 in flight
    assert core.room(0.1, 0) == 8
    assert core.ready_at(0.1, 0) == 0.1
    assert core.room(0.2, 0) == 0  # expired unused: void


def test_the_binds_own_tps_and_the_budget_both_hold() -> None:
    budget = AccountBudget(1000.0, now=0.0)
    core = bound_core(budget, replace(CONFIG, tps=10.0))
    budget.grant(50, until=0.1)
    assert core.room(0.0, 0) == 1  # the bind's own bucket is smaller
    send(core, 1, 0.0)
    assert core.ready_at(0.0, 1) == pytest.approx(0.1)  # the bind's next token; the lease has plenty
    budget.grant(0, until=0.2)
    assert core.room(0.1, 1) == 0  # the bind has a token now, the account has none
    assert core.ready_at(0.1, 1) == pytest.approx(0.205)


def test_a_full_window_or_an_unbound_bind_waits_whatever_the_budget() -> None:
    budget = AccountBudget(100.0, now=0.0)
    budget.grant(100, until=1.0)
    core = bound_core(budget)
    assert core.ready_at(0.0, CONFIG.window) == math.inf
    core.link_lost("gone", 0.0)
    assert core.room(0.0, 0) == 0
    assert core.ready_at(0.0, 0) == math.inf
    assert budget.demand() == (0, False)  # nothing asked of the budget: not starved
