"""Releases, machines and /health after a deploy: what ``deploy`` reports and ``rollback``
decides on. ``collect`` reads the three at once; the rest is pure.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from ..config import Target
from ..findings import Finding, rank
from ..reads import Read, Readings, gather, measured
from ..session import Session
from ..sources import fly
from ..sources.fly import machine_releases_frame
from ..sources.fly_platform import PLATFORM, releases_frame
from ..sources.http import probe_many
from ..times import parse_time
from .endpoint import assess_probes, probes_frame
from .fly_api import error_finding

GOOD_STATUSES = ("complete",)
BAD_STATUSES = ("failed", "interrupted")
STUCK_AFTER = timedelta(minutes=15)  # a rolling deploy of a few machines takes minutes
RECENT = timedelta(hours=24)  # a degraded app this soon after a deploy points at the deploy
COMPARE_FIELDS = ["version", "status", "stable", "image_ref", "created_at", "user", "strategy",
                  "description"]


@dataclass(frozen=True)
class ReleaseData:
    """Releases, machines and /health probes: what deploy and rollback look at."""

    readings: Readings

    releases = measured()  # Releases | None
    machines = measured()  # list[Machine] | None
    probes = measured(empty=list)  # list[ProbeResult]


def collect(session: Session, target: Target, *, probes: int = 3, timeout: float = 5.0,
            limit: int = 10) -> ReleaseData:
    """Releases, machines and ``probes`` GETs of /health, all three at once."""
    return ReleaseData(gather(session, target, [
        Read("releases", f"the app's last {limit} releases (Fly platform API)",
             lambda api: api.releases(limit), PLATFORM),
        Read("machines", "the app's machines and the release each runs",
             lambda api: api.list_machines(), fly.MACHINES),
        Read("probes", f"GET {target.health_url} ×{probes}",
             lambda: probe_many(session, target.health_url, probes, timeout=timeout)),
    ]))


def current_and_previous(rel: pd.DataFrame) -> tuple[dict | None, dict | None]:
    """The newest release and the one before it (by version)."""
    rows = rel.to_dict("records") if not rel.empty else []
    return (rows[0] if rows else None), (rows[1] if len(rows) > 1 else None)


def previous_good(rel: pd.DataFrame, current: dict | None) -> dict | None:
    """The newest release older than ``current`` that completed, with a different image."""
    if current is None:
        return None
    for r in rel.to_dict("records")[1:]:
        if r["status"] in GOOD_STATUSES and r["image_ref"] and r["image_ref"] != current["image_ref"]:
            return r
    return None


def comparison(current: dict | None, previous: dict | None) -> pd.DataFrame:
    """Previous vs current release, field by field, with what changed."""
    rows = []
    for f in COMPARE_FIELDS:
        a = previous.get(f) if previous else None
        b = current.get(f) if current else None
        rows.append({"field": f, "previous": a, "current": b,
                     "changed": previous is not None and current is not None and a != b})
    return pd.DataFrame(rows, columns=["field", "previous", "current", "changed"])


def _age(created: Any, now: datetime) -> timedelta | None:
    ts = parse_time(created)
    return now - ts if ts else None


def _fmt_age(age: timedelta | None) -> str:
    if age is None:
        return "at an unknown time"
    minutes = int(age.total_seconds() // 60)
    return f"{minutes} min ago" if minutes < 120 else f"{minutes // 60} h ago"


def rollback_command(app: str, release: dict | None) -> str:
    if not release:
        return ""
    return f"fly deploy --image {release['image_ref']} -a {app}"


def assess(data: ReleaseData, app: str, now: datetime,
           limits: dict[str, tuple[float, float]], health_url: str
           ) -> tuple[list[Finding], dict[str, pd.DataFrame]]:
    """Findings from releases, machines and probes; and the tables the notebook shows."""
    out: list[Finding] = []
    rel = releases_frame(data.releases.releases) if data.releases else pd.DataFrame()
    mdf = machine_releases_frame(data.machines)
    probes_df = probes_frame(data.probes, now)
    tables = {"releases": rel, "machines": mdf, "probes": probes_df}
    for key, fid, what in (("releases", "deploy-releases-error", "could not read releases"),
                           ("machines", "deploy-machines-error", "could not list machines")):
        if data.readings[key].failed:
            out.append(error_finding(fid, data.readings[key].error, app, what))
    current, previous = current_and_previous(rel)
    tables["comparison"] = comparison(current, previous)
    good = previous_good(rel, current)
    health_findings = assess_probes(probes_df, limits, health_url) if len(probes_df) else []
    degraded = [f for f in health_findings if rank(f.severity) >= rank("warning")]
    critical_checks = mdf[(mdf["checks_critical"] > 0) & (mdf["state"] == "started")] \
        if not mdf.empty else mdf
    if data.releases is not None and current is None:
        out.append(Finding("deploy-no-releases", "unknown", f"{app} has no releases",
                           "nothing has been deployed yet: `fly deploy` first"))
    if current is not None:
        age = _age(current["created_at"], now)
        when = _fmt_age(age)
        src = data.releases.source if data.releases else ""
        out.append(Finding(
            "deploy-current-release", "info",
            f"current release v{current['version']} ({current['status'] or 'no status'}), "
            f"deployed {when} by {current['user'] or 'unknown'}",
            f"image {current['image_ref']}; previous: "
            + (f"v{previous['version']} ({previous['status']}) image {previous['image_ref']}"
               if previous else "none") + (f". Releases read via {src}." if src else ""),
            source="fly-api"))
        if current["status"] in BAD_STATUSES:
            out.append(Finding(
                "deploy-release-failed", "critical",
                f"release v{current['version']} {current['status']} {when}",
                "flyctl marks a release failed or interrupted when its machines did not all "
                "reach the new version healthy; some machines may still run the old one. "
                + (f"Roll back with the rollback runbook (`{rollback_command(app, good)}`), "
                   f"or fix and `fly deploy` again." if good else
                   "No earlier complete release to roll back to: fix and `fly deploy` again."),
                [f"v{r['version']}: {r['status']} {r['created_at']}"
                 for r in rel.head(3).to_dict("records")], source="fly-api"))
        elif current["in_progress"] or current["status"] == "running":
            stuck = age is not None and age > STUCK_AFTER
            out.append(Finding(
                "deploy-in-progress", "warning" if stuck else "info",
                f"release v{current['version']} still running {when}"
                + (" — longer than a deploy should take" if stuck else ""),
                "check `fly status` and the deploy output; machines may be waiting for health "
                "checks", source="fly-api"))
    started = mdf[mdf["state"] == "started"] if not mdf.empty else mdf
    if current is not None and len(started):
        by_rel = started.groupby("release")["id"].apply(list).to_dict()
        cur = str(current["version"])
        if len(by_rel) > 1:
            out.append(Finding(
                "deploy-split", "critical" if current["status"] in BAD_STATUSES else "warning",
                "machines are split across releases: "
                + ", ".join(f"v{v} on {len(ids)}" for v, ids in sorted(by_rel.items())),
                f"only some machines run v{cur}: users get different versions depending on the "
                "machine. Finish the deploy (`fly deploy`) or roll back every machine "
                "(rollback runbook).",
                [f"v{v}: {', '.join(ids)}" for v, ids in sorted(by_rel.items())], source="fly-machines"))
        elif cur not in by_rel and current["status"] not in BAD_STATUSES:
            only = next(iter(by_rel))
            out.append(Finding(
                "deploy-not-rolled-out", "warning",
                f"no started machine runs the current release v{cur} (all on v{only})",
                "the release exists but was not rolled out to the machines; check `fly status`",
                source="fly-machines"))
    recent = current is not None and (_age(current["created_at"], now) or RECENT) < RECENT
    if degraded or len(critical_checks):
        worst = "critical" if any(f.severity == "critical" for f in degraded) or \
            (len(started) and len(critical_checks) >= len(started)) else "warning"
        evidence = [f"{f.title}" for f in degraded] + [
            f"{r.id} ({r.region}, v{r.release}): {r.checks_critical} critical check(s)"
            for r in critical_checks.itertuples()]
        if recent and current is not None:
            cmd = rollback_command(app, good)
            out.append(Finding(
                "deploy-degraded", worst,
                f"health degraded after deploying v{current['version']} "
                f"{_fmt_age(_age(current['created_at'], now))}",
                ("the app is failing within a day of the release: roll back to "
                 f"v{good['version']} with the rollback runbook (`{cmd}`)" if good else
                 "no earlier complete release to roll back to: fix forward, or escalate"),
                evidence, source="app", escalate=0 if good else 2,
                escalate_reason="" if good else "no good release to roll back to: a complex "
                "deployment for the Platform Team"))
        else:
            out.append(Finding("deploy-unhealthy", worst,
                               "the app is unhealthy, but not right after a deploy",
                               "the last deploy is over a day old: run the not-responding "
                               "runbook rather than rolling back", evidence, source="app"))
    out.extend(f for f in health_findings if f.severity in ("ok", "info"))
    if current is not None and not any(rank(f.severity) >= rank("warning") or
                                       f.severity == "unknown" for f in out):
        n = len(started)
        out.insert(0, Finding("deploy-ok", "ok",
                              f"release v{current['version']} {current['status']}: "
                              f"{n}/{len(mdf)} machines started on it, /health OK",
                              "nothing to roll back"))
    return out, tables


def version(tables: dict[str, pd.DataFrame]) -> str:
    """The current release as the header shows it, e.g. ``v43``."""
    rel = tables.get("releases")
    if rel is None or rel.empty or rel.iloc[0]["version"] is None:
        return ""
    return f"v{int(rel.iloc[0]['version'])}"
