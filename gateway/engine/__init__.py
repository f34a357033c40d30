"""The engine [trio]: accept -> persist -> schedule -> route and split -> submit -> correlate -> event.

`core` wires the parts (`scheduler`, `dispatch`, `correlate`, `backend`, sharing `context`), all under trio;
`plan` (their decisions), `sequencer` and `settings` are pure. `Engine` is imported on first use (PEP 562),
so importing `gateway.engine.plan` or the settings does not import trio.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gateway.engine.settings import AccountSettings, CarrierSettings, EncodingSettings, EngineSettings, RouteSettings

if TYPE_CHECKING:
    from gateway.engine.core import Engine

_SHELL = {"Engine": "core"}

__all__ = ["AccountSettings", "CarrierSettings", "EncodingSettings", "Engine", "EngineSettings", "RouteSettings"]


def __getattr__(name: str) -> Any:
    module = _SHELL.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway.engine' has no attribute {name!r}")
    return getattr(importlib.import_module(f"gateway.engine.{module}"), name)
