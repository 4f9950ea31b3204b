"""Incident signals: what the log lines say actually happened, and which runbook handles it.

Two stages keep this fast. The compiled kernel flags a line as a *candidate* of a family when
it contains one of the family's keywords (``kernel_keywords``); only those lines reach the
matchers here (``match``: phrase tests and a few regular expressions). Levels are ignored on
purpose: app output is always ``[info]``.

Some signals need context across lines and are resolved afterwards in `resolve_events`:
an OOM kill is the kernel line plus init's line (one event, not two), a health check that
fails during boot and passes seconds later is a blip (not a signal), and repeated crashes on
one machine make a crash loop.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass

from . import layout
from .proxy_codes import PROXY_CODES, codes_in, root_code

OOM_PAIR_SECONDS = 10.0
HEALTH_BLIP_SECONDS = 30.0
CRASH_LOOP_COUNT = 3
CRASH_LOOP_SECONDS = 600.0


# Stateful event kinds (resolved across lines in `resolve_events`).
EV_OOM_KERNEL = "oom_kernel"
EV_OOM_INIT = "oom_init"
EV_HEALTH_FAIL = "health_fail"
EV_HEALTH_WARN = "health_warn"
EV_HEALTH_PASS = "health_pass"
EV_DNS = "dns_unresolved"  # a name lookup failed; the line does not say for what
EV_DB_FRAME = "db_driver_frame"  # a stack frame inside a Postgres driver or ORM
EV_CRASH = "crash"  # a non-zero exit / abrupt VM exit, also counted as its own signal
STATEFUL = {EV_OOM_KERNEL, EV_OOM_INIT, EV_HEALTH_FAIL, EV_HEALTH_WARN, EV_HEALTH_PASS, EV_DNS, EV_DB_FRAME}
# signals that are also a crash of their machine (for crash loops)
CRASHES = ("app_exit_nonzero", "vm_exited_abruptly", "app_crashed")

# --- candidate families: the kernel flags a line with a family's bit when it holds one of
# the family's keywords, and only those lines are matched against the family's rules
FAM_MEM, FAM_EXIT, FAM_PROXY, FAM_HEALTH, FAM_PG, FAM_SUPAVISOR, FAM_JWT, FAM_TLS = (1 << i for i in range(8))
# families whose outcome depends on digits the templates mask (exit codes, pids, ports:
# the database context test looks for 5432/6543)
DIGIT_SENSITIVE = FAM_MEM | FAM_EXIT | FAM_HEALTH | FAM_PG

Hit = tuple[str, dict]  # (signal id or stateful event kind, details)
STOP = object()  # a rule's `details` saying "this line is settled: no signal" (exit code 0)


@dataclass(frozen=True)
class SignalDef:
    """One entry of the signal table: what a signal is (title, runbook, severity) and how a
    line raises it. A line raises it when it holds one of ``any`` (case-insensitive), matches
    ``regex``, matches ``context`` and holds none of ``unless`` (each test optional). Within a
    family the first entry that matches wins. ``details`` turns the regex match into the
    occurrence's details (``None``: no match after all; ``STOP``: no signal, and no later
    entry either). ``keywords`` are what the kernel scans for when ``any`` is empty or too
    specific; the default is ``any`` itself. An entry with the same id as an earlier one adds
    another way to raise that signal. Entries without a family are raised across lines
    (OOM pairs, health episodes, crash loops, HTTP error rates); entries without a title are
    stateful event kinds, not signals.
    """

    id: str
    title: str = ""
    runbook: str = ""
    severity: str = ""  # ok | warning | critical
    family: int = 0
    any: tuple[str, ...] = ()
    regex: re.Pattern[str] | None = None
    context: re.Pattern[str] | None = None
    unless: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    details: Callable[[re.Match[str]], object] | None = None
    find: Callable[[str], dict | None] | None = None  # a test of its own (proxy codes)


def _d(sid: str, title: str = "", runbook: str = "", severity: str = "", **rule) -> SignalDef:
    rule = {k: tuple(w.lower() for w in v) if k in ("any", "unless", "keywords") else v
            for k, v in rule.items()}
    return SignalDef(sid, title, runbook, severity, **rule)


def _exit_code(m: re.Match[str]) -> object:
    code = int(m.group(1) or m.group(2))
    return {"exit_code": code} if code else STOP


def _proxy_codes(msg: str) -> dict | None:
    codes = codes_in(msg)
    return {"codes": codes, "id": f"proxy_{root_code(codes).lower()}"} if codes else None


# a line about the database: its ports, its names, its drivers and hosts
DB_CONTEXT = re.compile(
    r"5432|6543|3306|postgres|supabase|database|server at|is the server running|\bpg\b|psql|"
    r"\bdb\b|\bdb\.|neon\.tech|rds\.amazonaws|pooler|flycast|flympg|postgrex|npgsql|"
    r"activerecord|sqlalchemy|psycopg|asyncpg|prisma|hikari|jdbc|pg-pool|node_modules/pg/", re.I)
_PROXY_KEYWORDS = ("[pp0", "[pu0", "[pc0", "[pt0", "[pm0", "[pm1", "[pa0", "[pe0", "[pr0", "[pl0",
                   "refused connection", "good candidate", "healthy instances", "while connecting to",
                   "complete http request", "valid tls certificate", "wake up machine",
                   "http request to instance")

# a stack frame inside a Postgres driver or ORM: Node (node_modules paths), Python
# (site-packages paths), Ruby (gem paths), Go (module paths), Elixir (``(postgrex 0.17.5)``),
# Java and .NET (package names after ``at``)
DB_FRAME = re.compile(
    r"node_modules/(?:pg|pg-pool|pg-protocol|postgres|@prisma/client|@neondatabase/serverless|knex|"
    r"sequelize|typeorm|drizzle-orm|kysely|slonik)/"
    r"|site-packages/(?:psycopg2?|psycopg_pool|asyncpg)/|site-packages/sqlalchemy/(?:dialects|pool|engine)/"
    r"|/gems/pg-\d|connection_adapters/postgresql"
    r"|github\.com/(?:jackc/pgx|lib/pq)"
    r"|\((?:postgrex|db_connection) \d"
    r"|\bat (?:org\.postgresql\.|com\.zaxxer\.hikari\.|Npgsql\.)")
# literal pieces of every DB_FRAME match (the kernel's keywords for it)
DB_FRAME_WORDS = ("node_modules/pg", "node_modules/postgres/", "@prisma/client", "@neondatabase/serverless",
                  "node_modules/knex/", "node_modules/sequelize/", "node_modules/typeorm/", "drizzle-orm/",
                  "node_modules/kysely/", "node_modules/slonik/", "site-packages/psycopg", "site-packages/asyncpg/",
                  "site-packages/sqlalchemy/", "/gems/pg-", "connection_adapters/postgresql", "jackc/pgx",
                  "github.com/lib/pq", "(postgrex ", "(db_connection ", "org.postgresql.", "com.zaxxer.hikari.",
                  "npgsql.")
DNS_FRAME_LINES = 12  # how far (in lines) a driver's frame may sit from the failed lookup
DNS_FRAME_SECONDS = 5.0

TABLE: list[SignalDef] = [
    # ---------------------------------------------------------------- memory
    _d(EV_OOM_KERNEL, family=FAM_MEM, keywords=("out of memory",),
       # "Killed process" (kernels since 5.x) and "Kill process … or sacrifice child" (older)
       regex=re.compile(r"Out of memory: Kill(?:ed)? process (\d+) \(([^)]*)\)"),
       details=lambda m: {"pid": int(m.group(1)), "process": m.group(2)}),
    _d(EV_OOM_KERNEL, family=FAM_MEM, keywords=("oom-kill",),
       regex=re.compile(r"(\S+) invoked oom-killer"), details=lambda m: {"process": m.group(1)}),
    _d(EV_OOM_INIT, family=FAM_MEM, any=("Process appears to have been OOM killed",),
       keywords=("been oom",)),
    # each runtime's own words: Node, Python, Java, Go, Ruby (NoMemoryError is a MemoryError
    # too), .NET, Rust, the BEAM, PHP
    _d("app_out_of_memory", "Runtime out of memory (heap limit, MemoryError)", "memory", "warning",
       family=FAM_MEM, any=("JavaScript heap out of memory", "Reached heap limit", "MemoryError",
                            "OutOfMemoryError", "fatal error: runtime: out of memory",
                            "out of memory (allocated", "OutOfMemoryException",
                            "failed to allocate memory", "Allowed memory size of"),
       keywords=("heap limit", "memoryerror", "outofmemoryerror", "out of memory", "outofmemoryexception",
                 "failed to allocate memory", "allowed memory size of")),
    _d("app_out_of_memory", family=FAM_MEM, keywords=("memory allocation of", "cannot allocate"),
       regex=re.compile(r"memory allocation of \d+ bytes failed|eheap_alloc: Cannot allocate \d+ bytes"
                        r"|(?:\[Errno 12\]|fork(?:\(\))?:) Cannot allocate memory")),
    _d("oom_kill", "Process OOM-killed by the kernel", "memory", "critical"),
    # ---------------------------------------------------------------- the process's life
    _d("release_command_failed", "Release command failed: the deploy was aborted", "deploy",
       "critical", family=FAM_EXIT, any=("release command failed", "release_command failed")),
    # Fly init ("Main child exited normally with code: 1"); platforms' and shells' exit status:
    # Fly release commands ("exited with status 127", "exited with non-zero status of 1", "user
    # command error: exit status"), Heroku ("Process exited with status 1"), npm/CF ("Exit status 1")
    _d("app_exit_nonzero", "Main process exited with a non-zero code", "not-responding", "warning",
       family=FAM_EXIT, regex=re.compile(
           r"Main child exited normally with code: (\d+)"
           r"|\bexit(?:ed)?(?: with)?(?: non-zero)? status(?: of)?:? (\d+)", re.I),
       keywords=("exited normally with code", "exit status", "exited with status",
                 "exited with non-zero status"), details=_exit_code),
    _d("vm_exited_abruptly", "Virtual machine exited abruptly", "not-responding", "critical",
       family=FAM_EXIT, any=("Virtual machine exited abruptly",)),
    _d("restart_limit", "Machine reached its max restart count", "not-responding", "critical",
       family=FAM_EXIT, any=("machine has reached its max restart count",)),
    _d("deploy_health_timeout", "Deploy gave up waiting for health checks to pass", "deploy",
       "critical", family=FAM_EXIT, any=("timeout reached waiting for health checks",
                                         "timeout reached waiting for healthchecks",
                                         "Failed due to unhealthy allocations")),
    _d("app_not_listening", "App not listening on the address fly-proxy expects (0.0.0.0/:: "
       "and internal_port)", "not-responding", "critical", family=FAM_EXIT,
       any=("not listening on the expected address", "listening on the incorrect address")),
    # the proxy's line is long; pasted ones wrap after "reached hard"
    _d("proxy_hard_limit", "Machine at its concurrency hard limit (connections not closed, or "
       "too few machines)", "not-responding", "warning", family=FAM_EXIT,
       regex=re.compile(r"reached hard(?:\s+limit|\s*$)", re.I), keywords=("reached hard",)),
    # a process that ended: Go/Rust panics (not net/http's recovered "http: panic serving"),
    # platforms marking it crashed, fatal start-up errors
    _d("app_crashed", "Process crashed (panic, fatal start-up error, platform marked it crashed)",
       "not-responding", "critical", family=FAM_EXIT,
       regex=re.compile(r"(?:^|[\s>|\]])panic: |thread '[^']*' panicked at"),
       unless=("http: panic serving",), keywords=("panic: ", "panicked at")),
    _d("app_crashed", family=FAM_EXIT, unless=("http: panic serving",),
       any=("State changed from starting to crashed", "State changed from up to crashed",
            "app crashed - waiting for file changes", "Crash dump is being written",
            "Cannot find module", "MODULE_NOT_FOUND", "ModuleNotFoundError",
            ": command not found", "Unhandled exception.", "executable file not found in $PATH",
            "Error: UnhandledIoError(",  # Fly init could not run the entrypoint
            "throw er; // Unhandled 'error' event")),
    # Node (16+) ends the trace of an exception that killed the process with its version alone
    _d("app_crashed", family=FAM_EXIT, keywords=("node.js v",),
       regex=re.compile(r"^\s*Node\.js v\d+\.\d+\.\d+\s*$")),
    # Fly init on a fatal signal (SIGTERM/SIGINT are a normal stop, e.g. autostop: no signal)
    _d("app_crashed", family=FAM_EXIT, keywords=("exited with signal",), regex=re.compile(
        r"exited with signal \(with signal '(SIGSEGV|SIGABRT|SIGBUS|SIGILL|SIGFPE|SIGSYS)'")),
    # dash (Debian's /bin/sh): "sh: 1: node: not found"
    _d("app_crashed", family=FAM_EXIT, keywords=(": not found",),
       regex=re.compile(r"(?:^|[\s/])sh: \d+: [^\s:]+: not found")),
    _d("crash_loop", "Crash/restart loop on one machine", "not-responding", "critical"),
    # ---------------------------------------------------------------- Fly proxy (codes table)
    _d("proxy", family=FAM_PROXY, keywords=_PROXY_KEYWORDS, find=_proxy_codes),
    # ---------------------------------------------------------------- health checks
    _d(EV_HEALTH_FAIL, family=FAM_HEALTH, keywords=("health check",), regex=re.compile(
        r"Health check\b(?: (?:'[^']*'|\S+))?(?: on port (\d+))?.*?"
        r"(has failed|is in a 'warning' state|is in a 'critical' state|is now passing|"
        r"status changed to '(?:critical|warning|passing)')", re.I),
       details=lambda m: {"port": m.group(1) or "", "state": m.group(2).lower()}),
    # logfmt monitors: msg="healthcheck error" … port=8080
    _d(EV_HEALTH_FAIL, family=FAM_HEALTH, keywords=("healthcheck error",),
       regex=re.compile(r"healthcheck error\b.*?\bport=(\d+)", re.I),
       details=lambda m: {"port": m.group(1)}),
    _d("health_check_failing", "Health check failing", "not-responding", "critical"),
    _d("health_check_warning", "Health check in warning state", "not-responding", "warning"),
    _d("health_check_recovered", "Health check passing again after a failure", "not-responding", "ok"),
    _d("http_5xx", "HTTP 5xx responses in access logs", "not-responding", "warning"),
    # ---------------------------------------------------------------- Postgres, as server and drivers say it
    _d("pg_too_many_connections", "Postgres out of connection slots (53300)", "database",
       "critical", family=FAM_PG, any=("sorry, too many clients already",
                                       "remaining connection slots are reserved",
                                       "too many connections for role",
                                       "too many connections for database")),
    _d("db_pool_timeout", "App's database pool exhausted: timed out waiting for a connection",
       "database", "critical", family=FAM_PG,
       any=("Timed out fetching a new connection from the", "QueuePool limit of size",
            "Connection is not available, request timed out", "TooManyConnectionsError")),
    _d("pg_idle_in_transaction_timeout", "Sessions killed by idle_in_transaction_session_timeout",
       "database", "warning", family=FAM_PG,
       any=("terminating connection due to idle-in-transaction timeout",)),
    _d("db_prepared_statements", "Prepared statements through a transaction pooler (Supavisor/"
       "PgBouncer port 6543): use session mode or disable them", "database", "warning",
       family=FAM_PG, keywords=("prepared statement",), regex=re.compile(
           r'prepared statement \\*"[^"\\]*\\*" (?:already exists|does not exist)', re.I)),
    _d("db_auth_failed", "Database login refused (password, role, or pg_hba/SSL rule)",
       "database", "critical", family=FAM_PG,
       any=("password authentication failed for user", "no pg_hba.conf entry for host",
            "pg_hba.conf rejects connection")),
    _d("db_auth_failed", family=FAM_PG, keywords=("does not exist",),
       regex=re.compile(r'\brole \\?"[^"\\]+\\?" does not exist')),
    # libpq's own wording is always about the database host; the rest only in its context
    _d("db_dns_failure", "Database host name does not resolve", "database", "critical",
       family=FAM_PG, any=("could not translate host name",)),
    _d("db_dns_failure", family=FAM_PG, context=DB_CONTEXT,
       any=("getaddrinfo ENOTFOUND", "getaddrinfo EAI_AGAIN", "Temporary failure in name resolution",
            "Name or service not known", "no such host", "non-existing domain", ":nxdomain")),
    # a lookup failure that does not say what for: the database's when a frame of a Postgres
    # driver is next to it in the same stack trace (`resolve_events`)
    _d(EV_DNS, family=FAM_PG,
       any=("getaddrinfo ENOTFOUND", "getaddrinfo EAI_AGAIN", "Temporary failure in name resolution",
            "Name or service not known")),
    _d("db_connection_closed", "Database connection closed unexpectedly (SSL/server)", "database",
       "warning", family=FAM_PG, any=("SSL connection has been closed unexpectedly",
                                      "server closed the connection unexpectedly",
                                      "Connection terminated unexpectedly")),
    _d("db_connection_refused", "Database connection refused", "database", "critical",
       family=FAM_PG, context=DB_CONTEXT, any=("connection refused", "ECONNREFUSED")),
    # the driver or server saying the database cannot be reached at all (libpq, Prisma P1001,
    # pgx, Postgrex/DBConnection, ActiveRecord, PgBouncer, node-postgres, Npgsql), or is restarting
    _d("db_unreachable", "Database server unreachable (connect failed, timed out, or the server "
       "is restarting)", "database", "critical", family=FAM_PG,
       any=("Can't reach database server", "could not connect to server",
            "Is the server running on that host", "pgbouncer cannot connect to server",
            "Connection terminated due to connection timeout",
            "timeout exceeded when trying to connect", "ConnectionNotEstablished",
            "DBConnection.ConnectionError", "was reached but timed out",
            "the database system is shutting down",
            "the database system is starting up", "the database system is in recovery mode")),
    _d("db_unreachable", family=FAM_PG, context=DB_CONTEXT,
       any=("failed to connect to", "no route to host", "connection reset by peer",
            "connect ETIMEDOUT", "context deadline exceeded", "i/o timeout", "Connection timed out")),
    # the client insists on SSL the server does not offer (node-postgres, lib/pq, libpq)
    _d("db_ssl_mismatch", "Database SSL mode mismatch: the client requires SSL the server does "
       "not offer (set sslmode to match the server)", "database", "critical", family=FAM_PG,
       any=("The server does not support SSL connections", "SSL is not enabled on the server",
            "server does not support SSL, but SSL was required")),
    # stack frames inside a Postgres driver or ORM, in each runtime's frame format
    _d(EV_DB_FRAME, family=FAM_PG, regex=DB_FRAME, keywords=DB_FRAME_WORDS),
    # ---------------------------------------------------------------- Supavisor
    _d("supavisor_pool_exhausted", "Supavisor pooler out of client/pool capacity", "database",
       "critical", family=FAM_SUPAVISOR,
       any=("(EMAXCONNSESSION)", "(EMAXCONN)", "(ECHECKOUTTIMEOUT)", "(EMAXPOOLSREACHED)",
            "Max client connections reached", "MaxClientsInSessionMode",
            "Unable to check out connection from the pool"),
       keywords=("(emaxconn", "(echeckout", "(emaxpools", "max client connections",
                 "maxclientsinsessionmode", "unable to check out connection")),
    _d("supavisor_circuit_breaker", "Supavisor circuit breaker open (too many failed attempts)",
       "database", "critical", family=FAM_SUPAVISOR, any=("(ECIRCUITBREAKER)",)),
    _d("supavisor_ssl_required", "Supavisor requires SSL for this user", "database", "warning",
       family=FAM_SUPAVISOR, any=("(ESSLREQUIRED)",)),
    _d("supavisor_tenant_not_found", "Supavisor: tenant/user not found (wrong pooler user or "
       "project ref)", "database", "critical", family=FAM_SUPAVISOR, unless=("getaddrinfo",),
       any=("(ENOTFOUND)", "Tenant or user not found", "(ENOIDENTIFIER)")),
    # ---------------------------------------------------------------- JWT, API keys, Fly tokens
    _d("jwt_clock_skew", "JWT not yet valid / issued in the future (clock skew)", "auth",
       "critical", family=FAM_JWT,
       any=("token is not valid yet", "JWT not yet valid", "JWT issued at future",
            "issued in the future", "token used before issued", "jwt not active",
            "NotBeforeError"),
       keywords=("not valid yet", "not yet valid", "issued at future", "issued in the future",
                 "used before issued", "jwt not active", "notbeforeerror")),
    _d("jwt_expired", "Expired JWTs rejected", "auth", "warning", family=FAM_JWT,
       any=("token is expired", "JWT expired", "TokenExpiredError")),
    _d("jwt_invalid", "JWT signature invalid or token malformed", "auth", "critical",
       family=FAM_JWT, any=("token signature is invalid", "invalid signature",
                            "JWSInvalidSignature", "jwt malformed", "token is malformed",
                            "unable to parse or verify signature",
                            "Invalid JWT", "UNAUTHORIZED_LEGACY_JWT", "Signature verification failed",
                            "bad_jwt")),
    # any count: the template masks it (a rule of a family cached per template reads no digit)
    _d("jwt_invalid", family=FAM_JWT, keywords=("parts in jwt",),
       regex=re.compile(r"Expected \d+ parts in JWT", re.I)),
    _d("jwt_secret_missing", "API server has no usable JWT secret (PostgREST PGRST300): every "
       "token is refused", "auth", "critical", family=FAM_JWT,
       any=("Server lacks JWT secret", "PGRST300")),
    _d("invalid_api_key", "Supabase API key missing or invalid", "auth", "critical",
       family=FAM_JWT, any=("Invalid API key", "No API key found in request")),
    _d("refresh_token_failures", "Refresh token not found / already used", "auth", "warning",
       family=FAM_JWT, any=("Refresh Token Not Found", "refresh_token_not_found",
                            "refresh_token_already_used", "Refresh Token Already Used")),
    _d("auth_session_missing", "Auth session no longer exists (signed out, deleted or expired)",
       "auth", "warning", family=FAM_JWT,
       any=("session_not_found", "Session from session_id claim in JWT does not exist")),
    _d("fly_api_unauthorized", "Fly API token missing or not authorized (flyctl / Machines API "
       "401)", "auth", "critical", family=FAM_JWT,
       any=("No access token available", "You must be authenticated to view this",
            "failed to fetch discharge tokens")),
    # ---------------------------------------------------------------- TLS
    _d("tls_cert_expired", "TLS certificate expired", "tls", "critical", family=FAM_TLS,
       any=("certificate has expired", "CERT_HAS_EXPIRED")),
    _d("tls_self_signed", "Self-signed certificate in chain", "tls", "warning", family=FAM_TLS,
       any=("self signed certificate", "self-signed certificate", "SELF_SIGNED_CERT",
            "DEPTH_ZERO_SELF_SIGNED")),
    _d("tls_unknown_authority", "Certificate signed by unknown authority / missing issuer",
       "tls", "critical", family=FAM_TLS,
       any=("signed by unknown authority", "unable to get local issuer certificate",
            "unable to verify the first certificate", "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
            "alert unknown ca", "PKIX path building failed",
            "unable to find valid certification path to requested target")),
    _d("tls_verify_failed", "TLS certificate verification failed", "tls", "critical",
       family=FAM_TLS, any=("certificate verify failed", "CERTIFICATE_VERIFY_FAILED",
                            "ERR_TLS_CERT_ALTNAME_INVALID", "does not match certificate's altnames",
                            "x509: certificate is valid for", "x509: certificate is not valid")),
    _d("tls_no_roots", "No trusted root CA certificates in the image (install ca-certificates)",
       "tls", "critical", family=FAM_TLS,
       any=("no native root CA certificates found", "no valid native root CA certificates",
            "no CA certificates found", "no valid certificates loaded by rustls-native-certs")),
    _d("tls_cert_pending", "Certificate not issued yet (awaiting DNS validation / ACME)", "tls",
       "warning", family=FAM_TLS,
       any=("has not been issued yet", "Status is Awaiting certificates",
            "too many certificates already issued", "CAA record prevents issuance",
            "acme:error:rateLimited", "acme:error:unauthorized", "acme:error:dns",
            "acme:error:connection", "acme:error:incorrectResponse")),
]

_DEFS: list[SignalDef] = []
for _e in TABLE:
    if _e.title and _e.id != "proxy":
        _DEFS.append(_e)
for _pc in PROXY_CODES.values():
    _DEFS.append(SignalDef(f"proxy_{_pc.code.lower()}", f"Fly proxy {_pc.code}: {_pc.title}",
                           _pc.runbook, _pc.severity))
SIGNALS: dict[str, SignalDef] = {d.id: d for d in _DEFS}
_RULES: dict[int, list[SignalDef]] = {}
for _e in TABLE:
    if _e.family:
        _RULES.setdefault(_e.family, []).append(_e)

CATEGORY_WORDS: dict[int, tuple[str, ...]] = {
    layout.F_ERR: ("error", "exception", "failed"),
    layout.F_AUTH: ("auth", "unauthorized", "401"),
    layout.F_DB: ("database", "connection", "query"),
}

# what precedes an HTTP status in access logs, by how the status follows (layout.A_STATUS_*)
STATUS_TRIGGERS: dict[int, tuple[str, ...]] = {
    layout.A_STATUS_METHOD: ("get ", "post ", "put ", "patch ", "delete ", "head ", "options "),
    layout.A_STATUS_KEY: ('"statuscode', '"status_code', '"status', "status=", "statuscode: "),
    layout.A_STATUS_PHRASE: ("completed ", "sent "),
    layout.A_STATUS_PIPE: ("[gin] ",),
}


def kernel_keywords() -> list[tuple[bytes, int]]:
    """All (keyword, action) pairs the kernel scans for, merged by keyword: the seed's grep
    words, each table entry's keywords (its ``any`` phrases by default), access-log status."""
    acts: dict[bytes, int] = {}

    def add(word: str, action: int) -> None:
        acts[word.encode()] = acts.get(word.encode(), 0) | action

    for flag, words in CATEGORY_WORDS.items():
        for w in words:
            add(w, flag)
    for e in TABLE:
        for w in e.keywords or e.any:
            add(w, e.family << 8)
    for action, words in STATUS_TRIGGERS.items():
        for w in words:
            add(w, action)
    return sorted(acts.items())


def _first(rules: list[SignalDef], msg: str, low: str) -> Hit | None:
    for e in rules:
        if e.find is not None:
            found = e.find(msg)
            if found:
                sid = found.pop("id")
                return sid, found
            continue
        if e.any and not any(w in low for w in e.any):
            continue
        if e.unless and any(w in low for w in e.unless):
            continue
        if e.context is not None and not e.context.search(msg):
            continue
        details: object = {}
        if e.regex is not None:
            m = e.regex.search(msg)
            if not m:
                continue
            if e.details is not None:
                details = e.details(m)
                if details is STOP:
                    return None
                if details is None:
                    continue
        return e.id, dict(details)  # type: ignore[call-overload]
    return None


def _health_kind(hit: Hit) -> Hit:
    """A health-check line's state decides its event kind."""
    sid, d = hit
    state = d.pop("state", "has failed")
    if "fail" in state or "critical" in state:
        return EV_HEALTH_FAIL, d
    return (EV_HEALTH_WARN if "warning" in state else EV_HEALTH_PASS), d


def match(message: str, families: int) -> list[Hit]:
    """Signals (or stateful event kinds) a candidate message raises, for its families: for
    each family, the first table entry that matches."""
    hits: list[Hit] = []
    low = message.lower()
    for fam, rules in _RULES.items():
        if families & fam:
            hit = _first(rules, message, low)
            if hit is not None:
                hits.append(_health_kind(hit) if fam == FAM_HEALTH else hit)
    return hits


# --- cross-line resolution -------------------------------------------------------------------
@dataclass
class Event:
    """One stateful observation, in stream order."""

    order: tuple[int, int]  # (chunk, line) for a stable stream order
    ts: float | None  # epoch seconds
    instance: str
    region: str
    kind: str
    details: dict
    text: str


def resolve_events(events: list[Event], line_no: Callable[[tuple[int, int]], int] = lambda order: order[1],
                   ) -> tuple[list[tuple[str, Event, dict]], dict[str, int]]:
    """Turn stateful events into signal occurrences and count what was suppressed.
    ``line_no`` turns an event's (chunk, line) order into its line number in the stream.

    Returns ``([(signal_id, representative_event, details)], suppressed_counts)``.
    """
    events = sorted(events, key=lambda e: e.order)
    out: list[tuple[str, Event, dict]] = []
    suppressed: dict[str, int] = {}

    # OOM: a kernel line and init's line on the same instance within a few seconds are one kill.
    last_oom: dict[str, tuple[float | None, str, Event, dict]] = {}
    for ev in events:
        if ev.kind not in (EV_OOM_KERNEL, EV_OOM_INIT):
            continue
        prev = last_oom.get(ev.instance)
        if prev is not None and prev[1] != ev.kind and _near(prev[0], ev.ts, OOM_PAIR_SECONDS):
            prev[3].update(ev.details)
            prev[3]["lines"] = 2
            last_oom.pop(ev.instance)
            suppressed["oom_duplicate_line"] = suppressed.get("oom_duplicate_line", 0) + 1
            continue
        details = dict(ev.details)
        details["lines"] = 1
        out.append(("oom_kill", ev, details))
        last_oom[ev.instance] = (ev.ts, ev.kind, ev, details)

    # Health checks: an episode starts at the first fail/warn and ends at the next pass.
    open_ep: dict[tuple[str, str], tuple[Event, str]] = {}
    for ev in events:
        if ev.kind not in (EV_HEALTH_FAIL, EV_HEALTH_WARN, EV_HEALTH_PASS):
            continue
        key = (ev.instance, ev.details.get("port", ""))
        if ev.kind == EV_HEALTH_PASS:
            ep = open_ep.pop(key, None)
            if ep is None:
                continue
            start, worst = ep
            dur = None if ev.ts is None or start.ts is None else ev.ts - start.ts
            if dur is not None and dur <= HEALTH_BLIP_SECONDS:
                suppressed["health_check_blip"] = suppressed.get("health_check_blip", 0) + 1
                continue
            out.append((worst, start, {"port": key[1], "recovered_after_s": dur}))
            out.append(("health_check_recovered", ev, {"port": key[1], "after_s": dur}))
        else:
            worst = "health_check_failing" if ev.kind == EV_HEALTH_FAIL else "health_check_warning"
            ep = open_ep.get(key)
            if ep is None:
                open_ep[key] = (ev, worst)
            elif worst == "health_check_failing" and ep[1] != worst:
                open_ep[key] = (ep[0], worst)
    for (_inst, port), (start, worst) in open_ep.items():
        out.append((worst, start, {"port": port, "recovered_after_s": None}))

    # A failed name lookup is the database's when a Postgres driver's frame is within a few
    # lines on the same machine: Node prints the error and then its frames, Python the frames
    # and then the error.
    frame_lines: dict[str, list[int]] = {}  # per machine, in stream order
    frame_times: dict[str, list[float | None]] = {}
    for ev in events:
        if ev.kind == EV_DB_FRAME:
            frame_lines.setdefault(ev.instance, []).append(line_no(ev.order))
            frame_times.setdefault(ev.instance, []).append(ev.ts)
    for ev in events:
        if ev.kind != EV_DNS or ev.instance not in frame_lines:
            continue
        lines, times = frame_lines[ev.instance], frame_times[ev.instance]
        n = line_no(ev.order)
        k = bisect.bisect_left(lines, n - DNS_FRAME_LINES)
        while k < len(lines) and lines[k] <= n + DNS_FRAME_LINES:
            if _near(times[k], ev.ts, DNS_FRAME_SECONDS):
                out.append(("db_dns_failure", ev, {}))
                break
            k += 1
    return out, suppressed


def crash_loops(crashes: list[Event]) -> list[tuple[Event, dict]]:
    """Machines with at least CRASH_LOOP_COUNT crashes within CRASH_LOOP_SECONDS."""
    by_inst: dict[str, list[Event]] = {}
    for ev in sorted(crashes, key=lambda e: e.order):
        if ev.ts is not None:
            by_inst.setdefault(ev.instance, []).append(ev)
    loops: list[tuple[Event, dict]] = []
    for inst, evs in by_inst.items():
        i = 0
        while i < len(evs):
            j = i
            while j + 1 < len(evs) and evs[j + 1].ts - evs[i].ts <= CRASH_LOOP_SECONDS:  # type: ignore[operator]
                j += 1
            if j - i + 1 >= CRASH_LOOP_COUNT:
                loops.append((evs[i], {"instance": inst, "crashes": j - i + 1,
                                       "span_s": evs[j].ts - evs[i].ts}))  # type: ignore[operator]
                i = j + 1
            else:
                i += 1
    return loops


def _near(a: float | None, b: float | None, window: float) -> bool:
    if a is None or b is None:
        return True
    return abs(b - a) <= window
