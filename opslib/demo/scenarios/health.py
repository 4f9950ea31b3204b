"""Demo scenarios of the health runbook."""
from __future__ import annotations

from typing import Any, Callable

import httpx

from ...times import iso
from ..world import APP, ENV, REF_NOW, World, ago, exit_events, json_response, machine



def _health_ok(latency: float, skew_s: float = 0.4) -> Callable[[httpx.Request], httpx.Response]:
    from datetime import timedelta

    body = {"status": "ok", "timestamp": iso(REF_NOW + timedelta(seconds=skew_s))}
    return lambda request: json_response(200, body, latency_ms=latency)


def _proxy_error(status: int, latency: float) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(
        status, headers={"content-type": "text/plain", "server": "Fly/6f9e1ac2 (2026-11-12)",
                         "fly-request-id": "01JD7QZ3M4-iad"},
        content=b"" if status == 503 else b"502 Bad Gateway",
        extensions={"elapsed_ms": latency})


def _timeout(seconds: float) -> Callable[[httpx.Request], Exception]:
    def handler(request: httpx.Request) -> Exception:
        exc = httpx.ReadTimeout("timed out", request=request)
        exc.elapsed_ms = seconds * 1000  # type: ignore[attr-defined]
        return exc

    return handler


def _db_ok() -> dict:
    return {"columns": ["in_recovery", "server_time"],
            "rows": [[False, iso(REF_NOW).replace("Z", "+00:00")]]}


def _health_collect(session, target):  # noqa: ANN001
    from ...runbooks import health

    return health.collect(session, target, probes=5, timeout=5.0)


def health_healthy() -> tuple[World, Callable[..., Any]]:
    w = World(configured={"FLY_API_TOKEN", "DATABASE_URL"}, environ=ENV)
    w.route("app", "GET", "/health", *(_health_ok(lat) for lat in (92, 118, 87, 131, 104)))
    w.route("fly-machines", "GET", f"/v1/apps/{APP}/machines", lambda r: json_response(200, [
        machine("148ed193b95089", name="silent-sun-1234", region="iad"),
        machine("3d8d9e1fe67e89", name="misty-river-5678", region="ams"),
    ]))
    w.answer("pg", "postgres", "health.recovery", _db_ok())
    return w, _health_collect


def health_degraded() -> tuple[World, Callable[..., Any]]:
    w = World(configured={"FLY_API_TOKEN", "DATABASE_URL"}, environ=ENV)
    w.route("app", "GET", "/health",
            _health_ok(1840), _proxy_error(503, 2630), _timeout(5.0), _proxy_error(503, 2410),
            _health_ok(1955))
    w.route("fly-machines", "GET", f"/v1/apps/{APP}/machines", lambda r: json_response(200, [
        machine("148ed193b95089", name="silent-sun-1234", region="iad", checks="critical",
                check_output="HTTP GET http://172.19.0.2:8080/health: 503 Service Unavailable "
                             "Output: \"upstream connect error\"",
                events=exit_events(at=ago(minutes=12), code=137, oom=True, restarts=3)),
        machine("3d8d9e1fe67e89", name="misty-river-5678", region="ams", state="stopped",
                checks="critical", check_output="connect: connection refused",
                events=exit_events(at=ago(minutes=9), code=1, oom=False, restarts=10)),
    ]))
    w.answer("pg", "postgres", "health.recovery", _db_ok())
    return w, _health_collect


SCENARIOS = {
    "health": {
        "healthy": ("all probes 200 in ~100 ms, two machines started, primary database",
                    health_healthy),
        "degraded": ("slow and 503 probes and a timeout, failing checks, a stopped machine, "
                     "an OOM exit", health_degraded),
    },
}
