"""Monitoring & Alerts (seed "Key Metrics to Monitor"): the seed's table, evaluated.

Response time (p95 at Fly's edge), error rate (5xx at the edge), memory and CPU (worst
machine) come from Prometheus over the window; active connections come from Postgres
(client connections against the slots the app can use). Each metric gets OK / WARNING /
CRITICAL against the seed's thresholds (overridable per run), in a table shaped like the
seed's, with charts over the window.

The seed's Log Analysis greps (errors, auth, database) are counted on the app's recent logs
and read as signals, each pointing at the runbook that handles it; the 5xx the app's own
access logs show are compared with the edge's error rate, which tells errors the app answered
from errors Fly's proxy answered for it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from ..assess import recent_logs
from ..charting import time_axis
from ..config import Target
from ..findings import Finding
from ..logscan import LogReport
from ..promql import MetricsData, queries
from ..reads import Read, gather
from ..session import Session
from ..sources import postgres
from ..sources import prometheus as prom
from ..thresholds import THRESHOLD_LABELS, classify
from ..times import parse_duration

# seed metric -> the query that measures it and how its value is read
METRICS: dict[str, dict[str, Any]] = {
    "response_time_ms": {"query": "p95_latency_ms", "unit": "ms", "per": "app",
                         "what": "response time (p95 at Fly's edge)"},
    "error_rate_pct": {"query": "error_rate_pct", "unit": "%", "per": "app",
                       "what": "error rate (5xx at Fly's edge)"},
    "memory_pct": {"query": "memory_pct", "unit": "%", "per": "machine",
                   "what": "memory usage (worst machine)"},
    "cpu_pct": {"query": "cpu_pct", "unit": "%", "per": "machine",
                "what": "CPU usage (worst machine)"},
}
CONTEXT_QUERIES = ("concurrency",)
CONNECTIONS_SQL = """
SELECT count(*) FILTER (WHERE backend_type = 'client backend')              AS connections,
       count(*) FILTER (WHERE backend_type = 'client backend' AND state = 'active'
                          AND pid <> pg_backend_pid())                        AS active,
       current_setting('max_connections')::int                                AS max_connections,
       current_setting('superuser_reserved_connections')::int                 AS reserved
FROM pg_stat_activity
"""
SEED_TABLE_COLUMNS = ["Metric", "Warning", "Critical", "Now", "Peak", "Status"]
_UNIT_TEXT = {"response_time_ms": "ms", "error_rate_pct": "%", "memory_pct": "%", "cpu_pct": "%"}


@dataclass(frozen=True)
class MonitoringData(MetricsData):
    @property
    def metrics(self) -> dict[str, prom.QueryResult | Exception]:
        return prom.results(self.readings, QUERY_NAMES)


QUERY_NAMES = tuple(m["query"] for m in METRICS.values()) + CONTEXT_QUERIES


def collect(session: Session, target: Target, *, window: str = "6h", step: str = "2m",
            rate: str = "5m", promql: dict[str, str] | None = None,
            log_window_minutes: float = recent_logs.DEFAULT_WINDOW_MIN,
            log_max_pages: int = recent_logs.DEFAULT_MAX_PAGES) -> MonitoringData:
    """The seed's key metrics over ``window`` from Prometheus, connections from Postgres and
    the app's recent logs, at once (``log_window_minutes`` of 0 reads no logs).

    Raises:
        UsageError: a bad window, step, rate or promql override (before any call is made).
    """
    qs = queries(target.app, rate=rate, window=window, overrides=promql)
    reads = [*prom.range_reads({n: qs[n] for n in QUERY_NAMES}, now=session.now(),
                               window=window, step=step, context=CONTEXT_QUERIES),
             Read("connections", "client connections against max_connections (Postgres)",
                  lambda pg: pg.query("monitoring.connections", CONNECTIONS_SQL),
                  postgres.POSTGRES)]
    reads += recent_logs.recent(session, log_window_minutes, log_max_pages)
    return MonitoringData(window, step, qs, gather(session, target, reads))


# --------------------------------------------------------------------------- evaluation
@dataclass
class MetricRow:
    """One row of the seed's table."""

    key: str
    now: float | None
    peak: float | None
    where: str = ""  # the machine, for per-machine metrics
    status: str = "unknown"  # ok | warning | critical | unknown | skipped
    finding: Finding | None = None


def _series(data: MonitoringData, name: str) -> pd.DataFrame | None:
    got = data.metrics.get(name)
    if not isinstance(got, prom.QueryResult) or got.empty:
        return None
    df = got.frame.dropna(subset=["value"])
    df = df[df["value"].map(math.isfinite)]
    return df if len(df) else None


def _fmt(key: str, value: float | None) -> str:
    if value is None:
        return "—"
    if key == "response_time_ms":
        return f"{value / 1000:.1f} s" if value >= 1000 else f"{value:.0f} ms"
    if key == "connections_pct":
        return f"{value:.0f}%"
    return f"{value:.1f}%" if value < 10 else f"{value:.0f}%"


def _limit_text(key: str, value: float) -> str:
    if key == "response_time_ms":
        return f"> {value:g}ms"
    if key == "connections_pct":
        return f"> {value:g}% of pool"
    return f"> {value:g}%"


def evaluate(data: MonitoringData, app: str, limits: dict[str, tuple[float, float]],
             now: datetime | None = None) -> list[MetricRow]:
    """Each of the seed's five metrics: now, peak over the window, status and its finding.

    "Now" is the latest sample, and only a recent one (within two steps or 5 min of ``now``;
    of the newest sample when ``now`` is not given): a series that stopped reporting, or a
    machine replaced hours ago, has no current value.
    """
    rows: list[MetricRow] = []
    fresh_for = pd.Timedelta(seconds=max(2 * parse_duration(data.step), 300))
    prom_skipped = any(r.skipped for r in data.readings.values() if r.source == "Prometheus")
    for key, spec in METRICS.items():
        qname = spec["query"]
        got = data.metrics.get(qname)
        label = THRESHOLD_LABELS[key]
        if prom_skipped:
            rows.append(MetricRow(key, None, None, status="skipped"))
            continue
        if isinstance(got, Exception):
            rows.append(MetricRow(key, None, None, status="unknown",
                                    finding=prom.error_finding(qname, got, what=spec["what"])))
            continue
        df = _series(data, qname)
        if df is None:
            f = prom.no_data_finding(got, app=app, window=data.window, what=spec["what"]) if isinstance(got, prom.QueryResult) else None
            rows.append(MetricRow(key, None, None, status="unknown", finding=f))
            continue
        newest = df["timestamp"].max()
        cutoff = (pd.Timestamp(now) if now is not None else newest) - fresh_for
        peak = float(df["value"].max())
        if newest < cutoff:
            rows.append(MetricRow(key, None, peak, status="unknown", finding=Finding(
                f"stale-{qname.replace('_', '-')}", "unknown",
                f"no recent data for {spec['what']}: the last sample is from "
                f"{newest:%Y-%m-%d %H:%M} UTC",
                "the series stopped reporting: are the machines running, and is the metrics "
                "pipeline healthy? (the not-responding runbook checks the machines)",
                [f"query: {data.queries[qname]}"], source="prometheus")))
            continue
        if spec["per"] == "machine" and "instance" in df.columns:
            latest = df.sort_values("timestamp").groupby("instance").tail(1)
            latest = latest[latest["timestamp"] >= cutoff]
            top = latest.sort_values("value", ascending=False).iloc[0]
            value, where = float(top["value"]), str(top["instance"])
        else:
            last = df[df["timestamp"] == newest]
            value, where = float(last["value"].max()), ""
        status = classify(value, limits[key])
        warn, crit = limits[key]
        on = f" on {where}" if where else ""
        finding = Finding(
            f"metric-{key.rsplit('_', 1)[0].replace('_', '-')}", status,
            (f"{label} {_fmt(key, value)}{on} is above the {status} threshold "
             f"({_limit_text(key, crit if status == 'critical' else warn)})"
             if status in ("warning", "critical") else
             f"{label} {_fmt(key, value)}{on}: within thresholds"),
            f"{spec['what']}; warning {_limit_text(key, warn)}, critical {_limit_text(key, crit)}; "
            f"peak over the last {data.window}: {_fmt(key, peak)}"
            + (f". {NEXT_RUNBOOK[key]}" if status in ("warning", "critical") else ""),
            [f"query: {data.queries[qname]}"], source="prometheus")
        rows.append(MetricRow(key, value, peak, where, status, finding))
    rows.append(_connections_reading(data, limits))
    return rows


NEXT_RUNBOOK = {
    "response_time_ms": "Slow responses: check memory and CPU below, then the database runbook",
    "error_rate_pct": "Errors: run the not-responding runbook (and the logs runbook)",
    "memory_pct": "Run the memory runbook",
    "cpu_pct": "Sustained CPU: scale the VM up (`fly scale vm …`) or out (`fly scale count …`)",
    "connections_pct": "Run the database runbook (look for leaks: idle in transaction)",
}


# connection errors that mean DATABASE_URL is wrong here, not that the database is in trouble
OUR_CONFIG = ("auth_failed", "dns", "pooler_tenant", "no_database", "address_not_allowed",
              "banned")


def _connections_reading(data: MonitoringData, limits: dict[str, tuple[float, float]]) -> MetricRow:
    key = "connections_pct"
    conn = data.readings["connections"]
    if conn.skipped:
        return MetricRow(key, None, None, status="skipped")
    if conn.failed:
        e = conn.error
        if e.kind in OUR_CONFIG:
            f = Finding("metric-connections", "unknown",
                        f"{THRESHOLD_LABELS[key]}: could not connect ({e.kind})",
                        f"{e.message}. {e.hint}", source="postgres")
        else:
            f = Finding("metric-connections", "critical",
                        f"{THRESHOLD_LABELS[key]}: the database refuses connections ({e.kind})",
                        f"{e.message}. {e.hint}", source="postgres", escalate=2,
                        escalate_reason="database problems are handled by the Platform Team")
        return MetricRow(key, None, None, status=f.severity, finding=f)
    df = conn.value
    if df is None or df.empty:
        return MetricRow(key, None, None, status="unknown",
                       finding=Finding("metric-connections", "unknown",
                                       "the database returned no row for the connection count",
                                       source="postgres"))
    row = df.iloc[0]
    usable = int(row["max_connections"]) - int(row["reserved"])
    conns = int(row["connections"])
    pct = 100.0 * conns / usable if usable > 0 else math.nan
    status = classify(pct, limits[key])
    warn, crit = limits[key]
    f = Finding("metric-connections", status,
                f"{THRESHOLD_LABELS[key]} {conns}/{usable} ({pct:.0f}%)"
                + (f" is above the {status} threshold "
                   f"({_limit_text(key, crit if status == 'critical' else warn)})"
                   if status in ("warning", "critical") else ": within thresholds"),
                f"client connections (this one included; {int(row['active'])} running a query) "
                f"against max_connections {int(row['max_connections'])} minus "
                f"{int(row['reserved'])} reserved for superusers; warning "
                f"{_limit_text(key, warn)}, critical {_limit_text(key, crit)}"
                + (f". {NEXT_RUNBOOK[key]}" if status in ("warning", "critical") else ""),
                source="postgres",
                **({"escalate": 2, "escalate_reason": "database problems (connection pool near "
                    "exhaustion) are handled by the Platform Team"} if status == "critical" else {}))
    return MetricRow(key, pct, None, "", status, f)


def seed_table(rows: list[MetricRow], limits: dict[str, tuple[float, float]]) -> pd.DataFrame:
    """The seed's "Key Metrics to Monitor" table with the values and a status per metric."""
    table = []
    for r in rows:
        warn, crit = limits[r.key]
        table.append({"Metric": THRESHOLD_LABELS[r.key].replace(" (of pool)", ""),
                     "Warning": _limit_text(r.key, warn), "Critical": _limit_text(r.key, crit),
                     "Now": _fmt(r.key, r.now) + (f" ({r.where})" if r.where else ""),
                     "Peak": _fmt(r.key, r.peak) if r.peak is not None else "—",
                     "Status": {"unknown": "NO DATA", "skipped": "SKIPPED"}.get(r.status,
                                                                                r.status.upper())})
    return pd.DataFrame(table, columns=SEED_TABLE_COLUMNS)


def seed_markdown(table: pd.DataFrame) -> str:
    """The same table as markdown, laid out like the seed's."""
    lines = ["| " + " | ".join(SEED_TABLE_COLUMNS) + " |",
             "|" + "|".join("-" * (len(c) + 2) for c in SEED_TABLE_COLUMNS) + "|"]
    for row in table.itertuples(index=False):
        cells = list(row)
        cells[-1] = f"**{cells[-1]}**" if cells[-1] in ("WARNING", "CRITICAL") else cells[-1]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def findings(rows: list[MetricRow]) -> list[Finding]:
    """The findings of every evaluated metric (skipped sources are said by the run itself)."""
    return [r.finding for r in rows if r.finding is not None]


# --------------------------------------------------------------------------- logs
def assess_logs(report: LogReport | None, rows: list[MetricRow],
                limits: dict[str, tuple[float, float]]) -> list[Finding]:
    """The 5xx in the app's own access logs against the edge's error rate: the same order of
    magnitude means the app answered the errors itself; an edge failing with the app's logs
    clean means Fly's proxy answered for it (machines down, not listening, over their limits)."""
    if report is None or not report.http.get("responses"):
        return []
    edge = next((r for r in rows if r.key == "error_rate_pct"), None)
    app_pct = 100.0 * float(report.http.get("error_rate") or 0.0)
    n = int(report.http["responses"])
    sig = report.signal("http_5xx") or {}
    where = ", ".join(sig.get("instances", [])[:3])
    warn = limits["error_rate_pct"][0]
    evidence = [f"access logs: {n:,} responses, 5xx {app_pct:.1f}%"
                + (f" (most on {where})" if where else "")]
    if edge is not None and edge.now is not None:
        evidence.append(f"edge: 5xx {edge.now:.1f}% now")
    if edge is not None and edge.status in ("warning", "critical") and edge.now is not None:
        if app_pct >= edge.now / 3:
            return [Finding(
                "monitoring-logs-5xx", "info",
                f"the app's own access logs show {app_pct:.1f}% 5xx (edge {edge.now:.1f}%): the "
                "app answers these errors itself" + (f", mostly on {where}" if where else ""),
                "open the not-responding runbook, and the logs runbook for what the app "
                "printed around them", evidence, source="logs")]
        return [Finding(
            "monitoring-logs-5xx", "warning",
            f"the edge fails {edge.now:.1f}% of requests but the app's access logs show "
            f"{app_pct:.1f}% 5xx: Fly's proxy answers the errors",
            "requests that never reached the app: machines stopped or restarting, not "
            "listening on internal_port, or over their concurrency limits — run the "
            "not-responding runbook", evidence, source="logs")]
    if app_pct > warn:
        return [Finding(
            "monitoring-logs-5xx", "warning",
            f"the app's access logs show {app_pct:.1f}% 5xx in the last "
            f"{_log_minutes(report)} min while the edge's error rate is "
            + (f"{edge.now:.1f}%" if edge is not None and edge.now is not None else "not known"),
            "a recent burst the edge's rate over its rate() window does not show yet, or a "
            "metrics pipeline without the app's series; see the not-responding runbook",
            evidence, source="logs")]
    return []


def _log_minutes(report: LogReport) -> int:
    first, last = report.window
    return int(round((last - first).total_seconds() / 60)) if first is not None and last is not None else 0


# --------------------------------------------------------------------------- charts
_PALETTE = ("#1565c0", "#6a1b9a", "#00838f", "#2e7d32", "#ad1457", "#4e342e")


def metrics_chart(data: MonitoringData, limits: dict[str, tuple[float, float]]) -> Figure:
    """The four time-series metrics over the window, each with its warning/critical lines."""
    fig = Figure(figsize=(11, 6.4))
    axes = fig.subplots(2, 2).ravel()
    for ax, (key, spec) in zip(axes, METRICS.items()):
        df = _series(data, spec["query"])
        if df is None:
            ax.text(0.5, 0.5, "no data (see findings)", transform=ax.transAxes, ha="center")
        else:
            group = "instance" if spec["per"] == "machine" and "instance" in df.columns else None
            parts = df.groupby(group, sort=True) if group else [("", df)]
            for i, (name, part) in enumerate(parts):
                part = part.sort_values("timestamp")
                ax.plot(part["timestamp"], part["value"], color=_PALETTE[i % len(_PALETTE)],
                        linewidth=1.4, label=str(name) if group else None)
            if group:
                ax.legend(loc="upper left", fontsize=7)
        warn, crit = limits[key]
        ax.axhline(warn, color="#ef6c00", linestyle="--", linewidth=1)
        ax.axhline(crit, color="#c62828", linestyle="--", linewidth=1)
        ax.set_title(f"{THRESHOLD_LABELS[key]} ({_UNIT_TEXT[key]})", fontsize=10)
        ax.set_ylim(bottom=0)
        time_axis(ax)
    fig.suptitle(f"Key metrics, last {data.window} (dashed: warning / critical)", fontsize=11)
    fig.tight_layout()
    return fig


def concurrency_chart(data: MonitoringData) -> Figure:
    """Context, not judged: requests in flight per machine at Fly's proxy."""
    fig = Figure(figsize=(9, 2.8))
    ax = fig.subplots()
    df = _series(data, "concurrency")
    if df is None:
        ax.text(0.5, 0.5, "no concurrency data", transform=ax.transAxes, ha="center")
    else:
        col = "instance" if "instance" in df.columns else None
        for i, (name, part) in enumerate(df.groupby(col, sort=True) if col else [("all", df)]):
            part = part.sort_values("timestamp")
            ax.plot(part["timestamp"], part["value"], color=_PALETTE[i % len(_PALETTE)],
                    linewidth=1.2, label=str(name))
        ax.legend(loc="upper left", fontsize=7)
    ax.set_ylabel("in flight")
    ax.set_title("Fly proxy concurrency per machine (context)", fontsize=10)
    ax.set_ylim(bottom=0)
    time_axis(ax)
    return fig


def summary_line(rows: list[MetricRow], now: datetime) -> str:
    bad = [r for r in rows if r.status in ("warning", "critical")]
    blind = [THRESHOLD_LABELS[r.key] for r in rows if r.status in ("unknown", "skipped")]
    if not bad and len(blind) == len(rows):
        return "No key metric could be measured: the verdict is UNKNOWN (see what was skipped)."
    if not bad:
        return (f"The key metrics measured are within the seed's thresholds at {now:%H:%M} UTC"
                + (f"; not measured: {', '.join(blind)} (UNKNOWN)." if blind else "."))
    return "Outside the thresholds: " + "; ".join(
        f"{THRESHOLD_LABELS[r.key]} {_fmt(r.key, r.now)} ({r.status.upper()})" for r in bad) + "."
