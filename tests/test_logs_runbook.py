"""The logs runbook end to end: demo scenarios through papermill, live against the Fly
platform API STAND-IN, replay, and the `python -m opslib logs` entry point."""
from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta, timezone

from opslib.logscan import synth
from tests.conftest import clean_env, findings, only_run, opslib_cli, run_dirs
from tests.inprocess import opslib_run
from tests.standins.fly_api import FlyApiStandIn, log_attrs

TOKEN = "fo1_LogsReadToken_abcdefghijklmnopqrstuvwxyz0123456"


def by_id(f: dict) -> dict[str, dict]:
    return {x["id"]: x for x in f["findings"]}


def test_demo_incident_is_found_in_ordinary_traffic(reports):
    proc = opslib_run("run", "logs", env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode == 0, proc.stderr
    run = only_run(reports)
    f = findings(run)
    assert (f["status"], f["severity"], f["scenario"]) == ("ok", "critical", "incident")
    found = by_id(f)
    for sid in ("logs.oom_kill", "logs.proxy_pc01", "logs.pg_too_many_connections",
                "logs.supavisor_pool_exhausted", "logs.jwt_clock_skew"):
        assert found[sid]["severity"] == "critical", sid
    assert "e784079b449483" in found["logs.oom_kill"]["title"]
    assert f["escalation"]["level"] == 1 and f["actions"] == []
    for chart in ("logs-categories-per-minute", "logs-signals-timeline", "logs-instance-heat",
                  "logs-top-templates"):
        assert (run / "charts" / f"{chart}.png").read_bytes()[:4] == b"\x89PNG"
    pages = sorted((run / "raw" / "http").glob("*-fly-api.json"))
    assert len(pages) >= 8, "every logs page is kept under raw/"
    html = (run / "logs.html").read_text()
    assert "Seed grep categories" in html and "error|exception|failed" in html


def test_demo_quiet_traffic_does_not_cry_wolf(reports):
    proc = opslib_run("run", "logs", "--scenario", "quiet", "--fail-on", "warning",
                      env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode == 0, proc.stdout
    f = findings(only_run(reports))
    assert f["severity"] == "ok"
    assert all(x["severity"] in ("ok", "info") for x in f["findings"])
    assert f["escalation"]["level"] == 0


def _live_logs(now: datetime) -> list[dict]:
    t = now - timedelta(minutes=5)
    lines = [log_attrs((t + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
                       f"GET /api/projects/{i} 200 in 12ms") for i in range(250)]
    t2 = t + timedelta(seconds=260)
    lines += [
        log_attrs(t2.isoformat().replace("+00:00", "Z"),
                  "[  812.442150] Out of memory: Killed process 314 (node) total-vm:1437168kB, "
                  "anon-rss:483236kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:1344kB "
                  "oom_score_adj:0", instance="e784079b449483"),
        log_attrs((t2 + timedelta(seconds=1)).isoformat().replace("+00:00", "Z"),
                  " WARN Process appears to have been OOM killed!", instance="e784079b449483"),
        log_attrs((t2 + timedelta(seconds=2)).isoformat().replace("+00:00", "Z"),
                  "[PC01] instance refused connection. is your app listening on 0.0.0.0:8080? "
                  "make sure it is not only listening on 127.0.0.1 (hint: look at your startup "
                  "logs, servers often print the address they are listening on)",
                  instance="e784079b449483", provider="proxy", level="error"),
    ]
    return lines


def test_live_logs_against_the_fly_api_stand_in_and_replay(reports):
    now = datetime.now(timezone.utc)
    with FlyApiStandIn(TOKEN, {"live-app": {"logs": _live_logs(now)}}, page_size=100) as api:
        env = clean_env(OPSLIB_REPORTS=str(reports), FLY_API_TOKEN=TOKEN, FLY_API_BASE_URL=api.url)
        proc = opslib_run("run", "logs", "--app", "live-app", "-p", "window_minutes=10", env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        run = only_run(reports)
        f = findings(run)
        found = by_id(f)
        assert found["logs.oom_kill"]["severity"] == "critical"
        assert "1x" in found["logs.oom_kill"]["title"], "kernel + init lines are one OOM event"
        assert found["logs.proxy_pc01"]["severity"] == "critical"
        assert len(api.requests) >= 3 and all(r.path.startswith("/api/v1/apps/live-app/logs")
                                              for r in api.requests)
        assert api.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
        assert api.mutations == []
    proc = opslib_run("run", "logs", "--target", f"replay:{run}", "--incident", "again",
                      env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode == 0, proc.stderr
    replayed = next(p for p in run_dirs(reports) if p.parent.name == "again")
    assert findings(replayed)["findings"] == f["findings"]


def test_live_logs_bad_token_is_a_finding_not_a_traceback(reports):
    with FlyApiStandIn(TOKEN, {"live-app": {"logs": []}}) as api:
        env = clean_env(OPSLIB_REPORTS=str(reports), FLY_API_TOKEN="fo1_WrongToken_abcdefghijklmnopqrstuvwxyz0123456789",
                        FLY_API_BASE_URL=api.url)
        proc = opslib_run("run", "logs", "--app", "live-app", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    f = findings(only_run(reports))
    failed = by_id(f)["logs-fetch-failed"]
    assert failed["severity"] == "unknown" and "401" in failed["title"]


def test_cli_logs_on_a_gz_file_and_stdin(tmp_path):
    path = synth.write(tmp_path / "fly.log", "fly-text", 400_000)
    gz = tmp_path / "fly.log.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    proc = opslib_cli("logs", str(gz), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["schema"] == 1
    assert summary["lines_read"] == summary["parsed"] + summary["unparsed"] > 1000
    assert {s["id"] for s in summary["signals"]} >= {"oom_kill", "proxy_pc01"}
    bad = opslib_cli("logs", str(tmp_path / "missing.log"))
    assert bad.returncode == 2 and "missing.log" in bad.stderr


def test_the_logs_runbook_honours_the_error_rate_thresholds(reports):
    """The demo's access logs have a 5xx rate between the seed's 1 % and 5 %: a warning by
    default, ok when the run's thresholds put the bar higher."""
    def http_5xx(where, *params):
        args = [a for p in params for a in ("-p", p)]
        assert opslib_run("run", "logs", "--incident", where, *args,
                          env=clean_env(OPSLIB_REPORTS=str(reports / where))).returncode == 0
        f = json.loads((only_run(reports / where) / "findings.json").read_text())
        return next(x["severity"] for x in f["findings"] if x["id"] == "logs.http_5xx")

    assert http_5xx("default") == "warning"
    assert http_5xx("raised", 'thresholds={"error_rate_pct": [50, 90]}') == "ok"
