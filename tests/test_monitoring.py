"""The monitoring runbook (seed Monitoring & Alerts): demo scenarios through papermill; live
mode against the Prometheus STAND-IN and a real PostgreSQL 15 under real connection pressure."""
from __future__ import annotations

import psycopg
import pytest

from opslib.config import Target
from opslib.thresholds import thresholds
from opslib.escalation import escalation
from opslib.promql import queries
from opslib.runbooks import monitoring
from opslib.session import Session
from tests.conftest import clean_env, findings, only_run
from tests.inprocess import opslib_run
from tests.standins.fly_api import FlyApiStandIn, log_attrs
from tests.standins.prometheus import PrometheusStandIn

TOKEN = "fo1_TestReadOnlyToken_abcdefghijklmnopqrstuvwxyz0123"
SEED_ROWS = ["Response time", "Error rate", "Memory usage", "CPU usage", "Active connections"]


def ids(f: dict) -> dict[str, str]:
    return {x["id"]: x["severity"] for x in f["findings"]}


# ----------------------------------------------------------------------------- demo target
def test_demo_incident_evaluates_the_seed_table(reports):
    proc = opslib_run("run", "monitoring", env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode == 0, proc.stderr
    run = only_run(reports)
    f = findings(run)
    assert (f["severity"], f["scenario"]) == ("critical", "incident")
    assert ids(f) == {"metric-response-time": "critical", "metric-error-rate": "warning",
                      "metric-memory": "critical", "metric-cpu": "ok", "metric-connections": "ok",
                      "monitoring-logs-5xx": "info", "logs.http_5xx": "info"}
    titles = {x["id"]: x["title"] for x in f["findings"]}
    assert titles["metric-response-time"] == ("Response time 2.6 s is above the critical "
                                              "threshold (> 2000ms)")
    assert titles["metric-error-rate"] == "Error rate 3.4% is above the warning threshold (> 1%)"
    assert titles["metric-memory"].startswith("Memory usage 93% on 148ed193b95089 is above the "
                                              "critical threshold")
    assert f["escalation"]["level"] == 1 and f["actions"] == []
    html = (run / "monitoring.html").read_text()
    for row in SEED_ROWS:
        assert row in html
    assert "&gt; 80% of pool" in html and "<strong>CRITICAL</strong>" in html
    assert (run / "charts" / "key-metrics.png").read_bytes()[:4] == b"\x89PNG"
    # the seed's Log Analysis greps, counted, and the 5xx the app itself logged
    assert 'grep -i "error|exception|failed"' in html and "Seed grep categories" in html
    assert titles["monitoring-logs-5xx"].startswith(
        "the app's own access logs show 2.4% 5xx (edge 3.4%): the app answers these errors "
        "itself, mostly on 148ed193b95089")
    assert titles["logs.http_5xx"].endswith("→ see the not-responding runbook")
    assert (run / "charts" / "monitoring-log-categories.png").read_bytes()[:4] == b"\x89PNG"


def test_demo_normal_day_is_all_ok(reports):
    proc = opslib_run("run", "monitoring", "--scenario", "normal", "--fail-on", "warning",
                      env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    f = findings(only_run(reports))
    assert f["severity"] == "ok" and set(ids(f).values()) == {"ok"} and len(f["findings"]) == 6
    assert "logs.no_signals" in ids(f) and "monitoring-logs-5xx" not in ids(f)
    assert f["escalation"]["level"] == 0


# ----------------------------------------------------------------------------- live
def _fixture(app: str, *, with_machines: bool = True) -> dict:
    q = queries(app, window="6h")
    fx = {q["p95_latency_ms"]: [({}, lambda t: 640.0)],
          q["error_rate_pct"]: [({}, lambda t: 0.4)]}
    if with_machines:
        fx[q["memory_pct"]] = [({"instance": "m1"}, lambda t: 50.0),
                               ({"instance": "m2"}, lambda t: 92.5)]
        fx[q["cpu_pct"]] = [({"instance": "m1"}, lambda t: 12.0)]
    return fx


def _live_logs() -> list[dict]:
    """40 requests in the last 10 min, 2 of them answered 500 by the app; a PC01 from the proxy."""
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc)
    z = lambda k: (now - timedelta(seconds=15 * k + 5)).isoformat().replace("+00:00", "Z")  # noqa: E731
    lines = [log_attrs(z(k), f"GET /api/items/{k} {500 if k in (3, 17) else 200} 4.1 ms - 120",
                       instance="m1") for k in range(40)]
    lines.append(log_attrs(z(8), "[PC01] instance refused connection. is your app listening on "
                           "0.0.0.0:8080? make sure it is not only listening on 127.0.0.1 (hint: "
                           "look at your startup logs, servers often print the address they are "
                           "listening on)", instance="m2", provider="proxy", level="error"))
    return lines


def test_live_with_missing_metrics_says_no_data_and_keeps_evidence(reports, pg):
    """Prometheus answers p95 and error rate but nothing for memory and CPU: those rows say
    NO DATA and what to check — never OK; connections come from a real PostgreSQL; the logs
    from the Fly platform API STAND-IN."""
    with PrometheusStandIn(TOKEN, _fixture("live-app", with_machines=False)) as prom, \
            FlyApiStandIn(TOKEN, {"live-app": {"logs": _live_logs()}}) as api:
        env = clean_env(OPSLIB_REPORTS=str(reports), FLY_API_TOKEN=TOKEN,
                        FLY_PROMETHEUS_URL=prom.base, DATABASE_URL=pg.dsn(),
                        FLY_API_BASE_URL=api.url)
        proc = opslib_run("run", "monitoring", "--app", "live-app", env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert len(prom.queries) == 5 and prom.mutations == []
        assert api.requests and api.mutations == []
    run = only_run(reports)
    f = findings(run)
    found = ids(f)
    assert found["metric-response-time"] == "warning" and found["metric-error-rate"] == "ok"
    assert found["no-data-memory-pct"] == "unknown" and found["no-data-cpu-pct"] == "unknown"
    assert found["metric-connections"] == "ok"
    conns = next(x for x in f["findings"] if x["id"] == "metric-connections")
    assert "/17 (" in conns["title"]  # max_connections 20 - 3 reserved
    nodata = next(x for x in f["findings"] if x["id"] == "no-data-memory-pct")
    assert "FLY_ORG" in nodata["detail"] and "'live-app'" in nodata["detail"]
    assert "NO DATA" in (run / "monitoring.html").read_text()
    # the app's access logs show 5% 5xx while the edge says 0.4%; a PC01 points elsewhere
    logs5xx = next(x for x in f["findings"] if x["id"] == "monitoring-logs-5xx")
    assert logs5xx["severity"] == "warning"
    assert logs5xx["title"].startswith("the app's access logs show 5.0% 5xx")
    assert found["logs.proxy_pc01"] == "info"
    assert next(x for x in f["findings"] if x["id"] == "logs.proxy_pc01")["title"].endswith(
        "→ see the not-responding runbook")
    assert f["severity"] == "warning"
    assert len(list((run / "raw" / "http").glob("*-prometheus.json"))) == 5
    assert len(list((run / "raw" / "pg").glob("*.json"))) == 1
    for path in run.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert TOKEN.encode() not in data and pg.password.encode() not in data, path


def _evaluate(prom_url: str, dsn: str | None):
    environ = {"FLY_API_TOKEN": TOKEN, "FLY_PROMETHEUS_URL": prom_url}
    if dsn:
        environ["DATABASE_URL"] = dsn
    target = Target("live", "live-app", "https://live-app.fly.dev", environ=environ)
    session = Session("live")
    data = monitoring.collect(session, target, log_window_minutes=0)
    return data, monitoring.evaluate(data, "live-app", thresholds(), session.now())


@pytest.mark.parametrize("held, status, level", [(13, "warning", 1), (16, "critical", 2)])
def test_connections_under_real_pressure(pg, held, status, level):
    """Hold real connections on PostgreSQL 15 (max_connections 20, 3 reserved): 14/17 is a
    warning, 17/17 critical — a database problem the seed sends to the Platform Team."""
    conns = [psycopg.connect(pg.dsn(), autocommit=True) for _ in range(held)]
    try:
        with PrometheusStandIn(TOKEN, _fixture("live-app")) as prom:
            data, readings = _evaluate(prom.base, pg.dsn())
    finally:
        for c in conns:
            c.close()
    by_key = {r.key: r for r in readings}
    assert by_key["connections_pct"].status == status
    assert by_key["connections_pct"].finding.title.startswith(
        f"Active connections (of pool) {held + 1}/17")
    assert by_key["memory_pct"].status == "critical" and by_key["memory_pct"].where == "m2"
    assert escalation(monitoring.findings(readings))["level"] == level
    table = monitoring.seed_table(readings, thresholds())
    assert table["Metric"].tolist() == SEED_ROWS
    assert table.set_index("Metric").loc["Memory usage", "Now"] == "92% (m2)"
    assert table.set_index("Metric").loc["Active connections", "Critical"] == "> 95% of pool"


def test_database_that_refuses_is_critical_and_escalates():
    from tests.servers import free_port

    dsn = f"postgresql://postgres:x@127.0.0.1:{free_port()}/postgres"
    with PrometheusStandIn(TOKEN, _fixture("live-app")) as prom:
        data, readings = _evaluate(prom.base, dsn)
    conn = next(r for r in readings if r.key == "connections_pct")
    assert conn.status == "critical" and conn.finding.severity == "critical"
    assert "refused" in conn.finding.title and "DATABASE_URL" in conn.finding.detail
    assert escalation(monitoring.findings(readings))["level"] == 2


def test_wrong_database_password_is_ours_to_fix_not_an_outage(pg):
    with PrometheusStandIn(TOKEN, _fixture("live-app")) as prom:
        data, readings = _evaluate(prom.base, pg.dsn(password="wrong-password"))
    conn = next(r for r in readings if r.key == "connections_pct")
    assert conn.status == "unknown" and "auth_failed" in conn.finding.title
    assert "DATABASE_URL" in conn.finding.detail
    assert escalation([conn.finding])["level"] == 1


def test_without_database_the_row_is_skipped_not_ok():
    with PrometheusStandIn(TOKEN, _fixture("live-app")) as prom:
        data, readings = _evaluate(prom.base, None)
    assert [r.source for r in data.readings.skipped_sources()] == ["Postgres"]
    table = monitoring.seed_table(readings, thresholds())
    assert table.set_index("Metric").loc["Active connections", "Status"] == "SKIPPED"


def test_thresholds_override_changes_the_verdict():
    with PrometheusStandIn(TOKEN, _fixture("live-app")) as prom:
        target = Target("live", "live-app", "https://x.fly.dev",
                        environ={"FLY_API_TOKEN": TOKEN, "FLY_PROMETHEUS_URL": prom.base})
        data = monitoring.collect(Session("live"), target, log_window_minutes=0)
    limits = thresholds({"response_time_ms": [700, 1500], "memory_pct": [93, 97]})
    by_key = {r.key: r for r in monitoring.evaluate(data, "live-app", limits)}
    assert by_key["response_time_ms"].status == "ok"
    assert by_key["memory_pct"].status == "ok"
    table = monitoring.seed_table(list(by_key.values()), limits)
    assert table.set_index("Metric").loc["Response time", "Warning"] == "> 700ms"


def test_series_that_stopped_reporting_have_no_current_value():
    """A metric whose last sample is hours old, and a machine replaced hours ago, are not 'now'."""
    import time

    cut = time.time() - 3 * 3600
    q = queries("live-app", window="6h")
    fx = {q["p95_latency_ms"]: [({}, lambda t: 150.0 if t < cut else None)],
          q["memory_pct"]: [({"instance": "old"}, lambda t: 99.0 if t < cut else None),
                            ({"instance": "new"}, lambda t: 40.0 if t >= cut else None)]}
    with PrometheusStandIn(TOKEN, fx) as prom:
        data, readings = _evaluate(prom.base, None)
    by_key = {r.key: r for r in readings}
    assert by_key["response_time_ms"].status == "unknown"
    assert by_key["response_time_ms"].finding.id == "stale-p95-latency-ms"
    assert "no recent data" in by_key["response_time_ms"].finding.title
    assert (by_key["memory_pct"].status, by_key["memory_pct"].where) == ("ok", "new")
    assert by_key["memory_pct"].now == 40.0 and by_key["memory_pct"].peak == 99.0
