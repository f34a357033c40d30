"""Prefix routes: the longest matching number prefix names the carriers to try, in failover order."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Route:
    """Numbers starting with `prefix` ("" matches every number) go to `carriers`, first one first."""

    prefix: str
    carriers: tuple[str, ...]


class RouteTable:
    def __init__(self, routes: Iterable[Route]) -> None:
        self._by_prefix: dict[str, tuple[str, ...]] = {}
        for route in routes:
            if not route.prefix.isdigit() and route.prefix != "":
                raise ValueError(f"route prefix {route.prefix!r} must be digits")
            if route.prefix in self._by_prefix:
                raise ValueError(f"route prefix {route.prefix!r} appears twice")
            self._by_prefix[route.prefix] = route.carriers
        self._lengths = sorted({len(p) for p in self._by_prefix}, reverse=True)

    def carriers_for(self, number: str) -> tuple[str, ...]:
        """Carriers for an E.164 number, longest prefix first; () when no route covers it."""
        table = self._by_prefix
        for n in self._lengths:
            found = table.get(number[:n]) if n <= len(number) else None
            if found is not None:
                return found
        return ()
