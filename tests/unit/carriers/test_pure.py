"""The carrier bind core is pure: importing it in a fresh interpreter imports no trio, lmdb, socket or
structlog, not even through the package `__init__` (ARCHITECTURE.md: not negotiable)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PURE = ["gateway.carriers.core", "gateway.carriers.config", "gateway.carriers.jobs", "gateway.carriers.bucket"]
BANNED = ("trio", "lmdb", "socket", "structlog")


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        f"print(','.join(sorted(m for m in {BANNED!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == ""
