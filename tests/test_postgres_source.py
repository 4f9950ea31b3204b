"""The Postgres source against a REAL PostgreSQL 15 with few connection slots: the server
refusing connections, a transaction left idle, a lock another session waits on, bad
credentials, a closed port, a statement timeout — each reported as the real server shows it."""
from __future__ import annotations

import threading
import time

import psycopg
import pytest

from opslib.errors import SourceAuthError, SourceError
from opslib.session import Session
from opslib.sources import postgres as pgq
from opslib.sources.postgres import Postgres, classify_error
from tests.servers import PostgresServer, free_port

APP_PW = "app-Pw-4c0nn3ct"


@pytest.fixture(scope="module")
def tight():
    """max_connections=8, 3 reserved for superusers: 5 slots for the application role."""
    server = PostgresServer(max_connections=8).start()
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as c:
            c.execute(f"CREATE ROLE app LOGIN PASSWORD '{APP_PW}'")
            c.execute("CREATE TABLE jobs (id int PRIMARY KEY, status text)")
            c.execute("INSERT INTO jobs VALUES (1, 'new'), (2, 'new')")
            c.execute("GRANT SELECT, UPDATE ON jobs TO app")
        yield server
    finally:
        server.stop()


def _open(dsn: str, name: str, limit: int = 50) -> tuple[list[psycopg.Connection], str]:
    """Open connections until the server refuses; return them and the server's words."""
    conns: list[psycopg.Connection] = []
    for _ in range(limit):
        try:
            conns.append(psycopg.connect(dsn, autocommit=True, application_name=name,
                                         connect_timeout=5))
        except psycopg.OperationalError as exc:
            return conns, str(exc)
    raise AssertionError(f"the server accepted {limit} connections")


def _close(conns: list[psycopg.Connection]) -> None:
    for c in conns:
        c.close()


def test_refusals_are_classified_as_the_real_server_words_them(tight):
    app_dsn = tight.dsn(user="app", password=APP_PW)
    app_conns, app_refusal = _open(app_dsn, "web")
    try:
        assert len(app_conns) == 5
        assert "remaining connection slots are reserved for non-replication superuser" in app_refusal
        with pytest.raises(SourceError) as exc:
            Postgres(Session("live"), app_dsn).query("x", "SELECT 1")
        assert exc.value.kind == "reserved_slots"
        assert "remaining connection slots are reserved" in exc.value.message

        # A superuser still gets in and sees the pressure as it is.
        pg = Postgres(Session("live"), tight.dsn())
        cap = pgq.capacity(pg).iloc[0]
        by_app = pgq.by(pgq.connections(pg), "application_name")
        pg.close()
        assert (cap["max_connections"], cap["su_reserved"], cap["usable"]) == (8, 3, 5)
        assert cap["client_backends"] == 6 and cap["pct"] == 75.0
        assert by_app.iloc[0].tolist() == ["web", 5]

        su_conns, su_refusal = _open(tight.dsn(), "admin")
        try:
            assert "sorry, too many clients already" in su_refusal
            with pytest.raises(SourceError) as exc:
                Postgres(Session("live"), tight.dsn()).query("x", "SELECT 1")
            assert exc.value.kind == "too_many_clients"
            assert "idle-in-transaction" in exc.value.hint
        finally:
            _close(su_conns)
    finally:
        _close(app_conns)


def test_idle_transaction_and_lock_wait_as_the_server_shows_them(tight):
    leaky = psycopg.connect(tight.dsn(user="app", password=APP_PW), application_name="leaky")
    leaky.execute("UPDATE jobs SET status = 'claimed' WHERE id = 1")  # opens a transaction, holds the row
    waiter = psycopg.connect(tight.dsn(user="app", password=APP_PW), autocommit=True,
                             application_name="web")
    waiter_pid = waiter.info.backend_pid
    done = threading.Event()

    def blocked_update() -> None:
        try:
            waiter.execute("UPDATE jobs SET status = 'cancelled' WHERE id = 1")
        except psycopg.Error:
            pass
        done.set()

    thread = threading.Thread(target=blocked_update, daemon=True)
    thread.start()
    pg = Postgres(Session("live"), tight.dsn())
    try:
        for _ in range(100):  # bounded: until the server shows the waiter on the lock
            blk = pgq.blockers(pg)
            if len(blk):
                break
            time.sleep(0.05)
        idle = pgq.idle_in_transaction(pg)
        assert idle["pid"].tolist() == [leaky.info.backend_pid]
        row = idle.iloc[0]
        assert (row["application_name"], row["state"], row["usename"]) == (
            "leaky", "idle in transaction", "app")
        assert "UPDATE jobs SET status = 'claimed'" in row["last_query"]
        assert row["xact_age_s"] >= 0 and row["xact_start"].endswith("+00:00")
        assert blk["pid"].tolist() == [waiter_pid]
        assert blk.iloc[0]["blocked_by"] == [leaky.info.backend_pid]
        assert blk.iloc[0]["wait_event_type"] == "Lock"
        assert (blk.iloc[0]["blocker_state"], blk.iloc[0]["blocker_application"]) == (
            "idle in transaction", "leaky")
        long = pgq.long_queries(pg, 0)
        assert waiter_pid in long["pid"].tolist()
        states = pgq.by(pgq.connections(pg), "state")
        assert dict(zip(states["state"], states["connections"]))["idle in transaction"] == 1

        # The guard: a stale xact_start leaves the backend alone; the right one ends it.
        stale = pgq.signal_backend(pg, "pg.terminate", pid=row["pid"],
                                   xact_start="2001-01-01T00:00:00+00:00",
                                   state="idle in transaction", key="t1")
        assert stale["signalled"] is False and "not touched" in stale["reason"]
        assert pgq.idle_in_transaction(pg)["pid"].tolist() == [leaky.info.backend_pid]
        hit = pgq.signal_backend(pg, "pg.terminate", pid=row["pid"], xact_start=row["xact_start"],
                                 state=row["state"], key="t2")
        assert hit == {"pid": leaky.info.backend_pid, "signalled": True, "reason": "terminated"}
        assert done.wait(10), "the blocked update should proceed once the blocker is gone"
        for _ in range(100):
            if pgq.idle_in_transaction(pg).empty:
                break
            time.sleep(0.05)
        assert pgq.idle_in_transaction(pg).empty
        assert pgq.blockers(pg).empty
    finally:
        pg.close()
        thread.join(10)
        leaky.close()
        waiter.close()


def test_settings_report_recovery_and_timeouts(tight):
    pg = Postgres(Session("live"), tight.dsn())
    try:
        s = pgq.settings(pg).iloc[0]
    finally:
        pg.close()
    assert s["in_recovery"] is False or s["in_recovery"] == False  # noqa: E712
    assert s["idle_in_transaction_session_timeout"] == "0"
    assert s["server_version"].startswith("15")


def test_bad_password_is_an_auth_failure(tight):
    with pytest.raises(SourceAuthError) as exc:
        Postgres(Session("live"), tight.dsn(password="wrong-password")).query("x", "SELECT 1")
    assert exc.value.kind == "auth_failed"
    assert 'password authentication failed for user "postgres"' in exc.value.message
    assert "wrong-password" not in str(exc.value)


def test_closed_port_is_refused():
    with pytest.raises(SourceError) as exc:
        Postgres(Session("live"), f"postgresql://u:p@127.0.0.1:{free_port()}/db").query("x", "SELECT 1")
    assert exc.value.kind == "refused"


def test_statement_timeout_is_always_set(tight):
    pg = Postgres(Session("live"), tight.dsn(), statement_timeout_ms=200)
    try:
        with pytest.raises(SourceError) as exc:
            pg.query("slow", "SELECT pg_sleep(5)")
        assert exc.value.kind == "timeout"
        assert "canceling statement due to statement timeout" in exc.value.message
        assert pg.query("after", "SELECT 1 AS one").iloc[0]["one"] == 1  # the connection survives
    finally:
        pg.close()


def test_permission_to_signal_is_reported(tight):
    with psycopg.connect(tight.dsn(), autocommit=True) as c:
        c.execute("GRANT pg_read_all_stats TO app")  # to see other roles' sessions
    su = psycopg.connect(tight.dsn(), application_name="admin")
    su.execute("SELECT 1")  # a superuser's transaction, idle
    try:
        pg = Postgres(Session("live"), tight.dsn(user="app", password=APP_PW))
        try:
            row = pgq.idle_in_transaction(pg)
            target = row[row["application_name"] == "admin"].iloc[0]
            with pytest.raises(SourceAuthError) as exc:
                pgq.signal_backend(pg, "pg.terminate", pid=target["pid"],
                                   xact_start=target["xact_start"], state=target["state"], key="p")
            assert exc.value.kind == "permission"
        finally:
            pg.close()
    finally:
        su.close()


@pytest.mark.parametrize("message, kind", [
    ("FATAL:  sorry, too many clients already", "too_many_clients"),
    ('FATAL:  too many connections for role "app"', "too_many_clients"),
    ("FATAL:  remaining connection slots are reserved for non-replication superuser connections",
     "reserved_slots"),
    ("FATAL:  remaining connection slots are reserved for roles with the SUPERUSER attribute",
     "reserved_slots"),
    ('FATAL:  remaining connection slots are reserved for roles with privileges of the '
     '"pg_use_reserved_connections" role', "reserved_slots"),
    ("FATAL:  (EMAXCONNSESSION) max clients reached in session mode - max clients are limited "
     "to pool_size: 15", "supavisor_limit"),
    ("FATAL:  (EMAXCONN) max client connections reached, limit: 200", "supavisor_limit"),
    ("FATAL:  (ECHECKOUTTIMEOUT) unable to check out connection from the pool after 5000ms in "
     "transaction mode", "supavisor_limit"),
    ("FATAL:  Max client connections reached", "supavisor_limit"),
    ("FATAL:  MaxClientsInSessionMode: max clients reached - in Session mode max clients are "
     "limited to pool_size", "supavisor_limit"),
    ("FATAL:  Unable to check out connection from the pool due to timeout", "supavisor_limit"),
    ("FATAL:  Tenant or user not found", "pooler_tenant"),
    ("FATAL:  (ENOTFOUND) tenant/user postgres.abc not found", "pooler_tenant"),
    ('FATAL:  password authentication failed for user "postgres"', "auth_failed"),
    ("FATAL:  (ESSLREQUIRED) SSL connection is required for user: postgres", "ssl"),
    ('could not translate host name "db.x.supabase.co" to address: Name or service not known', "dns"),
    ('connection to server at "127.0.0.1", port 1 failed: Connection refused', "refused"),
    ("connection timeout expired", "timeout"),
    # Supavisor's own codes (supabase/supavisor error codes): each gets its own cause and fix
    ("FATAL:  (EADDRNOTALLOWED) address not in allow list", "address_not_allowed"),
    ("FATAL:  (EBANNED) this address is banned", "banned"),
    ("FATAL:  (EDBHANDLEREXITED) DbHandler exited", "pooler_db_lost"),
    ("FATAL:  (EAUTHTIMEOUT) timeout while authenticating", "pooler_auth_timeout"),
    ("FATAL:  (EAUTHQUERY) auth query failed", "pooler_auth_query"),
    ("FATAL:  (ECHECKOUTRETRIES) unable to check out a connection", "supavisor_limit"),
])
def test_error_texts_of_the_reference_are_classified(message, kind):
    assert classify_error(message)[0] == kind


def test_cancel_stops_the_running_query_it_was_planned_for(tight):
    busy = psycopg.connect(tight.dsn(), autocommit=True, application_name="report")
    outcome: list[str] = []
    thread = threading.Thread(target=lambda: _run_catching(busy, outcome), daemon=True)
    thread.start()
    pg = Postgres(Session("live"), tight.dsn())
    try:
        for _ in range(100):  # bounded: until the server shows the query running
            long = pgq.long_queries(pg, 0)
            long = long[long["application_name"] == "report"]
            if len(long):
                break
            time.sleep(0.05)
        row = long.iloc[0]
        assert row["state"] == "active" and "pg_sleep" in row["query"]
        result = pgq.signal_backend(pg, "pg.cancel", pid=row["pid"], xact_start=row["xact_start"],
                                    state=row["state"], key="c1")
        assert result == {"pid": busy.info.backend_pid, "signalled": True, "reason": "cancelled"}
        thread.join(10)
        assert outcome and "canceling statement due to user request" in outcome[0]
        assert busy.execute("SELECT 1").fetchone() == (1,)  # cancelled, not terminated
    finally:
        pg.close()
        busy.close()


def _run_catching(conn: psycopg.Connection, outcome: list[str]) -> None:
    try:
        conn.execute("SELECT pg_sleep(30)")
        outcome.append("finished")
    except psycopg.Error as exc:
        outcome.append(str(exc))
