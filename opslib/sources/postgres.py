"""Postgres (Supabase) diagnostic queries over psycopg 3, recorded one level above the wire.

Each query is named; its result (columns and rows, JSON-able) goes through
:meth:`Session.capture`, so a replay answers with exactly what the live run saw. Connect and
statement timeouts are always set; ``prepare_threshold=None`` lets a transaction pooler
(Supavisor on port 6543) work; the statement timeout is set with ``SET LOCAL`` inside the
query's own transaction for the same reason. Connection errors are classified into the
causes an on-call engineer acts on.
"""
from __future__ import annotations

import datetime as dt
import decimal
import ipaddress
import re
import threading
import uuid
from typing import Any

import pandas as pd

from ..errors import NotConfigured, SourceAuthError, SourceError, SourceUnavailable
from ..session import Session

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


class Postgres:
    """Runs named read-only queries on ``DATABASE_URL``; one lazily opened connection."""

    def __init__(self, session: Session, dsn: str, *, connect_timeout: int = 5,
                 statement_timeout_ms: int = 10_000,
                 application_name: str = "opslib-runbook") -> None:
        if session.mode != "replay" and not dsn:
            raise NotConfigured("Postgres", "DATABASE_URL",
                                hint="export the Supabase connection string "
                                     "(Settings → Database → Connection string)")
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
        cls = SourceAuthError if kind in ("auth_failed",) else SourceUnavailable
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
