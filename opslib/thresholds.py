"""The seed's "Key Metrics to Monitor" thresholds, the one place these numbers live, and how a
measured value is judged against them."""
from __future__ import annotations

from typing import Any

from .errors import UsageError

# The seed's "Key Metrics to Monitor" table, the one place these numbers live.
THRESHOLDS: dict[str, tuple[float, float]] = {
    "response_time_ms": (500, 2000),
    "error_rate_pct": (1, 5),
    "memory_pct": (70, 90),
    "cpu_pct": (70, 90),
    "connections_pct": (80, 95),
}
THRESHOLD_LABELS = {
    "response_time_ms": "Response time",
    "error_rate_pct": "Error rate",
    "memory_pct": "Memory usage",
    "cpu_pct": "CPU usage",
    "connections_pct": "Active connections (of pool)",
}


def thresholds(overrides: dict[str, Any] | None = None) -> dict[str, tuple[float, float]]:
    """The seed's thresholds with per-run overrides ``{"memory_pct": [60, 85]}`` applied."""
    out = dict(THRESHOLDS)
    for key, value in (overrides or {}).items():
        if key not in THRESHOLDS:
            raise UsageError(f"unknown threshold {key!r}; known: {', '.join(THRESHOLDS)}")
        try:
            warn, crit = (float(v) for v in value)
        except (TypeError, ValueError):
            raise UsageError(f"threshold {key!r} must be [warning, critical], got {value!r}") from None
        if warn > crit:
            raise UsageError(f"threshold {key!r}: warning {warn} is above critical {crit}")
        out[key] = (warn, crit)
    return out


def classify(value: float | None, limits: tuple[float, float]) -> str:
    """``ok``/``warning``/``critical`` for a value against (warning, critical); > is breach."""
    if value is None or value != value:
        return "unknown"
    warn, crit = limits
    if value > crit:
        return "critical"
    if value > warn:
        return "warning"
    return "ok"
