"""Concatenation references per destination (TS 23.040 9.2.3.24.1 / .8; SMPP 3.4 5.3.2.22).

Two long messages in flight to one number must not share a reference, or the handset glues their parts
together. Random 8-bit references collide after ~20 messages (birthday bound); a per-destination counter
never repeats the last reference a destination got until all 256 (or 65536) have been used. A new
destination starts where a shared counter stands, so destinations do not all start at 0.
"""

from __future__ import annotations

from collections import OrderedDict


class RefAllocator:
    """Pure, in memory; `export()` / `from_state()` give plain ints for the store to persist."""

    __slots__ = ("_bits", "_last", "_limit", "_shared")

    def __init__(self, bits: int = 8, *, max_destinations: int = 100_000) -> None:
        if bits not in (8, 16):
            raise ValueError("references are 8 or 16 bits")
        self._bits = bits
        self._limit = max_destinations
        self._last: OrderedDict[str, int] = OrderedDict()
        self._shared = 0

    @property
    def bits(self) -> int:
        return self._bits

    def next(self, destination: str) -> int:
        """The next reference for this destination."""
        modulus = 1 << self._bits
        last = self._last.pop(destination, None)
        ref = (last + 1) % modulus if last is not None else self._shared % modulus
        self._shared = (self._shared + 1) % modulus
        self._last[destination] = ref
        if len(self._last) > self._limit:
            # Forget the least recently used; it restarts at the shared counter if it comes back.
            self._last.popitem(last=False)
        return ref

    def export(self) -> dict[str, int]:
        """Plain state: last reference per destination, plus the shared counter under the key ''."""
        return {"": self._shared, **self._last}

    @classmethod
    def from_state(cls, state: dict[str, int], bits: int = 8, *, max_destinations: int = 100_000) -> RefAllocator:
        """An allocator that continues from `export()`'s output."""
        alloc = cls(bits, max_destinations=max_destinations)
        modulus = 1 << bits
        alloc._shared = state.get("", 0) % modulus
        for destination, ref in state.items():
            if destination:
                alloc._last[destination] = ref % modulus
        return alloc
