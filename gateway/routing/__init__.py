"""Routing and policy [pure]: number normalisation and the carrier route table."""

from gateway.routing.numbers import normalise
from gateway.routing.table import Route, RouteTable

__all__ = ["Route", "RouteTable", "normalise"]
