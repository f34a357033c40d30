"""A faster `__init__` for frozen slotted dataclasses built on hot paths.

A frozen dataclass sets each field through object.__setattr__ (to get around its own frozen __setattr__),
which is most of the cost of building one. `fast_init(cls)` replaces the generated __init__ with one that
writes the slots through their member descriptors: same signature (keyword-only fields stay keyword-only),
same defaults (only immutable defaults: no default_factory), no __post_init__.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any


def fast_init(cls: type) -> None:
    scope: dict[str, Any] = {}
    positional: list[str] = []
    keyword: list[str] = []
    body: list[str] = []
    for f in fields(cls):
        if f.default_factory is not MISSING:
            raise TypeError(f"{cls.__name__}.{f.name}: fast_init does not handle default_factory")
        scope[f"_s_{f.name}"] = getattr(cls, f.name).__set__
        if f.default is MISSING:
            param = f.name
        else:
            scope[f"_d_{f.name}"] = f.default
            param = f"{f.name}=_d_{f.name}"
        (keyword if f.kw_only else positional).append(param)
        body.append(f"    _s_{f.name}(self, {f.name})")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has __post_init__: fast_init would skip it")
    params = ", ".join(["self", *positional, *(["*", *keyword] if keyword else [])])
    exec(f"def __init__({params}):\n" + "\n".join(body), scope)
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[misc]
