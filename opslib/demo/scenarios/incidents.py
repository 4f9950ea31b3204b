"""Demo incidents: one world that every read-only runbook sees, so triage tells one story.

The other scenario modules give each runbook its own world (an OOM here, an expiring
certificate there). Here each incident is a single :class:`World`, composed from those
pieces so that every source answers the same way to every runbook: the same machines and
events, the same logs, the same Prometheus series, the same database. ``make triage
scenario=connection-leak`` (or ``oom-loop``) then names one root cause and one next step, and
``make demo-alert`` shows the alert flow on the same world.

* ``connection-leak`` — a background worker opens a transaction per job and never commits:
  20 sessions sit ``idle in transaction``, the database is at its connection limit, the web
  app's new connections are refused and its requests fail with 500s after 30 s.
* ``oom-loop`` — release 42's memory leak: machine iad climbs until the kernel kills it, it
  restarts and climbs again (killed every ~2 h, the last time 9 minutes ago); each kill is a
  burst of proxy errors and slow health probes.
"""
from __future__ import annotations

import json
from typing import Any, Callable

import httpx

from ...promql import queries
from ..prom import add_prometheus
from ...times import iso
from ..world import APP, ENV, REF_NOW, World, ago, json_response
from .data import _auth_world, _dated, database_connection_leak, database_healthy, statuspage
from .fly_ops import tls_healthy
from .health import _db_ok, _health_collect
from .memory import A, B, _memory_collect, memory_page_cache, oom_world
from .monitoring import _collect as _monitoring_collect
from .monitoring import _connections, level, ramp
from .not_responding import WINDOW as NR_WINDOW
from .not_responding import _collect as _nr_collect
from .not_responding import traffic
from .logs import _collect as _logs_collect

def _collectors() -> dict[str, Callable[..., Any]]:
    from .data import _auth_collect, _database_collect
    from .fly_ops import _tls_collect

    return {"health": _health_collect, "not-responding": _nr_collect,
            "database": _database_collect, "memory": _memory_collect, "tls": _tls_collect,
            "auth": _auth_collect, "monitoring": _monitoring_collect, "logs": _logs_collect}


def compose(*worlds: World) -> World:
    """One world from several: the first world that answers a route or capture answers it for
    every runbook. Prometheus is the exception: its queries are answered by the first world
    whose series know the query (an unknown query is an empty result, as on a real server)."""
    out = World(environ=dict(ENV))
    for w in worlds:
        for key, handlers in w.routes.items():
            if key in out.routes and key[0] == "prometheus":
                out.routes[key] = [_first_answer(out.routes[key][0], handlers[0])]
            else:
                out.routes.setdefault(key, handlers)
        for key, value in w.captures.items():
            out.captures.setdefault(key, value)
        out.configured |= w.configured
    return out


def _first_answer(first: Callable, second: Callable) -> Callable:
    def handle(request: httpx.Request) -> httpx.Response:
        got = first(request)
        if json.loads(got.content).get("data", {}).get("result"):
            return got
        return second(request)

    return handle


def _probes(*answers: tuple[int, float]) -> World:
    """The app's ``/health`` as five probes see it (status, latency ms), dated like a server."""
    now = iso(REF_NOW)
    body = {200: {"status": "ok", "timestamp": now},
            500: {"status": "error", "timestamp": now,
                  "error": "timeout acquiring a database connection from the pool"}}
    return World().route("app", "GET", "/health", *(
        _dated(body.get(s, {"status": "error", "timestamp": now}), status=s, latency=lat)
        for s, lat in answers))


def _series(window: str, series: dict) -> World:
    return add_prometheus(World(), queries(APP, window=window), series)


def _captures(*, db_ok: bool, connections: dict) -> World:
    """What health's and monitoring's own SQL reads from the same database."""
    w = World()
    if db_ok:
        w.answer("pg", "postgres", "health.recovery", _db_ok())
    w.answer("pg", "postgres", "monitoring.connections", connections)
    return w


def _quiet_status_page() -> World:
    """Supabase's status page with nothing going on (the incident is ours, not theirs)."""
    return World().route("supabase-status", "GET", "/api/v2/summary.json",
                         lambda request: json_response(200, statuspage(), latency_ms=60))


# --------------------------------------------------------------------------- connection leak
def connection_leak() -> World:
    db, _ = database_connection_leak()
    erroring = ramp(level(0.2, 0.08, 3600, 1.0), 4.1, 12, 0.3)
    return compose(
        # /health reads the database: the pool cannot get a connection within its 30 s
        _probes((500, 30012), (200, 2940), (500, 30008), (500, 30021), (200, 3115)),
        db,  # machines, logs, Postgres and Supabase: the leak itself
        _captures(db_ok=True, connections=_connections(57, 6)),
        _series("6h", {
            "p95_latency_ms": [({}, ramp(level(210, 35, 5400), 29000, 12, 400))],
            "error_rate_pct": [({}, erroring)],
            "cpu_pct": [({"instance": A}, level(22, 5, 2700)), ({"instance": B}, level(20, 5, 3100))],
            "concurrency": [({"instance": A}, ramp(level(6, 2, 2400), 31, 12, 2)),
                            ({"instance": B}, ramp(level(5, 2, 2000), 27, 12, 2))],
        }),
        _series(NR_WINDOW, {
            "request_rate": [({}, traffic)],
            "edge_5xx_by_status": [({"status": "500"}, lambda t: traffic(t) * erroring(t) / 100)],
        }),
        memory_page_cache()[0],  # memory is fine (page cache only)
        tls_healthy()[0], _auth_world())


# --------------------------------------------------------------------------- OOM loop
def oom_loop() -> World:
    # machines with their OOM exits, the leak's series, the kernel's lines: killed every ~2 h,
    # the last time 9 minutes ago
    last = ago(minutes=9)
    mem = oom_world([ago(hours=4, minutes=6), ago(hours=2, minutes=7, seconds=30), last])
    oom2 = last.timestamp()

    def spike(base: Callable[[float], float], peak: float) -> Callable[[float], float]:
        """``base``, with ``peak`` for the two minutes after the last OOM kill."""
        return lambda t: peak if oom2 <= t <= oom2 + 120 else base(t)

    return compose(
        _probes((200, 188), (200, 241), (200, 1470), (200, 205), (200, 233)),
        mem,
        _captures(db_ok=True, connections=_connections(18, 3)),
        _series("6h", {
            "p95_latency_ms": [({}, spike(level(230, 35, 5400), 4800))],
            "error_rate_pct": [({}, spike(level(0.2, 0.08, 3600, 1.0), 9.5))],
            "cpu_pct": [({"instance": A}, level(31, 6, 2700)), ({"instance": B}, level(22, 5, 3100))],
            "concurrency": [({"instance": A}, level(6, 2, 2400)), ({"instance": B}, level(5, 2, 2000))],
        }),
        _series(NR_WINDOW, {
            "request_rate": [({}, traffic)],
            "edge_5xx_by_status": [({"status": "502"}, spike(lambda t: 0.0, 1.1))],
        }),
        _quiet_status_page(), database_healthy()[0], tls_healthy()[0], _auth_world())


INCIDENTS = {
    "connection-leak": ("one incident, every runbook: a worker leaks transactions, the database "
                        "is at its connection limit, web requests fail with 500s", connection_leak),
    "oom-loop": ("one incident, every runbook: release 42 leaks memory; machine iad is "
                 "OOM-killed every ~2 h, the last time 9 minutes ago, and climbs again", oom_loop),
}


def _build(world: Callable[[], World], runbook: str) -> Callable[[], tuple[World, Any]]:
    return lambda: (world(), _collectors()[runbook])


# the database runbook's connection-leak scenario (data.py) is this incident's database
SCENARIOS = {runbook: {name: (f"{description} (what {runbook} sees)", _build(world, runbook))
                       for name, (description, world) in INCIDENTS.items()
                       if (runbook, name) != ("database", "connection-leak")}
             for runbook in ("health", "not-responding", "database", "memory", "tls", "auth",
                             "monitoring", "logs")}
