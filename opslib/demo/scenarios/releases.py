"""Demo scenarios of the deploy and rollback runbooks: a release history, the machines and
/health after the last deploy."""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Callable

import httpx

from ...times import iso
from ..world import APP, ENV, REF_NOW, World, ago, json_response, machine

REG = f"registry.fly.io/{APP}"
IMG = {41: f"{REG}:deployment-01JC2M7T4Q", 42: f"{REG}:deployment-01JD1B5W2N",
       43: f"{REG}:deployment-01JD7Q3K8X", 44: f"{REG}:deployment-01JDA9F0ZC"}
M1, M2, M3 = "148ed193b95089", "3d8d9e1fe67e89", "6e82d4ec1f4918"


def release(version: int, status: str, created: Any, *, stable: bool | None = None,
            user: str = "ana@example.com", image: str | None = None) -> dict:
    """One release in flyctl's REST shape (reference §1)."""
    return {"id": f"rel_01JD{version:04d}", "version": version,
            "stable": status == "complete" if stable is None else stable,
            "in_progress": status == "running", "status": status, "strategy": "ROLLING",
            "user": user, "created_at": iso(created), "image_ref": image or IMG[version]}


def _health(status: int, latency: float, body: dict | None = None
            ) -> Callable[[httpx.Request], httpx.Response]:
    if status == 200:
        payload = body or {"status": "ok", "timestamp": iso(REF_NOW + timedelta(seconds=0.3))}
        return lambda r: json_response(200, payload, latency_ms=latency)
    text = {500: b'{"error":"internal server error"}', 503: b""}.get(status, b"error")
    return lambda r: httpx.Response(status, headers={"content-type": "application/json",
                                                     "server": "Fly/6f9e1ac2 (2026-11-12)"},
                                    content=text, extensions={"elapsed_ms": latency})


def _world(releases: list[dict], machines: list[dict], probes: list) -> World:
    w = World(configured={"FLY_API_TOKEN"}, environ=ENV)
    w.route("fly-api", "GET", f"/api/v1/apps/{APP}/releases",
            lambda r: json_response(200, {"releases": releases}, latency_ms=120))
    w.route("fly-machines", "GET", f"/v1/apps/{APP}/machines",
            lambda r: json_response(200, machines, latency_ms=85))
    w.route("app", "GET", "/health", *probes)
    return w


def _collect(session, target):  # noqa: ANN001 - deploy and rollback read the same
    from ...assess import releases

    return releases.collect(session, target, probes=3, timeout=5.0, limit=10)


def _healthy_world() -> World:
    releases = [release(43, "complete", ago(minutes=40)),
                release(42, "complete", ago(days=2, hours=5)),
                release(41, "complete", ago(days=6))]
    machines = [machine(M1, name="silent-sun-1234", region="iad", release="43", image=IMG[43]),
                machine(M2, name="misty-river-5678", region="ams", release="43", image=IMG[43])]
    return _world(releases, machines, [_health(200, lat) for lat in (96, 121, 104)])


def _degraded_world() -> World:
    """v43 went out 12 minutes ago and the app has been failing since; v42 failed earlier
    (a first attempt at the same change), v41 is the last good release."""
    releases = [release(43, "complete", ago(minutes=12)),
                release(42, "failed", ago(hours=3), image=IMG[42]),
                release(41, "complete", ago(days=3))]
    crit = dict(checks="critical",
                check_output="HTTP GET http://172.19.0.2:8080/health: 500 Internal Server Error")
    machines = [machine(M1, name="silent-sun-1234", region="iad", release="43", image=IMG[43], **crit),
                machine(M2, name="misty-river-5678", region="ams", release="43", image=IMG[43], **crit),
                machine(M3, name="quiet-lake-9012", region="iad", state="stopped", release="43",
                        image=IMG[43], checks="critical", check_output="machine is stopped")]
    return _world(releases, machines,
                  [_health(500, 210), _health(503, 2950), _health(500, 180)])


def _interrupted_world() -> World:
    """v44's rolling deploy was interrupted after one machine: the others still run v43."""
    releases = [release(44, "interrupted", ago(minutes=20)),
                release(43, "complete", ago(days=1, hours=2)),
                release(42, "complete", ago(days=4))]
    machines = [machine(M1, name="silent-sun-1234", region="iad", release="44", image=IMG[44]),
                machine(M2, name="misty-river-5678", region="ams", release="43", image=IMG[43]),
                machine(M3, name="quiet-lake-9012", region="iad", release="43", image=IMG[43])]
    return _world(releases, machines, [_health(200, lat) for lat in (132, 98, 140)])


def deploy_healthy() -> tuple[World, Callable[..., Any]]:
    return _healthy_world(), _collect


def deploy_degraded() -> tuple[World, Callable[..., Any]]:
    return _degraded_world(), _collect


def deploy_interrupted() -> tuple[World, Callable[..., Any]]:
    return _interrupted_world(), _collect


def rollback_bad_release() -> tuple[World, Callable[..., Any]]:
    return _degraded_world(), _collect


def rollback_healthy() -> tuple[World, Callable[..., Any]]:
    return _healthy_world(), _collect


SCENARIOS = {
    "deploy": {
        "healthy": ("v43 deployed 40 min ago, both machines on it, /health 200 in ~100 ms",
                    deploy_healthy),
        "degraded": ("v43 deployed 12 min ago; /health 500/503 and critical checks since",
                     deploy_degraded),
        "interrupted": ("v44's rolling deploy interrupted: one machine on v44, two on v43",
                        deploy_interrupted),
    },
    "rollback": {
        "bad-release": ("v43 broke /health; v42 failed earlier; v41 is the last good release",
                        rollback_bad_release),
        "healthy": ("v43 is healthy: nothing to roll back", rollback_healthy),
    },
}
