"""The heap trimmer runs at most once per period, and really calls glibc's malloc_trim where there is one."""

from __future__ import annotations

import gc
import weakref

from gateway.memtrim import Trimmer, _libc_trim


def test_trims_once_per_period() -> None:
    now = [100.0]
    trimmer = Trimmer(every_seconds=30.0, clock=lambda: now[0])
    trimmed = []
    trimmer._trim = lambda: trimmed.append(now[0])
    for t in (100.0, 110.0, 129.9, 130.0, 131.0, 160.5):
        now[0] = t
        trimmer.maybe()
    assert trimmed == [130.0, 160.5]


def test_glibc_malloc_trim_is_found_and_callable_on_linux() -> None:
    trim = _libc_trim()
    assert trim is not None  # the CI machine runs glibc Linux
    trim()


def test_garbage_cycles_are_freed_each_period_whatever_the_collector_thresholds() -> None:
    class Node:
        pass

    now = [0.0]
    trimmer = Trimmer(every_seconds=30.0, clock=lambda: now[0])
    gc.collect()
    gc.disable()  # as gctune's 50,000-allocation threshold does for half an hour at a quiet time
    try:
        node = Node()
        node.me = node  # type: ignore[attr-defined]  # a cycle: reference counting alone never frees it
        alive = weakref.ref(node)
        del node
        now[0] = 10.0
        trimmer.maybe()
        assert alive() is not None  # not yet a period
        now[0] = 30.0
        trimmer.maybe()
        assert alive() is None
    finally:
        gc.enable()
