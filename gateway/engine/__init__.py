"""The engine [trio]: accept -> persist -> schedule -> route and split -> submit -> correlate -> event."""

from gateway.engine.core import AccountSettings, Engine
from gateway.engine.settings import CarrierSettings, EncodingSettings, EngineSettings, RouteSettings

__all__ = ["AccountSettings", "CarrierSettings", "EncodingSettings", "Engine", "EngineSettings", "RouteSettings"]
