"""The application's own health endpoint, as the runbooks probe it: one row per probe,
what the probes say (reachability, 5xx, the seed's body, latency, clock skew) and a chart.

Used by ``health``, ``not-responding``, ``deploy`` and ``rollback``; pure functions of
:class:`~opslib.sources.http.ProbeResult` lists.
"""
from __future__ import annotations

from datetime import datetime

import pandas as pd
from matplotlib.figure import Figure

from ..findings import Finding
from ..sources.http import ProbeResult
from ..thresholds import classify
from ..times import parse_time

SKEW_WARN_S = 30.0  # PostgREST's JWT leeway; beyond it tokens fail as "issued at future"


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
    """One row per probe. ``skew_s`` is the app's timestamp against our clock at the time of
    that probe (the middle of its request); ``now`` only for probes recorded without it."""
    rows = []
    for i, r in enumerate(results, 1):
        at = r.measured_at or now
        ok, why, ts = body_check(r) if r.status is not None else (False, "", None)
        detail = r.error_detail if r.error else (why if r.status == 200 else "")
        rows.append({"probe": i, "status": r.status, "latency_ms": r.latency_ms,
                     "error": r.error, "body_ok": ok if r.status == 200 else None,
                     "server_time": ts.isoformat() if ts else None,
                     "skew_s": round((ts - at).total_seconds(), 1) if ts else None,
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
