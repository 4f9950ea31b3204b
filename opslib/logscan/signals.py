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

import re
from collections.abc import Callable
from dataclasses import dataclass

from . import _kernel as K
from .proxy_codes import PROXY_CODES, codes_in, root_code

OOM_PAIR_SECONDS = 10.0
HEALTH_BLIP_SECONDS = 30.0
CRASH_LOOP_COUNT = 3
CRASH_LOOP_SECONDS = 600.0


@dataclass(frozen=True)
class SignalDef:
    """A kind of incident evidence."""

    id: str
    title: str
    runbook: str
    severity: str  # ok | warning | critical


_DEFS = [
    SignalDef("oom_kill", "Process OOM-killed by the kernel", "memory", "critical"),
    SignalDef("app_out_of_memory", "Runtime out of memory (heap limit, MemoryError)", "memory", "warning"),
    SignalDef("app_exit_nonzero", "Main process exited with a non-zero code", "not-responding", "warning"),
    SignalDef("app_crashed", "Process crashed (panic, fatal start-up error, platform marked it crashed)", "not-responding", "critical"),
    SignalDef("release_command_failed", "Release command failed: the deploy was aborted", "deploy", "critical"),
    SignalDef("deploy_health_timeout", "Deploy gave up waiting for health checks to pass", "deploy", "critical"),
    SignalDef("app_not_listening", "App not listening on the address fly-proxy expects (0.0.0.0/:: and internal_port)", "not-responding", "critical"),
    SignalDef("proxy_hard_limit", "Machine at its concurrency hard limit (connections not closed, or too few machines)", "not-responding", "warning"),
    SignalDef("restart_limit", "Machine reached its max restart count", "not-responding", "critical"),
    SignalDef("vm_exited_abruptly", "Virtual machine exited abruptly", "not-responding", "critical"),
    SignalDef("crash_loop", "Crash/restart loop on one machine", "not-responding", "critical"),
    SignalDef("health_check_failing", "Health check failing", "not-responding", "critical"),
    SignalDef("health_check_warning", "Health check in warning state", "not-responding", "warning"),
    SignalDef("health_check_recovered", "Health check passing again after a failure", "not-responding", "ok"),
    SignalDef("http_5xx", "HTTP 5xx responses in access logs", "not-responding", "warning"),
    SignalDef("pg_too_many_connections", "Postgres out of connection slots (53300)", "database", "critical"),
    SignalDef("pg_idle_in_transaction_timeout", "Sessions killed by idle_in_transaction_session_timeout", "database", "warning"),
    SignalDef("db_connection_refused", "Database connection refused", "database", "critical"),
    SignalDef("db_unreachable", "Database server unreachable (connect failed, timed out, or the server is restarting)", "database", "critical"),
    SignalDef("db_pool_timeout", "App's database pool exhausted: timed out waiting for a connection", "database", "critical"),
    SignalDef("db_prepared_statements", "Prepared statements through a transaction pooler (Supavisor/PgBouncer port 6543): use session mode or disable them", "database", "warning"),
    SignalDef("db_dns_failure", "Database host name does not resolve", "database", "critical"),
    SignalDef("db_connection_closed", "Database connection closed unexpectedly (SSL/server)", "database", "warning"),
    SignalDef("db_auth_failed", "Database login refused (password, role, or pg_hba/SSL rule)", "database", "critical"),
    SignalDef("supavisor_pool_exhausted", "Supavisor pooler out of client/pool capacity", "database", "critical"),
    SignalDef("supavisor_tenant_not_found", "Supavisor: tenant/user not found (wrong pooler user or project ref)", "database", "critical"),
    SignalDef("supavisor_circuit_breaker", "Supavisor circuit breaker open (too many failed attempts)", "database", "critical"),
    SignalDef("supavisor_ssl_required", "Supavisor requires SSL for this user", "database", "warning"),
    SignalDef("jwt_expired", "Expired JWTs rejected", "auth", "warning"),
    SignalDef("jwt_clock_skew", "JWT not yet valid / issued in the future (clock skew)", "auth", "critical"),
    SignalDef("jwt_invalid", "JWT signature invalid or token malformed", "auth", "critical"),
    SignalDef("invalid_api_key", "Supabase API key missing or invalid", "auth", "critical"),
    SignalDef("refresh_token_failures", "Refresh token not found / already used", "auth", "warning"),
    SignalDef("auth_session_missing", "Auth session no longer exists (signed out, deleted or expired)", "auth", "warning"),
    SignalDef("fly_api_unauthorized", "Fly API token missing or not authorized (flyctl / Machines API 401)", "auth", "critical"),
    SignalDef("tls_cert_expired", "TLS certificate expired", "tls", "critical"),
    SignalDef("tls_self_signed", "Self-signed certificate in chain", "tls", "warning"),
    SignalDef("tls_unknown_authority", "Certificate signed by unknown authority / missing issuer", "tls", "critical"),
    SignalDef("tls_verify_failed", "TLS certificate verification failed", "tls", "critical"),
    SignalDef("tls_no_roots", "No trusted root CA certificates in the image (install ca-certificates)", "tls", "critical"),
    SignalDef("tls_cert_pending", "Certificate not issued yet (awaiting DNS validation / ACME)", "tls", "warning"),
]
for _pc in PROXY_CODES.values():
    _DEFS.append(SignalDef(f"proxy_{_pc.code.lower()}", f"Fly proxy {_pc.code}: {_pc.title}", _pc.runbook, _pc.severity))

SIGNALS: dict[str, SignalDef] = {d.id: d for d in _DEFS}

# Stateful event kinds (resolved across lines in `resolve_events`).
EV_OOM_KERNEL = "oom_kernel"
EV_OOM_INIT = "oom_init"
EV_HEALTH_FAIL = "health_fail"
EV_HEALTH_WARN = "health_warn"
EV_HEALTH_PASS = "health_pass"
EV_CRASH = "crash"  # a non-zero exit / abrupt VM exit, also counted as its own signal
STATEFUL = {EV_OOM_KERNEL, EV_OOM_INIT, EV_HEALTH_FAIL, EV_HEALTH_WARN, EV_HEALTH_PASS}

# --- candidate families and their keywords (lowercase, matched case-insensitively) --------
FAM_MEM, FAM_EXIT, FAM_PROXY, FAM_HEALTH, FAM_PG, FAM_SUPAVISOR, FAM_JWT, FAM_TLS = (1 << i for i in range(8))
# families whose outcome depends on digits the templates mask (exit codes, pids, ports:
# the database context test looks for 5432/6543)
DIGIT_SENSITIVE = FAM_MEM | FAM_EXIT | FAM_HEALTH | FAM_PG

_FAMILY_WORDS: dict[int, tuple[str, ...]] = {
    FAM_MEM: ("out of memory", "oom kill", "oom-kill", "oom_kill", "been oom", "memoryerror", "heap limit", "outofmemoryerror"),
    FAM_EXIT: ("exited normally with code", "exited abruptly", "max restart count", "exit status",
               "exited with status", "exited with non-zero status", "panic: ", "panicked at",
               "to crashed", "app crashed", "cannot find module", "module_not_found",
               "modulenotfounderror", "command not found", "crash dump is being written",
               "unhandled exception.", "release command failed", "release_command failed",
               "waiting for health checks", "waiting for healthchecks", "expected address",
               "incorrect address", "reached hard"),
    FAM_PROXY: ("[pp0", "[pu0", "[pc0", "[pt0", "[pm0", "[pm1", "[pa0", "[pe0", "[pr0", "[pl0",
                "refused connection", "good candidate", "healthy instances", "while connecting to",
                "complete http request", "valid tls certificate", "wake up machine",
                "http request to instance"),
    FAM_HEALTH: ("health check", "healthcheck error"),
    FAM_PG: ("too many clients", "too many connections", "connection slots are reserved", "idle-in-transaction",
             "connection refused", "econnrefused", "translate host name", "getaddrinfo", "name resolution",
             "name or service not known", "ssl connection has been closed", "closed the connection unexpectedly",
             "connection terminated unexpectedly", "password authentication failed",
             "reach database server", "could not connect to server", "failed to connect to",
             "is the server running", "pgbouncer cannot connect", "connection timeout",
             "timeout exceeded when trying to connect", "connectionnotestablished",
             "dbconnection.connectionerror", "the database system is", "no route to host",
             "connection reset by peer", "non-existing domain", "nxdomain", "no such host",
             "timed out fetching a new connection", "queuepool limit", "connection is not available",
             "toomanyconnectionserror", "prepared statement", "pg_hba.conf", "does not exist"),
    FAM_SUPAVISOR: ("(emaxconn", "(echeckout", "(emaxpools", "(enotfound", "(ecircuitbreaker", "(esslrequired",
                    "(enoidentifier",
                    "max client connections", "maxclientsinsessionmode", "tenant or user not found",
                    "unable to check out connection"),
    FAM_JWT: ("jwt expired", "token is expired", "not valid yet", "not yet valid", "issued at future",
              "issued in the future", "used before issued", "jwt not active", "signature is invalid",
              "invalid signature", "jwsinvalidsignature", "jwt malformed", "token is malformed", "expected 3 parts",
              "invalid api key", "no api key found", "bad_jwt", "refresh token not found", "refresh_token_not_found",
              "refresh_token_already_used", "already used", "session_not_found",
              "session_id claim", "verify signature", "no access token available",
              "must be authenticated", "discharge tokens"),
    FAM_TLS: ("certificate has expired", "cert_has_expired", "self signed certificate", "self-signed certificate",
              "self_signed_cert", "certificate verify failed", "certificate_verify_failed", "verify the first certificate",
              "local issuer certificate", "unknown authority", "x509:", "err_tls_cert", "altnames",
              "certificate is valid for", "unknown ca", "root ca certificates", "ca certificates found",
              "no valid certificates loaded", "not been issued yet", "awaiting certificates",
              "too many certificates already issued", "caa record"),
}

CATEGORY_WORDS: dict[int, tuple[str, ...]] = {
    K.F_ERR: ("error", "exception", "failed"),
    K.F_AUTH: ("auth", "unauthorized", "401"),
    K.F_DB: ("database", "connection", "query"),
}

_STATUS_METHODS = ("get ", "post ", "put ", "patch ", "delete ", "head ", "options ")
_STATUS_KEYS = ('"statuscode', '"status_code', '"status', "status=")


def kernel_keywords() -> list[tuple[bytes, int]]:
    """All (keyword, action) pairs the kernel scans for, merged by keyword."""
    acts: dict[bytes, int] = {}
    for flag, words in CATEGORY_WORDS.items():
        for w in words:
            acts[w.encode()] = acts.get(w.encode(), 0) | flag
    for fam, words in _FAMILY_WORDS.items():
        for w in words:
            acts[w.encode()] = acts.get(w.encode(), 0) | (fam << 8)
    for w in _STATUS_METHODS:
        acts[w.encode()] = acts.get(w.encode(), 0) | K.A_STATUS_METHOD
    for w in _STATUS_KEYS:
        acts[w.encode()] = acts.get(w.encode(), 0) | K.A_STATUS_KEY
    return sorted(acts.items())


# --- matchers --------------------------------------------------------------------------------
Hit = tuple[str, dict]  # (signal id or stateful event kind, details)

class _Words:
    """Case-insensitive "any of these phrases": substring tests on the lowercased message are
    several times faster than an alternation regex with re.I, and these are all literals."""

    def __init__(self, *words: str) -> None:
        self.words = tuple(w.lower() for w in words)

    def search(self, low: str) -> bool:
        return any(w in low for w in self.words)


# "Killed process" (kernels since 5.x) and "Kill process … or sacrifice child" (older ones)
_OOM_KERNEL = re.compile(r"Out of memory: Kill(?:ed)? process (\d+) \(([^)]*)\)")
_OOM_INVOKED = re.compile(r"(\S+) invoked oom-killer")
_OOM_INIT = _Words("Process appears to have been OOM killed")
_APP_OOM = _Words("JavaScript heap out of memory", "Reached heap limit", "MemoryError", "OutOfMemoryError",
                  "fatal error: runtime: out of memory", "out of memory (allocated")
_EXIT = re.compile(r"Main child exited normally with code: (\d+)")
# platforms' and shells' wording of a process's exit status: Fly release commands ("exited
# with status 127", "exited with non-zero status of 1", "user command error: exit status"),
# Heroku ("Process exited with status 1"), npm/Cloud Foundry ("Exit status 1")
_EXIT_STATUS = re.compile(r"\bexit(?:ed)?(?: with)?(?: non-zero)? status(?: of)?:? (\d+)", re.I)
_RELEASE_FAILED = _Words("release command failed", "release_command failed")
# a process that ended: Go/Rust panics (not net/http's recovered "http: panic serving"),
# platforms marking it crashed, fatal start-up errors
_PANIC = re.compile(r"(?:^|[\s>|\]])panic: |thread '[^']*' panicked at")
_CRASHED = _Words("State changed from starting to crashed", "State changed from up to crashed",
                  "app crashed - waiting for file changes", "Crash dump is being written",
                  "Cannot find module", "MODULE_NOT_FOUND", "ModuleNotFoundError",
                  ": command not found", "Unhandled exception.")
_HEALTH_TIMEOUT = _Words("timeout reached waiting for health checks",
                         "timeout reached waiting for healthchecks")
_NOT_LISTENING = _Words("not listening on the expected address", "listening on the incorrect address")
_HARD_LIMIT = re.compile(r"reached hard(?:\s+limit|\s*$)", re.I)
_ABRUPT = _Words("Virtual machine exited abruptly")
_RESTART_LIMIT = _Words("machine has reached its max restart count")
_HEALTH = re.compile(
    r"Health check\b(?: (?:'[^']*'|\S+))?(?: on port (\d+))?.*?"
    r"(has failed|is in a 'warning' state|is now passing|status changed to '(?:critical|warning|passing)')",
    re.I,
)
_PG_SLOTS = _Words("sorry, too many clients already", "remaining connection slots are reserved",
                   "too many connections for role", "too many connections for database")
_PG_IDLE = _Words("terminating connection due to idle-in-transaction timeout")
_REFUSED = _Words("connection refused", "ECONNREFUSED")
# a line about the database: its ports, its names, its drivers and hosts
_DB_CONTEXT = re.compile(
    r"5432|6543|3306|postgres|supabase|database|server at|is the server running|\bpg\b|psql|"
    r"\bdb\b|\bdb\.|neon\.tech|rds\.amazonaws|pooler|flycast|flympg|postgrex|npgsql|"
    r"activerecord|sqlalchemy|psycopg|asyncpg|prisma|hikari|jdbc|pg-pool|node_modules/pg/", re.I)
# libpq's own wording: always the database host
_DNS_DB = _Words("could not translate host name")
_DNS = _Words("getaddrinfo ENOTFOUND", "getaddrinfo EAI_AGAIN", "Temporary failure in name resolution",
              "Name or service not known", "no such host", "non-existing domain", ":nxdomain")
_CLOSED = _Words("SSL connection has been closed unexpectedly", "server closed the connection unexpectedly",
                 "Connection terminated unexpectedly")
_PG_AUTH = _Words("password authentication failed for user", "no pg_hba.conf entry for host",
                  "pg_hba.conf rejects connection")
_PG_ROLE = re.compile(r"\brole \\?\"[^\"\\]+\\?\" does not exist")
# the driver or server saying the database cannot be reached at all (libpq, Prisma P1001,
# pgx, Postgrex/DBConnection, ActiveRecord, PgBouncer, node-postgres, Npgsql), or is restarting
_UNREACHABLE = _Words("Can't reach database server", "could not connect to server",
                      "Is the server running on that host", "pgbouncer cannot connect to server",
                      "Connection terminated due to connection timeout",
                      "timeout exceeded when trying to connect", "ConnectionNotEstablished",
                      "DBConnection.ConnectionError", "the database system is shutting down",
                      "the database system is starting up", "the database system is in recovery mode")
_UNREACHABLE_IN_CONTEXT = _Words("failed to connect to", "no route to host", "connection reset by peer")
_POOL_TIMEOUT = _Words("Timed out fetching a new connection from the", "QueuePool limit of size",
                       "Connection is not available, request timed out",
                       "TooManyConnectionsError")
_PREPARED = re.compile(r"prepared statement \\*\"[^\"\\]*\\*\" (?:already exists|does not exist)", re.I)
_SV_POOL = _Words("(EMAXCONNSESSION)", "(EMAXCONN)", "(ECHECKOUTTIMEOUT)", "(EMAXPOOLSREACHED)",
                  "Max client connections reached", "MaxClientsInSessionMode",
                  "Unable to check out connection from the pool")
_SV_TENANT = _Words("(ENOTFOUND)", "Tenant or user not found", "(ENOIDENTIFIER)")
_SV_BREAKER = _Words("(ECIRCUITBREAKER)")
_SV_SSL = _Words("(ESSLREQUIRED)")
_JWT_SKEW = _Words("token is not valid yet", "JWT not yet valid", "JWT issued at future", "issued in the future",
                   "token used before issued", "jwt not active", "NotBeforeError")
_JWT_EXPIRED = _Words("token is expired", "JWT expired", "TokenExpiredError")
_JWT_INVALID = _Words("token signature is invalid", "invalid signature", "JWSInvalidSignature", "jwt malformed",
                      "token is malformed", "Expected 3 parts in JWT", "unable to parse or verify signature")
_SESSION_MISSING = _Words("session_not_found", "Session from session_id claim in JWT does not exist")
_FLY_UNAUTHORIZED = _Words("No access token available", "You must be authenticated to view this",
                           "failed to fetch discharge tokens")
_API_KEY = _Words("Invalid API key", "No API key found in request")
_REFRESH = _Words("Refresh Token Not Found", "refresh_token_not_found", "refresh_token_already_used",
                  "Refresh Token Already Used")
_TLS_EXPIRED = _Words("certificate has expired", "CERT_HAS_EXPIRED")
_TLS_SELF = _Words("self signed certificate", "self-signed certificate", "SELF_SIGNED_CERT", "DEPTH_ZERO_SELF_SIGNED")
_TLS_UNKNOWN = _Words("signed by unknown authority", "unable to get local issuer certificate",
                      "unable to verify the first certificate", "UNABLE_TO_VERIFY_LEAF_SIGNATURE", "alert unknown ca")
_TLS_NO_ROOTS = _Words("no native root CA certificates found", "no valid native root CA certificates",
                      "no CA certificates found", "no valid certificates loaded by rustls-native-certs")
_TLS_PENDING = _Words("has not been issued yet", "Status is Awaiting certificates",
                      "too many certificates already issued", "CAA record prevents issuance")
_TLS_VERIFY = _Words("certificate verify failed", "CERTIFICATE_VERIFY_FAILED", "ERR_TLS_CERT_ALTNAME_INVALID",
                     "does not match certificate's altnames", "x509: certificate is valid for",
                     "x509: certificate is not valid")


def _mem(msg: str, low: str) -> list[Hit]:
    m = _OOM_KERNEL.search(msg)
    if m:
        return [(EV_OOM_KERNEL, {"pid": int(m.group(1)), "process": m.group(2)})]
    m = _OOM_INVOKED.search(msg)
    if m:
        return [(EV_OOM_KERNEL, {"process": m.group(1)})]
    if _OOM_INIT.search(low):
        return [(EV_OOM_INIT, {})]
    if _APP_OOM.search(low):
        return [("app_out_of_memory", {})]
    return []


def _exit(msg: str, low: str) -> list[Hit]:
    """The process's life: exits, crashes, restarts, release commands, and the deploy's and
    proxy's verdicts on it (listening address, health-check wait, concurrency limit)."""
    if _RELEASE_FAILED.search(low):
        return [("release_command_failed", {})]
    m = _EXIT.search(msg) or _EXIT_STATUS.search(msg)
    if m:
        code = int(m.group(1))
        return [("app_exit_nonzero", {"exit_code": code})] if code != 0 else []
    if _ABRUPT.search(low):
        return [("vm_exited_abruptly", {})]
    if _RESTART_LIMIT.search(low):
        return [("restart_limit", {})]
    if _HEALTH_TIMEOUT.search(low):
        return [("deploy_health_timeout", {})]
    if _NOT_LISTENING.search(low):
        return [("app_not_listening", {})]
    if _HARD_LIMIT.search(msg):
        return [("proxy_hard_limit", {})]
    if "http: panic serving" not in low and (_PANIC.search(msg) or _CRASHED.search(low)):
        return [("app_crashed", {})]
    return []


def _proxy(msg: str, low: str) -> list[Hit]:
    codes = codes_in(msg)
    if not codes:
        return []
    root = root_code(codes)
    return [(f"proxy_{root.lower()}", {"codes": codes})]


_HEALTHCHECK_ERROR = re.compile(r"healthcheck error\b.*?\bport=(\d+)", re.I)


def _health(msg: str, low: str) -> list[Hit]:
    m = _HEALTH.search(msg)
    if not m:
        e = _HEALTHCHECK_ERROR.search(msg)  # logfmt monitors: msg="healthcheck error" port=8080
        return [(EV_HEALTH_FAIL, {"port": e.group(1)})] if e else []
    state = m.group(2).lower()
    port = m.group(1) or ""
    if "fail" in state or "critical" in state:
        return [(EV_HEALTH_FAIL, {"port": port})]
    if "warning" in state:
        return [(EV_HEALTH_WARN, {"port": port})]
    return [(EV_HEALTH_PASS, {"port": port})]


def _pg(msg: str, low: str) -> list[Hit]:
    if _PG_SLOTS.search(low):
        return [("pg_too_many_connections", {})]
    if _POOL_TIMEOUT.search(low):
        return [("db_pool_timeout", {})]
    if _PG_IDLE.search(low):
        return [("pg_idle_in_transaction_timeout", {})]
    if _PREPARED.search(msg):
        return [("db_prepared_statements", {})]
    if _PG_AUTH.search(low) or _PG_ROLE.search(msg):
        return [("db_auth_failed", {})]
    if _DNS_DB.search(low) or (_DNS.search(low) and _DB_CONTEXT.search(msg)):
        return [("db_dns_failure", {})]
    if _CLOSED.search(low):
        return [("db_connection_closed", {})]
    if _REFUSED.search(low) and _DB_CONTEXT.search(msg):
        return [("db_connection_refused", {})]
    if _UNREACHABLE.search(low) or (_UNREACHABLE_IN_CONTEXT.search(low) and _DB_CONTEXT.search(msg)):
        return [("db_unreachable", {})]
    return []


def _supavisor(msg: str, low: str) -> list[Hit]:
    if _SV_POOL.search(low):
        return [("supavisor_pool_exhausted", {})]
    if _SV_BREAKER.search(low):
        return [("supavisor_circuit_breaker", {})]
    if _SV_SSL.search(low):
        return [("supavisor_ssl_required", {})]
    if _SV_TENANT.search(low) and "getaddrinfo" not in low:
        return [("supavisor_tenant_not_found", {})]
    return []


def _jwt(msg: str, low: str) -> list[Hit]:
    if _JWT_SKEW.search(low):
        return [("jwt_clock_skew", {})]
    if _JWT_EXPIRED.search(low):
        return [("jwt_expired", {})]
    if _JWT_INVALID.search(low):
        return [("jwt_invalid", {})]
    if _API_KEY.search(low):
        return [("invalid_api_key", {})]
    if _REFRESH.search(low):
        return [("refresh_token_failures", {})]
    if _SESSION_MISSING.search(low):
        return [("auth_session_missing", {})]
    if _FLY_UNAUTHORIZED.search(low):
        return [("fly_api_unauthorized", {})]
    return []


def _tls(msg: str, low: str) -> list[Hit]:
    if _TLS_EXPIRED.search(low):
        return [("tls_cert_expired", {})]
    if _TLS_SELF.search(low):
        return [("tls_self_signed", {})]
    if _TLS_UNKNOWN.search(low):
        return [("tls_unknown_authority", {})]
    if _TLS_VERIFY.search(low):
        return [("tls_verify_failed", {})]
    if _TLS_NO_ROOTS.search(low):
        return [("tls_no_roots", {})]
    if _TLS_PENDING.search(low):
        return [("tls_cert_pending", {})]
    return []


MATCHERS: tuple[tuple[int, Callable[[str, str], list[Hit]]], ...] = (
    (FAM_MEM, _mem),
    (FAM_EXIT, _exit),
    (FAM_PROXY, _proxy),
    (FAM_HEALTH, _health),
    (FAM_PG, _pg),
    (FAM_SUPAVISOR, _supavisor),
    (FAM_JWT, _jwt),
    (FAM_TLS, _tls),
)


def match(message: str, families: int) -> list[Hit]:
    """Signals (or stateful event kinds) a candidate message raises, for its families."""
    hits: list[Hit] = []
    low = message.lower()
    for fam, fn in MATCHERS:
        if families & fam:
            hits.extend(fn(message, low))
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


def resolve_events(events: list[Event]) -> tuple[list[tuple[str, Event, dict]], dict[str, int]]:
    """Turn stateful events into signal occurrences and count what was suppressed.

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
