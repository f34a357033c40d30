from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.valkey import ValkeyServer


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[ValkeyServer]:
    server = ValkeyServer(tmp_path / "valkey")
    server.start()
    try:
        yield server
    finally:
        server.stop()
