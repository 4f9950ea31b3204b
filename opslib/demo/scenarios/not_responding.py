"""Demo scenarios of the not-responding runbook: all machines stopped (503), a port mismatch
that a restart did not fix (502), and a 503 blip during a deploy that recovered."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable

from ...promql import queries
from ...times import iso
from ..prom import add_prometheus
from ..world import APP, ENV, REF_NOW, World, ago, json_response, machine, ms
from . import _applogs as applogs
from .health import _health_ok, _proxy_error
from .memory import MACHINES_AB, launch_event, start_event, wobble

A, B = "148ed193b95089", "3d8d9e1fe67e89"
WINDOW, STEP = "1h", "1m"
IMAGE_V43 = "registry.fly.io/demo-app:deployment-01JD9B7T2M"


def _collect(session, target):  # noqa: ANN001
    from ...runbooks import not_responding

    return not_responding.collect(session, target, probes=5, timeout=5.0, window=WINDOW,
                                  step=STEP, log_window_minutes=30)


NOW_S = REF_NOW.timestamp()
LOG_START = NOW_S - 30 * 60


def stop_lines(mid: str, region: str) -> list[tuple]:
    """A machine stopped on request (SIGINT, clean exit): harmless lines, no signal."""
    return [
        (0.0, "app", mid, region, "info", " INFO Sending signal SIGINT to main child process w/ PID 314"),
        (0.3, "app", mid, region, "info", "SIGINT received, closing HTTP server"),
        (0.8, "app", mid, region, "info", " INFO Main child exited normally with code: 0"),
        (0.8, "app", mid, region, "info", " INFO Starting clean up."),
        (0.9, "app", mid, region, "info", " WARN hallpass exited, pid: 315, status: signal: 15 (SIGTERM)"),
        (1.6, "app", mid, region, "info", "[172803.101127] reboot: Restarting system"),
    ]


every = applogs.every


PR01 = ("[PR01] no known healthy instances found for route tcp/443. (hint: is your app shutdown? "
        "is there an ongoing deployment with a volume or are you using the 'immediate' "
        "strategy? have your app's instances all reached their hard limit?)")


def traffic(t: float) -> float:
    """Requests per second at the edge: a quiet night with some variation."""
    return 11.5 + wobble(t, 1.8, 1700) + wobble(t, 0.7, 420, 0.5)


def stop_event(at: datetime) -> dict:
    ee = {"exit_code": 0, "guest_exit_code": 0, "guest_signal": 2, "oom_killed": False,
          "requested_stop": True, "restarting": False, "signal": -1, "exited_at": iso(at)}
    return {"id": f"01JD7X{ms(at):X}", "type": "exit", "status": "stopped", "source": "user",
            "timestamp": ms(at), "request": {"exit_event": ee, "restart_count": 0}}


def update_event(at: datetime) -> dict:
    return {"id": f"01JD7U{ms(at):X}", "type": "update", "status": "replacing", "source": "user",
            "timestamp": ms(at)}


def restart_event(at: datetime) -> dict:
    return {"id": f"01JD7R{ms(at):X}", "type": "restart", "status": "restarting",
            "source": "user", "timestamp": ms(at)}


def _world(machines: list[dict], probe_handlers: list, log_entries: list, series: dict) -> World:
    w = World(configured={"FLY_API_TOKEN", "DATABASE_URL"}, environ=ENV)
    applogs.serve(w, log_entries)
    w.route("app", "GET", "/health", *probe_handlers)
    w.route("fly-machines", "GET", f"/v1/apps/{APP}/machines",
            lambda r: json_response(200, machines, latency_ms=170))
    add_prometheus(w, queries(APP, window=WINDOW), series)
    return w


def _between(start: datetime, end: datetime | None, fn: Callable[[float], float]
             ) -> Callable[[float], float]:
    s, e = start.timestamp(), (end or REF_NOW + timedelta(days=1)).timestamp()
    return lambda t: fn(t) if s <= t <= e else 0.0


def nr_stopped() -> tuple[World, Callable[..., Any]]:
    stopped_at = ago(minutes=24)
    machines = [
        machine(mid, name=name, region=region, state="stopped", checks="critical",
                check_output="connect: connection refused",
                events=[stop_event(stopped_at + timedelta(seconds=i * 7)),
                        start_event(ago(days=2, hours=3)), launch_event(ago(days=2, hours=3, seconds=5))])
        for i, (mid, name, region) in enumerate([(A, "silent-sun-1234", "iad"),
                                                 (B, "misty-river-5678", "ams")])]
    down = _between(stopped_at, None, traffic)
    w_logs = applogs.background(MACHINES_AB, start=LOG_START, end=stopped_at.timestamp(), seed=41)
    for i, (mid, region) in enumerate(MACHINES_AB):
        w_logs += applogs.at(stopped_at.timestamp() + i * 7, stop_lines(mid, region))
    # with nothing started, the edge answers 503 and the proxy says why
    w_logs += every(stopped_at.timestamp() + 20, NOW_S - 20, 9.0,
                    lambda k: ("proxy", MACHINES_AB[k % 2][0], MACHINES_AB[k % 2][1], "error", PR01))
    return _world(machines, [_proxy_error(503, lat) for lat in (38, 41, 35, 44, 39)], w_logs, {
        "request_rate": [({}, traffic)],
        "edge_5xx_by_status": [({"status": "503"}, down)],
    }), _collect


def nr_port_mismatch() -> tuple[World, Callable[..., Any]]:
    deployed, restarted = ago(minutes=18), ago(minutes=9)
    refused = "connect: connection refused"
    events = lambda i: [start_event(restarted + timedelta(seconds=3 + i)),  # noqa: E731
                        restart_event(restarted + timedelta(seconds=i)),
                        start_event(deployed + timedelta(seconds=5 + i * 40)),
                        update_event(deployed + timedelta(seconds=i * 40)),
                        start_event(ago(days=2, hours=3)),
                        launch_event(ago(days=2, hours=3, seconds=5))]
    machines = [
        machine(A, name="silent-sun-1234", region="iad", checks="critical", check_output=refused,
                release="43", image=IMAGE_V43, events=events(0)),
        machine(B, name="misty-river-5678", region="ams", checks="critical", check_output=refused,
                release="43", image=IMAGE_V43, events=events(1)),
    ]
    bad = _between(deployed + timedelta(seconds=40), None, traffic)
    w_logs = applogs.background(MACHINES_AB, start=LOG_START, end=deployed.timestamp(), seed=43)
    for i, (mid, region) in enumerate(MACHINES_AB):
        # v43 reads PORT=3000 from its new Dockerfile; fly.toml still says internal_port 8080
        for t in (deployed.timestamp() + i * 40, restarted.timestamp() + i):
            w_logs += applogs.at(t - 2, stop_lines(mid, region))
            w_logs += applogs.at(t, applogs.boot(mid, region, IMAGE_V43, listen="0.0.0.0:3000",
                                                 passes=False))
            w_logs.append((t + 2.0, "health", mid, region, "error",
                           "Health check on port 8080 has failed. Your app is not responding "
                           "properly. Services exposed on ports [80, 443] will have "
                           "intermittent failures until the health check passes."))
    w_logs += every(deployed.timestamp() + 41, NOW_S - 20, 6.0, lambda k: (
        "proxy", MACHINES_AB[k % 2][0], MACHINES_AB[k % 2][1], "error",
        applogs.proxy_pr04() if k % 5 == 4 else applogs.proxy_pc01()))
    return _world(machines, [_proxy_error(502, lat) for lat in (61, 58, 66, 60, 57)], w_logs, {
        "request_rate": [({}, traffic)],
        "edge_5xx_by_status": [({"status": "502"}, bad)],
    }), _collect


def nr_deploy_blip() -> tuple[World, Callable[..., Any]]:
    deployed = ago(minutes=12)
    events = lambda i: [start_event(deployed + timedelta(seconds=6 + i * 50)),  # noqa: E731
                        update_event(deployed + timedelta(seconds=i * 50)),
                        start_event(ago(days=2, hours=3)),
                        launch_event(ago(days=2, hours=3, seconds=5))]
    machines = [machine(A, name="silent-sun-1234", region="iad", release="43", image=IMAGE_V43,
                        events=events(0)),
                machine(B, name="misty-river-5678", region="ams", release="43", image=IMAGE_V43,
                        events=events(1))]
    blip = _between(deployed, deployed + timedelta(minutes=2), lambda t: 0.35 * traffic(t))
    w_logs = applogs.background(MACHINES_AB, start=LOG_START, end=NOW_S - 20, seed=47)
    for i, (mid, region) in enumerate(MACHINES_AB):
        t = deployed.timestamp() + i * 50
        w_logs += applogs.at(t - 2, stop_lines(mid, region))
        w_logs += applogs.at(t, applogs.boot(mid, region, IMAGE_V43))  # a check blip, passing in 4 s
        w_logs += [(t + 0.5 + k * 3, "proxy", mid, region, "info",
                    "[PM11] machine was recently stopped and is unavailable to service request")
                   for k in range(3)]
    return _world(machines, [_health_ok(lat) for lat in (96, 110, 88, 121, 102)], w_logs, {
        "request_rate": [({}, traffic)],
        "edge_5xx_by_status": [({"status": "503"}, blip)],
    }), _collect


SCENARIOS = {
    "not-responding": {
        "stopped": ("all machines stopped on request 24 min ago: every request gets 503",
                    nr_stopped),
        "port-mismatch": ("release v43 listens on the wrong port: checks 'connection refused', "
                          "502s; a restart 9 min ago did not help", nr_port_mismatch),
        "deploy-blip": ("a false alarm: a 2-minute burst of 503s during the v43 rolling deploy, "
                        "recovered; probes 200, checks passing", nr_deploy_blip),
    },
}
