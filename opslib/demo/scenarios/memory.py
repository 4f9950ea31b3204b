"""Demo scenarios of the memory runbook: an OOM-killing leak, and a page-cache false alarm."""
from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any, Callable

from ...promql import queries
from ..prom import add_prometheus, instance_labels
from ..world import APP, ENV, REF_NOW, World, ago, json_response, machine, ms
from ...session import iso

A, B = "148ed193b95089", "3d8d9e1fe67e89"
NOW_S = REF_NOW.timestamp()
WINDOW, STEP = "6h", "2m"


def wobble(t: float, amp: float, period_s: float = 1500.0, phase: float = 0.0) -> float:
    """Deterministic small variation, so series look measured rather than drawn."""
    return amp * math.sin(2 * math.pi * t / period_s + phase)


def exit_event(at: datetime, *, restarts: int, capitalised: bool, oom: bool = True,
               code: int = 137) -> dict:
    """An exit event as flyd reports it; old flyd puts the exit under ``MonitorEvent``."""
    ee = {"exit_code": code, "guest_exit_code": 0, "guest_signal": -1, "oom_killed": oom,
          "requested_stop": False, "restarting": True, "signal": -1, "exited_at": iso(at)}
    request: dict[str, Any] = ({"MonitorEvent": {"exit_event": ee}} if capitalised
                               else {"exit_event": ee})
    request["restart_count"] = restarts
    return {"id": f"01JD7Q{ms(at):X}", "type": "exit", "status": "stopped", "source": "flyd",
            "timestamp": ms(at), "request": request}


def start_event(at: datetime, source: str = "flyd") -> dict:
    return {"id": f"01JD7S{ms(at):X}", "type": "start", "status": "started", "source": source,
            "timestamp": ms(at)}


def launch_event(at: datetime) -> dict:
    return {"id": f"01JD7L{ms(at):X}", "type": "launch", "status": "created", "source": "user",
            "timestamp": ms(at)}


def _memory_collect(session, target):  # noqa: ANN001
    from ...runbooks import memory

    return memory.collect(session, target, window=WINDOW, step=STEP)


def _routes(w: World, machines: list[dict]) -> None:
    w.route("fly-machines", "GET", f"/v1/apps/{APP}/machines",
            lambda r: json_response(200, machines, latency_ms=180))
    for m in machines:
        w.route("fly-machines", "GET", f"/v1/apps/{APP}/machines/{m['id']}/events",
                lambda r, m=m: json_response(200, m["events"], latency_ms=140))


def memory_oom() -> tuple[World, Callable[..., Any]]:
    """Machine A leaks: climbs ~28 %/h, is OOM-killed at 100%, restarts at ~38%, climbs again."""
    oom1, oom2 = ago(hours=4, minutes=10), ago(hours=1, minutes=58)
    resets = [oom1.timestamp(), oom2.timestamp()]
    rise_per_s = (100 - 38) / (resets[1] - resets[0])

    def a_mem(t: float) -> float:
        since = max((r for r in resets if r <= t), default=None)
        base = 38 + rise_per_s * (t - since) if since is not None else 100 - rise_per_s * (resets[0] - t)
        return min(99.6, base + wobble(t, 0.6))

    def a_cache(t: float) -> float:
        return min(99.8, a_mem(t) + 4 + wobble(t, 0.4, 900))

    def b_mem(t: float) -> float:
        return 51 + wobble(t, 2.5, 5400, 1.0)

    def b_cache(t: float) -> float:
        return 66 + wobble(t, 2.0, 7200)

    a_events = [start_event(oom2 + timedelta(seconds=4)),
                exit_event(oom2, restarts=2, capitalised=True),
                start_event(oom1 + timedelta(seconds=4)),
                exit_event(oom1, restarts=1, capitalised=False),
                start_event(ago(days=2, hours=3)), launch_event(ago(days=2, hours=3, seconds=5))]
    machines = [
        machine(A, name="silent-sun-1234", region="iad", memory_mb=256, events=a_events),
        machine(B, name="misty-river-5678", region="ams", memory_mb=256),
    ]
    w = World(configured={"FLY_API_TOKEN", "DATABASE_URL"}, environ=ENV)
    _routes(w, machines)
    total = 231_735_296.0
    add_prometheus(w, queries(APP, window=WINDOW), {
        "memory_pct": [(instance_labels(A, "iad"), a_mem), (instance_labels(B, "ams"), b_mem)],
        "memory_used_incl_cache_pct": [(instance_labels(A, "iad"), a_cache),
                                       (instance_labels(B, "ams"), b_cache)],
        "memory_total_bytes": [({**instance_labels(A, "iad"), "__name__": "fly_instance_memory_mem_total"},
                                lambda t: total),
                               ({**instance_labels(B, "ams"), "__name__": "fly_instance_memory_mem_total"},
                                lambda t: total)],
        "oom_exits": [({"instance": A}, lambda t: 1.0), ({"instance": B}, lambda t: 0.0)],
    })
    return w, _memory_collect


def memory_page_cache() -> tuple[World, Callable[..., Any]]:
    """A false alarm: 'free' memory is low because of page cache; mem_available is plenty."""
    machines = [
        machine(A, name="silent-sun-1234", region="iad", memory_mb=512),
        machine(B, name="misty-river-5678", region="ams", memory_mb=512),
    ]
    w = World(configured={"FLY_API_TOKEN", "DATABASE_URL"}, environ=ENV)
    _routes(w, machines)
    total = 480_247_808.0
    add_prometheus(w, queries(APP, window=WINDOW), {
        "memory_pct": [(instance_labels(A, "iad"), lambda t: 44 + wobble(t, 2.0, 3600)),
                       (instance_labels(B, "ams"), lambda t: 47 + wobble(t, 1.5, 4200, 2.0))],
        "memory_used_incl_cache_pct": [
            (instance_labels(A, "iad"), lambda t: 93 + wobble(t, 0.8, 3000)),
            (instance_labels(B, "ams"), lambda t: 91 + wobble(t, 0.9, 2600, 1.0))],
        "memory_total_bytes": [(instance_labels(A, "iad"), lambda t: total),
                               (instance_labels(B, "ams"), lambda t: total)],
        "oom_exits": [({"instance": A}, lambda t: 0.0), ({"instance": B}, lambda t: 0.0)],
    })
    return w, _memory_collect


SCENARIOS = {
    "memory": {
        "oom": ("one machine leaking past 90% with two OOM kills (exit 137) and restarts in "
                "6 h; the other steady at ~50%", memory_oom),
        "page-cache": ("a false alarm: dashboards show 91-93% counting page cache, but "
                       "mem_available says ~45% in use; no OOM, no restarts", memory_page_cache),
    },
}
