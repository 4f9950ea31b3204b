"""Standard Deployment (seed "Deployment Procedures"): did the last deploy land, and is the
app healthy after it?

The seed's steps are ``fly deploy``, ``fly status`` and ``curl …/health``. This runbook does
the last two from data: the current release against the previous one (version, image,
status, time), which release each machine runs, and ``/health`` after the deploy. A failed or
interrupted release, machines split across releases, or a degraded app after the deploy are
findings; the remedy for a bad deploy is the ``rollback`` runbook, whose exact command is
named here. Diagnosis only: this runbook changes nothing.

Reading and judging the releases is :mod:`opslib.assess.releases` (``rollback`` decides on
the same); this module holds what only ``deploy`` says: the next step and its chart.
"""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from ..findings import Finding


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
