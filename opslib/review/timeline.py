"""An incident's timeline: every run's calls and actions, and the notable events, in time order.

Rows come from the evidence only:

* ``call``    — each event of a run's ``timeline.jsonl`` (source, operation, outcome);
* ``run``     — the runner's "run started" / "run finished" events;
* ``action``  — every action in a run's ``findings.json`` with its status (planned, applied,
  refused, failed, skipped), at the time of its timeline event when the run recorded one
  (applied/refused actions do), else at the run's finish;
* ``finding`` — the first critical finding of each runbook in the incident, at the finish of
  the run that reported it (findings carry no time of their own);
* ``log``     — log signals: findings whose id starts with ``log-``/``logs.``/``log.``, at
  their ``first_seen`` time (a field, ``first_seen=`` in the evidence, or the first timestamp
  in the finding's text); a signal with no time is placed at the run's finish and says so.

The chart is inline SVG: one lane per runbook, each run a bar coloured by its severity, calls
as ticks (failed calls red), actions as diamonds (hollow planned, filled applied, red cross
refused/failed), critical findings as red dots and log signals as purple triangles.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from ..times import parse_time
from .html import SEV_COLOURS, esc
from .scan import RunSummary

LOG_PREFIXES = ("log-", "logs.", "log.")
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?")
_FIRST_SEEN = re.compile(r"first_seen=(\S+)")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass
class Row:
    ts: datetime | None
    kind: str  # run | call | action | finding | log
    run: RunSummary
    what: str
    outcome: str = ""
    detail: str = ""
    severity: str = ""
    notable: bool = False
    timed: bool = True  # False: no time of its own, placed at the run's finish
    status: str = ""  # actions: planned | applied | refused | failed | skipped

    @property
    def error(self) -> bool:
        o = self.outcome.lower()
        return self.kind == "call" and (o.startswith("error") or o.startswith("http 5"))


def is_log_signal(finding: dict) -> bool:
    return str(finding.get("id", "")).startswith(LOG_PREFIXES)


def signal_time(finding: dict) -> datetime | None:
    """When a log signal was first seen, from the finding's own words (never guessed)."""
    for key in ("first_seen", "ts"):
        t = parse_time(finding.get(key))
        if t:
            return t
    texts = [*finding.get("evidence", []), finding.get("detail", ""), finding.get("title", "")]
    for text in texts:
        m = _FIRST_SEEN.search(str(text))
        if m and parse_time(m.group(1)):
            return parse_time(m.group(1))
    for text in texts:
        m = _ISO.search(str(text))
        if m and parse_time(m.group(0)):
            return parse_time(m.group(0))
    return None


def incident_rows(runs: list[RunSummary]) -> list[Row]:
    """Every row of the incident's timeline, sorted by time (rows without time last)."""
    rows: list[Row] = []
    first_critical: dict[str, RunSummary] = {}
    for run in sorted(runs, key=lambda r: r.sort_time):
        if run.runbook not in first_critical and any(f.get("severity") == "critical"
                                                     for f in run.findings):
            first_critical[run.runbook] = run
    for run in runs:
        end = parse_time(run.finished_at) or parse_time(run.started_at)
        action_times: dict[str, datetime] = {}
        for ev in run.events:
            ts = parse_time(ev.get("ts"))
            src = ev.get("source", "")
            if src == "actions":
                if ts and ev.get("target"):
                    action_times.setdefault(ev["target"], ts)
                continue  # shown as the action itself, with its command
            if src == "runner":
                rows.append(Row(ts, "run", run, f"{run.runbook}: {ev.get('operation', '')}",
                                ev.get("outcome", ""), notable=True))
                continue
            dur = ev.get("duration_ms")
            detail = ev.get("target", "")
            if isinstance(dur, (int, float)):
                detail = f"{detail} ({dur:g} ms)".strip()
            rows.append(Row(ts, "call", run, f"{src}: {ev.get('operation', '')}",
                            ev.get("outcome", ""), detail))
        for a in run.actions:
            ts = action_times.get(a.get("id", ""))
            rows.append(Row(ts or end, "action", run, a.get("title") or a.get("id", ""),
                            a.get("status", "planned"), a.get("command", ""), notable=True,
                            timed=ts is not None, status=a.get("status", "planned")))
        if first_critical.get(run.runbook) is run:
            f = next(f for f in run.findings if f.get("severity") == "critical")
            rows.append(Row(end, "finding", run, f"first critical finding of {run.runbook}: "
                            f"{f.get('title', '')}", "critical", f.get("detail", ""),
                            severity="critical", notable=True, timed=False))
        for f in run.findings:
            if is_log_signal(f) and f.get("severity") not in ("ok", "info"):
                ts = signal_time(f)
                rows.append(Row(ts or end, "log", run, f"log signal: {f.get('title', '')}",
                                f.get("severity", ""), f.get("detail", ""),
                                severity=f.get("severity", ""), notable=True, timed=ts is not None))
    order = {"run": 0, "log": 1, "call": 2, "finding": 3, "action": 4}
    rows.sort(key=lambda r: (r.ts is None, r.ts or _EPOCH, order.get(r.kind, 9)))
    return rows


# --------------------------------------------------------------------------- the chart
def _fmt(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%H:%M:%S")


@dataclass
class _Axis:
    """Piecewise time axis: stretches of activity, with long idle gaps cut to a fixed width."""

    segments: list[tuple[datetime, datetime, float, float]]  # (t0, t1, x0, width)
    gaps: list[tuple[float, timedelta]]  # (x of the cut, idle time cut out)

    def x(self, t: datetime) -> float:
        for t0, t1, x0, w in self.segments:
            if t <= t1 or (t0, t1, x0, w) == self.segments[-1]:
                if t < t0:
                    return x0
                span = (t1 - t0).total_seconds()
                frac = 0.5 if span <= 0 else min(1.0, (t - t0).total_seconds() / span)
                return x0 + frac * w
        return self.segments[-1][2] + self.segments[-1][3]  # pragma: no cover


GAP_W = 26.0
MIN_SEG_W = 44.0
MAX_SEGMENTS = 12


def build_axis(intervals: list[tuple[datetime, datetime]], left: float, width: float) -> _Axis:
    """Merge activity intervals; idle gaps longer than the typical run are cut out."""
    ivs = sorted(intervals)
    durations = sorted((b - a).total_seconds() for a, b in ivs)
    typical = durations[len(durations) // 2] if durations else 0.0
    threshold = max(10.0, 2 * typical)
    merged: list[list[datetime]] = []
    for a, b in ivs:
        if merged and (a - merged[-1][1]).total_seconds() <= threshold:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    while len(merged) > MAX_SEGMENTS:  # too many pieces: close the smallest gap
        i = min(range(len(merged) - 1), key=lambda k: merged[k + 1][0] - merged[k][1])
        merged[i][1] = max(merged[i][1], merged[i + 1][1])
        del merged[i + 1]
    avail = width - GAP_W * (len(merged) - 1)
    spans = [(b - a).total_seconds() for a, b in merged]
    extra = max(0.0, avail - MIN_SEG_W * len(merged))
    total = sum(spans)
    widths = [MIN_SEG_W + (extra * sp / total if total > 0 else extra / len(merged))
              for sp in spans]
    segments, gaps, x = [], [], left
    for k, ((a, b), w) in enumerate(zip(merged, widths)):
        if k:
            gaps.append((x + GAP_W / 2, a - merged[k - 1][1]))
            x += GAP_W
        segments.append((a, b, x, w))
        x += w
    return _Axis(segments, gaps)


def _gap_text(d: timedelta) -> str:
    s = int(d.total_seconds())
    if s >= 86400:
        return f"{s // 86400}d{(s % 86400) // 3600}h"
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s"


def chart_svg(runs: list[RunSummary], rows: list[Row], *, width: int = 1100) -> str:
    """The incident as inline SVG (no script; every text escaped).

    Time runs left to right in stretches of activity; an idle gap longer than twice the
    typical run is cut out and marked with a zig-zag and the time it lasted.
    """
    spans = []
    for r in runs:
        a, b = parse_time(r.started_at), parse_time(r.finished_at)
        if a:
            spans.append((r, a, max(b or a, a)))
    if not spans:
        return '<p class="muted">No run has a start time: nothing to chart.</p>'
    intervals = [(a, b) for _, a, b in spans]
    intervals += [(r.ts, r.ts) for r in rows if r.ts and r.kind in ("action", "finding", "log")]
    lanes = sorted({r.runbook or "?" for r, _, _ in spans}
                   | {r.run.runbook or "?" for r in rows if r.ts and r.kind == "log"})
    left, right, lane_h, top = 150, 20, 34, 30
    axis = build_axis(intervals, left, width - left - right)
    x = axis.x
    height = top + lane_h * len(lanes) + 70
    lo, hi = axis.segments[0][0], axis.segments[-1][1]

    def y(runbook: str) -> float:
        return top + lanes.index(runbook or "?") * lane_h

    bottom = top + lane_h * len(lanes)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" class="timeline-chart">',
           f'<title>Incident timeline from {esc(_fmt(lo))} to {esc(_fmt(hi))} UTC</title>',
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>']
    last_label = -1e9
    for t0, t1, x0, w in axis.segments:
        for t, xx in ((t0, x0), (t1, x0 + w)):
            out.append(f'<line x1="{xx:.1f}" y1="{top - 6}" x2="{xx:.1f}" y2="{bottom}" '
                       'stroke="#e6e6e6"/>')
            if xx - last_label >= 56:
                anchor = "end" if xx > width - right - 30 else "middle"
                out.append(f'<text x="{xx:.1f}" y="{top - 10}" font-size="11" '
                           f'text-anchor="{anchor}" fill="#555">{esc(_fmt(t))}</text>')
                last_label = xx
    for gx, idle in axis.gaps:
        zig = " ".join(f"L{gx + (4 if i % 2 else -4):.1f},{top + i * 6}"
                       for i in range(1, int((bottom - top) / 6) + 1))
        out.append(f'<path d="M{gx:.1f},{top} {zig}" fill="none" stroke="#9e9e9e"/>')
        out.append(f'<text x="{gx:.1f}" y="{bottom + 14}" font-size="10" text-anchor="middle" '
                   f'fill="#777">+{esc(_gap_text(idle))}</text>')
    for lane in lanes:
        out.append(f'<text x="{left - 8}" y="{y(lane) + 20}" font-size="12" text-anchor="end" '
                   f'fill="#222">{esc(lane)}</text>')
    for r, a, b in spans:
        x0, x1 = x(a), x(b)
        colour = SEV_COLOURS.get(r.severity, SEV_COLOURS["unknown"])
        dash = '' if r.status == "ok" else ' stroke="#6a1b9a" stroke-width="2" stroke-dasharray="4 2"'
        out.append(f'<rect x="{x0:.1f}" y="{y(r.runbook) + 8}" width="{max(x1 - x0, 3):.1f}" '
                   f'height="16" fill="{colour}" fill-opacity="0.35"{dash}>'
                   f'<title>{esc(r.name)}: {esc(r.status)}, severity {esc(r.severity)}</title></rect>')
    for row in rows:
        if row.ts is None:
            continue
        xx, yy = x(row.ts), y(row.run.runbook)
        tip = f"{_fmt(row.ts)} {row.kind}: {row.what} {row.outcome}"
        if row.kind == "call":
            colour = "#c62828" if row.error else "#455a64"
            out.append(f'<line x1="{xx:.1f}" y1="{yy + 10}" x2="{xx:.1f}" y2="{yy + 22}" '
                       f'stroke="{colour}" stroke-width="1"><title>{esc(tip)}</title></line>')
        elif row.kind == "action":
            out.append(_action_mark(xx, yy + 5, row.status, tip))
        elif row.kind == "finding":
            out.append(f'<circle cx="{xx:.1f}" cy="{yy + 16}" r="5" fill="#b71c1c">'
                       f'<title>{esc(tip)}</title></circle>')
        elif row.kind == "log":
            out.append(f'<path d="M{xx - 5:.1f},{yy + 30} L{xx + 5:.1f},{yy + 30} L{xx:.1f},'
                       f'{yy + 22} Z" fill="#6a1b9a"><title>{esc(tip)}</title></path>')
    ly = bottom + 34
    legend = [("tick", "call"), ("tickerr", "failed call"), ("planned", "action planned"),
              ("applied", "action applied"), ("refused", "refused / failed"),
              ("crit", "first critical finding"), ("log", "log signal")]
    lx = left
    for kind, label in legend:
        if kind in ("tick", "tickerr"):
            colour = "#c62828" if kind == "tickerr" else "#455a64"
            out.append(f'<line x1="{lx}" y1="{ly - 9}" x2="{lx}" y2="{ly + 3}" stroke="{colour}"/>')
        elif kind in ("planned", "applied", "refused"):
            out.append(_action_mark(lx, ly - 9, kind, label))
        elif kind == "crit":
            out.append(f'<circle cx="{lx}" cy="{ly - 3}" r="5" fill="#b71c1c"/>')
        else:
            out.append(f'<path d="M{lx - 5},{ly + 2} L{lx + 5},{ly + 2} L{lx},{ly - 7} Z" '
                       'fill="#6a1b9a"/>')
        out.append(f'<text x="{lx + 10}" y="{ly + 1}" font-size="11" fill="#333">{esc(label)}</text>')
        lx += 18 + 7 * len(label) + 14
    out.append(f'<text x="{left}" y="{ly + 20}" font-size="11" fill="#777">bars: one per run, '
               'coloured by severity (dashed: the run did not complete); times UTC; zig-zags '
               'cut out idle time</text>')
    out.append("</svg>")
    return "".join(out)


def _action_mark(x: float, y: float, status: str, tip: str) -> str:
    if status in ("refused", "failed"):
        return (f'<path d="M{x - 5:.1f},{y:.1f} L{x + 5:.1f},{y + 10:.1f} M{x + 5:.1f},{y:.1f} '
                f'L{x - 5:.1f},{y + 10:.1f}" stroke="#c62828" stroke-width="3">'
                f'<title>{esc(tip)}</title></path>')
    fill = "#2e7d32" if status == "applied" else "#fff"
    stroke = "#2e7d32" if status == "applied" else "#1565c0"
    return (f'<path d="M{x:.1f},{y - 1:.1f} L{x + 6:.1f},{y + 5:.1f} L{x:.1f},{y + 11:.1f} '
            f'L{x - 6:.1f},{y + 5:.1f} Z" fill="{fill}" stroke="{stroke}" stroke-width="2">'
            f'<title>{esc(tip)}</title></path>')


__all__ = ["Row", "incident_rows", "chart_svg", "is_log_signal", "signal_time"]
