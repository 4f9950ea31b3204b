"""Log samples written from the message templates the real programs print, and renderers for
every input layout. Imported by the other ``test_logs_*`` modules; the tests at the bottom
check the samples themselves (each layout renders what it claims).

Sources of the texts: Fly init/proxy/health (superfly docs and init-snapshot, flyctl
render/logs.go for the text layout), Postgres (proc.c, postinit.c, postgres.c), Supavisor
(lib/supavisor/errors), GoTrue (internal/api/errors.go, golang-jwt v5), PostgREST
(Error.hs), supabase-js/auth-js, node/OpenSSL/Go TLS errors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

A = "148ed193b95089"  # 14-hex machine ids
B = "e784079b449483"
C = "3d8d413b29d089"
OLD = "5683606c"  # 8-hex (older allocation-style id)


@dataclass(frozen=True)
class E:
    """One log entry: seconds after 2024-05-28T12:00:00Z, provider, instance, region, level, message."""

    t: float
    provider: str
    instance: str
    region: str
    level: str
    message: str


def ts(t: float, frac: bool = False) -> str:
    whole = int(t)
    base = f"2024-05-28T{12 + whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}"
    return base + (f".{int(round((t - whole) * 1e9)):09d}Z" if frac else "Z")


def fly_text(e: E, space: bool = False, frac: bool = False) -> str:
    """Current ``fly logs`` layout (no space after the level unless ``space``)."""
    return f"{ts(e.t, frac)} {e.provider}[{e.instance}] {e.region} [{e.level}]{' ' if space else ''}{e.message}"


def fly_text_ansi(e: E) -> str:
    """What flyctl writes when its aurora colours are on: timestamp, region, level coloured."""
    return (f"\x1b[2m{ts(e.t)}\x1b[0m {e.provider}[{e.instance}] \x1b[35m{e.region}\x1b[0m "
            f"[\x1b[34m{e.level}\x1b[0m]{e.message}")


def fly_text_old(e: E) -> str:
    """Older flyctl output: no provider column, space after the level."""
    return f"{ts(e.t, frac=True)} {e.instance} {e.region} [{e.level}] {e.message}"


def dashboard(e: E) -> str:
    """A copy from the dashboard's log view: only ``HH:MM:SS message``."""
    return f"{ts(e.t)[11:19]} {e.message}"


def shipper(e: E) -> str:
    """fly-log-shipper (Vector) NDJSON record."""
    return json.dumps({
        "event": {"provider": e.provider},
        "fly": {"app": {"instance": e.instance, "name": "acme-web"}, "region": e.region},
        "host": "a1b2",
        "log": {"level": e.level},
        "message": e.message,
        "timestamp": ts(e.t, frac=True),
    }, separators=(",", ":"))


def flyctl_json(e: E) -> str:
    """One ``fly logs --json`` object (4-space indent, Go-cased meta)."""
    return json.dumps({
        "level": e.level, "instance": e.instance, "message": e.message, "region": e.region,
        "timestamp": ts(e.t, frac=True),
        "meta": {"Instance": "", "Region": "", "Event": {"Provider": e.provider},
                 "HTTP": {"Request": {"ID": "", "Method": "", "Version": ""}, "Response": {"status_code": 0}},
                 "Error": {"Code": 0, "Message": ""}, "URL": {"Full": ""}},
    }, indent=4)


def api_item(e: E, n: int) -> dict:
    """One ``data[]`` item of the logs API."""
    return {"id": f"log-{n}", "type": "logs", "attributes": {
        "timestamp": ts(e.t, frac=True), "message": e.message, "level": e.level, "instance": e.instance,
        "region": e.region, "meta": {"event": {"provider": e.provider}}}}


def api_pages(entries: list[E], per_page: int = 3) -> str:
    pages = []
    for k in range(0, len(entries), per_page):
        chunk = entries[k:k + per_page]
        pages.append(json.dumps({"data": [api_item(e, k + j) for j, e in enumerate(chunk)],
                                 "meta": {"next_token": str(1716897600000000000 + k)}}))
    return "\n".join(pages) + "\n"


# --- message texts ------------------------------------------------------------------------------
PC01 = ("[PC01] instance refused connection. is your app listening on 0.0.0.0:8080? make sure it is not only "
        "listening on 127.0.0.1 (hint: look at your startup logs, servers often print the address they are listening on)")
PR04_PC01 = ("[PR04] could not find a good candidate within 21 attempts at load balancing. last error: " + PC01)
PU02 = "[PU02] could not complete HTTP request to instance: connection closed before message completed"
PR01 = ("[PR01] no known healthy instances found for route tcp/443. (hint: is your app shutdown? is there an ongoing "
        "deployment with a volume or are you using the 'immediate' strategy? have your app's instances all reached their hard limit?)")
PT05 = "[PT05] no valid tls certificate was found for SNI app.example.com. aborted connection"
PM11 = "[PM11] machine was recently stopped and is unavailable to service request"
OOM_KERNEL = ("[  812.442150] Out of memory: Killed process 314 (node) total-vm:1437168kB, anon-rss:483236kB, "
              "file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:1344kB oom_score_adj:0")
OOM_SIGKILL = " INFO Main child exited with signal (with signal 'SIGKILL', core dumped? false)"
OOM_INIT = " INFO Process appears to have been OOM killed!"
HEALTH_FAIL = ("Health check on port 8080 has failed. Your app is not responding properly. Services exposed on ports "
               "[80, 443] will have intermittent failures until the health check passes.")
HEALTH_WARN = ("Health check on port 8080 is in a 'warning' state. Your app may not be responding properly. Services "
               "exposed on ports [80, 443] may have intermittent failures until the health check passes.")
HEALTH_PASS = "Health check on port 8080 is now passing."

SIGNAL_MESSAGES: dict[str, list[str]] = {
    "app_out_of_memory": [
        "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
        "Traceback (most recent call last): MemoryError",
    ],
    "app_exit_nonzero": [" INFO Main child exited normally with code: 1"],
    "restart_limit": ["machine has reached its max restart count of 10"],
    "vm_exited_abruptly": ["Virtual machine exited abruptly"],
    "pg_too_many_connections": [
        'psql: error: connection to server at "db.abcdefghijklmnop.supabase.co" (2600:1f18:2e13:9d00::1), '
        "port 5432 failed: FATAL:  sorry, too many clients already",
        "FATAL:  remaining connection slots are reserved for non-replication superuser connections",
        "error: remaining connection slots are reserved for roles with the SUPERUSER attribute",
        'FATAL:  too many connections for role "authenticator"',
    ],
    "pg_idle_in_transaction_timeout": ["FATAL:  terminating connection due to idle-in-transaction timeout"],
    "db_connection_refused": [
        'connection to server at "db.abcdefghijklmnop.supabase.co" (2600:1f18:2e13:9d00::1), port 5432 failed: '
        "Connection refused",
        "Error: connect ECONNREFUSED 10.0.0.5:6543",
    ],
    "db_dns_failure": [
        'could not translate host name "db.abcdefghijklmnop.supabase.co" to address: Name or service not known',
        "Error: getaddrinfo ENOTFOUND db.abcdefghijklmnop.supabase.co",
    ],
    "db_connection_closed": [
        "psycopg.OperationalError: consuming input failed: SSL connection has been closed unexpectedly",
        "Error: Connection terminated unexpectedly",
    ],
    "db_auth_failed": ['FATAL:  password authentication failed for user "postgres"'],
    "db_unreachable": [
        "Error: P1002: The database server at `aws-0-us-east-1.pooler.supabase.com`:`6543` was reached but timed out.",
        "Error: connect ETIMEDOUT 10.0.0.3:5432",
        "failed to connect to `host=db.internal user=postgres database=app`: dial error (timeout: context deadline exceeded)",
    ],
    "db_ssl_mismatch": [
        "Error: The server does not support SSL connections",
        "error: pq: SSL is not enabled on the server",
        "psql: error: server does not support SSL, but SSL was required",
    ],
    "deploy_health_timeout": ["v25 failed - Failed due to unhealthy allocations - rolling back to job version 24"],
    "supavisor_pool_exhausted": [
        "(EMAXCONNSESSION) max clients reached in session mode - max clients are limited to pool_size: 15",
        "(ECHECKOUTTIMEOUT) unable to check out connection from the pool after 5000ms in transaction mode",
        "(EMAXCONN) max client connections reached, limit: 200",
        "FATAL: Max client connections reached",
        "MaxClientsInSessionMode: max clients reached - in Session mode max clients are limited to pool_size",
        "Unable to check out connection from the pool due to timeout",
    ],
    "supavisor_tenant_not_found": [
        "(ENOTFOUND) tenant/user postgres.abcdefghijklmnop not found",
        "FATAL: Tenant or user not found",
    ],
    "supavisor_circuit_breaker": ["(ECIRCUITBREAKER) too many authentication errors, new connections are temporarily blocked"],
    "supavisor_ssl_required": ["(ESSLREQUIRED) SSL connection is required for user: postgres"],
    "jwt_expired": [
        '{"component":"api","error":"invalid JWT: unable to parse or verify signature, token has invalid claims: '
        'token is expired","level":"info","msg":"403: invalid JWT","path":"/user","status":403}',
        '{"code":"PGRST303","details":null,"hint":null,"message":"JWT expired"}',
    ],
    "jwt_clock_skew": [
        "invalid JWT: unable to parse or verify signature, token has invalid claims: token is not valid yet",
        '{"code":"PGRST303","details":null,"hint":null,"message":"JWT issued at future"}',
        "@supabase/gotrue-js: Session as retrieved from URL was issued in the future? Check the device clock for skew",
    ],
    "jwt_invalid": [
        "invalid JWT: unable to parse or verify signature, token signature is invalid",
        "JsonWebTokenError: invalid signature",
        '{"code":"PGRST301","details":null,"hint":null,"message":"Expected 3 parts in JWT; got 1"}',
        '{"code":"UNAUTHORIZED_LEGACY_JWT","message":"Invalid JWT"}',
        "jwt.exceptions.InvalidSignatureError: Signature verification failed",
    ],
    "invalid_api_key": [
        '{"message":"Invalid API key","hint":"Double check your Supabase `anon` or `service_role` API key."}',
        '{"message":"No API key found in request"}',
    ],
    "refresh_token_failures": ["AuthApiError: Invalid Refresh Token: Refresh Token Not Found"],
    "tls_cert_expired": ["Error: certificate has expired (code CERT_HAS_EXPIRED)"],
    "tls_self_signed": [
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate in certificate chain (_ssl.c:1006)",
    ],
    "tls_unknown_authority": [
        'Get "https://api.example.com/": tls: failed to verify certificate: x509: certificate signed by unknown authority',
        "Error: unable to verify the first certificate",
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer certificate (_ssl.c:1006)",
        "javax.net.ssl.SSLHandshakeException: PKIX path building failed: unable to find valid certification path "
        "to requested target",
    ],
    "tls_cert_pending": [
        'acme: error code 403 "urn:ietf:params:acme:error:unauthorized": Incorrect TXT record "x" found at '
        "_acme-challenge.example.com",
    ],
    "tls_verify_failed": [
        "Error [ERR_TLS_CERT_ALTNAME_INVALID]: Hostname/IP does not match certificate's altnames: "
        "Host: api.example.com. is not in the cert's altnames: DNS:*.fly.dev",
    ],
    "proxy_pc01": [PC01, PR04_PC01],
    "proxy_pu02": [PU02],
    "proxy_pr01": [PR01],
    "proxy_pt05": [PT05],
    "proxy_pm11": [PM11],
}

HARD_NEGATIVES: list[str] = [
    "[    0.039311] PCI: Fatal: No config space access function found",
    "Downscaling app acme-web from 2 machines to 1 machines, stopping machine 148ed193b95089 (region=iad, process group=app)",
    " INFO Sending signal SIGINT to main child process w/ PID 314",
    "SIGTERM received: shutting down gracefully",
    " INFO Main child exited normally with code: 0",
    " INFO Main child exited with signal (with signal 'SIGTERM', core dumped? false)",
    " INFO Starting clean up.",
    " WARN hallpass exited, pid: 315, status: signal: 15 (SIGTERM)",
    "[    4.021127] reboot: Restarting system",
    "JWT created successfully for user 5e581e51-3e68-438c-adde-58e6d4f0accc (expires in 3600s)",
    "GET /api/errors/summary 200 3.114 ms - 812",
    'INFO:     172.16.3.2:51234 - "POST /api/v1/error-reports HTTP/1.1" 201 Created',
    '{"level":30,"req":{"method":"GET","url":"/api/failed-jobs"},"res":{"statusCode":200},"error":null,"exception":null,"msg":"request completed"}',
    "GET /search?q=connection+refused+error 200 12.0 ms - 1533",
    "dial tcp 127.0.0.1:9091: connect: connection refused (metrics exporter, retrying)",
    "token refresh scheduled in 3540s",
    "TLS handshake ok, certificate valid until 2025-02-01",
    "query took 12ms: SELECT 1",
    "rpc error: code = DeadlineExceeded desc = context deadline exceeded",
    "grep: pattern.txt: not found",
]


def incident() -> list[E]:
    """A short stream with every stateful case: OOM pair, boot blip, real failure, crash loop."""
    out = [
        # boot of A: PCI line and a health-check blip that passes 4 s later (not a signal)
        E(0, "app", A, "iad", "info", "[    0.039311] PCI: Fatal: No config space access function found"),
        E(1, "app", A, "iad", "info", " INFO Starting init (commit: 15c0b3a1)..."),
        E(2, "health", A, "iad", "error", HEALTH_FAIL),
        E(6, "health", A, "iad", "info", HEALTH_PASS),
        # OOM kill on B: kernel line + init line = one event
        E(60, "app", B, "iad", "info", OOM_KERNEL),
        E(60.2, "app", B, "iad", "info", OOM_SIGKILL),
        E(60.2, "app", B, "iad", "info", OOM_INIT),
        E(61, "proxy", B, "iad", "error", PC01),
        E(62, "proxy", B, "iad", "error", PR04_PC01),
        # B's health check fails for 2 minutes, then recovers
        E(63, "health", B, "iad", "error", HEALTH_FAIL),
        E(183, "health", B, "iad", "info", HEALTH_PASS),
        # C in lhr: warning state that does not recover within the stream
        E(200, "health", C, "lhr", "warn", HEALTH_WARN),
        # crash loop on C: three non-zero exits within ten minutes
        E(240, "app", C, "lhr", "info", " INFO Main child exited normally with code: 1"),
        E(300, "app", C, "lhr", "info", " INFO Main child exited normally with code: 1"),
        E(360, "app", C, "lhr", "info", " INFO Main child exited normally with code: 1"),
        # 5xx in an access log
        E(61.5, "app", A, "iad", "info", "GET /api/projects/42 502 0.912 ms - 0"),
        E(61.6, "app", A, "iad", "info", "GET /api/projects/43 200 4.002 ms - 312"),
    ]
    return sorted(out, key=lambda e: e.t)


def signal_entries() -> list[E]:
    """One entry per message in SIGNAL_MESSAGES, a second apart, on instance A."""
    out = []
    t = 1000.0
    for msgs in SIGNAL_MESSAGES.values():
        for m in msgs:
            out.append(E(t, "proxy" if m.startswith("[P") else "app", A, "iad", "info", m))
            t += 1
    return out


# --- the samples' own checks ----------------------------------------------------------------------
def test_renderers_produce_the_documented_layouts() -> None:
    e = E(3723.5, "runner", OLD, "lhr", "info", "Pulling container image")
    assert fly_text(e) == "2024-05-28T13:02:03Z runner[5683606c] lhr [info]Pulling container image"
    assert fly_text(e, space=True, frac=True).startswith("2024-05-28T13:02:03.500000000Z runner[5683606c] lhr [info] ")
    assert fly_text_old(e).startswith("2024-05-28T13:02:03.500000000Z 5683606c lhr [info] ")
    assert dashboard(e) == "13:02:03 Pulling container image"
    assert "\x1b[" in fly_text_ansi(e)
    rec = json.loads(shipper(e))
    assert rec["fly"]["app"]["instance"] == OLD and rec["event"]["provider"] == "runner"
    assert json.loads(flyctl_json(e))["meta"]["Event"]["Provider"] == "runner"
    assert flyctl_json(e).count("\n") > 5  # pretty-printed, not NDJSON
    assert json.loads(api_pages([e]).splitlines()[0])["data"][0]["attributes"]["message"] == e.message


def test_every_signal_has_a_sample_and_samples_are_distinct() -> None:
    from opslib.logscan import SIGNALS

    for sid in SIGNAL_MESSAGES:
        assert sid in SIGNALS, sid
    flat = [m for ms in SIGNAL_MESSAGES.values() for m in ms]
    assert len(flat) == len(set(flat))
