"""The registry of optimization methods: names to classes, imported only when used.

harness never imports sepo/ or baselines/ directly; a method joins by adding one line here.
Each class takes its settings as a dict (unknown keys are errors) and implements
harness.optimizer.Optimizer.
"""

from __future__ import annotations

import importlib
from typing import Any

from harness.config import ConfigError
from harness.optimizer import Optimizer

METHODS: dict[str, str] = {
    "sepo": "sepo.optimizer:SePO",
}


def make_optimizer(name: str, settings: dict[str, Any] | None = None) -> Optimizer:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r} in 'methods'; known methods: {', '.join(sorted(METHODS))}.")
    module, cls = METHODS[name].split(":")
    try:
        return getattr(importlib.import_module(module), cls)(settings or {})
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        first = str(exc).splitlines()
        raise ConfigError(f"methods.{name}: invalid settings ({' '.join(first[1:3]).strip()}).") from None
