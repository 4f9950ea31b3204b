"""Health Checks (seed section "Health Checks"): /health, Fly machines, database.

``collect`` does all I/O (the three reads at once, through :func:`opslib.reads.gather`); the
``assess_*`` functions are pure: data in, findings out.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import pandas as pd

from ..assess import platform, postgres as postgres_checks
from ..actions import Action, machine_action
from ..config import Target
from ..findings import Finding
from ..reads import Read, Reading, Readings, gather, measured
from ..session import Session
from ..sources import fly, postgres
from ..sources.fly import checks_frame, machines_frame
from ..sources.http import probe_many
from ..sources.tls import probe_tls
from ..times import parse_time

DB_QUERY = "SELECT pg_is_in_recovery() AS in_recovery, current_timestamp AS server_time"


@dataclass(frozen=True)
class HealthData:
    readings: Readings

    probes = measured(empty=list)  # list
    db = measured("database")  # pd.DataFrame | None


def collect(session: Session, target: Target, *, probes: int = 5,
            timeout: float = 5.0) -> HealthData:
    """Probe /health ``probes`` times, list machines and query the database, concurrently;
    when a probe fails its TLS handshake, read the certificate served (to name every problem
    of it: a client's TLS error names one)."""
    readings = gather(session, target, [
        Read("probes", f"GET {target.health_url} ×{probes}",
             lambda: probe_many(session, target.health_url, probes, timeout=timeout)),
        Read("machines", "the app's machines, their states and checks",
             lambda api: api.list_machines(), fly.MACHINES),
        Read("database", "pg_is_in_recovery() and the server clock",
             lambda pg: pg.query("health.recovery", DB_QUERY), postgres.POSTGRES),
        platform.read(session, target),
    ])
    url = urlsplit(target.health_url)
    if url.scheme == "https" and any(p.error == "tls" for p in readings.value("probes", [])):
        readings = readings | gather(session, target, [Read(
            "certificate", f"the certificate {url.hostname}:{url.port or 443} serves",
            lambda: probe_tls(session, url.hostname or "", url.port or 443, timeout=timeout,
                              http_path=None), context=True)])
    return HealthData(readings)


def assess_certificate(readings: Readings) -> list[Finding]:
    """Every problem of the certificate the app serves, expiry first (none when the
    handshake succeeded, or the certificate could not be read)."""
    cert = readings.value("certificate")
    if cert is None or cert.error or not cert.problems:
        return []
    return [Finding("health-certificate", "critical",
                    f"{cert.host}: the certificate is " + "; ".join(cert.problems),
                    "clients refuse the connection: run the tls runbook (`make run issue=tls`)",
                    [f"issuer {cert.issuer}", f"subject {cert.subject}",
                     f"not after {cert.not_after:%Y-%m-%d %H:%M} UTC" if cert.not_after else ""],
                    source="tls")]


# --------------------------------------------------------------------------- analysis
def assess_machines(reading: Reading, app: str
                    ) -> tuple[list[Finding], pd.DataFrame, pd.DataFrame]:
    """Findings from the machine list: none running, stopped/failed machines, failing checks."""
    error, machines = reading.error, reading.value
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
    idle = mdf[mdf["auto_stopped"].astype(bool)]
    down = mdf[mdf["state"].isin(["stopped", "failed", "suspended"]) & ~mdf["id"].isin(idle["id"])]
    if len(idle):
        out.append(Finding("machines-auto-stopped", "info",
                           f"{len(idle)} machine(s) stopped by auto-stop: will start on the next "
                           "request",
                           "Fly's proxy stops idle machines and starts them on demand "
                           "(auto_stop_machines / auto_start_machines): not a fault",
                           [f"{r.id} {r.region}: {r.state}" for r in idle.itertuples()]))
    if started.empty and len(idle) == len(mdf):
        pass  # scaled to zero while idle: the proxy starts one on the next request
    elif started.empty:
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
    # a stopped machine's checks do not run: only a started machine's critical check counts
    failing = (cdf[(cdf["status"] == "critical") & cdf["machine"].isin(started["id"])]
               if not cdf.empty else cdf)
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
    if not [f for f in out if f.severity != "info"]:
        out.append(Finding("machines-ok", "ok",
                           f"{len(started)}/{len(mdf)} machines started, all checks passing"
                           + (f", {len(idle)} idle (auto-stopped)" if len(idle) else "")))
    return out, mdf, cdf


def assess_db(reading: Reading, now: datetime) -> list[Finding]:
    """The database answered as a primary (or not, or not at all)."""
    error, db = reading.error, reading.value
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
        out.append(postgres_checks.in_recovery())
    server = parse_time(row["server_time"])
    skew = (server - now).total_seconds() if server else 0.0
    out.append(Finding("db-ok" if not out else "db-time", "ok" if not out else "info",
                       "database answered: primary, accepting writes" if not out
                       else "database answered",
                       f"server time {row['server_time']} ({skew:+.1f} s from ours)"))
    return out


def plan_actions(mdf: pd.DataFrame, app: str) -> list[Action]:
    """The seed's first remediation step for what health saw: start machines that are down."""
    actions = []
    for r in mdf.itertuples() if not mdf.empty else []:
        if r.state in ("stopped", "failed") and not r.auto_stopped:
            actions.append(machine_action(
                "machine.start", app, r.id,
                title=f"start {r.state} machine {r.id} ({r.region})",
                basis={"state": r.state, "last_exit_code": r.last_exit_code,
                       "updated_at": r.updated_at},
                reason="capacity is reduced while it is down"))
    return actions
