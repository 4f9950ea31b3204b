"""The not-responding runbook (seed Issue 1): demo scenarios through papermill; live mode
against a real local HTTP server for /health and the Fly Machines and Prometheus STAND-INS;
gated restarts (zero mutations without a matching confirmation, exactly the planned ones with
it); bad input at function level."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from opslib.config import Target
from opslib.demo.world import machine
from opslib.thresholds import thresholds
from opslib.escalation import escalation
from opslib.promql import queries
from opslib.assess import recent_logs
from opslib.runbooks import not_responding as nr
from opslib.session import Session
from opslib.times import iso
from tests.conftest import clean_env, findings, only_run, run_dirs
from tests.inprocess import opslib_run
from tests.servers import LocalHTTPServer, Reply, free_port
from tests.standins.fly_api import FlyApiStandIn, log_attrs
from tests.standins.fly_machines import FlyMachinesStandIn
from tests.standins.prometheus import PrometheusStandIn

TOKEN = "fo1_TestReadOnlyToken_abcdefghijklmnopqrstuvwxyz0123"
A, B = "148ed193b95089", "3d8d9e1fe67e89"
REFUSED = "connect: connection refused"


def ids(f: dict) -> dict[str, str]:
    return {x["id"]: x["severity"] for x in f["findings"]}


# ----------------------------------------------------------------------------- demo target
def test_demo_all_machines_stopped_is_503_and_plans_starts(reports):
    proc = opslib_run("run", "not-responding", env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode == 0, proc.stderr
    run = only_run(reports)
    f = findings(run)
    assert (f["severity"], f["scenario"]) == ("critical", "stopped")
    found = ids(f)
    assert found["nr-all-stopped"] == "critical"
    assert found["health-5xx"] == "critical" and found["nr-edge-5xx"] == "critical"
    stopped = next(x for x in f["findings"] if x["id"] == "nr-all-stopped")
    assert stopped["title"] == "all 2 machines of demo-app are stopped: no healthy machine, users get 503"
    assert "stopped on request" in stopped["detail"]
    assert "nr-not-listening" not in found and "nr-persists-after-restart" not in found
    assert [(a["kind"], a["command"]) for a in f["actions"]] == [
        ("machine.start", f"fly machine start {A} -a demo-app"),
        ("machine.start", f"fly machine start {B} -a demo-app")]
    assert f["escalation"]["level"] == 1
    assert "stopped" in f["escalation"]["reason"]
    assert (run / "charts" / "edge-responses.png").is_file()
    # the proxy says why users get 503: no healthy machine to route to; the clean stops
    # (SIGINT, exit code 0) raise nothing
    detail = {x["id"]: x for x in f["findings"]}
    assert found["logs.proxy_pr01"] == "critical"
    assert "PR01" in detail["logs.proxy_pr01"]["title"]
    assert "logs.app_exit_nonzero" not in found and "nr-logs-crashes" not in found
    assert (run / "charts" / "not-responding-log-signals.png").is_file()
    assert list((run / "raw" / "http").glob("*-fly-api.json"))


def test_demo_port_mismatch_is_502_persisting_after_restart(reports):
    proc = opslib_run("run", "not-responding", "--scenario", "port-mismatch", "--fail-on",
                      "critical", env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode == 3, proc.stderr
    f = findings(only_run(reports))
    found = ids(f)
    assert found["nr-not-listening"] == "critical"
    assert found["nr-persists-after-restart"] == "critical"
    assert "nr-all-stopped" not in found
    detail = {x["id"]: x for x in f["findings"]}
    assert "port 8080" in detail["nr-not-listening"]["title"]
    assert "→ 502" in detail["nr-not-listening"]["title"]
    assert "HTTP 502" in detail["nr-edge-5xx"]["evidence"][0]
    # the logs tell which port: the proxy tries 8080 (PC01), v43 says it listens on 3000
    assert found["logs.proxy_pc01"] == "critical"
    mismatch = detail["nr-logs-port-mismatch"]
    assert mismatch["severity"] == "critical"
    assert mismatch["title"].startswith("port mismatch: the proxy connects to port 8080, the "
                                        "app listens on 3000")
    assert "internal_port = 3000" in mismatch["detail"]
    assert any("Server listening on http://0.0.0.0:3000" in e for e in mismatch["evidence"])
    assert found["logs.health_check_failing"] == "critical"
    assert f["escalation"]["level"] == 2
    assert f["escalation"]["reason"].startswith("issue persists after restart")
    # the seed: "if restart fails, scale down and up" — stop all, then start all
    assert [(a["kind"], a["params"]["machine_id"]) for a in f["actions"]] == [
        ("machine.stop", A), ("machine.stop", B), ("machine.start", A), ("machine.start", B)]
    assert all(a["status"] == "planned" for a in f["actions"])


def test_demo_deploy_blip_does_not_cry_wolf(reports):
    proc = opslib_run("run", "not-responding", "--scenario", "deploy-blip", "--fail-on",
                      "warning", env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    f = findings(only_run(reports))
    assert f["severity"] == "ok"
    # the deploy's stops (exit code 0), boot health-check blips and PM11 re-routes are
    # recognised in the logs and not raised
    assert ids(f) == {"nr-machines-ok": "ok", "health-endpoint": "ok", "health-latency": "ok",
                      "nr-edge-5xx": "ok", "logs.no_signals": "ok"}
    edge = next(x for x in f["findings"] if x["id"] == "nr-edge-5xx")
    assert "during a deploy" in edge["title"] and "none for the last 10 min" in edge["title"]
    assert f["actions"] == [] and f["escalation"]["level"] == 0


# ----------------------------------------------------------------------------- live helpers
def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _machines(*specs: tuple[str, str, str], events: dict | None = None) -> list[dict]:
    return [machine(mid, name=mid[:4], region="iad", state=state, checks=check,
                    check_output=REFUSED if check == "critical" else "200 OK",
                    **({"events": events[mid]} if events and mid in events else {}))
            for mid, state, check in specs]


def _edge_fixture(app: str, status: str | None) -> dict:
    q = queries(app, window="1h")
    fx = {q["request_rate"]: [({}, lambda t: 8.0)]}
    if status:
        fx[q["edge_5xx_by_status"]] = [({"status": status}, lambda t: 8.0)]
    return fx


def _env(reports, fly, prom, api) -> dict[str, str]:
    return clean_env(OPSLIB_REPORTS=str(reports), FLY_API_TOKEN=TOKEN, FLY_FLAPS_BASE_URL=fly.url,
                     FLY_PROMETHEUS_URL=prom.base, FLY_API_BASE_URL=api.url)


PC01 = ("[PC01] instance refused connection. is your app listening on 0.0.0.0:8080? make sure "
        "it is not only listening on 127.0.0.1 (hint: look at your startup logs, servers often "
        "print the address they are listening on)")


def _log(at: datetime, message: str, **kw: str) -> dict:
    return log_attrs(at.isoformat().replace("+00:00", "Z"), message, **kw)


def _localhost_logs() -> list[dict]:
    """Machine A restarted 10 min ago and listens on 127.0.0.1 only: the proxy is refused."""
    t = datetime.now(timezone.utc) - timedelta(minutes=10)
    lines = [_log(t + timedelta(seconds=i), f"GET /api/items/{i} 200 3.1 ms - 88") for i in range(5)]
    lines.append(_log(t + timedelta(seconds=30), "Server listening on http://127.0.0.1:8080"))
    lines += [_log(t + timedelta(seconds=40 + 20 * k), PC01, provider="proxy", level="error")
              for k in range(12)]
    return lines


# ----------------------------------------------------------------------------- gated remediation
def test_restarts_are_gated_by_the_plan_digest(reports):
    """Zero mutating requests without a matching confirmation; exactly the planned ones with
    it; the same confirmation again is refused once the target has changed."""
    machines = _machines((A, "started", "critical"), (B, "stopped", "critical"))
    with LocalHTTPServer(lambda r: Reply(502, "Bad Gateway")) as app, \
            FlyMachinesStandIn(TOKEN, {"live-app": machines}) as fly, \
            FlyApiStandIn(TOKEN, {"live-app": {"logs": _localhost_logs()}}) as api, \
            PrometheusStandIn(TOKEN, _edge_fixture("live-app", "502")) as prom:
        env = _env(reports, fly, prom, api)
        base = ("run", "not-responding", "--app", "live-app", "--app-url", app.url,
                "-p", "probes=2")

        def latest() -> dict:
            return findings(max(run_dirs(reports), key=lambda p: p.stat().st_mtime_ns))

        assert opslib_run(*base, "--incident", "p1", env=env).returncode == 0
        plan = latest()
        digest = plan["plan_digest"]
        assert ids(plan)["nr-not-listening"] == "critical"
        # the logs say why: the app's own startup line binds 127.0.0.1, the proxy is refused
        assert ids(plan)["nr-logs-listens-on-localhost"] == "critical"
        assert ids(plan)["logs.proxy_pc01"] == "critical"
        local = next(x for x in plan["findings"] if x["id"] == "nr-logs-listens-on-localhost")
        assert local["title"] == ("the app listens on 127.0.0.1:8080: the proxy cannot reach it "
                                  "(12x PC01)")
        assert api.requests and all(r.path.startswith("/api/v1/apps/live-app/logs")
                                    for r in api.requests) and api.mutations == []
        assert [(a["kind"], a["command"]) for a in plan["actions"]] == [
            ("machine.start", f"fly machine start {B} -a live-app"),
            ("machine.restart", f"fly machine restart {A} -a live-app")]
        assert fly.mutations == []

        proc = opslib_run(*base, "--incident", "p2", "--apply", "--confirm", "f" * 16, env=env)
        assert proc.returncode == 1, proc.stdout
        assert latest()["apply"]["outcome"] == "refused"
        assert [a["status"] for a in latest()["actions"]] == ["refused", "refused"]
        assert fly.mutations == [] and prom.mutations == []

        proc = opslib_run(*base, "--incident", "p3", "--apply", "--confirm", digest, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        applied = latest()
        assert applied["apply"]["outcome"] == "applied"
        assert [a["status"] for a in applied["actions"]] == ["applied", "applied"]
        assert [(r.method, r.path) for r in fly.mutations] == [
            ("POST", f"/v1/apps/live-app/machines/{B}/start"),
            ("POST", f"/v1/apps/live-app/machines/{A}/restart")]

        proc = opslib_run(*base, "--incident", "p4", "--apply", "--confirm", digest, env=env)
        assert proc.returncode == 1
        assert latest()["apply"]["outcome"] == "refused"
        assert len(fly.mutations) == 2


# ----------------------------------------------------------------------------- function level
def _diagnose(fly_url: str, prom_url: str, app_url: str, *, app: str = "live-app",
              token: str = TOKEN, probes: int = 2, api_url: str = ""):
    """Collect and diagnose; the logs only with a Fly platform API stand-in (``api_url``)."""
    target = Target("live", app, app_url,
                    environ={"FLY_API_TOKEN": token, "FLY_FLAPS_BASE_URL": fly_url,
                             "FLY_PROMETHEUS_URL": prom_url, "FLY_API_BASE_URL": api_url})
    session = Session("live")
    data = nr.collect(session, target, probes=probes, timeout=2.0,
                      log_window_minutes=30 if api_url else 0)
    diag = nr.diagnose(data, app, session.now(), thresholds())
    return data, diag


def test_live_all_stopped_against_real_servers():
    machines = _machines((A, "stopped", "critical"), (B, "stopped", "critical"))
    with LocalHTTPServer(lambda r: Reply(503, "")) as app, \
            FlyMachinesStandIn(TOKEN, {"live-app": machines}) as fly, \
            PrometheusStandIn(TOKEN, _edge_fixture("live-app", "503")) as prom:
        data, diag = _diagnose(fly.url, prom.base, app.url)
        assert [r.path for r in app.requests] == ["/health", "/health"]
    assert diag.kind == "all-stopped" and diag.stopped == [A, B]
    found = {f.id: f for f in diag.findings}
    assert found["nr-all-stopped"].severity == "critical"
    assert "they exited and were not restarted" in found["nr-all-stopped"].detail
    assert found["nr-edge-5xx"].severity == "critical"
    assert [a.kind for a in nr.plan_actions(diag, data, "live-app")] == ["machine.start"] * 2


def test_live_crash_loop_is_told_apart_from_a_port_mismatch():
    now = datetime.now(timezone.utc)
    crash = {"type": "exit", "status": "stopped", "source": "flyd", "timestamp": _ms(now - timedelta(minutes=3)),
             "request": {"exit_event": {"exit_code": 1, "oom_killed": False,
                                        "exited_at": iso(now - timedelta(minutes=3))},
                         "restart_count": 4}}
    machines = _machines((A, "started", "critical"), events={A: [crash]})
    # init's exit lines, four times in 8 min: a crash loop in the logs as well
    exits = [_log(now - timedelta(minutes=9 - 2 * k),
                  " INFO Main child exited normally with code: 1") for k in range(4)]
    with LocalHTTPServer(lambda r: Reply(502, "")) as app, \
            FlyMachinesStandIn(TOKEN, {"live-app": machines}) as fly, \
            FlyApiStandIn(TOKEN, {"live-app": {"logs": exits}}) as api, \
            PrometheusStandIn(TOKEN, _edge_fixture("live-app", "502")) as prom:
        data, diag = _diagnose(fly.url, prom.base, app.url, api_url=api.url)
    assert diag.kind == "crashing"
    assert {f.id for f in diag.findings} >= {"nr-crashing", "nr-edge-5xx", "health-5xx"}
    assert [a.kind for a in nr.plan_actions(diag, data, "live-app")] == ["machine.restart"]
    report = recent_logs.report_of(data.readings.get("logs"))
    crashes = {f.id: f for f in nr.assess_logs(diag, data, report)}["nr-logs-crashes"]
    assert crashes.severity == "critical"
    assert "app_exit_nonzero x4" in crashes.title and "crash_loop x1" in crashes.title
    assert "nr-logs-port-mismatch" not in {f.id for f in nr.assess_logs(diag, data, report)}


def test_restart_within_the_grace_period_is_not_yet_a_failed_restart():
    now = datetime.now(timezone.utc)
    just = [{"type": "restart", "status": "restarting", "source": "user",
             "timestamp": _ms(now - timedelta(seconds=40))}]
    earlier = [{"type": "restart", "status": "restarting", "source": "user",
                "timestamp": _ms(now - timedelta(minutes=15))}]
    with LocalHTTPServer(lambda r: Reply(502, "")) as app, \
            PrometheusStandIn(TOKEN, _edge_fixture("live-app", "502")) as prom:
        for events, persisted in ((just, False), (earlier, True)):
            machines = _machines((A, "started", "critical"), events={A: events})
            with FlyMachinesStandIn(TOKEN, {"live-app": machines}) as fly:
                data, diag = _diagnose(fly.url, prom.base, app.url, probes=1)
            assert diag.persisted_after_restart is persisted
            level = escalation(diag.findings)["level"]
            assert level == (2 if persisted else 1)


def test_app_that_does_not_exist():
    with FlyMachinesStandIn(TOKEN, {"live-app": []}) as fly, \
            PrometheusStandIn(TOKEN, {}) as prom:
        data, diag = _diagnose(fly.url, prom.base, f"http://127.0.0.1:{free_port()}",
                               app="no-such-app")
    found = {f.id: f for f in diag.findings}
    assert found["machines-error"].severity == "critical"
    assert "app no-such-app not found" in found["machines-error"].title
    assert "`fly apps list`" in found["machines-error"].detail
    assert found["health-unreachable"].severity == "critical"
    assert "refused" in found["health-unreachable"].detail
    assert found["no-data-request-rate"].severity == "unknown"
    assert nr.plan_actions(diag, data, "no-such-app") == []


def test_token_without_permission():
    other = "fo1_NoPermissionToken_abcdefghijklmnopqrstuvwxyz012"
    with LocalHTTPServer(lambda r: Reply(200, {"status": "ok"})) as app, \
            FlyMachinesStandIn(TOKEN, {"live-app": _machines((A, "started", "passing"))}) as fly, \
            PrometheusStandIn(TOKEN, {}, forbidden=[other]) as prom:
        data, diag = _diagnose(fly.url, prom.base, app.url, token=other, probes=1)
        assert fly.mutations == []
    found = {f.id: f for f in diag.findings}
    assert found["machines-error"].severity == "unknown" and "401" in found["machines-error"].title
    assert found["prometheus-error-edge-5xx-by-status"].severity == "unknown"
    assert "403" in found["prometheus-error-edge-5xx-by-status"].detail


@pytest.mark.parametrize("status, expect", [(None, "ok"), ("503", "critical")])
def test_edge_assessment_with_and_without_5xx(status, expect):
    with LocalHTTPServer(lambda r: Reply(200, {"status": "ok"})) as app, \
            FlyMachinesStandIn(TOKEN, {"live-app": _machines((A, "started", "passing"))}) as fly, \
            PrometheusStandIn(TOKEN, _edge_fixture("live-app", status)) as prom:
        data, diag = _diagnose(fly.url, prom.base, app.url, probes=1)
    edge = next(f for f in diag.findings if f.id == "nr-edge-5xx")
    assert edge.severity == expect
    if status is None:
        assert edge.title == "no 5xx at Fly's edge in the last 1h"
    else:
        assert edge.title.startswith("100% of requests at Fly's edge fail now with 5xx")
