"""Supabase: the project gateway (Auth health) and the Management API (reference §5.1, §5.2).

* **Auth health** ``GET {SUPABASE_URL}/auth/v1/health`` with header ``apikey``. An unhealthy or
  refusing gateway is data (:class:`GatewayCheck`), not an exception: a 401
  ``{"message":"No API key found in request"}`` or ``{"message":"Invalid API key", …}`` is
  exactly what the auth runbook needs to see.
* **Management API** (``SUPABASE_API_BASE_URL``, ``Authorization: Bearer sbp_…``): project
  status, per-service health, pooler configuration, database backups and network bans. Failed
  calls raise :class:`~opslib.errors.SourceError` with a hint that names what to check.

Key facts (:func:`key_facts`) decode a legacy anon/service_role JWT's header and payload
WITHOUT verifying it, to show role and expiry; the key itself is never returned or printed.
"""
from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import httpx
import pandas as pd

from ..errors import NotConfigured, SourceAuthError, SourceError, SourceNotFound
from ..reads import Source, require
from ..redact import excerpt
from ..session import Session
from ..times import iso, parse_time
from .http import call_json, transport_kind

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Target

AUTH_SYSTEM = "supabase-auth"
API_SYSTEM = "supabase-api"
HEALTH_SERVICES = ("auth", "db", "pooler", "rest", "realtime", "storage")
_REF_RE = re.compile(r"^[a-z0-9]{20}$")


def project_ref(supabase_url: str, explicit: str = "") -> str:
    """The project ref: ``SUPABASE_PROJECT_REF`` if given, else the host of
    ``https://<ref>.supabase.co``; empty when neither says."""
    if explicit:
        return explicit.strip()
    host = urlsplit(supabase_url).hostname or ""
    if host.endswith(".supabase.co") or host.endswith(".supabase.in"):
        return host.split(".", 1)[0]
    return ""


def recorded_setting(session: Session, name: str, value: str) -> str:
    """A non-secret setting (e.g. ``SUPABASE_URL``) as the live run saw it, recorded so a
    replay without the environment addresses the same place."""
    return str(session.capture("env", "environment", name, lambda: value,
                               op=f"setting {name}", payload=name) or "")


def recorded_ref(session: Session, supabase_url: str, explicit: str = "") -> str:
    """:func:`project_ref`, recorded (a ref is not a secret) so a replay asks for the same
    project without the environment."""
    return str(session.capture("env", "environment", "project_ref",
                               lambda: project_ref(supabase_url, explicit),
                               op="project ref", payload="project_ref") or "")


# --------------------------------------------------------------------------- clock
def local_clock(session: Session, name: str) -> datetime:
    """Our UTC clock at this point of the run, recorded (see :meth:`Session.clock`)."""
    return session.clock(name)


def http_date(headers: dict[str, str]) -> datetime | None:
    """The ``Date`` response header (RFC 7231, 1 s resolution) as an aware UTC time."""
    value = headers.get("date") or headers.get("Date")
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


@dataclass
class GatewayCheck:
    """One GET through a gateway: status, body, latency, and the server clock vs ours.

    ``skew_s`` is server ``Date`` minus our clock at the middle of the request, plus 0.5 s
    because ``Date`` is truncated to the second (so a perfectly synced server reads ~0).
    """

    url: str
    status: int | None
    latency_ms: float
    error: str | None = None  # timeout | dns | refused | tls | reset | network
    detail: str = ""
    body: Any = None
    server_date: str | None = None
    skew_s: float | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def message(self) -> str:
        """The platform's ``message``/``msg`` from an error body, if any."""
        if isinstance(self.body, dict):
            for key in ("message", "msg", "error"):
                if isinstance(self.body.get(key), str):
                    return self.body[key]
        return ""

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "status": self.status, "latency_ms": self.latency_ms,
                "error": self.error, "message": self.message or self.detail[:160],
                "server_date": self.server_date, "skew_s": self.skew_s}


def gateway_get(session: Session, client: httpx.Client, path: str, *, name: str) -> GatewayCheck:
    """GET ``path`` once (no retries: this measures) and compare the server's clock with ours."""
    before = local_clock(session, f"{name}:before")
    t0 = time.perf_counter()
    try:
        response = client.get(path, extensions={"opslib_op": name})
    except httpx.TransportError as exc:
        elapsed = getattr(exc, "elapsed_ms", (time.perf_counter() - t0) * 1000)
        local_clock(session, f"{name}:after")
        return GatewayCheck(str(client.base_url.join(path)), None, round(elapsed, 1),
                            transport_kind(exc), str(exc))
    after = local_clock(session, f"{name}:after")
    elapsed = float(response.extensions.get("elapsed_ms", (time.perf_counter() - t0) * 1000))
    headers = {k.lower(): v for k, v in response.headers.items()}
    try:
        body: Any = response.json()
    except ValueError:
        body = excerpt(response.text, 500)
    server = http_date(headers)
    skew = None
    if server is not None:
        middle = before + (after - before) / 2
        skew = round((server - middle).total_seconds() + 0.5, 1)
    return GatewayCheck(str(response.request.url), response.status_code, round(elapsed, 1),
                        None, "", body, iso(server) if server else None, skew, headers)


ACCESS_TOKEN_HINT = ("a personal access token (sbp_…) from "
                     "supabase.com/dashboard/account/tokens")
REF_HINT = "or SUPABASE_URL=https://<ref>.supabase.co, which names the project"


def connect_auth(session: Session, target: "Target") -> "SupabaseAuth":
    """The project's Auth service (``SUPABASE_URL``, with ``SUPABASE_ANON_KEY`` when set)."""
    url, = require(session, target, "Supabase Auth", "SUPABASE_URL",
                   hint="https://<ref>.supabase.co")
    return SupabaseAuth(session, recorded_setting(session, "SUPABASE_URL", url),
                        target.env("SUPABASE_ANON_KEY"))


def connect_management(session: Session, target: "Target") -> "SupabaseManagement":
    """The Management API for the project, or :class:`NotConfigured` (token, or which
    project: ``SUPABASE_PROJECT_REF`` or the ref in ``SUPABASE_URL``)."""
    token, = require(session, target, "Supabase Management API", "SUPABASE_ACCESS_TOKEN",
                     hint=ACCESS_TOKEN_HINT)
    ref = recorded_ref(session, target.env("SUPABASE_URL"), target.env("SUPABASE_PROJECT_REF"))
    if not ref:
        raise NotConfigured("Supabase Management API", "SUPABASE_PROJECT_REF", hint=REF_HINT)
    return SupabaseManagement(session, token, ref, base_url=target.env("SUPABASE_API_BASE_URL"))


class SupabaseAuth:
    """The project gateway's Auth service (GoTrue behind Kong)."""

    def __init__(self, session: Session, supabase_url: str, api_key: str, *,
                 timeout: float = 5.0) -> None:
        if session.mode != "replay" and not supabase_url:
            raise NotConfigured("Supabase Auth", "SUPABASE_URL",
                                hint="export https://<ref>.supabase.co")
        self.session = session
        headers = {"apikey": api_key} if api_key else {}
        self.client = session.client(AUTH_SYSTEM, base_url=supabase_url.rstrip("/"),
                                     headers=headers,
                                     timeout=httpx.Timeout(timeout, connect=timeout))

    def health(self) -> GatewayCheck:
        """``GET /auth/v1/health``: 200 ``{"version","name":"GoTrue","description"}`` when up."""
        return gateway_get(self.session, self.client, "/auth/v1/health", name="auth_health")


def assess_gateway_status(check: GatewayCheck) -> tuple[str, str]:
    """(severity, what it means) for an Auth health answer."""
    if check.error:
        return "critical", f"no answer from the Supabase gateway ({check.error}): {check.detail[:160]}"
    msg = check.message
    if check.status == 200 and isinstance(check.body, dict) and check.body.get("name") == "GoTrue":
        return "ok", f"GoTrue {check.body.get('version', '?')} answered 200"
    if check.status == 401 and "No API key" in msg:
        return "critical", ("the gateway saw no API key: SUPABASE_ANON_KEY is empty where it "
                            "is sent from")
    if check.status == 401 and "Invalid API key" in msg:
        return "critical", ("the gateway rejected the API key (\"Invalid API key\"): "
                            "SUPABASE_ANON_KEY does not belong to this project or was rotated")
    if check.status is not None and check.status >= 500:
        return "critical", f"Auth answered HTTP {check.status}: {msg or 'server error'}"
    return "warning", f"Auth answered HTTP {check.status}: {msg or 'unexpected answer'}"


# --------------------------------------------------------------------------- key facts
def _b64json(part: str) -> dict[str, Any] | None:
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def key_facts(key: str, now: datetime | None = None) -> dict[str, Any]:
    """What kind of Supabase API key ``key`` is, without the key: never verifies, never echoes.

    Returns ``{"present", "kind", "role", "alg", "iss", "ref", "iat", "exp", "expired",
    "days_left", "problem"}``; ``kind`` is ``legacy-jwt``, ``publishable``, ``secret``,
    ``not-a-jwt`` or ``missing``. Legacy anon/service_role keys are HS256 JWTs (reference
    §5.6); ``sb_publishable_``/``sb_secret_`` keys are not JWTs and are not decoded.
    """
    facts: dict[str, Any] = {"present": bool(key), "kind": "missing", "role": None, "alg": None,
                             "iss": None, "ref": None, "iat": None, "exp": None,
                             "expired": None, "days_left": None, "problem": None}
    key = (key or "").strip()
    if not key:
        facts["problem"] = "no key"
        return facts
    if key.startswith("sb_publishable_"):
        facts.update(kind="publishable", role="anon")
        return facts
    if key.startswith("sb_secret_"):
        facts.update(kind="secret", role="service_role",
                     problem="a secret key (sb_secret_) bypasses Row Level Security")
        return facts
    parts = key.split(".")
    header = _b64json(parts[0]) if len(parts) == 3 else None
    payload = _b64json(parts[1]) if len(parts) == 3 else None
    if header is None or payload is None:
        facts.update(kind="not-a-jwt", problem="neither a JWT nor an sb_publishable_ key")
        return facts
    facts.update(kind="legacy-jwt", alg=header.get("alg"), role=payload.get("role"),
                 iss=payload.get("iss"), ref=payload.get("ref"))
    for claim in ("iat", "exp"):
        value = payload.get(claim)
        if isinstance(value, (int, float)):
            facts[claim] = iso(parse_time(int(value)))  # epoch seconds
    if isinstance(payload.get("exp"), (int, float)) and now is not None:
        left = (payload["exp"] - now.timestamp()) / 86400
        facts["days_left"] = round(left, 1)
        facts["expired"] = left < 0
        if left < 0:
            facts["problem"] = "the key has expired"
    if payload.get("role") == "service_role":
        facts["problem"] = "a service_role key bypasses Row Level Security"
    return facts


# --------------------------------------------------------------------------- Management API
class SupabaseManagement:
    """Read-only calls of the Management API for one project."""

    def __init__(self, session: Session, token: str, ref: str, *, base_url: str) -> None:
        if session.mode != "replay" and not token:
            raise NotConfigured("Supabase Management API", "SUPABASE_ACCESS_TOKEN",
                                hint=ACCESS_TOKEN_HINT)
        if not ref:
            raise NotConfigured("Supabase Management API", "SUPABASE_PROJECT_REF", hint=REF_HINT)
        self.session, self.ref = session, ref
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = session.client(API_SYSTEM, base_url=base_url.rstrip("/"), headers=headers)

    def _get(self, path: str, op: str, **kwargs: Any) -> Any:
        try:
            return call_json(self.session, self.client, "GET", path, system=API_SYSTEM, op=op,
                             **kwargs)
        except SourceError as exc:
            raise _explain(exc, self.ref) from None

    def project(self) -> dict[str, Any]:
        """``GET /v1/projects/{ref}``: ``status`` (ACTIVE_HEALTHY, INACTIVE, …), region, …"""
        return self._get(f"/v1/projects/{quote(self.ref)}", "project")

    def health(self, services: tuple[str, ...] = HEALTH_SERVICES) -> list[dict[str, Any]]:
        """``GET /v1/projects/{ref}/health?services=…`` (repeated params, as the generated
        client sends them): ``[{"name","healthy","status","info","error"}]``."""
        return self._get(f"/v1/projects/{quote(self.ref)}/health", "service_health",
                         params=[("services", s) for s in services])

    def pooler(self) -> list[dict[str, Any]]:
        """``GET /v1/projects/{ref}/config/database/pooler``."""
        return self._get(f"/v1/projects/{quote(self.ref)}/config/database/pooler", "pooler_config")

    def backups(self) -> dict[str, Any]:
        """``GET /v1/projects/{ref}/database/backups``.

        Shape from the Management API's OpenAPI (operationId ``v1-list-all-backups``, schema
        ``V1BackupsResponse``; supabase.com/docs/reference/api/v1-list-all-backups):
        ``{"region", "walg_enabled", "pitr_enabled", "backups": [{"id"?, "is_physical_backup",
        "status", "inserted_at"}], "physical_backup_data": {"earliest_physical_backup_date_unix"?,
        "latest_physical_backup_date_unix"?}}`` with ``status`` one of COMPLETED, FAILED,
        PENDING, REMOVED, ARCHIVED, CANCELLED.
        """
        return self._get(f"/v1/projects/{quote(self.ref)}/database/backups", "backups")

    def network_bans(self) -> dict[str, Any]:
        """``POST /v1/projects/{ref}/network-bans/retrieve`` (a read, despite the verb):
        ``{"banned_ipv4_addresses": [...]}``, IPs blocked after repeated failed logins."""
        try:
            return call_json(self.session, self.client, "POST",
                             f"/v1/projects/{quote(self.ref)}/network-bans/retrieve",
                             system=API_SYSTEM, op="network_bans", idempotent=True)
        except SourceError as exc:
            raise _explain(exc, self.ref) from None


def _explain(exc: SourceError, ref: str) -> SourceError:
    """Say what to check for the Management API's usual refusals."""
    if isinstance(exc, SourceAuthError):
        exc.hint = (f"SUPABASE_ACCESS_TOKEN was refused for project {ref}: check the token is "
                    "current (sbp_…) and that its account is a member of the project's "
                    "organisation with access to this endpoint")
    elif isinstance(exc, SourceNotFound):
        exc.hint = (f"no project {ref!r} is visible to this token: check SUPABASE_PROJECT_REF "
                    "(or the ref in SUPABASE_URL) and the token's organisation")
    return exc


# --------------------------------------------------------------------------- frames
def health_frame(items: list[dict[str, Any]] | None) -> pd.DataFrame:
    """Service health as rows: name, status, healthy, error, info."""
    rows = [{"name": i.get("name", ""), "status": i.get("status", ""),
             "healthy": i.get("healthy"), "error": i.get("error"),
             "info": json.dumps(i.get("info"), sort_keys=True) if i.get("info") else ""}
            for i in items or [] if isinstance(i, dict)]
    return pd.DataFrame(rows, columns=["name", "status", "healthy", "error", "info"])


POOLER_COLUMNS = ["database_type", "db_host", "db_port", "db_user", "pool_mode",
                  "default_pool_size", "max_client_conn"]


def pooler_frame(items: list[dict[str, Any]] | None) -> pd.DataFrame:
    """Pooler configuration without the connection string (it names the user and host)."""
    rows = [{c: i.get(c) for c in POOLER_COLUMNS} for i in items or [] if isinstance(i, dict)]
    return pd.DataFrame(rows, columns=POOLER_COLUMNS)


BACKUP_COLUMNS = ["id", "status", "is_physical_backup", "inserted_at"]


def backups_frame(body: dict[str, Any] | None) -> pd.DataFrame:
    """Backups newest first: id, status (upper-case), is_physical_backup, inserted_at (UTC)."""
    rows = []
    for b in (body or {}).get("backups") or []:
        if not isinstance(b, dict):
            continue
        at = parse_time(b.get("inserted_at"))
        rows.append({"id": b.get("id"), "status": str(b.get("status", "")).upper(),
                     "is_physical_backup": bool(b.get("is_physical_backup")),
                     "inserted_at": at})
    df = pd.DataFrame(rows, columns=BACKUP_COLUMNS)
    if not df.empty:
        df = df.sort_values("inserted_at", ascending=False, na_position="last").reset_index(drop=True)
    return df


AUTH = Source("Supabase Auth", connect_auth)
MANAGEMENT = Source("Supabase Management API", connect_management)
