"""The database runbook: demo scenarios through papermill, live runs against a REAL PostgreSQL
15 under real connection pressure, the Supabase and Fly STAND-INS, and the gated termination
of leaked backends (zero without a matching confirmation, exactly the planned ones with it)."""
from __future__ import annotations

import json
from contextlib import ExitStack, contextmanager
from typing import Iterator

import psycopg
import pytest

from opslib.config import Target
from opslib.demo.scenarios.data import POOLER, _project, _services, statuspage
from opslib.thresholds import THRESHOLDS
from opslib.runbooks import database
from opslib.session import Session
from tests.conftest import clean_env, findings, only_run, run_dirs
from tests.inprocess import opslib_run
from tests.servers import PostgresServer, free_port
from tests.standins.fly_api import FlyApiStandIn, log_attrs
from tests.standins.fly_machines import FlyMachinesStandIn
from tests.standins.supabase import StatuspageStandIn, SupabaseManagementStandIn

FLY_TOKEN = "fo1_DatabaseRunbookToken_abcdefghijklmnopqrstuv01"
SB_TOKEN = "sbp_" + "0123456789abcdef" * 2 + "01234567"
REF = "abcdefghijklmnopqrst"
APP_PW = "app-Pw-l3aky"


def ids(f: dict) -> dict[str, str]:
    return {x["id"]: x["severity"] for x in f["findings"]}


def by_id(f: dict) -> dict[str, dict]:
    return {x["id"]: x for x in f["findings"]}


# ----------------------------------------------------------------------------- demo target
def test_demo_connection_leak(reports):
    proc = opslib_run("run", "database", "--scenario", "connection-leak",
                      env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = only_run(reports)
    f = findings(run)
    assert (f["status"], f["severity"], f["scenario"]) == ("ok", "critical", "connection-leak")
    found = by_id(f)
    assert found["db-connections"]["severity"] == "critical"
    assert found["db-connections"]["title"].startswith("58/60 connections in use (97% of max_connections)")
    assert "most from worker (20)" in found["db-connections"]["title"]
    assert found["db-idle-in-transaction"]["severity"] == "critical"
    assert "all from worker: a connection leak" in found["db-idle-in-transaction"]["title"]
    assert found["db-blocked"]["severity"] == "warning"
    assert "idle in a transaction" in found["db-blocked"]["detail"]
    assert found["db-long-queries"]["severity"] == "warning"
    assert found["db-no-idle-timeout"]["severity"] == "info"
    assert found["supabase-status"]["severity"] == "ok"
    kinds = [a["kind"] for a in f["actions"]]
    assert kinds.count("pg.terminate") == 20 and kinds.count("machine.restart") == 2
    assert f["actions"][0]["command"].startswith("SELECT pg_terminate_backend(4101);")
    assert f["actions"][0]["basis"]["xact_start"] == "2026-11-20T02:38:20.000000+00:00"
    assert "fly machine restart 148ed193b95089 -a demo-app" in [a["command"] for a in f["actions"]]
    assert all(a["status"] == "planned" for a in f["actions"])
    assert f["escalation"]["level"] == 1
    assert (run / "charts" / "db-connections.png").read_bytes()[:4] == b"\x89PNG"
    # the app's logs: refused for lack of slots for the last 12 min, and still full now
    slots = found["db-logs-slots"]
    assert slots["severity"] == "critical"
    assert slots["title"] == ("the app was refused a connection 50x for lack of slots between "
                              "03:02 and 03:13 UTC, and 97% of max_connections are in use now")
    assert any("remaining connection slots are reserved" in e or "too many clients" in e
               for e in slots["evidence"])
    assert found["logs.pg_too_many_connections"]["severity"] == "critical"
    assert found["logs.http_5xx"]["severity"] == "info"  # the 500s → not-responding
    assert (run / "charts" / "database-log-signals.png").is_file()


def test_demo_healthy_does_not_cry_wolf(reports):
    proc = opslib_run("run", "database", "--scenario", "healthy",
                      env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode == 0, proc.stderr
    f = findings(only_run(reports))
    assert f["severity"] == "ok" and f["escalation"]["level"] == 0
    found = by_id(f)
    assert found["db-connections"]["severity"] == "ok"
    assert found["db-idle-in-transaction"]["severity"] == "ok"
    assert "1 younger" in found["db-idle-in-transaction"]["detail"]
    # A minor incident elsewhere on the status page is context, not an alarm.
    assert found["supabase-status"]["severity"] == "info"
    assert "nothing touching the database" in found["supabase-status"]["title"]
    assert f["actions"] == []
    assert found["logs.no_signals"]["severity"] == "ok"
    assert not [x for x in f["findings"] if x["id"].startswith(("db-logs", "logs."))
                and x["severity"] != "ok"]


def test_demo_supabase_outage_escalates_to_level_2(reports):
    proc = opslib_run("run", "database", "--scenario", "supabase-outage",
                      env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode == 0, proc.stderr
    f = findings(only_run(reports))
    found = ids(f)
    assert found["db-unreachable"] == "critical"
    assert found["supabase-outage"] == "critical"
    assert found["supabase-project"] == "critical"
    assert found["supabase-services"] == "critical"
    assert f["escalation"]["level"] == 2 and f["escalation"]["team"] == "Platform Team"
    assert f["actions"] == []  # a restart does not fix Supabase
    # the app's logs see the outage: Supavisor has no connection to hand out — not a sizing
    # problem while Supabase reports the incident
    detail = by_id(f)
    assert found["db-logs-pooler"] == "warning"
    assert detail["db-logs-pooler"]["title"].endswith("during the Supabase incident")
    assert "Not a sizing problem" in detail["db-logs-pooler"]["detail"]
    assert found["db-logs-outage"] == "info" and "db_connection_closed x6" in detail["db-logs-outage"]["title"]


# ----------------------------------------------------------------------------- live
@pytest.fixture(scope="module")
def pressured():
    """PostgreSQL 15 with max_connections=20 (17 for the application role)."""
    server = PostgresServer(max_connections=20).start()
    with psycopg.connect(server.dsn(), autocommit=True) as c:
        c.execute(f"CREATE ROLE app LOGIN PASSWORD '{APP_PW}'")
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def pressure(server: PostgresServer, *, leaked: int, idle: int, admin: int
             ) -> Iterator[dict[str, list[psycopg.Connection]]]:
    """``leaked`` worker sessions idle in a transaction, ``idle`` web sessions, ``admin``
    superuser sessions: real connections, held for the duration."""
    app = server.dsn(user="app", password=APP_PW)
    conns: dict[str, list[psycopg.Connection]] = {"worker": [], "web": [], "admin": []}
    try:
        for _ in range(leaked):
            c = psycopg.connect(app, application_name="worker")
            c.execute("SELECT now()")  # BEGIN implicitly; then nothing: idle in transaction
            conns["worker"].append(c)
        for _ in range(idle):
            conns["web"].append(psycopg.connect(app, autocommit=True, application_name="web"))
        for _ in range(admin):
            conns["admin"].append(psycopg.connect(server.dsn(), autocommit=True,
                                                  application_name="admin"))
        yield conns
    finally:
        for group in conns.values():
            for c in group:
                c.close()


def alive(server: PostgresServer) -> dict[int, tuple[str, str]]:
    """pid → (application_name, state) of every client backend, as the server sees it now."""
    with psycopg.connect(server.dsn(), autocommit=True, application_name="test-check") as c:
        rows = c.execute("SELECT pid, application_name, state FROM pg_stat_activity "
                         "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()").fetchall()
    return {pid: (app, state) for pid, app, state in rows}


def _machines() -> list[dict]:
    from opslib.demo.world import machine

    return [machine(f"{i:014x}", name=f"m{i}", region="iad") for i in (1, 2)]


def refused_logs(n: int) -> list[dict]:
    """The web app refused ``n`` times in the last few minutes, as Postgres words it."""
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc)
    return [log_attrs((now - timedelta(seconds=20 + 15 * k)).isoformat().replace("+00:00", "Z"),
                      'psql: error: connection to server at "127.0.0.1", port 5432 failed: '
                      "FATAL:  sorry, too many clients already", instance=f"{1 + k % 2:014x}")
            for k in range(n)]


@contextmanager
def standins(*, visible: list[str] | None = None, logs: list[dict] | None = None
             ) -> Iterator[tuple]:
    with ExitStack() as stack:
        fly = stack.enter_context(FlyMachinesStandIn(FLY_TOKEN, {"live-app": _machines()}))
        status = stack.enter_context(StatuspageStandIn(summary=statuspage()))
        api = stack.enter_context(SupabaseManagementStandIn(SB_TOKEN, {REF: {
            "project": {**_project(), "id": REF, "ref": REF},
            "health": _services(), "pooler": POOLER}}, visible=visible))
        # the Fly platform API (logs) takes the same token as the Machines API
        fly.logs = stack.enter_context(FlyApiStandIn(FLY_TOKEN, {"live-app": {"logs": logs or []}}))
        yield fly, status, api


def _env(reports, dsn: str, fly, status, api, **extra: str) -> dict[str, str]:
    return clean_env(**{"OPSLIB_REPORTS": str(reports), "DATABASE_URL": dsn,
                        "FLY_API_TOKEN": FLY_TOKEN, "FLY_FLAPS_BASE_URL": fly.url,
                        "FLY_API_BASE_URL": fly.logs.url,
                        "SUPABASE_STATUS_URL": status.url, "SUPABASE_ACCESS_TOKEN": SB_TOKEN,
                        "SUPABASE_PROJECT_REF": REF, "SUPABASE_API_BASE_URL": api.url, **extra})


def test_gated_termination_against_real_postgres(reports, pressured):
    """Plan → refused (zero backends touched) → applied (exactly the planned ones) → stale."""
    base = ("run", "database", "--app", "live-app", "-p", "idle_tx_terminate_after_s=0")

    def latest() -> dict:
        return findings(max(run_dirs(reports), key=lambda p: p.stat().st_mtime_ns))

    with pressure(pressured, leaked=12, idle=5, admin=2) as conns, \
            standins(logs=refused_logs(8)) as (fly, status, api):
        env = _env(reports, pressured.dsn(), fly, status, api)
        worker_pids = sorted(c.info.backend_pid for c in conns["worker"])
        others = sorted(c.info.backend_pid for c in conns["web"] + conns["admin"])

        assert opslib_run(*base, "--incident", "plan", env=env).returncode == 0
        plan = latest()
        found = by_id(plan)
        # 19 held + the runbook's own connection: every slot of max_connections=20.
        assert found["db-connections"]["severity"] == "critical", found["db-connections"]
        assert found["db-connections"]["title"].startswith("20/20 connections in use (100%")
        assert found["db-idle-in-transaction"]["severity"] == "critical"
        assert "12 session(s)" in found["db-idle-in-transaction"]["title"]
        assert "all from worker" in found["db-idle-in-transaction"]["title"]
        terminations = [a for a in plan["actions"] if a["kind"] == "pg.terminate"]
        assert sorted(a["params"]["pid"] for a in terminations) == worker_pids
        assert {a["basis"]["state"] for a in terminations} == {"idle in transaction"}
        assert [a["kind"] for a in plan["actions"]].count("machine.restart") == 2
        # the app's logs: refused for lack of slots, and every slot is still taken
        assert found["db-logs-slots"]["severity"] == "critical"
        assert found["db-logs-slots"]["title"].startswith("the app was refused a connection 8x")
        assert "100% of max_connections are in use now" in found["db-logs-slots"]["title"]
        assert fly.logs.mutations == [] and fly.logs.requests
        digest = plan["plan_digest"]
        assert fly.mutations == [] and api.mutations == []

        proc = opslib_run(*base, "--incident", "refused", "--apply", "--confirm", "0" * 16, env=env)
        assert proc.returncode == 1, proc.stdout
        assert latest()["apply"]["outcome"] == "refused"
        now = alive(pressured)
        assert set(worker_pids) <= set(now)  # zero backends terminated
        assert {now[p] for p in worker_pids} == {("worker", "idle in transaction")}
        assert fly.mutations == []

        proc = opslib_run(*base, "--incident", "applied", "--apply", "--confirm", digest, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        applied = latest()
        assert applied["apply"]["outcome"] == "applied"
        results = {a["params"]["pid"]: a["result"] for a in applied["actions"]
                   if a["kind"] == "pg.terminate"}
        assert all(r["signalled"] for r in results.values()) and sorted(results) == worker_pids
        now = alive(pressured)
        assert not set(worker_pids) & set(now)  # exactly the planned ones are gone …
        assert set(others) <= set(now)  # … and nothing else
        assert [(r.method, r.path.split("/")[-1]) for r in fly.mutations] == [("POST", "restart")] * 2
        run = max(run_dirs(reports), key=lambda p: p.stat().st_mtime_ns)
        timeline = (run / "timeline.jsonl").read_text()
        assert timeline.count("applied pg.terminate") == 12

        proc = opslib_run(*base, "--incident", "stale", "--apply", "--confirm", digest, env=env)
        assert proc.returncode == 1
        assert latest()["apply"]["outcome"] == "refused"
        assert len(fly.mutations) == 2


def test_live_bad_inputs_become_findings_and_evidence_is_saved(reports, pressured):
    with standins(visible=[]) as (fly, status, api):
        env = _env(reports, pressured.dsn(password="not-the-password"), fly, status, api,
                   SUPABASE_STATUS_URL=f"http://127.0.0.1:{free_port()}")
        proc = opslib_run("run", "database", "--app", "live-app", env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        run = only_run(reports)
        f = findings(run)
        found = by_id(f)
        assert found["db-rejected"]["severity"] == "critical"
        assert "password authentication failed" in found["db-rejected"]["detail"]
        assert "credentials in DATABASE_URL" in found["db-rejected"]["detail"]
        assert found["supabase-api-error"]["severity"] == "unknown"
        assert "HTTP 403" in found["supabase-api-error"]["detail"]
        assert "member of the project's organisation" in found["supabase-api-error"]["detail"]
        assert found["supabase-status-unknown"]["severity"] == "unknown"
        assert "refused" in found["supabase-status-unknown"]["detail"]
        assert f["actions"] == []
        assert opslib_run("verify", str(run)).returncode == 0
        assert (run / "raw" / "pg").is_dir() and (run / "database.html").exists()
        assert not [p for p in run.rglob("*") if p.is_file() and b"not-the-password" in p.read_bytes()]
    # Replayed without any server or secret: the same findings.
    proc = opslib_run("run", "database", "--target", f"replay:{run}", "--incident", "replayed",
                      env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    replayed = next(p for p in run_dirs(reports) if p.parent.name == "replayed")
    assert findings(replayed)["findings"] == f["findings"]


def test_refusing_database_is_pool_exhaustion_with_a_restart_planned(pressured):
    """Every slot taken, superusers' too: the runbook cannot connect and says why."""
    with pressure(pressured, leaked=0, idle=17, admin=3), standins() as (fly, status, api):
        environ = {"DATABASE_URL": pressured.dsn(), "FLY_API_TOKEN": FLY_TOKEN,
                   "FLY_FLAPS_BASE_URL": fly.url, "SUPABASE_STATUS_URL": status.url,
                   "FLY_API_BASE_URL": fly.logs.url}
        session = Session("live")
        data = database.collect(session, Target("live", "live-app", "http://x", environ=environ))
        found = database.assess_connections(data.capacity, data.breakdown, data.readings.error("database"),
                                            dict(THRESHOLDS))
        assert [(f.id, f.severity) for f in found] == [("db-refusing-connections", "critical")]
        assert "sorry, too many clients already" in found[0].detail
        actions = database.plan_actions(data.idle_tx, 300, found, data.machines, "live-app")
        assert [a.command for a in actions] == [f"fly machine restart {m['id']} -a live-app"
                                               for m in _machines()]
        session.close()


def test_health_params_are_repeated_and_pooler_hides_the_connection_string(pressured):
    with standins() as (fly, status, api):
        environ = {"SUPABASE_ACCESS_TOKEN": SB_TOKEN, "SUPABASE_PROJECT_REF": REF,
                   "SUPABASE_API_BASE_URL": api.url, "SUPABASE_STATUS_URL": status.url}
        data = database.collect(Session("live"), Target("live", "x", "http://x", environ=environ))
    health = next(r for r in api.requests if "/health" in r.path)
    assert health.path.endswith("/health?services=db&services=pooler")
    assert api.mutations == []
    assert "connection_string" not in data.pooler_table.columns
    assert data.services_table["status"].tolist() == ["ACTIVE_HEALTHY", "ACTIVE_HEALTHY"]
    assert json.dumps(data.project)  # what was read is plain JSON


def test_no_secret_reaches_the_run_folder(reports, pressured):
    """Canaries in every secret variable (the DSN password really used to connect) and canary
    tokens in recorded responses (a pooler connection string with a password, a Bearer token
    in a status page incident): none of them in any file of the run folder."""
    pw, fly_token, sb_token = "CanaryPgPassw0rd-5521", "fo1_CanaryDbRunbook0123456789abcdefghijklmn", "sbp_" + "deadbeef" * 5
    in_pooler, in_status = "CanaryPoolerPw-8813", "CanaryStatusBearer-77aa"
    with psycopg.connect(pressured.dsn(), autocommit=True) as c:
        c.execute(f"CREATE ROLE canary LOGIN SUPERUSER PASSWORD '{pw}'")
    try:
        with standins() as (fly, status, api):
            fly.token, fly.logs.token, api.token = fly_token, fly_token, sb_token
            api.projects[REF]["pooler"] = [{**POOLER[0], "connection_string":
                                            f"postgres://postgres.{REF}:{in_pooler}@pooler.example:6543/postgres"}]
            status.summary = statuspage(incidents=[{
                "id": "i1", "name": "Debug", "status": "investigating", "impact": "none",
                "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
                "incident_updates": [{"body": f"curl -H 'Authorization: Bearer {in_status}'"}],
                "components": []}])
            env = _env(reports, pressured.dsn(user="canary", password=pw), fly, status, api,
                       FLY_API_TOKEN=fly_token, SUPABASE_ACCESS_TOKEN=sb_token,
                       SUPABASE_ANON_KEY="CanaryAnonKeyValue-0042")
            proc = opslib_run("run", "database", "--app", "live-app", env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        run = only_run(reports)
        found = by_id(findings(run))
        assert found["db-connections"]["severity"] == "ok"  # it really connected with the canary
        assert found["supabase-project"]["severity"] == "ok"  # and the token was accepted
        files = [p for p in run.rglob("*") if p.is_file()]
        for canary in (pw, fly_token, sb_token, in_pooler, in_status, "CanaryAnonKeyValue-0042"):
            assert canary not in proc.stdout + proc.stderr
            leaked = [p.relative_to(run) for p in files if canary.encode() in p.read_bytes()]
            assert leaked == [], f"{canary[:10]}… in {leaked}"
    finally:
        with psycopg.connect(pressured.dsn(), autocommit=True) as c:
            c.execute("DROP ROLE canary")


def test_the_apps_own_pool_and_prepared_statements_are_read_against_the_database_now():
    """Driver-side messages (the app's pool timing out; prepared statements through the
    transaction pooler) are read with the connections in use now and the pooler's mode."""
    import io

    import pandas as pd

    from opslib.logscan import analyze

    lines = ["Timed out fetching a new connection from the connection pool. More info: "
             "http://pris.ly/d/connection-pool (Current connection pool timeout: 10, connection limit: 5)",
             'ERROR: prepared statement "s0" already exists'] * 3
    report = analyze(io.BytesIO("".join(x + "\n" for x in lines).encode()))
    tx = [{"pool_mode": "transaction", "default_pool_size": 15}]

    def judged(pct: float) -> dict:
        found = database.assess_logs(report, pd.DataFrame([{"pct": pct}]), None, tx, None,
                                     dict(THRESHOLDS))
        return {f.id: f for f in found}

    roomy = judged(30.0)
    assert roomy["db-logs-app-pool"].severity == "critical"
    assert "only 30% of max_connections are in use: the app's pool is too small" in \
        roomy["db-logs-app-pool"].title
    assert roomy["db-logs-prepared"].severity == "warning"
    assert "pool_mode transaction" in roomy["db-logs-prepared"].title
    assert "statement_cache_size=0" in roomy["db-logs-prepared"].detail
    full = judged(97.0)
    assert "97% of max_connections in use: the database is the limit" in full["db-logs-app-pool"].title
