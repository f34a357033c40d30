"""Real LMDB stores in tmp dirs, with a clock the test moves."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.store import Store, StoreConfig
from tests.integration.store.support import FakeClock

StoreFactory = Callable[..., Store]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def open_store(tmp_path: Path, clock: FakeClock) -> Iterator[StoreFactory]:
    """Opens (or reopens, running recovery) the test's store; closes every handle at the end."""
    opened: list[Store] = []

    def factory(**overrides: object) -> Store:
        for store in opened:
            store.close()
        opened.clear()
        cfg = StoreConfig(path=str(tmp_path / "db"), sync=False, **overrides)  # type: ignore[arg-type]
        store = Store.open(cfg, clock=clock)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()
