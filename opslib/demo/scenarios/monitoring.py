"""Demo scenarios of the monitoring runbook: a normal day, and an incident in progress."""
from __future__ import annotations

from typing import Any, Callable

from ...promql import queries
from ..prom import add_prometheus, instance_labels
from ..world import APP, ENV, REF_NOW, World
from . import _applogs as applogs
from .memory import A, B, MACHINES_AB, wobble

NOW_S = REF_NOW.timestamp()
WINDOW, STEP = "6h", "2m"


def _collect(session, target):  # noqa: ANN001
    from ...runbooks import monitoring

    return monitoring.collect(session, target, window=WINDOW, step=STEP, log_window_minutes=30)


def _logs(seed: int, scripted: list | None = None) -> list:
    return applogs.background(MACHINES_AB, start=NOW_S - 30 * 60, end=NOW_S - 20,
                              seed=seed) + (scripted or [])


def _struggling() -> list:
    """Machine iad, short of memory, answers ever more slowly and some requests time out in
    the app (503 after its 2.5 s upstream timeout): denser towards now."""
    out, t, k = [], NOW_S - 30 * 60 + 40, 0
    while t < NOW_S - 20:
        out.append((t, "app", A, "iad", "info",
                    applogs.access(503, f"/api/projects/{5200 + k * 37 % 900}/tasks?limit=50",
                                   2500.0 + (k * 53) % 400)))
        out.append((t + 0.4, "app", A, "iad", "info",
                    applogs.access(200, f"/api/projects/{5200 + k * 41 % 900}", 1800.0 + (k * 71) % 900)))
        t += 200.0 - 120.0 * (t - (NOW_S - 30 * 60)) / 1800
        k += 1
    return out


def level(base: float, amp: float, period_s: float, phase: float = 0.0) -> Callable[[float], float]:
    """A steady metric with slow waves."""
    return lambda t: base + wobble(t, amp, period_s, phase) + wobble(t, amp / 3, period_s / 7)


def ramp(base: Callable[[float], float], target: float, minutes: float,
         amp: float) -> Callable[[float], float]:
    """``base`` until ``minutes`` ago, then a smooth climb that is exactly ``target`` now."""
    start = NOW_S - minutes * 60
    from_value = base(start)

    def f(t: float) -> float:
        if t <= start:
            return base(t)
        x = (t - start) / (NOW_S - start)
        smooth = x * x * (3 - 2 * x)
        # a wobble that is zero at "now", so the latest sample is exactly the target
        return from_value + (target - from_value) * smooth + wobble(t - NOW_S, amp * x, 600)

    return f


def _connections(connections: int, active: int) -> dict:
    return {"columns": ["connections", "active", "max_connections", "reserved"],
            "rows": [[connections, active, 60, 3]]}


def _world(series: dict, connections: dict, log_entries: list) -> World:
    w = World(configured={"FLY_API_TOKEN", "DATABASE_URL"}, environ=ENV)
    applogs.serve(w, log_entries)
    add_prometheus(w, queries(APP, window=WINDOW), series)
    w.answer("pg", "postgres", "monitoring.connections", connections)
    return w


def _by_instance(fa: Callable[[float], float], fb: Callable[[float], float]) -> list:
    return [({"instance": A}, fa), ({"instance": B}, fb)]


def monitoring_normal() -> tuple[World, Callable[..., Any]]:
    return _world({
        "p95_latency_ms": [({}, level(210, 35, 5400))],
        "error_rate_pct": [({}, level(0.18, 0.08, 3600, 1.0))],
        "memory_pct": [(instance_labels(A, "iad"), level(54, 3, 7200)),
                       (instance_labels(B, "ams"), level(51, 3, 6600, 2.0))],
        "cpu_pct": _by_instance(level(24, 6, 2700), level(21, 5, 3100, 1.5)),
        "concurrency": _by_instance(level(6, 2, 2400), level(5, 2, 2000, 1.0)),
    }, _connections(17, 3), _logs(71)), _collect


def monitoring_incident() -> tuple[World, Callable[..., Any]]:
    return _world({
        "p95_latency_ms": [({}, ramp(level(220, 35, 5400), 2600, 75, 180))],
        "error_rate_pct": [({}, ramp(level(0.2, 0.08, 3600, 1.0), 3.4, 55, 0.5))],
        "memory_pct": [(instance_labels(A, "iad"), ramp(level(56, 3, 7200), 93, 150, 1.5)),
                       (instance_labels(B, "ams"), level(52, 3, 6600, 2.0))],
        "cpu_pct": _by_instance(ramp(level(26, 6, 2700), 64, 90, 5), level(23, 5, 3100, 1.5)),
        "concurrency": _by_instance(ramp(level(6, 2, 2400), 19, 80, 2), level(5, 2, 2000, 1.0)),
    }, _connections(41, 9), _logs(73, _struggling())), _collect


SCENARIOS = {
    "monitoring": {
        "normal": ("a normal day: p95 ~210 ms, 0.2% errors, memory ~55%, CPU ~25%, 17/57 "
                   "database connections", monitoring_normal),
        "incident": ("an incident building over the last hours on one machine: p95 2.6 s, 3.4% "
                     "errors, memory 93%; CPU 64% and connections 72% still OK",
                     monitoring_incident),
    },
}
