"""Charts of a `LogReport`, as matplotlib `Figure` objects (object API, no pyplot state).

Nothing is saved here; the caller decides where figures go. Every function returns a figure
even when there is nothing to draw (it then says so), so notebooks never fail on quiet logs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .report import LogReport

SEVERITY_COLORS = {"critical": "#c62828", "warning": "#ef8f00", "ok": "#2e7d32"}
CATEGORY_COLORS = {"errors": "#d62728", "auth": "#9467bd", "database": "#1f77b4"}


def _empty(fig: Figure, title: str, why: str) -> Figure:
    ax = fig.add_subplot(1, 1, 1)
    ax.set_title(title)
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, color="#666666")
    ax.set_axis_off()
    return fig


def _resample(df: pd.DataFrame, max_points: int = 400) -> tuple[pd.DataFrame, str]:
    """Sum minutes into wider bins when the window is long, so bars stay readable."""
    if len(df) <= max_points:
        return df, "minute"
    minutes = int(np.ceil(len(df) / max_points))
    return df.resample(f"{minutes}min").sum(), f"{minutes} minutes"


def categories_per_minute(report: LogReport, figsize: tuple[float, float] = (11, 3.6)) -> Figure:
    """Stacked per-minute counts of the seed's categories (errors, auth, database)."""
    fig = Figure(figsize=figsize, layout="constrained")
    title = "Seed grep categories per minute"
    df = report.per_minute
    if df.empty:
        return _empty(fig, title, "no timestamped lines")
    data, unit = _resample(df[list(CATEGORY_COLORS)])
    ax = fig.add_subplot(1, 1, 1)
    x = data.index.to_pydatetime()
    bottom = np.zeros(len(data))
    width = (data.index[1] - data.index[0]) * 0.9 if len(data) > 1 else pd.Timedelta(minutes=1)
    for col, color in CATEGORY_COLORS.items():
        vals = data[col].to_numpy()
        ax.bar(x, vals, width=width, bottom=bottom, color=color, label=col, align="edge")
        bottom = bottom + vals
    ax.set_title(f"{title} (lines per {unit}; a line can count in more than one)")
    ax.set_ylabel("lines")
    ax.legend(loc="upper left", frameon=False, ncols=3)
    ax.grid(axis="y", alpha=0.3)
    fig.autofmt_xdate()
    return fig


def signals_timeline(report: LogReport, figsize: tuple[float, float] | None = None, max_signals: int = 20) -> Figure:
    """Each signal on its own row; a dot per minute with occurrences, sized by count."""
    sigs = [s for s in report.signals if s["per_minute"]][:max_signals]
    fig = Figure(figsize=figsize or (11, 1.2 + 0.42 * max(1, len(sigs))), layout="constrained")
    title = "Incident signals over time"
    if not sigs:
        return _empty(fig, title, "no signals with timestamps")
    ax = fig.add_subplot(1, 1, 1)
    peak = max(max(s["per_minute"].values()) for s in sigs)
    for row, s in enumerate(reversed(sigs)):
        ts = pd.to_datetime(list(s["per_minute"].keys()), utc=True).to_pydatetime()
        counts = np.array(list(s["per_minute"].values()), dtype=float)
        sizes = 20 + 180 * np.sqrt(counts / peak)
        ax.scatter(ts, np.full(len(ts), row), s=sizes, color=SEVERITY_COLORS[s["severity"]], alpha=0.75,
                   edgecolors="none")
    ax.set_yticks(range(len(sigs)))
    ax.set_yticklabels([f"{s['id']} ({s['count']:,}) -> {s['runbook']}" for s in reversed(sigs)], fontsize=8)
    first, last = report.window
    if first is not None and last is not None and last > first:
        ax.set_xlim(first.to_pydatetime(), last.to_pydatetime())
    ax.set_title(f"{title} (dot size ~ per-minute count; red critical, orange warning, green ok)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.autofmt_xdate()
    return fig


def top_templates(report: LogReport, n: int = 15, figsize: tuple[float, float] | None = None,
                  label_chars: int = 90) -> Figure:
    """Horizontal bars of the most frequent message templates."""
    df = report.templates.head(n)
    fig = Figure(figsize=figsize or (11, 1.0 + 0.32 * max(1, len(df))), layout="constrained")
    title = "Top message templates (ids, numbers, UUIDs, hex and IPs masked as <*>)"
    if df.empty:
        return _empty(fig, title, "no messages")
    ax = fig.add_subplot(1, 1, 1)
    labels = [t if len(t) <= label_chars else t[: label_chars - 1] + "…" for t in df["template"]]
    y = np.arange(len(df))[::-1]
    ax.barh(y, df["count"].to_numpy(), color="#4c72b0")
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=7, family="monospace")
    ax.set_xlabel("lines")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return fig


def instance_heatmap(report: LogReport, measure: str = "lines", figsize: tuple[float, float] | None = None,
                     max_columns: int = 240) -> Figure:
    """Instances (rows) by time (columns), coloured by ``lines`` or ``errors`` per bin."""
    if measure not in ("lines", "errors"):
        raise ValueError("measure must be 'lines' or 'errors'")
    df = report.instance_minute
    rows = sorted(df["instance"].unique()) if not df.empty else []
    fig = Figure(figsize=figsize or (11, 1.3 + 0.35 * max(1, len(rows))), layout="constrained")
    title = f"{measure.capitalize()} per instance over time"
    if df.empty:
        return _empty(fig, title, "no timestamped lines with an instance")
    grid = df.pivot_table(index="instance", columns="minute", values=measure, aggfunc="sum", fill_value=0)
    full = pd.date_range(grid.columns.min(), grid.columns.max(), freq="1min")
    grid = grid.reindex(columns=full, fill_value=0)
    step = max(1, int(np.ceil(grid.shape[1] / max_columns)))
    if step > 1:
        grid = grid.T.resample(f"{step}min").sum().T
    ax = fig.add_subplot(1, 1, 1)
    img = ax.imshow(grid.to_numpy(), aspect="auto", cmap="magma_r" if measure == "errors" else "viridis",
                    interpolation="nearest")
    ax.set_yticks(range(len(grid.index)))
    ax.set_yticklabels([i or "(none)" for i in grid.index], fontsize=8, family="monospace")
    ticks = np.linspace(0, grid.shape[1] - 1, num=min(8, grid.shape[1])).astype(int)
    ax.set_xticks(ticks)
    ax.set_xticklabels([grid.columns[t].strftime("%m-%d %H:%M") for t in ticks], fontsize=8, rotation=30)
    fig.colorbar(img, ax=ax, label=f"{measure} per {step} min")
    ax.set_title(title)
    return fig
