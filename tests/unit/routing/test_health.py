"""A carrier over its error budget is skipped for a cool-down, then starts again with a clean window."""

from __future__ import annotations

from gateway.routing.health import Budget, ErrorBudget

BUDGET = Budget(max_error_rate=0.5, window_seconds=60.0, min_submits=10, cooldown_seconds=120.0)


def test_failures_over_the_rate_after_enough_submits_start_a_cool_down() -> None:
    health = ErrorBudget({"a": BUDGET})
    for i in range(9):
        assert health.record("a", True, float(i)) is None  # 9 failures: too few answers to judge
    tripped = health.record("a", True, 9.0)
    assert tripped is not None
    assert (tripped.carrier, tripped.submits, tripped.error_rate, tripped.until) == ("a", 10, 1.0, 129.0)
    assert health.cooling("a", 100.0)
    assert health.cooling_carriers(100.0) == {"a"}
    assert not health.cooling("a", 129.0)  # over: used again, the window empty
    assert health.error_rate("a", 129.0) == 0.0


def test_a_carrier_at_its_rate_or_under_stays_in_use() -> None:
    health = ErrorBudget({"a": BUDGET})
    for i in range(40):
        assert health.record("a", i % 2 == 1, float(i)) is None  # never over half
    assert health.error_rate("a", 40.0) == 0.5
    assert not health.cooling("a", 40.0)


def test_old_answers_leave_the_window() -> None:
    health = ErrorBudget({"a": BUDGET})
    for i in range(9):
        health.record("a", True, float(i))  # a bad start, a minute ago
    for i in range(20):
        assert health.record("a", False, 70.0 + i) is None
    assert health.error_rate("a", 90.0) == 0.0
    for i in range(10):  # ten failures among twenty successes in the window: a third
        assert health.record("a", True, 90.0 + i) is None


def test_answers_during_a_cool_down_do_not_count_and_other_carriers_are_apart() -> None:
    health = ErrorBudget({"a": BUDGET, "b": BUDGET})
    for i in range(10):
        health.record("a", True, float(i))
    assert health.record("a", True, 50.0) is None  # sent before the cool-down, answered during it
    assert not health.cooling("b", 50.0)
    assert health.record("unknown-carrier", True, 1.0) is None
