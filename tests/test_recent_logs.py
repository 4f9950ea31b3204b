"""The "Recent logs" steps of memory, not-responding, database, auth and monitoring at function
level: each runbook's own reading of the log signals, on the exact texts real systems print,
for the cases the demo scenarios do not show."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pandas as pd

from opslib.demo.world import machine
from opslib.thresholds import thresholds
from opslib.promql import queries
from opslib.assess import recent_logs as logs
from opslib.reads import FAILED, Reading, Readings
from opslib.runbooks import auth, database, memory, monitoring
from opslib.runbooks import not_responding as nr
from opslib.sources.fly_models import parse_events, parse_machines
from opslib.sources.fly_platform import LogWindow
from opslib.sources.status import StatusPage
from opslib.sources.supabase import GatewayCheck

A, B = "148ed193b95089", "3d8d9e1fe67e89"
NOW = datetime(2026, 11, 20, 3, 14, tzinfo=timezone.utc)
PC01 = ("[PC01] instance refused connection. is your app listening on 0.0.0.0:8080? make sure it "
        "is not only listening on 127.0.0.1 (hint: look at your startup logs, servers often print "
        "the address they are listening on)")


def fetched(*lines: tuple[float, str] | tuple[float, str, str], provider: str = "app") -> LogWindow:
    """Log entries as the Fly logs API gives them: (seconds before NOW, message[, instance])."""
    entries = []
    for i, line in enumerate(lines):
        ago, message, *inst = line
        entries.append({"id": str(i), "timestamp": (NOW - timedelta(seconds=ago)).isoformat(),
                        "level": "info", "instance": inst[0] if inst else A, "region": "iad",
                        "provider": "proxy" if message.startswith("[P") else provider,
                        "message": message, "meta": {}})
    return LogWindow(NOW - timedelta(minutes=30), NOW, tuple(entries), pages=1,
                     stop_reason="window covered")


def ids(found: list) -> dict[str, str]:
    return {f.id: f.severity for f in found}


# ----------------------------------------------------------------------------- memory
def _memory_data(oom_on: str | None) -> tuple[memory.MemoryData, pd.DataFrame]:
    values = {"machines": parse_machines([machine(A, name="a", region="iad", memory_mb=512),
                                          machine(B, name="b", region="ams", memory_mb=512)])}
    if oom_on:
        at = NOW - timedelta(minutes=50)
        values[f"events:{oom_on}"] = parse_events([
            {"type": "exit", "status": "stopped", "source": "flyd",
             "timestamp": int(at.timestamp() * 1000),
             "request": {"exit_event": {"exit_code": 137, "oom_killed": True},
                         "restart_count": 1}}])
    data = memory.MemoryData("6h", "2m", queries("x"), Readings.of(values))
    return data, memory.machine_summary(data, NOW, thresholds())


def with_logs(data, window: LogWindow, key: str = "logs"):  # noqa: ANN001, ANN201
    return replace(data, readings=data.readings | Readings.of({key: window}))


def test_memory_heap_limit_is_not_the_machine_running_out():
    data, summary = _memory_data(None)
    window = fetched(
        (300, "<--- Last few GCs --->"),
        (299, "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory"))
    data = with_logs(data, window)
    found = {f.id: f for f in memory.assess_logs(data, logs.analyze(window), summary)}
    heap = found["memory-runtime-heap"]
    assert heap.severity == "warning" and A in heap.title
    assert "--max-old-space-size" in heap.detail
    assert "memory-oom-unrecorded" not in found


def test_memory_oom_kill_in_logs_matches_the_machine_that_exited():
    kernel = ("[ 7210.331204] Out of memory: Killed process 314 (node) total-vm:1204412kB, "
              "anon-rss:497812kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:1344kB "
              "oom_score_adj:0")
    data, summary = _memory_data(A)
    window = fetched((3001, kernel), (3000, " INFO Process appears to have been OOM killed!"))
    data = with_logs(data, window)
    report = logs.analyze(window)
    assert memory.kills_in(report) == [{"pid": 314, "process": "node", "anon_rss_mb": 486}]
    assert "memory-oom-unrecorded" not in ids(memory.assess_logs(data, report, summary))
    # the same kernel line on the machine that did NOT exit: a child process was killed
    data, summary = _memory_data(B)
    found = {f.id: f for f in memory.assess_logs(data, report, summary)}
    assert found["memory-oom-unrecorded"].severity == "critical"
    assert "killed node (pid 314), 486 MB anon-rss" in found["memory-oom-unrecorded"].evidence


def test_memory_oom_exit_without_a_kernel_line_is_said():
    data, summary = _memory_data(A)
    data = replace(with_logs(data, fetched((3000, "GET / 200 1.0 ms - 9")), key="oom-logs:0"),
                   oom_slices=((A, NOW - timedelta(minutes=50), "oom-logs:0"),))
    table = memory.oom_logs_table(data)
    assert table["kernel_line"].tolist() == [False] and table["lines_read"].tolist() == [1]
    found = {f.id: f for f in memory.assess_logs(data, None, summary)}
    assert found["memory-oom-logs"].title == "the kernel's OOM line is in the logs for 0 of 1 OOM exit(s)"


# ----------------------------------------------------------------------------- not-responding
def _nr(kind: str, fetch: LogWindow) -> list:
    diag = nr.Diagnosis(kind, [])
    data = nr.NotRespondingData("1h", "1m", queries("x"), Readings.of({"logs": fetch}))
    return nr.assess_logs(diag, data, logs.analyze(fetch))


def test_not_responding_listening_lines_in_common_layouts():
    fetch = fetched((100, "INFO:     Uvicorn running on http://0.0.0.0:8000 (Press CTRL+C to quit)"),
                    (90, "Listening on [::]:8080", B),
                    (80, " INFO [fly api proxy] listening at /.fly/api", B))
    table = nr.listening_table(fetch.entries).set_index("machine")
    assert (table.loc[A, "host"], table.loc[A, "port"]) == ("0.0.0.0", 8000)
    assert (table.loc[B, "host"], table.loc[B, "port"]) == ("[::]", 8080)


def test_not_responding_pc01_with_the_right_port_is_no_mismatch():
    fetch = fetched((100, "Server listening on http://0.0.0.0:8080"), (60, PC01), (50, PC01))
    assert nr.proxy_ports(fetch.entries) == [8080]
    found = ids(_nr("not-listening", fetch))
    assert "nr-logs-port-mismatch" not in found and "nr-logs-listens-on-localhost" not in found
    mismatch = ids(_nr("not-listening", fetched((100, "Server listening on http://0.0.0.0:3000"),
                                                (60, PC01))))
    assert mismatch == {"nr-logs-port-mismatch": "critical"}


def test_not_responding_exits_are_only_a_crash_when_machines_fail():
    fetch = fetched((300, " INFO Main child exited normally with code: 1"))
    assert ids(_nr("crashing", fetch)) == {"nr-logs-crashes": "critical"}
    assert ids(_nr("ok", fetch)) == {}  # an exit while every machine is healthy: the signal only


# ----------------------------------------------------------------------------- database
def _capacity(pct: float) -> pd.DataFrame:
    return pd.DataFrame([{"max_connections": 60, "client_backends": int(pct * 0.6), "pct": pct}])


SLOTS = fetched((400, "FATAL:  sorry, too many clients already"),
                (380, 'FATAL:  too many connections for role "authenticator"'))


def test_database_refusals_that_cleared_are_a_warning():
    found = database.assess_logs(logs.analyze(SLOTS), _capacity(30.0), None, None, None,
                                 thresholds())
    assert [(f.id, f.severity) for f in found] == [("db-logs-slots", "warning")]
    assert found[0].title.endswith("; 30% in use now: it cleared")
    assert "idle_in_transaction_session_timeout" in found[0].detail


def test_database_pooler_refusals_outside_an_outage_are_about_pool_size():
    from opslib.demo.scenarios.data import POOLER

    fetch = fetched((200, "(EMAXCONNSESSION) max clients reached in session mode - max clients "
                          "are limited to pool_size: 15"))
    [pool] = database.assess_logs(logs.analyze(fetch), _capacity(40.0), None, POOLER, None,
                                  thresholds())
    assert (pool.id, pool.severity) == ("db-logs-pooler", "critical")
    assert "default_pool_size 15" in pool.detail and "6543" in pool.detail
    ok_page = StatusPage("Supabase", "https://status.supabase.com", "none",
                         "All Systems Operational")
    [same] = database.assess_logs(logs.analyze(fetch), _capacity(40.0), None, POOLER, ok_page,
                                  thresholds())
    assert same.severity == "critical"


# ----------------------------------------------------------------------------- auth
def _gateway(skew: float) -> GatewayCheck:
    return GatewayCheck("https://x/health", 200, 40.0, server_date="Fri, 20 Nov 2026 03:14:00 GMT",
                        skew_s=skew)


def test_auth_skew_in_logs_with_clocks_agreeing_points_at_the_machines():
    fetch = fetched(*[(30 + 10 * k, '{"code":"PGRST303","details":null,"hint":null,'
                                   '"message":"JWT issued at future"}', B) for k in range(12)])
    data = auth.AuthData(Readings.of({"auth": _gateway(0.3), "app": _gateway(0.6)}))
    [f] = auth.assess_logs(logs.analyze(fetch), data, "live-app")
    assert (f.id, f.severity) == ("auth-logs-clock-skew", "warning")
    assert B in f.title and "the clocks measured now agree" in f.title
    assert "fly ssh console -s -C date -a live-app" in f.detail


def test_auth_device_clock_warnings_are_not_a_server_problem():
    warn = ("@supabase/gotrue-js: Session as retrieved from URL was issued in the future? Check "
            "the device clock for skew 1716897601 1716897641 1716897600")
    fetch = fetched(*[(30 + 5 * k, warn) for k in range(12)])
    data = auth.AuthData(Readings.of({"auth": _gateway(0.3), "app": _gateway(0.6)}))
    assert ids(auth.assess_logs(logs.analyze(fetch), data, "x")) == {"auth-logs-device-clock": "info"}


def test_auth_refused_key_with_the_secret_set_means_a_wrong_value():
    bad = ('{"message":"Invalid API key","hint":"Double check your Supabase `anon` or '
           '`service_role` API key."}')
    data = auth.AuthData(Readings.of({"secrets": pd.DataFrame(
        {"name": ["SUPABASE_URL", "SUPABASE_ANON_KEY"], "digest": ["a", "b"]})}))
    [f] = auth.assess_logs(logs.analyze(fetched((60, bad), (50, bad))), data, "x")
    assert f.id == "auth-logs-api-key" and f.title.startswith("Supabase refused the app's API key 2x")
    assert "rotated" in f.detail
    over = auth.auth_over_time(logs.analyze(fetched((60, bad), (50, bad))))
    assert int(over["invalid_api_key"].sum()) == 2


# ----------------------------------------------------------------------------- monitoring
def _reading(pct: float, status: str) -> monitoring.MetricRow:
    return monitoring.MetricRow("error_rate_pct", pct, pct, status=status)


def test_monitoring_edge_errors_the_app_never_saw_come_from_the_proxy():
    clean = fetched(*[(10 * k + 5, f"GET /api/items/{k} 200 3.0 ms - 80") for k in range(50)])
    [f] = monitoring.assess_logs(logs.analyze(clean), [_reading(8.0, "critical")], thresholds())
    assert (f.id, f.severity) == ("monitoring-logs-5xx", "warning")
    assert f.title.endswith("Fly's proxy answers the errors") and "not-responding" in f.detail
    assert monitoring.assess_logs(logs.analyze(clean), [_reading(0.2, "ok")], thresholds()) == []
    assert monitoring.assess_logs(None, [_reading(8.0, "critical")], thresholds()) == []


def test_recent_findings_say_nothing_about_signals_when_nothing_was_read():
    from opslib.errors import SourceAuthError

    failed = Reading("logs", "the app's logs", "Fly logs API", FAILED,
                     error=SourceAuthError("fly-api: HTTP 401", system="fly-api", target="x",
                                           kind="auth", hint="check the token"))
    found = logs.recent_findings(failed, logs.report_of(failed), "memory")
    assert [f.id for f in found] == ["logs-fetch-failed"]
    assert logs.recent_findings(None, None, "memory") == []
