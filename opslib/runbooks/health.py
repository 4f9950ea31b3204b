"""Health Checks (seed section "Health Checks"): /health, Fly machines, database.

``collect`` does all I/O (sources fetched concurrently); the ``assess_*`` functions are pure:
data in, findings out.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd
from matplotlib.figure import Figure

from ..actions import Action
from ..config import Target
from ..errors import NotConfigured, SourceError
from ..findings import Finding
from ..thresholds import classify
from ..session import Session
from ..times import parse_time
from ..sources.fly import list_app_machines, checks_frame, machines_frame
from ..sources.http import ProbeResult, probe
from ..sources.postgres import Postgres

DB_QUERY = "SELECT pg_is_in_recovery() AS in_recovery, current_timestamp AS server_time"
SKEW_WARN_S = 30.0  # PostgREST's JWT leeway; beyond it tokens fail as "issued at future"


@dataclass
class HealthData:
    probes: list[ProbeResult] = field(default_factory=list)
    machines: list[dict] | None = None
    machines_error: SourceError | None = None
    db: pd.DataFrame | None = None
    db_error: SourceError | None = None
    skipped: list[NotConfigured] = field(default_factory=list)


def _machines(session: Session, target: Target, data: HealthData) -> None:
    data.machines, data.machines_error, skipped = list_app_machines(session, target)
    if skipped is not None:
        data.skipped.append(skipped)


def _database(session: Session, target: Target, data: HealthData) -> None:
    dsn = target.env("DATABASE_URL")
    if not session.configured("DATABASE_URL", bool(dsn)):
        data.skipped.append(NotConfigured("Postgres", "DATABASE_URL",
                                          hint="use the Supabase connection string"))
        return
    pg = Postgres(session, dsn)
    try:
        data.db = pg.query("health.recovery", DB_QUERY)
    except SourceError as exc:
        data.db_error = exc
    finally:
        pg.close()


def _probes(session: Session, target: Target, n: int, timeout: float, data: HealthData) -> None:
    import httpx

    client = session.client("app", timeout=httpx.Timeout(timeout, connect=timeout))
    data.probes = [probe(session, target.health_url, timeout=timeout, client=client)
                   for _ in range(n)]


def collect(session: Session, target: Target, *, probes: int = 5,
            timeout: float = 5.0) -> HealthData:
    """Probe /health ``probes`` times, list machines and query the database, concurrently."""
    data = HealthData()
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(_probes, session, target, probes, timeout, data),
                   pool.submit(_machines, session, target, data),
                   pool.submit(_database, session, target, data)]
        for f in futures:
            f.result()
    return data


# --------------------------------------------------------------------------- analysis
PROBE_COLUMNS = ["probe", "status", "latency_ms", "error", "body_ok", "server_time", "skew_s",
                 "detail"]


def body_check(result: ProbeResult) -> tuple[bool, str, datetime | None]:
    """Whether the body is the seed's ``{"status": "ok", "timestamp": …}``; why not; the time."""
    body = result.json
    if not isinstance(body, dict):
        return False, f"body is not JSON: {result.body[:80]!r}", None
    if body.get("status") != "ok":
        return False, f"status field is {body.get('status')!r}, expected 'ok'", None
    ts = parse_time(body.get("timestamp"))
    if ts is None:
        return False, f"timestamp missing or not RFC 3339: {body.get('timestamp')!r}", None
    return True, "", ts


def probes_frame(results: list[ProbeResult], now: datetime) -> pd.DataFrame:
    rows = []
    for i, r in enumerate(results, 1):
        ok, why, ts = body_check(r) if r.status is not None else (False, "", None)
        detail = r.error_detail if r.error else (why if r.status == 200 else "")
        rows.append({"probe": i, "status": r.status, "latency_ms": r.latency_ms,
                     "error": r.error, "body_ok": ok if r.status == 200 else None,
                     "server_time": ts.isoformat() if ts else None,
                     "skew_s": round((ts - now).total_seconds(), 1) if ts else None,
                     "detail": detail[:160]})
    return pd.DataFrame(rows, columns=PROBE_COLUMNS)


def assess_probes(df: pd.DataFrame, limits: dict[str, tuple[float, float]],
                  url: str) -> list[Finding]:
    """Findings from the /health probes: reachability, 5xx, body, latency, clock skew."""
    n = len(df)
    if n == 0:
        return [Finding("health-no-probes", "unknown", "no /health probes were made")]
    out: list[Finding] = []
    failed = df[df["error"].notna()]
    if len(failed):
        kinds = ", ".join(f"{k} ×{c}" for k, c in failed["error"].value_counts().items())
        sev = "critical" if len(failed) * 2 >= n else "warning"
        out.append(Finding(
            "health-unreachable", sev, f"{len(failed)}/{n} probes of {url} got no HTTP answer",
            f"transport failures: {kinds}. {failed['detail'].iloc[0]}",
            [f"probe {p}: {e}" for p, e in zip(failed["probe"], failed["error"])]))
    answered = df[df["status"].notna()]
    five = answered[answered["status"] >= 500]
    if len(five):
        codes = ", ".join(f"{int(s)} ×{c}" for s, c in five["status"].value_counts().items())
        sev = "critical" if len(five) * 2 >= n else "warning"
        out.append(Finding("health-5xx", sev, f"{len(five)}/{n} probes returned a server error",
                           f"statuses: {codes}. 503 from Fly's proxy means no healthy machine; "
                           "502 means the app answered badly (crash, wrong port, OOM).",
                           [f"probe {p}: HTTP {int(s)}" for p, s in zip(five["probe"], five["status"])]))
    other = answered[(answered["status"] < 500) & (answered["status"] != 200)]
    if len(other):
        out.append(Finding("health-unexpected-status", "warning",
                           f"{len(other)}/{n} probes returned an unexpected status",
                           ", ".join(str(int(s)) for s in other["status"]),
                           [f"probe {p}: HTTP {int(s)}" for p, s in zip(other["probe"], other["status"])]))
    bad_body = df[df["body_ok"] == False]  # noqa: E712 - None means "not applicable"
    if len(bad_body):
        out.append(Finding("health-invalid-body", "warning",
                           f"{len(bad_body)}/{n} health responses did not match "
                           "{\"status\": \"ok\", \"timestamp\": …}",
                           bad_body["detail"].iloc[0],
                           [f"probe {p}: {d}" for p, d in zip(bad_body["probe"], bad_body["detail"])]))
    if len(answered):
        lat = answered["latency_ms"]
        p50, p95, mx = lat.quantile(0.5), lat.quantile(0.95), lat.max()
        sev = classify(p95, limits["response_time_ms"])
        warn, crit = limits["response_time_ms"]
        out.append(Finding("health-latency", sev,
                           f"/health latency p95 {p95:.0f} ms (p50 {p50:.0f}, max {mx:.0f})",
                           f"thresholds: warning > {warn:.0f} ms, critical > {crit:.0f} ms "
                           f"over {len(answered)} answered probes"))
    skews = df["skew_s"].dropna()
    if len(skews):
        skew = float(skews.median())
        if abs(skew) > SKEW_WARN_S:
            out.append(Finding("health-clock-skew", "warning",
                               f"app clock differs from ours by {skew:+.0f} s",
                               "JWT validation allows ~30 s of skew; beyond it users see "
                               "'JWT issued at future' / expired tokens (run the auth runbook)."))
    if not out or all(f.severity == "ok" for f in out):
        ok200 = int((answered["status"] == 200).sum()) if len(answered) else 0
        out.insert(0, Finding("health-endpoint", "ok", f"{url}: {ok200}/{n} probes 200 OK"))
    return out


def assess_machines(machines: list[dict] | None, error: SourceError | None,
                    app: str) -> tuple[list[Finding], pd.DataFrame, pd.DataFrame]:
    """Findings from the machine list: none running, stopped/failed machines, failing checks."""
    if error is not None:
        sev = "critical" if error.kind == "not_found" else "unknown"
        return [Finding("machines-error", sev, f"could not list machines: {error.message}",
                        error.hint, source="fly-machines")], pd.DataFrame(), pd.DataFrame()
    if machines is None:
        return [], pd.DataFrame(), pd.DataFrame()
    mdf, cdf = machines_frame(machines), checks_frame(machines)
    out: list[Finding] = []
    if mdf.empty:
        out.append(Finding("machines-none", "critical", f"{app} has no machines",
                           "nothing can serve traffic; deploy or scale up "
                           f"(`fly scale count 2 -a {app}`)"))
        return out, mdf, cdf
    started = mdf[mdf["state"] == "started"]
    down = mdf[mdf["state"].isin(["stopped", "failed", "suspended"])]
    if started.empty:
        out.append(Finding("machines-none-started", "critical",
                           f"no machine of {app} is started ({len(mdf)} in total)",
                           "all machines down: users get 503. Run the not-responding runbook.",
                           [f"{r.id} {r.region}: {r.state}" for r in mdf.itertuples()]))
    elif len(down):
        out.append(Finding("machines-down", "warning",
                           f"{len(down)}/{len(mdf)} machines are not running",
                           "capacity is reduced; if they stopped after a crash, check exits below",
                           [f"{r.id} {r.region}: {r.state} (last exit {r.last_exit_code})"
                            for r in down.itertuples()]))
    failing = cdf[cdf["status"] == "critical"] if not cdf.empty else cdf
    if len(failing):
        sev = "critical" if set(failing["machine"]) >= set(started["id"]) and len(started) else "warning"
        out.append(Finding("checks-critical", sev,
                           f"{len(failing)} health check(s) critical on "
                           f"{failing['machine'].nunique()} machine(s)",
                           "a critical service check takes the machine out of proxy routing",
                           [f"{r.machine} {r.name}: {r.output}" for r in failing.itertuples()]))
    oom = mdf[mdf["oom_killed"]]
    if len(oom):
        out.append(Finding("machines-oom", "warning",
                           f"{len(oom)} machine(s) last exited OOM-killed",
                           "run the memory runbook",
                           [f"{r.id}: exit {r.last_exit_code} at {r.last_exit_at}" for r in oom.itertuples()]))
    if not out:
        out.append(Finding("machines-ok", "ok",
                           f"{len(started)}/{len(mdf)} machines started, all checks passing"))
    return out, mdf, cdf


def release_version(machines: list[dict] | None) -> str:
    """The release the machines run (``config.metadata.fly_release_version``), e.g. ``v42``."""
    versions = sorted({str(((m.get("config") or {}).get("metadata") or {})
                           .get("fly_release_version", "")) for m in machines or []} - {""})
    return ", ".join(f"v{v}" for v in versions)


def assess_db(db: pd.DataFrame | None, error: SourceError | None, now: datetime) -> list[Finding]:
    if error is not None:
        return [Finding("db-unreachable", "critical", f"database check failed: {error.kind}",
                        f"{error.message}. {error.hint}", source="postgres", escalate=2,
                        escalate_reason="database problems are handled by the Platform Team")]
    if db is None:
        return []
    if db.empty:
        return [Finding("db-no-answer", "unknown", "database returned no row for the health query")]
    row = db.iloc[0]
    out = []
    if bool(row["in_recovery"]):
        out.append(Finding("db-in-recovery", "warning",
                           "database is in recovery (a read-only replica, or a restore in progress)",
                           "pg_is_in_recovery() is true: writes will fail. Check DATABASE_URL "
                           "points at the primary and the Supabase project status.", escalate=2,
                           escalate_reason="database problems are handled by the Platform Team"))
    server = parse_time(row["server_time"])
    skew = (server - now).total_seconds() if server else 0.0
    out.append(Finding("db-ok" if not out else "db-time", "ok" if not out else "info",
                       "database answered: primary, accepting writes" if not out
                       else "database answered",
                       f"server time {row['server_time']} ({skew:+.1f} s from ours)"))
    return out


def latency_chart(df: pd.DataFrame, limits: dict[str, tuple[float, float]]) -> Figure:
    """Latency of each probe, coloured by outcome, with the seed's thresholds."""
    fig = Figure(figsize=(7, 3))
    ax = fig.subplots()
    colours = ["#2e7d32" if s == 200 else "#c62828" if (s or 0) >= 500 or e else "#ef6c00"
               for s, e in zip(df["status"], df["error"])]
    ax.bar(df["probe"].astype(str), df["latency_ms"], color=colours)
    warn, crit = limits["response_time_ms"]
    ax.axhline(warn, color="#ef6c00", linestyle="--", linewidth=1, label=f"warning {warn:.0f} ms")
    ax.axhline(crit, color="#c62828", linestyle="--", linewidth=1, label=f"critical {crit:.0f} ms")
    for x, (s, e) in enumerate(zip(df["status"], df["error"])):
        ax.annotate(str(int(s)) if s == s and s is not None else str(e), (x, 0),
                    xytext=(0, 3), textcoords="offset points", ha="center", fontsize=8,
                    color="white")
    ax.set_xlabel("probe")
    ax.set_ylabel("latency (ms)")
    ax.set_title("/health probes")
    ax.legend(loc="upper left", fontsize=8)
    return fig


def plan_actions(mdf: pd.DataFrame, app: str) -> list[Action]:
    """The seed's first remediation step for what health saw: start machines that are down."""
    actions = []
    for r in mdf.itertuples() if not mdf.empty else []:
        if r.state in ("stopped", "failed"):
            actions.append(Action(
                id=f"start-{r.id}", kind="machine.start",
                title=f"start {r.state} machine {r.id} ({r.region})",
                command=f"fly machine start {r.id} -a {app}",
                api={"method": "POST", "path": f"/v1/apps/{app}/machines/{r.id}/start"},
                params={"machine_id": r.id},
                basis={"state": r.state, "last_exit_code": r.last_exit_code,
                       "updated_at": r.updated_at},
                reason="capacity is reduced while it is down"))
    return actions
