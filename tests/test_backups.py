"""The backups runbook: demo scenarios through papermill; the Management API STAND-IN's backup
list; restore readiness read from a REAL PostgreSQL 15 whose WAL archiving works or fails."""
from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from opslib.config import Target
from opslib.escalation import escalation
from opslib.runbooks import backups
from opslib.session import Session
from opslib.times import iso
from tests.conftest import clean_env, findings, only_run
from tests.inprocess import opslib_run
from tests.servers import PG_BIN, PostgresServer
from tests.standins.supabase import SupabaseManagementStandIn

SB_TOKEN = "sbp_" + "a1b2c3d4" * 5
REF = "backupsrefabcdefghij"


def by_id(f: dict) -> dict[str, dict]:
    return {x["id"]: x for x in f["findings"]}


def test_demo_stale_backups(reports):
    proc = opslib_run("run", "backups", "--scenario", "stale",
                      env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = only_run(reports)
    f = findings(run)
    found = by_id(f)
    assert f["severity"] == "critical"
    assert found["backup-latest"]["severity"] == "critical"
    assert found["backup-latest"]["title"].startswith("last completed backup 3.2 days ago")
    assert found["backup-latest"]["title"].endswith("3 failed since")
    assert found["wal-archiving"]["severity"] == "critical"
    assert "WAL archiving is failing" in found["wal-archiving"]["title"]
    assert f["actions"] == []
    assert f["escalation"]["level"] == 2 and "data integrity" in f["escalation"]["reason"]
    assert (run / "charts" / "backups-history.png").exists()


def test_demo_healthy_backups(reports):
    proc = opslib_run("run", "backups", "--scenario", "healthy",
                      env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode == 0, proc.stderr
    f = findings(only_run(reports))
    assert f["severity"] == "ok" and f["escalation"]["level"] == 0
    found = by_id(f)
    assert found["backup-latest"]["title"].startswith("last completed backup 5 h ago")
    assert found["wal-archiving"]["severity"] == "ok"
    assert found["pitr"]["severity"] == "info"


def _body(*, hours_ago: list[tuple[float, str]], walg: bool = False, pitr: bool = False) -> dict:
    now = datetime.now(timezone.utc)
    return {"region": "eu-west-2", "walg_enabled": walg, "pitr_enabled": pitr,
            "backups": [{"id": i, "is_physical_backup": walg, "status": status,
                         "inserted_at": iso(now - timedelta(hours=h))}
                        for i, (h, status) in enumerate(hours_ago)],
            "physical_backup_data": {}}


def test_live_backups_and_archiver_from_real_servers(pg):
    body = _body(hours_ago=[(30, "COMPLETED"), (6, "FAILED"), (54, "COMPLETED")])
    with SupabaseManagementStandIn(SB_TOKEN, {REF: {"backups": body}}) as api:
        environ = {"SUPABASE_ACCESS_TOKEN": SB_TOKEN, "SUPABASE_PROJECT_REF": REF,
                   "SUPABASE_API_BASE_URL": api.url, "DATABASE_URL": pg.dsn()}
        session = Session("live")
        data = backups.collect(session, Target("live", "x", "http://x", environ=environ))
        session.close()
    assert [r.path for r in api.requests] == [f"/v1/projects/{REF}/database/backups"]
    assert data.backups["status"].tolist() == ["FAILED", "COMPLETED", "COMPLETED"]  # newest first
    found = {f.id: f for f in backups.assess_backups(data.backups, data.body, data.readings.error("backups"),
                                                      datetime.now(timezone.utc))}
    latest = found["backup-latest"]
    assert latest.severity == "critical"  # late (30 h) and a failure since
    assert latest.title.startswith("last completed backup 30 h ago") and "1 failed since" in latest.title
    [archiving] = backups.assess_archiver(data.archiver, data.readings.error("archiver"), data.body)
    assert (archiving.severity, archiving.title) == ("info", "WAL archiving is off (archive_mode=off)")
    assert escalation(list(found.values()))["level"] == 2


def test_unknown_project_is_a_finding_and_evidence_is_saved(reports):
    with SupabaseManagementStandIn(SB_TOKEN, {REF: {"backups": _body(hours_ago=[])}}) as api:
        env = clean_env(OPSLIB_REPORTS=str(reports), SUPABASE_ACCESS_TOKEN=SB_TOKEN,
                        SUPABASE_PROJECT_REF="nosuchprojectrefxxxx", SUPABASE_API_BASE_URL=api.url)
        proc = opslib_run("run", "backups", "--app", "live-app", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = only_run(reports)
    found = by_id(findings(run))
    assert found["backups-unknown"]["severity"] == "unknown"
    assert found["backups-unknown"]["title"] == "could not list backups: project not found"
    assert "check SUPABASE_PROJECT_REF" in found["backups-unknown"]["detail"]
    assert "skipped-postgres" in found
    assert opslib_run("verify", str(run)).returncode == 0


def test_no_backup_and_no_pitr_is_critical():
    body = _body(hours_ago=[(20, "FAILED")])
    from opslib.sources.supabase import backups_frame

    [f] = backups.assess_backups(backups_frame(body), body, None, datetime.now(timezone.utc))
    assert (f.id, f.severity, f.escalate) == ("backup-none", "critical", 2)


def test_pitr_window_is_checked():
    now = datetime.now(timezone.utc)
    body = {"pitr_enabled": True, "walg_enabled": True, "physical_backup_data": {
        "earliest_physical_backup_date_unix": int((now - timedelta(days=7)).timestamp()),
        "latest_physical_backup_date_unix": int((now - timedelta(minutes=3)).timestamp())}}
    assert backups.assess_pitr(body, now)[0].severity == "ok"
    body["physical_backup_data"]["latest_physical_backup_date_unix"] = int((now - timedelta(days=2)).timestamp())
    assert backups.assess_pitr(body, now)[0].severity == "critical"


@pytest.fixture(scope="module")
def archiving():
    """A real PostgreSQL 15 with archive_mode=on; ``command`` switches the archive_command."""
    server = PostgresServer(max_connections=10).start()
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as c:
            c.execute("ALTER SYSTEM SET archive_mode = 'on'")
            c.execute("ALTER SYSTEM SET archive_command = '/bin/true'")
        # archive_mode needs a restart; -l keeps the server's output off our pipes.
        server._run(f"{PG_BIN}/pg_ctl", "-D", server.data, "-l", os.path.join(server.base, "log"),
                    "-w", "-t", "60", "restart")
        yield server
    finally:
        server.stop()


def _switch_wal_and_wait(server: PostgresServer, command: str, column: str) -> None:
    with psycopg.connect(server.dsn(), autocommit=True) as c:
        c.execute(f"ALTER SYSTEM SET archive_command = '{command}'")
        c.execute("SELECT pg_reload_conf()")
        before = c.execute(f"SELECT {column} FROM pg_stat_archiver").fetchone()[0]
        c.execute("CREATE TABLE IF NOT EXISTS t (x int)")
        c.execute("INSERT INTO t SELECT generate_series(1, 1000)")
        c.execute("SELECT pg_switch_wal()")
        for _ in range(200):  # bounded: until the archiver has tried the segment
            if c.execute(f"SELECT {column} FROM pg_stat_archiver").fetchone()[0] > before:
                return
            time.sleep(0.1)
    raise AssertionError(f"pg_stat_archiver.{column} did not move")


def _readiness(server: PostgresServer):
    environ = {"DATABASE_URL": server.dsn()}
    data = backups.collect(Session("live"), Target("live", "x", "http://x", environ=environ))
    return backups.assess_archiver(data.archiver, data.readings.error("archiver"), {"walg_enabled": True})


def test_restore_readiness_follows_the_real_archiver(archiving):
    _switch_wal_and_wait(archiving, "/bin/true", "archived_count")
    [ok] = _readiness(archiving)
    assert ok.severity == "ok" and ok.title.startswith("WAL archiving works")

    _switch_wal_and_wait(archiving, "/bin/false", "failed_count")
    [failing] = _readiness(archiving)
    assert failing.severity == "critical" and failing.escalate == 2
    assert failing.title.startswith("WAL archiving is failing (last failure ")
    assert "a restore cannot replay past it" in failing.detail

    _switch_wal_and_wait(archiving, "/bin/true", "archived_count")
    assert _readiness(archiving)[0].severity == "ok"  # recovered once a segment is archived
