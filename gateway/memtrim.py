"""Hand freed heap memory back to the operating system now and then (glibc's malloc_trim).

A gateway's processes allocate and free texts, records and frames of every size for months. CPython and
glibc keep freed blocks for reuse, and the heap's top cannot shrink past a block still in use, so a
process's resident size can creep although nothing leaks. malloc_trim(0) returns whole free pages
anywhere in the heap. Where there is no glibc (musl, macOS), the trim does nothing.

Before each trim the young generations of the cyclic collector run (gc.collect(1)): gctune.py lets them
wait for 50,000 allocations, which at a quiet hour is half an hour of garbage cycles held (a soak showed
5-6 MB per process between collections). A collection of the young generations every 30 seconds costs a
few milliseconds; the frozen start-up objects are not scanned.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import time
from collections.abc import Callable


def _libc_trim() -> Callable[[], object] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


class Trimmer:
    """`maybe()` collects and trims at most once per `every_seconds` (a call costs a time lookup otherwise)."""

    def __init__(self, every_seconds: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._every = every_seconds
        self._clock = clock
        self._last = clock()
        self._trim = _libc_trim()

    def maybe(self) -> bool:
        now = self._clock()
        if now - self._last < self._every:
            return False
        self._last = now
        gc.collect(1)
        if self._trim is not None:
            self._trim()
        return True
