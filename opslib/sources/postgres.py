"""Postgres (Supabase) diagnostic queries over psycopg 3, recorded one level above the wire.

Each query is named; its result (columns and rows, JSON-able) goes through
:meth:`Session.capture`, so a replay answers with exactly what the live run saw. Connect and
statement timeouts are always set; ``prepare_threshold=None`` lets a transaction pooler
(Supavisor on port 6543) work; the statement timeout is set with ``SET LOCAL`` inside the
query's own transaction for the same reason. Connection errors are classified into the
causes an on-call engineer acts on (:func:`classify_error`).

The diagnostic queries of reference §6 are named functions returning DataFrames:
:func:`capacity`, :func:`connections` (+ :func:`by`), :func:`idle_in_transaction`,
:func:`long_queries`, :func:`blockers`, :func:`settings`.

Remediation: the ``pg.terminate`` and ``pg.cancel`` executors signal one backend, and only if
it is still the one planned: the guard ``pid = %s AND xact_start = %s AND state LIKE %s`` is
part of the very statement that signals (:func:`signal_backend`, :func:`backend_action`).
"""
from __future__ import annotations

import datetime as dt
import decimal
import ipaddress
import re
import threading
import uuid
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..actions import Action
from ..errors import NotConfigured, SourceAuthError, SourceError, SourceUnavailable
from ..reads import Source, require
from ..session import Session

if TYPE_CHECKING:  # pragma: no cover
    from ..actions import ApplyContext
    from ..config import Target

SYSTEM = "postgres"

# (regex on the server's message, kind, hint). Texts from reference §5.5.
_CLASSES: list[tuple[str, str, str]] = [
    (r"too many clients already|too many connections for (role|database)",
     "too_many_clients", "every connection slot is taken: run the database runbook "
                         "(look for idle-in-transaction leaks) before restarting the app"),
    (r"remaining connection slots are reserved",
     "reserved_slots", "only reserved (superuser) slots are left: the pool is exhausted"),
    (r"\(E(MAXCONN|MAXCONNSESSION|CHECKOUTTIMEOUT|MAXPOOLSREACHED)\)|max client connections reached|"
     r"MaxClientsInSessionMode|max clients reached|unable to check out connection",
     "supavisor_limit", "the Supavisor pooler is at its limit: check pool_size, use transaction "
                        "mode (port 6543), look for leaks"),
    (r"\(ENOTFOUND\)|tenant or user not found|tenant/user .* not found",
     "pooler_tenant", "the pooler does not know this user: the user must be postgres.<project_ref>"),
    (r"\(ECIRCUITBREAKER\)", "circuit_breaker",
     "Supavisor is blocking after repeated failures: wait, then fix the credentials"),
    (r"\bEADDRNOTALLOWED\b|address not (in (the )?allow ?list|allowed)", "address_not_allowed",
     "the project's network restrictions do not allow this address (Fly machines' egress "
     "addresses change): allow it under Database settings → Network restrictions"),
    (r"\bEBANNED\b|\bbanned\b", "banned",
     "Supabase banned this address after repeated failed logins: fix the password, then "
     "lift the ban (`supabase network-bans remove`, or Database settings → Network bans)"),
    (r"\bEDBHANDLEREXITED\b|db ?handler exited", "pooler_db_lost",
     "the pooler lost its connection to the database: check the project's status and the "
     "database's health (Level 2, Platform Team) before restarting the app"),
    (r"\bEAUTHTIMEOUT\b", "pooler_auth_timeout",
     "the pooler timed out authenticating against the database: the database is overloaded "
     "or unreachable from the pooler; check its health and connections"),
    (r"\bEAUTHQUERY\b|auth[_ ]query", "pooler_auth_query",
     "the pooler could not look the user up (its auth query failed): check that the user "
     "exists and the database accepts the pooler's connections"),
    (r"\bECHECKOUTRETRIES\b", "supavisor_limit",
     "the pooler gave up checking out a connection after retries: the pool is exhausted; "
     "check pool_size, use transaction mode (port 6543), look for leaks"),
    (r"password authentication failed|authentication failed|no password supplied|"
     r"role \".*\" does not exist", "auth_failed",
     "the database rejected the credentials in DATABASE_URL"),
    (r"\(ESSLREQUIRED\)|SSL connection is required|ssl.*(closed|error|required)|"
     r"server closed the connection unexpectedly", "ssl",
     "SSL or connection dropped by the server: add sslmode=require, check the server"),
    (r"could not translate host name|name or service not known|nodename nor servname|"
     r"temporary failure in name resolution", "dns",
     "the database host does not resolve: check DATABASE_URL (direct hosts are IPv6-only)"),
    (r"connection refused", "refused", "nothing listens at that host/port: check DATABASE_URL"),
    (r"timeout expired|timed out|canceling statement due to statement timeout", "timeout",
     "the database did not answer in time"),
    (r"database \".*\" does not exist", "no_database", "check the database name in DATABASE_URL"),
    (r"permission denied|must be a (superuser|member of the role)", "permission",
     "the DATABASE_URL role lacks the privilege (e.g. pg_signal_backend to end other roles' "
     "backends)"),
]


def classify_error(message: str) -> tuple[str, str]:
    """Map a Postgres/Supavisor/psycopg error message to (kind, hint)."""
    for pattern, kind, hint in _CLASSES:
        if re.search(pattern, message, re.I):
            return kind, hint
    return "error", "see the message; check DATABASE_URL and the database's status"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (uuid.UUID, ipaddress.IPv4Address, ipaddress.IPv6Address,
                          ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).hex()
    return value


DSN_HINT = "the Supabase connection string (Settings → Database → Connection string)"


class Postgres:
    """Runs named read-only queries on ``DATABASE_URL``; one lazily opened connection."""

    def __init__(self, session: Session, dsn: str, *, connect_timeout: int = 5,
                 statement_timeout_ms: int = 10_000,
                 application_name: str = "opslib-runbook") -> None:
        if session.mode != "replay" and not dsn:
            raise NotConfigured("Postgres", "DATABASE_URL", hint=DSN_HINT)
        self.session = session
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self.statement_timeout_ms = statement_timeout_ms
        self.application_name = application_name
        self._conn = None
        self._lock = threading.Lock()

    def _connect(self):
        import psycopg

        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg.connect(
                    self.dsn, connect_timeout=self.connect_timeout, autocommit=True,
                    prepare_threshold=None, application_name=self.application_name)
            except psycopg.Error as exc:
                raise self._error(exc, "connect") from None
        return self._conn

    def _error(self, exc: Exception, op: str) -> SourceError:
        message = " ".join(str(exc).split())
        kind, hint = classify_error(message)
        cls = SourceAuthError if kind in ("auth_failed", "permission") else SourceUnavailable
        sqlstate = getattr(exc, "sqlstate", None)
        text = f"postgres: {op} failed: {message}" + (f" (SQLSTATE {sqlstate})" if sqlstate else "")
        return cls(text, system=SYSTEM, target=self._target(), kind=kind, hint=hint)

    def _target(self) -> str:
        m = re.search(r"@([^/?]+)", self.dsn or "")
        return m.group(1) if m else "DATABASE_URL"

    def _run(self, sql: str, params: Any) -> dict[str, Any]:
        import psycopg

        with self._lock:
            conn = self._connect()
            try:
                with conn.transaction(), conn.cursor() as cur:
                    cur.execute(f"SET LOCAL statement_timeout = {int(self.statement_timeout_ms)}")
                    cur.execute(sql, params)
                    columns = [d.name for d in cur.description] if cur.description else []
                    rows = [[_jsonable(v) for v in row] for row in cur.fetchall()] if columns else []
            except psycopg.Error as exc:
                if conn.closed or conn.broken:
                    self._conn = None
                raise self._error(exc, "query") from None
        return {"columns": columns, "rows": rows}

    def query(self, name: str, sql: str, params: Any = None) -> pd.DataFrame:
        """Run ``sql`` as query ``name``; returns a DataFrame (recorded/replayed by name)."""
        result = self.session.capture("pg", SYSTEM, name, lambda: self._run(sql, params),
                                      op=name, target=self._target(), payload=sql)
        return pd.DataFrame(result["rows"], columns=result["columns"])

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# --------------------------------------------------------------------------- diagnostic queries
# Reference §6. Ages are computed by the server (``now()``), so they are what the server saw;
# timestamps are kept exact (microseconds) because the remediation guard compares them.
CAPACITY_SQL = """
SELECT current_setting('max_connections')::int                            AS max_connections,
       current_setting('superuser_reserved_connections')::int             AS su_reserved,
       coalesce(nullif(current_setting('reserved_connections', true), ''), '0')::int
                                                                           AS reserved,
       (SELECT count(*) FROM pg_stat_activity)                            AS total,
       (SELECT count(*) FROM pg_stat_activity
         WHERE backend_type = 'client backend')                           AS client_backends
"""

BREAKDOWN_SQL = """
SELECT coalesce(state, '(none)')            AS state,
       coalesce(usename::text, '')          AS usename,
       coalesce(application_name, '')       AS application_name,
       coalesce(host(client_addr), 'local') AS client_addr,
       count(*)::int                        AS connections
FROM pg_stat_activity
WHERE backend_type = 'client backend'
GROUP BY 1, 2, 3, 4
ORDER BY 5 DESC, 1, 2, 3, 4
"""

IDLE_IN_TX_SQL = """
SELECT pid, coalesce(usename::text, '') AS usename,
       coalesce(application_name, '') AS application_name,
       coalesce(host(client_addr), 'local') AS client_addr, state,
       xact_start,
       round(extract(epoch FROM now() - xact_start)::numeric, 1)   AS xact_age_s,
       round(extract(epoch FROM now() - state_change)::numeric, 1) AS idle_for_s,
       left(query, 200) AS last_query
FROM pg_stat_activity
WHERE state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()
ORDER BY xact_start, pid
"""

LONG_QUERIES_SQL = """
SELECT pid, coalesce(usename::text, '') AS usename,
       coalesce(application_name, '') AS application_name,
       query_start, xact_start, state,
       round(extract(epoch FROM now() - query_start)::numeric, 1) AS runtime_s,
       wait_event_type, wait_event, left(query, 200) AS query
FROM pg_stat_activity
WHERE state = 'active' AND now() - query_start > make_interval(secs => %s)
  AND pid <> pg_backend_pid() AND backend_type = 'client backend'
ORDER BY query_start, pid
"""

BLOCKERS_SQL = """
SELECT a.pid, pg_blocking_pids(a.pid) AS blocked_by,
       coalesce(a.usename::text, '') AS usename,
       coalesce(a.application_name, '') AS application_name,
       a.wait_event_type, a.wait_event,
       round(extract(epoch FROM now() - a.query_start)::numeric, 1) AS waiting_s,
       left(a.query, 200) AS query,
       (SELECT string_agg(DISTINCT b.state, ', ') FROM pg_stat_activity b
         WHERE b.pid = ANY(pg_blocking_pids(a.pid)))               AS blocker_state,
       (SELECT string_agg(DISTINCT coalesce(b.application_name, ''), ', ') FROM pg_stat_activity b
         WHERE b.pid = ANY(pg_blocking_pids(a.pid)))               AS blocker_application
FROM pg_stat_activity a
WHERE cardinality(pg_blocking_pids(a.pid)) > 0
ORDER BY a.query_start, a.pid
"""

SETTINGS_SQL = """
SELECT pg_is_in_recovery()                                         AS in_recovery,
       current_setting('idle_in_transaction_session_timeout')      AS idle_in_transaction_session_timeout,
       current_setting('statement_timeout')                        AS statement_timeout,
       current_setting('server_version')                           AS server_version,
       now()                                                       AS server_time
"""

QUERIES = {"db.capacity": CAPACITY_SQL, "db.breakdown": BREAKDOWN_SQL,
           "db.idle_in_transaction": IDLE_IN_TX_SQL, "db.long_queries": LONG_QUERIES_SQL,
           "db.blockers": BLOCKERS_SQL, "db.settings": SETTINGS_SQL}


def connect(session: Session, target: "Target") -> Postgres:
    """A (lazily connecting) client for ``DATABASE_URL``, or :class:`NotConfigured`."""
    dsn, = require(session, target, "Postgres", "DATABASE_URL", hint=DSN_HINT)
    return Postgres(session, dsn)


POSTGRES = Source("Postgres", connect)


def capacity(pg: Postgres) -> pd.DataFrame:
    """One row: max_connections, su_reserved, reserved (PG16+, else 0), total, client_backends,
    usable (slots a non-superuser can take), pct (client backends % of max_connections)."""
    df = pg.query("db.capacity", CAPACITY_SQL)
    if not df.empty:
        df["usable"] = df["max_connections"] - df["su_reserved"] - df["reserved"]
        df["pct"] = (100.0 * df["client_backends"] / df["max_connections"]).round(1)
    return df


def connections(pg: Postgres) -> pd.DataFrame:
    """Client backends by state, user, application and client address (column ``connections``)."""
    return pg.query("db.breakdown", BREAKDOWN_SQL)


def by(df: pd.DataFrame, column: str) -> pd.DataFrame:
    """The breakdown summed over one dimension (``state``, ``usename``, ``application_name``,
    ``client_addr``), largest first."""
    if df is None or df.empty:
        return pd.DataFrame(columns=[column, "connections"])
    return (df.groupby(column, as_index=False)["connections"].sum()
            .sort_values(["connections", column], ascending=[False, True]).reset_index(drop=True))


def idle_in_transaction(pg: Postgres) -> pd.DataFrame:
    """Backends idle in a transaction, oldest transaction first: pid, usename,
    application_name, client_addr, state, xact_start, xact_age_s, idle_for_s, last_query."""
    return pg.query("db.idle_in_transaction", IDLE_IN_TX_SQL)


def long_queries(pg: Postgres, min_seconds: float = 60.0) -> pd.DataFrame:
    """Active client queries running longer than ``min_seconds``: pid, usename,
    application_name, query_start, xact_start, state, runtime_s, wait_event_type, wait_event,
    query (``xact_start``/``state`` pin a ``pg.cancel`` action to this very query)."""
    return pg.query("db.long_queries", LONG_QUERIES_SQL, (float(min_seconds),))


def blockers(pg: Postgres) -> pd.DataFrame:
    """Sessions waiting on another (``pg_blocking_pids``): pid, blocked_by (list of pids),
    usename, application_name, wait_event_type, wait_event, waiting_s, query, blocker_state,
    blocker_application."""
    return pg.query("db.blockers", BLOCKERS_SQL)


def settings(pg: Postgres) -> pd.DataFrame:
    """One row: in_recovery, idle_in_transaction_session_timeout, statement_timeout,
    server_version, server_time."""
    return pg.query("db.settings", SETTINGS_SQL)


# --------------------------------------------------------------------------- remediation
# The guard is part of the statement that signals: a backend that finished its transaction,
# started another, or was replaced by a new backend with the same pid is not touched.
_SIGNAL_SQL = """
SELECT pid, {fn}(pid) AS signalled
FROM pg_stat_activity
WHERE pid = %s AND xact_start = %s::timestamptz AND state LIKE %s
"""
_SIGNALS = {"pg.terminate": "pg_terminate_backend", "pg.cancel": "pg_cancel_backend"}


def signal_sql(kind: str) -> str:
    """The guarded statement an action of ``kind`` (``pg.terminate``/``pg.cancel``) runs."""
    return " ".join(_SIGNAL_SQL.format(fn=_SIGNALS[kind]).split())


def _state_pattern(state: str) -> str:
    return "idle in transaction%" if state.startswith("idle in transaction") else state


def signal_backend(pg: Postgres, kind: str, *, pid: int, xact_start: str, state: str,
                   key: str) -> dict[str, Any]:
    """Cancel or terminate backend ``pid`` only if it is still in the transaction that started
    at ``xact_start`` and in ``state``. Returns ``{"pid", "signalled", "reason"}``."""
    df = pg.query(key, signal_sql(kind), (int(pid), xact_start, _state_pattern(state)))
    verb = "terminated" if kind == "pg.terminate" else "cancelled"
    if df.empty:
        return {"pid": int(pid), "signalled": False,
                "reason": "backend no longer in the planned transaction/state: not touched"}
    ok = bool(df.iloc[0]["signalled"])
    return {"pid": int(pid), "signalled": ok,
            "reason": verb if ok else "the server did not signal the backend"}


def apply_signal(ctx: "ApplyContext", action: Action) -> Any:
    """Executor of ``pg.terminate`` / ``pg.cancel`` (see :func:`signal_backend`)."""
    pg = Postgres(ctx.session, ctx.target.env("DATABASE_URL"), application_name="opslib-remediation")
    try:
        return signal_backend(pg, action.kind, pid=action.basis["pid"],
                              xact_start=action.basis["xact_start"], state=action.basis["state"],
                              key=f"action.{action.id}")
    finally:
        pg.close()


def backend_action(kind: str, row: Any, *, app: str, reason: str) -> Action:
    """An action that terminates/cancels one backend, its ``basis`` pinning pid + xact_start +
    state so a changed backend is refused (plan digest) or skipped (statement guard)."""
    fn = _SIGNALS[kind]
    verb = "terminate" if kind == "pg.terminate" else "cancel"
    who = row.application_name or row.usename or "?"
    return Action(
        id=f"{verb}-{int(row.pid)}", kind=kind,
        title=f"{verb} backend {int(row.pid)} ({who}, {row.state})",
        command=f"SELECT {fn}({int(row.pid)});  -- psql \"$DATABASE_URL\"",
        api={"method": "SQL", "sql": signal_sql(kind)},
        params={"pid": int(row.pid)},
        basis={"pid": int(row.pid), "xact_start": str(row.xact_start), "state": str(row.state),
               "usename": str(row.usename), "application_name": str(row.application_name)},
        reason=reason)
