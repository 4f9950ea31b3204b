"""Demo scenarios of the database, backups and auth runbooks (Postgres, Supabase, Fly secrets)."""
from __future__ import annotations

import hashlib
from email.utils import format_datetime
from datetime import datetime, timedelta
from typing import Any, Callable

import httpx

from ...errors import SourceUnavailable
from ...times import iso
from ..world import APP, ENV, IMAGE, REF_NOW, World, ago, json_response, machine
from . import _applogs as applogs

REF = ENV["SUPABASE_PROJECT_REF"]
WEB_IP, WEB_IP2, OPS_IP = "203.0.113.10", "203.0.113.11", "198.51.100.7"
MACHINES = [machine("148ed193b95089", name="silent-sun-1234", region="iad"),
            machine("3d8d9e1fe67e89", name="misty-river-5678", region="ams")]
HOMES = [(m["id"], m["region"]) for m in MACHINES]
NOW_S = REF_NOW.timestamp()
LOG_START = NOW_S - 30 * 60


def _traffic(seed: int, scripted: list | None = None, *, end: float = NOW_S - 20) -> list:
    """The last 30 min of the app's ordinary logs, plus the scenario's own lines."""
    return applogs.background(HOMES, start=LOG_START, end=end, seed=seed) + (scripted or [])

_every = applogs.every


def pg_rows(columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    """A recorded query result, as :meth:`Postgres.query` captures it."""
    return {"columns": columns, "rows": rows}


def ts(dt: datetime) -> str:
    """A timestamptz as psycopg returns it, then recorded (ISO 8601, microseconds)."""
    return dt.isoformat(timespec="microseconds")


def _static(body: Any, status: int = 200, **headers: str) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: json_response(status, body, latency_ms=60, headers=headers or None)


# --------------------------------------------------------------------------- status pages
def statuspage(indicator: str = "none", description: str = "All Systems Operational", *,
               degraded: dict[str, str] | None = None, incidents: list[dict] | None = None) -> dict:
    """A Statuspage v2 summary.json (reference §5.3) with Supabase-like components."""
    degraded = degraded or {}
    names = ["API Gateway", "Auth", "Database", "Connection Pooler", "Storage", "Realtime",
             "Edge Functions", "Dashboard"]
    components = [{"id": "grp-us-east-1", "name": "AWS us-east-1", "status": "operational",
                   "group": True, "group_id": None, "updated_at": iso(ago(days=3))}]
    for i, name in enumerate(names):
        components.append({"id": f"cmp{i:02d}", "name": name,
                           "status": degraded.get(name, "operational"), "group": False,
                           "group_id": "grp-us-east-1", "position": i + 1,
                           "updated_at": iso(ago(minutes=20) if name in degraded else ago(days=3))})
    return {"page": {"id": "supabase", "name": "Supabase", "url": "https://status.supabase.com",
                     "time_zone": "Etc/UTC", "updated_at": iso(ago(minutes=5))},
            "status": {"indicator": indicator, "description": description},
            "components": components, "incidents": incidents or [],
            "scheduled_maintenances": []}


def incident(name: str, impact: str, components: list[str], update: str,
             minutes: float = 25) -> dict:
    return {"id": "inc" + hashlib.sha256(name.encode()).hexdigest()[:8], "name": name, "status": "investigating",
            "impact": impact, "created_at": iso(ago(minutes=minutes)),
            "updated_at": iso(ago(minutes=5)), "resolved_at": None,
            "incident_updates": [{"status": "investigating", "body": update,
                                  "created_at": iso(ago(minutes=5))}],
            "components": [{"id": "x", "name": c} for c in components]}


def _project(status: str = "ACTIVE_HEALTHY") -> dict:
    return {"id": REF, "ref": REF, "organization_id": "demo-org", "name": "demo-app",
            "region": "us-east-1", "created_at": "2025-03-02T09:00:00Z", "status": status,
            "database": {"host": f"db.{REF}.supabase.co", "version": "15.8.1.085",
                         "postgres_engine": "15", "release_channel": "ga"}}


def _services(db: str = "ACTIVE_HEALTHY", error: str | None = None) -> list[dict]:
    return [{"name": "db", "healthy": db == "ACTIVE_HEALTHY", "status": db,
             "info": {"connected_cluster": 1, "db_connected": db == "ACTIVE_HEALTHY",
                      "replication_connected": True, "healthy": db == "ACTIVE_HEALTHY"},
             "error": error},
            {"name": "pooler", "healthy": True, "status": "ACTIVE_HEALTHY", "info": None,
             "error": None}]


POOLER = [{"identifier": REF, "database_type": "PRIMARY",
           "db_host": "aws-0-us-east-1.pooler.supabase.com", "db_port": 6543,
           "db_user": f"postgres.{REF}", "db_name": "postgres",
           "connection_string": f"postgres://postgres.{REF}:[YOUR-PASSWORD]@aws-0-us-east-1.pooler.supabase.com:6543/postgres",
           "pool_mode": "transaction", "default_pool_size": 15, "max_client_conn": 200,
           "is_using_scram_auth": True}]


def _supabase_api(w: World, *, status: str = "ACTIVE_HEALTHY", db: str = "ACTIVE_HEALTHY",
                  db_error: str | None = None) -> None:
    w.answer("env", "environment", "project_ref", REF)
    w.route("supabase-api", "GET", f"/v1/projects/{REF}", _static(_project(status)))
    w.route("supabase-api", "GET", f"/v1/projects/{REF}/health", _static(_services(db, db_error)))
    w.route("supabase-api", "GET", f"/v1/projects/{REF}/config/database/pooler", _static(POOLER))


# --------------------------------------------------------------------------- database
BREAKDOWN_COLS = ["state", "usename", "application_name", "client_addr", "connections"]
IDLE_COLS = ["pid", "usename", "application_name", "client_addr", "state", "xact_start",
             "xact_age_s", "idle_for_s", "last_query"]
LONG_COLS = ["pid", "usename", "application_name", "query_start", "xact_start", "state", "runtime_s",
             "wait_event_type", "wait_event", "query"]
BLOCK_COLS = ["pid", "blocked_by", "usename", "application_name", "wait_event_type",
              "wait_event", "waiting_s", "query", "blocker_state", "blocker_application"]
SETTINGS_COLS = ["in_recovery", "idle_in_transaction_session_timeout", "statement_timeout",
                 "server_version", "server_time"]
CLAIM = "UPDATE jobs SET status = 'running', locked_at = now() WHERE id = $1"


def _capacity(client: int, max_conn: int = 60) -> dict:
    return pg_rows(["max_connections", "su_reserved", "reserved", "total", "client_backends"],
                   [[max_conn, 3, 0, client + 6, client]])


def _settings(timeout: str) -> dict:
    return pg_rows(SETTINGS_COLS, [[False, timeout, "2min", "15.8", ts(REF_NOW)]])


def _database_world(breakdown: list[list], idle: list[list], long: list[list],
                    blocked: list[list], timeout: str) -> World:
    w = World(configured={"FLY_API_TOKEN", "DATABASE_URL", "SUPABASE_ACCESS_TOKEN"}, environ=ENV)
    client = sum(r[-1] for r in breakdown)
    w.answer("pg", "postgres", "db.capacity", _capacity(client))
    w.answer("pg", "postgres", "db.breakdown", pg_rows(BREAKDOWN_COLS, breakdown))
    w.answer("pg", "postgres", "db.idle_in_transaction", pg_rows(IDLE_COLS, idle))
    w.answer("pg", "postgres", "db.long_queries", pg_rows(LONG_COLS, long))
    w.answer("pg", "postgres", "db.blockers", pg_rows(BLOCK_COLS, blocked))
    w.answer("pg", "postgres", "db.settings", _settings(timeout))
    w.route("fly-machines", "GET", f"/v1/apps/{APP}/machines", _static(MACHINES))
    return w


def _database_collect(session, target):  # noqa: ANN001
    from ...runbooks import database

    return database.collect(session, target, long_query_s=60.0, log_window_minutes=30)


def _platform_rows(postgrest_idle: int) -> list[list]:
    return [["idle", "authenticator", "postgrest", "127.0.0.1", postgrest_idle],
            ["active", "authenticator", "postgrest", "127.0.0.1", 1],
            ["idle", "supabase_auth_admin", "gotrue", "127.0.0.1", 3],
            ["idle", "supabase_storage_admin", "storage-api", "127.0.0.1", 2],
            ["active", "postgres", "opslib-runbook", OPS_IP, 1]]


def database_healthy() -> tuple[World, Callable[..., Any]]:
    breakdown = ([["idle", "postgres", "web", WEB_IP, 4], ["active", "postgres", "web", WEB_IP, 1],
                  ["idle", "postgres", "web", WEB_IP2, 3],
                  ["idle in transaction", "postgres", "web", WEB_IP2, 1]]
                 + _platform_rows(4))
    idle = [[5120, "postgres", "web", WEB_IP2, "idle in transaction", ts(ago(seconds=2.4)), 2.4,
             2.1, "SELECT id FROM carts WHERE user_id = $1 FOR UPDATE"]]
    w = _database_world(breakdown, idle, [], [], "1min")
    applogs.serve(w, _traffic(51))
    w.route("supabase-status", "GET", "/api/v2/summary.json", _static(statuspage(
        "minor", "Minor Service Outage", degraded={"Edge Functions": "degraded_performance"},
        incidents=[incident("Elevated Edge Function cold starts in eu-central-1", "minor",
                            ["Edge Functions"], "We are investigating slower cold starts.")])))
    _supabase_api(w)
    return w, _database_collect


def database_connection_leak() -> tuple[World, Callable[..., Any]]:
    leak = [(4101 + i, WEB_IP if i < 12 else WEB_IP2, 2140 - i * 92) for i in range(20)]
    breakdown = ([["idle in transaction", "postgres", "worker", WEB_IP, 12],
                  ["idle in transaction", "postgres", "worker", WEB_IP2, 8],
                  ["idle", "postgres", "web", WEB_IP, 6], ["active", "postgres", "web", WEB_IP, 4],
                  ["idle", "postgres", "web", WEB_IP2, 5], ["active", "postgres", "web", WEB_IP2, 2]]
                 + _platform_rows(14))
    idle = [[pid, "postgres", "worker", ip, "idle in transaction", ts(ago(seconds=age)),
             float(age), round(age - 0.3, 1), CLAIM] for pid, ip, age in leak]
    long = [[4210, "postgres", "web", ts(ago(seconds=95)), ts(ago(seconds=95)), "active", 95.0,
             "Lock", "transactionid", "UPDATE jobs SET status = 'cancelled' WHERE id = $1"],
            [4211, "postgres", "web", ts(ago(seconds=71)), ts(ago(seconds=71)), "active", 71.0,
             "Lock", "transactionid",
             "UPDATE jobs SET status = 'cancelled' WHERE id = $1"]]
    blocked = [[4210, [4101], "postgres", "web", "Lock", "transactionid", 95.0,
                "UPDATE jobs SET status = 'cancelled' WHERE id = $1", "idle in transaction", "worker"],
               [4211, [4104], "postgres", "web", "Lock", "transactionid", 71.0,
                "UPDATE jobs SET status = 'cancelled' WHERE id = $1", "idle in transaction", "worker"]]
    w = _database_world(breakdown, idle, long, blocked, "0")
    # the worker's claims pile up from 36 min ago; the last 12 min every new connection of
    # the web app is refused (Postgres 15 wording) and its request fails with a 500
    refused = "error: remaining connection slots are reserved for non-replication superuser connections"
    web = [("148ed193b95089", "iad"), ("3d8d9e1fe67e89", "ams")]
    lines = _every(NOW_S - 12 * 60, NOW_S - 25, 14.0, lambda k: (
        "app", *web[k % 2], "info", refused if k % 4 else "error: sorry, too many clients already"))
    lines += [(t + 0.05, "app", mid, region, "info",
               applogs.access(500, f"/api/projects/{4100 + int(t) % 97}/tasks?limit=50", 30004.2))
              for t, _, mid, region, _, _ in list(lines)]
    lines += _every(LOG_START + 40, NOW_S - 60, 95.0, lambda k: (
        "app", *web[k % 2], "info", f"worker: claimed job {88120 + k} (send-digest-email)"))
    applogs.serve(w, _traffic(53, lines))
    w.route("supabase-status", "GET", "/api/v2/summary.json", _static(statuspage()))
    _supabase_api(w)
    return w, _database_collect


def database_supabase_outage() -> tuple[World, Callable[..., Any]]:
    w = World(configured={"FLY_API_TOKEN", "DATABASE_URL", "SUPABASE_ACCESS_TOKEN"}, environ=ENV)
    w.answer("pg", "postgres", "db.capacity", SourceUnavailable(
        "postgres: connect failed: connection timeout expired", system="postgres",
        target="aws-0-us-east-1.pooler.supabase.com:6543", kind="timeout",
        hint="the database did not answer in time"))
    w.route("fly-machines", "GET", f"/v1/apps/{APP}/machines", _static(MACHINES))
    # 25 min ago the database went away: open connections drop, then Supavisor has no server
    # connection to hand out and every request that needs the database fails
    down = NOW_S - 25 * 60
    lines = [(down + 1.5 + i, "app", mid, region, "info", "Error: Connection terminated unexpectedly")
             for i, (mid, region) in enumerate(HOMES) for _ in range(3)]
    lines += _every(down + 8, NOW_S - 25, 16.0, lambda k: (
        "app", *HOMES[k % 2], "info",
        "PostgresError: (ECHECKOUTTIMEOUT) unable to check out connection from the pool after "
        "5000ms in transaction mode"))
    lines += [(t + 0.05, "app", mid, region, "info",
               applogs.access(503, "/api/projects/7731/tasks?limit=50", 5012.9))
              for t, _, mid, region, _, m in list(lines) if "ECHECKOUT" in m]
    applogs.serve(w, _traffic(57, lines))
    w.route("supabase-status", "GET", "/api/v2/summary.json", _static(statuspage(
        "major", "Partial System Outage",
        degraded={"Database": "major_outage", "Connection Pooler": "partial_outage"},
        incidents=[incident("Database connectivity issues in us-east-1", "major",
                            ["Database", "Connection Pooler"],
                            "Some projects in us-east-1 cannot connect to their database. "
                            "We have identified the cause and are working on a fix.")])))
    _supabase_api(w, status="ACTIVE_UNHEALTHY", db="UNHEALTHY",
                  db_error="connection to database timed out")
    return w, _database_collect


SCENARIOS = {
    "database": {
        "healthy": ("a third of max_connections, one short transaction, an unrelated minor "
                    "incident on the status page", database_healthy),
        "connection-leak": ("96% of max_connections: 20 sessions of the worker idle in a "
                            "transaction for up to 36 min, two sessions blocked behind them",
                            database_connection_leak),
        "supabase-outage": ("the database times out; status.supabase.com reports a major "
                            "database outage; project ACTIVE_UNHEALTHY", database_supabase_outage),
    },
}


# --------------------------------------------------------------------------- auth
ANON_FACTS = {"present": True, "kind": "legacy-jwt", "role": "anon", "alg": "HS256",
              "iss": "supabase", "ref": REF, "iat": "2025-03-02T09:00:00Z",
              "exp": "2035-02-28T09:00:00Z", "expired": False, "days_left": 3022.2,
              "problem": None}
GOTRUE = {"version": "v2.177.0", "name": "GoTrue",
          "description": "GoTrue is a user registration and authentication API"}


def _dated(body: Any, *, skew_s: float = 0.0, status: int = 200,
           latency: float = 48) -> Callable[[httpx.Request], httpx.Response]:
    date = format_datetime((REF_NOW + timedelta(seconds=skew_s)).replace(microsecond=0),
                           usegmt=True)
    return lambda request: json_response(status, body, latency_ms=latency, headers={"date": date})


def _clock(w: World, name: str) -> None:
    w.answer("clock", "local-clock", f"{name}:before", iso(REF_NOW))
    w.answer("clock", "local-clock", f"{name}:after", iso(REF_NOW + timedelta(milliseconds=90)))


def _secrets(*names: str) -> dict:
    digests = {"DATABASE_URL": "6c1f0b2e9a7d4c13", "SUPABASE_URL": "0f3e88a1c2b74d59",
               "SUPABASE_ANON_KEY": "b7d2419e6a0c3f85", "SENTRY_DSN": "e41a9c07d3b26f18"}
    return {"secrets": [{"name": n, "digest": digests[n], "created_at": "2025-03-02T09:12:44Z",
                         "updated_at": "2025-09-14T16:03:10Z"} for n in names]}


def _auth_world(*, app_skew: float = 0.0, secrets: tuple[str, ...] = (
        "DATABASE_URL", "SENTRY_DSN", "SUPABASE_ANON_KEY", "SUPABASE_URL"),
        bans: list[str] | None = None, logs: list | None = None) -> World:
    w = World(configured={"FLY_API_TOKEN", "SUPABASE_URL", "SUPABASE_ANON_KEY",
                          "SUPABASE_ACCESS_TOKEN"}, environ=ENV)
    applogs.serve(w, logs if logs is not None else _traffic(61))
    w.answer("keyfacts", "environment", "SUPABASE_ANON_KEY", ANON_FACTS)
    w.answer("env", "environment", "project_ref", REF)
    w.answer("env", "environment", "SUPABASE_URL", ENV["SUPABASE_URL"])
    w.answer("env", "environment", "digest:SUPABASE_URL", "5a0c9e2f71d48b36")
    w.answer("env", "environment", "digest:SUPABASE_ANON_KEY", "93e1b7c04fa2d865")
    w.route("supabase-auth", "GET", "/auth/v1/health", _dated(GOTRUE, skew_s=0.2))
    w.route("app", "GET", "/health", _dated(
        {"status": "ok", "timestamp": iso(REF_NOW + timedelta(seconds=app_skew))},
        skew_s=app_skew, latency=96))
    _clock(w, "auth_health")
    _clock(w, "app_health")
    w.route("fly-machines", "GET", f"/v1/apps/{APP}/secrets", _static(_secrets(*secrets)))
    w.route("supabase-api", "POST", f"/v1/projects/{REF}/network-bans/retrieve",
            _static({"banned_ipv4_addresses": bans or []}))
    return w


def _auth_collect(session, target):  # noqa: ANN001
    from ...runbooks import auth

    return auth.collect(session, target, log_window_minutes=30)


PGRST303 = ('PostgREST error PGRST303: {"code":"PGRST303","details":null,"hint":null,'
            '"message":"JWT issued at future"}')
NO_KEY = ('supabase: GET https://demoref.supabase.co/auth/v1/user failed: 401 '
          '{"message":"No API key found in request"}')
SUPABASE_CHATTER = ("supabase.co/auth", "signed in via", "JWT created successfully")


def _skew_logs() -> list:
    """Machine iad's clock runs 2 min ahead: the tokens it signs are refused by PostgREST as
    issued in the future for the last 14 min, and its users get 401s."""
    a = HOMES[0]
    lines = _every(NOW_S - 14 * 60, NOW_S - 25, 11.0, lambda k: ("app", *a, "info", PGRST303))
    lines += [(t + 0.02, "app", mid, region, "info",
               applogs.access(401, f"/rest/v1/projects?select=*&org_id=eq.{301 + k % 40}", 8.4))
              for k, (t, _, mid, region, _, _) in enumerate(list(lines))]
    return _traffic(63, lines)


def _missing_key_logs() -> list:
    """The app was re-created 20 min ago without SUPABASE_ANON_KEY: since its restart every
    call to Supabase Auth goes out without a key and sign-ins fail."""
    redeploy = NOW_S - 20 * 60
    before = [e for e in _traffic(67, end=redeploy)]
    after = [e for e in applogs.background(HOMES, start=redeploy + 12, end=NOW_S - 20, seed=69)
             if not any(c in e[5] for c in SUPABASE_CHATTER)]
    lines = []
    for i, (mid, region) in enumerate(HOMES):
        lines += applogs.at(redeploy + i * 30, applogs.boot(mid, region, IMAGE))
    lines += _every(redeploy + 20, NOW_S - 25, 17.0, lambda k: ("app", *HOMES[k % 2], "info", NO_KEY))
    lines += [(t + 0.02, "app", mid, region, "info",
               applogs.access(401, "/api/session", 61.7, method="POST"))
              for t, _, mid, region, _, m in list(lines) if m == NO_KEY]
    return before + after + lines


SCENARIOS["auth"] = {
    "healthy": ("Auth healthy, clocks in step, SUPABASE_URL and SUPABASE_ANON_KEY set, no bans",
                lambda: (_auth_world(), _auth_collect)),
    "clock-skew": ("users see 'JWT issued at future': the app's clock is 2 min ahead of "
                   "Supabase's; Auth itself is healthy",
                   lambda: (_auth_world(app_skew=120.0, logs=_skew_logs()), _auth_collect)),
    "missing-secret": ("SUPABASE_ANON_KEY is missing from the app's Fly secrets (app "
                       "re-created); the local key passes Auth health",
                       lambda: (_auth_world(secrets=("DATABASE_URL", "SENTRY_DSN", "SUPABASE_URL"),
                                            logs=_missing_key_logs()), _auth_collect)),
}


# --------------------------------------------------------------------------- backups
ARCHIVER_COLS = ["archive_mode", "archived_count", "last_archived_wal", "last_archived_time",
                 "failed_count", "last_failed_wal", "last_failed_time", "stats_reset",
                 "in_recovery", "server_time"]


def _daily(days: int, statuses: dict[int, str]) -> list[dict]:
    """Daily logical backups at 22:31 UTC, newest first; ``statuses`` overrides by day index."""
    first = REF_NOW.replace(hour=22, minute=31, second=7) - timedelta(days=1)
    return [{"id": 90210 - i, "is_physical_backup": False,
             "status": statuses.get(i, "COMPLETED"),
             "inserted_at": iso(first - timedelta(days=i))} for i in range(days)]


def _backups_world(backups: list[dict], archiver: list[Any]) -> World:
    w = World(configured={"DATABASE_URL", "SUPABASE_ACCESS_TOKEN"}, environ=ENV)
    w.answer("env", "environment", "project_ref", REF)
    w.route("supabase-api", "GET", f"/v1/projects/{REF}/database/backups", _static(
        {"region": "us-east-1", "walg_enabled": True, "pitr_enabled": False,
         "backups": backups, "physical_backup_data": {}}))
    w.answer("pg", "postgres", "backups.archiver", pg_rows(ARCHIVER_COLS, [archiver]))
    return w


def _backups_collect(session, target):  # noqa: ANN001
    from ...runbooks import backups

    return backups.collect(session, target)


def backups_healthy() -> tuple[World, Callable[..., Any]]:
    return _backups_world(_daily(7, {}), [
        "on", 48211, "00000001000000A7000000C3", ts(ago(minutes=2)), 3,
        "000000010000009F00000011", ts(ago(days=9, hours=2)), ts(ago(days=60)), False,
        ts(REF_NOW)]), _backups_collect


def backups_stale() -> tuple[World, Callable[..., Any]]:
    return _backups_world(_daily(7, {0: "FAILED", 1: "FAILED", 2: "FAILED"}), [
        "on", 47102, "00000001000000A50000002E", ts(ago(days=2, hours=14)), 1894,
        "00000001000000A50000002F", ts(ago(minutes=1)), ts(ago(days=60)), False,
        ts(REF_NOW)]), _backups_collect


SCENARIOS["backups"] = {
    "healthy": ("a completed daily backup every night, the last 5 h ago; WAL archiving works",
                backups_healthy),
    "stale": ("the last completed backup is 3 days old, the three since FAILED, and WAL "
              "archiving has been failing for 2.5 days", backups_stale),
}
