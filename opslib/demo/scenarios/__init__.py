"""Demo scenarios of every runbook, one module per runbook (or group of runbooks).

Each module defines ``SCENARIOS = {runbook: {scenario: (description, build)}}`` where
``build()`` returns ``(world, collect)`` and ``collect(session, target)`` is the runbook's own
collection call. This package merges them.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Callable

Build = Callable[[], tuple[Any, Callable[..., Any]]]
SCENARIOS: dict[str, dict[str, tuple[str, Build]]] = {}

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    _mod = importlib.import_module(f"{__name__}.{_info.name}")
    for _runbook, _scenarios in getattr(_mod, "SCENARIOS", {}).items():
        SCENARIOS.setdefault(_runbook, {}).update(_scenarios)
