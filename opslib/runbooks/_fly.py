"""What the Fly runbooks (deploy, rollback, scale-down, tls) share: their clients, the
collection of releases, machines and /health probes, and how a failed Fly call becomes a
finding that says what to check."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import pandas as pd

from ..config import Target
from ..errors import NotConfigured, SourceError
from ..findings import Finding
from ..session import Session
from ..sources.fly import FlyMachines
from ..sources.fly_platform import FlyPlatform, Releases
from ..sources.http import ProbeResult, probe

TOKEN_ENV = "FLY_API_TOKEN"
RELEASE_COLUMNS = ["id", "region", "state", "release", "image", "checks_critical", "updated_at"]


def not_configured() -> NotConfigured:
    return NotConfigured("Fly API", TOKEN_ENV,
                         hint="create one with `fly tokens create readonly -a <app>` "
                              "(a deploy token to apply actions)")


def clients(session: Session, target: Target) -> tuple[FlyMachines, FlyPlatform] | None:
    """Both Fly clients, or None when no token is configured (recorded, so replay agrees)."""
    token = target.env(TOKEN_ENV)
    if not session.configured(TOKEN_ENV, bool(token)):
        return None
    return (FlyMachines(session, target.app, token=token,
                        base_url=target.env("FLY_FLAPS_BASE_URL")),
            FlyPlatform(session, target.app, token=token,
                        base_url=target.env("FLY_API_BASE_URL")))


@dataclass
class Fetched:
    """One source's answer or its error."""

    value: Any = None
    error: SourceError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.value is not None


def fetch(fn: Any, *args: Any, **kwargs: Any) -> Fetched:
    try:
        return Fetched(fn(*args, **kwargs))
    except SourceError as exc:
        return Fetched(None, exc)


def probes(session: Session, target: Target, n: int, timeout: float) -> list[ProbeResult]:
    """``n`` sequential GETs of the app's /health (sequential: they measure the app, not us)."""
    if n <= 0:
        return []
    client = session.client("app", timeout=httpx.Timeout(timeout, connect=timeout))
    return [probe(session, target.health_url, timeout=timeout, client=client) for _ in range(n)]


def error_finding(fid: str, error: SourceError, app: str, what: str) -> Finding:
    """A failed Fly call as a finding naming what to check (app name, token, platform)."""
    if error.kind == "not_found":
        return Finding(fid, "critical", f"{what}: app {app!r} not found on Fly.io",
                       f"{error.message}. Check the app name (`fly apps list`) and that the "
                       "token belongs to the app's organisation.", source=error.system)
    if error.kind == "auth":
        perm = ("the token is valid but lacks permission for this app or call"
                if error.status == 403 else "the token was not accepted")
        return Finding(fid, "unknown", f"{what}: {perm} (HTTP {error.status})",
                       f"{error.message}. Check FLY_API_TOKEN: `fly tokens create readonly -a "
                       f"{app}` to diagnose, `fly tokens create deploy -a {app}` to apply actions.",
                       source=error.system)
    if error.kind == "rate_limited":
        return Finding(fid, "unknown", f"{what}: rate limited by the Fly API",
                       f"{error.message}. Wait a minute and run again.", source=error.system)
    if error.kind in ("unavailable", "timeout", "server_error", "reset", "network", "refused",
                      "dns", "tls"):
        return Finding(fid, "unknown", f"{what}: the Fly API could not be reached ({error.kind})",
                       f"{error.message}. {error.hint} If it persists, check "
                       "https://status.flyio.net (Fly platform issue → Level 2).",
                       source=error.system)
    return Finding(fid, "unknown", f"{what}: the Fly API call failed ({error.kind})",
                   f"{error.message}. {error.hint}".strip(), source=error.system)


def release_of(m: dict[str, Any]) -> str:
    return str(((m.get("config") or m.get("incomplete_config") or {}).get("metadata") or {})
               .get("fly_release_version", ""))


def image_of(m: dict[str, Any]) -> str:
    return str((m.get("config") or m.get("incomplete_config") or {}).get("image", ""))


def machine_releases_frame(machines: list[dict[str, Any]] | None) -> pd.DataFrame:
    """Which release and image each machine runs (columns: RELEASE_COLUMNS)."""
    rows = []
    for m in machines or []:
        checks = [c for c in m.get("checks") or []
                  if not str(c.get("name", "")).startswith("bg_deployments_compat")]
        rows.append({"id": m.get("id", ""), "region": m.get("region", ""),
                     "state": m.get("state", ""), "release": release_of(m), "image": image_of(m),
                     "checks_critical": sum(c.get("status") == "critical" for c in checks),
                     "updated_at": m.get("updated_at", "")})
    return pd.DataFrame(rows, columns=RELEASE_COLUMNS)


@dataclass
class ReleaseData:
    """Releases, machines and /health probes: what deploy and rollback look at."""

    releases: Releases | None = None
    releases_error: SourceError | None = None
    machines: list[dict[str, Any]] | None = None
    machines_error: SourceError | None = None
    probes: list[ProbeResult] = field(default_factory=list)
    skipped: list[NotConfigured] = field(default_factory=list)


def collect_releases(session: Session, target: Target, *, probes_n: int, timeout: float,
                     limit: int) -> ReleaseData:
    """Releases, machines and probes, all three fetched at once."""
    from concurrent.futures import ThreadPoolExecutor

    data = ReleaseData()
    fly = clients(session, target)
    with ThreadPoolExecutor(max_workers=3) as pool:
        probe_f = pool.submit(probes, session, target, probes_n, timeout)
        if fly is None:
            data.skipped.append(not_configured())
        else:
            rel_f = pool.submit(fetch, fly[1].releases, limit)
            mach_f = pool.submit(fetch, fly[0].list_machines)
            rel, mach = rel_f.result(), mach_f.result()
            data.releases, data.releases_error = rel.value, rel.error
            data.machines, data.machines_error = mach.value, mach.error
        data.probes = probe_f.result()
    return data
