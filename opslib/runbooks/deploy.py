"""Standard Deployment (seed "Deployment Procedures"): did the last deploy land, and is the
app healthy after it?

The seed's steps are ``fly deploy``, ``fly status`` and ``curl …/health``. This runbook does
the last two from data: the current release against the previous one (version, image,
status, time), which release each machine runs, and ``/health`` after the deploy. A failed or
interrupted release, machines split across releases, or a degraded app after the deploy are
findings; the remedy for a bad deploy is the ``rollback`` runbook, whose exact command is
named here. Diagnosis only: this runbook changes nothing.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from ..config import Target
from ..findings import Finding, rank
from ..session import Session
from ..times import parse_time
from ..sources.fly_platform import releases_frame
from . import health
from ._fly import ReleaseData, collect_releases, error_finding, machine_releases_frame

GOOD_STATUSES = ("complete",)
BAD_STATUSES = ("failed", "interrupted")
STUCK_AFTER = timedelta(minutes=15)  # a rolling deploy of a few machines takes minutes
RECENT = timedelta(hours=24)  # a degraded app this soon after a deploy points at the deploy
COMPARE_FIELDS = ["version", "status", "stable", "image_ref", "created_at", "user", "strategy",
                  "description"]


def collect(session: Session, target: Target, *, probes: int = 3, timeout: float = 5.0,
            limit: int = 10) -> ReleaseData:
    """Releases, machines and ``probes`` GETs of /health, concurrently."""
    return collect_releases(session, target, probes_n=probes, timeout=timeout, limit=limit)


# --------------------------------------------------------------------------- analysis
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
    probes_df = health.probes_frame(data.probes, now)
    tables = {"releases": rel, "machines": mdf, "probes": probes_df}
    if data.releases_error is not None:
        out.append(error_finding("deploy-releases-error", data.releases_error, app,
                                 "could not read releases"))
    if data.machines_error is not None:
        out.append(error_finding("deploy-machines-error", data.machines_error, app,
                                 "could not list machines"))
    current, previous = current_and_previous(rel)
    tables["comparison"] = comparison(current, previous)
    good = previous_good(rel, current)
    health_findings = health.assess_probes(probes_df, limits, health_url) if len(probes_df) else []
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


def next_step(findings: list[Finding], app: str) -> str:
    """One line: what to do after this runbook."""
    ids = {f.id: f for f in findings}
    if "deploy-degraded" in ids or "deploy-release-failed" in ids or "deploy-split" in ids:
        return (f"**Next:** run the rollback runbook: `make run issue=rollback app={app}` "
                "(it plans the rollback; nothing changes until you confirm its digest).")
    if "deploy-unhealthy" in ids:
        return f"**Next:** `make run issue=not-responding app={app}`."
    if any(f.severity == "unknown" for f in findings):
        return "**Next:** fix what stopped a check from running (see findings) and run again."
    return "**Next:** nothing: the deploy landed and the app is healthy."


# --------------------------------------------------------------------------- chart
_STATUS_COLOUR = {"complete": "#2e7d32", "failed": "#c62828", "interrupted": "#ef6c00",
                  "running": "#1565c0"}


def releases_chart(rel: pd.DataFrame, mdf: pd.DataFrame) -> Figure:
    """Release history (version over time, coloured by status) and machines per release."""
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(9, 3.2))
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    if not rel.empty:
        times = pd.to_datetime(rel["created_at"], utc=True, errors="coerce")
        colours = [_STATUS_COLOUR.get(s, "#757575") for s in rel["status"]]
        ax1.plot(times, rel["version"], color="#bdbdbd", linewidth=1, zorder=2)
        ax1.scatter(times, rel["version"], c=colours, s=40, zorder=3)
        for t, v, s in zip(times, rel["version"], rel["status"]):
            ax1.annotate(f"v{v} {s}", (t, v), xytext=(-4, 6), textcoords="offset points",
                         fontsize=7, ha="right")
        span = (times.max() - times.min()) or pd.Timedelta(hours=1)
        ax1.set_xlim(times.min() - span * 0.25, times.max() + span * 0.05)
        versions = rel["version"].dropna()
        ax1.set_ylim(versions.min() - 0.7, versions.max() + 0.7)
        for label in ax1.get_xticklabels():
            label.set_rotation(30)
            label.set_horizontalalignment("right")
    ax1.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax1.set_title("releases (green complete, red failed, orange interrupted)", fontsize=9)
    ax1.set_ylabel("version")
    if not mdf.empty:
        counts = mdf.groupby(["release", "state"]).size().unstack(fill_value=0)
        bottom = None
        for state in counts.columns:
            vals = counts[state].values
            ax2.bar([f"v{r}" for r in counts.index], vals, bottom=bottom, label=state,
                    color="#2e7d32" if state == "started" else "#9e9e9e")
            bottom = vals if bottom is None else bottom + vals
        ax2.legend(fontsize=7)
    ax2.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.set_title("machines per release")
    return fig
