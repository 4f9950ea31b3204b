"""`LogReport`: the result of one analysis, as DataFrames for notebooks and a JSON summary.

DataFrame columns (all counts are lines unless said otherwise):

- ``per_minute``: index ``minute`` (UTC); ``lines, errors, auth, database, http_5xx`` and one
  column per raised signal (occurrences starting in that minute).
- ``by_instance`` / ``by_region``: index ``instance`` / ``region``; ``lines, errors, auth,
  database, http_5xx``. The empty name collects lines without one.
- ``instance_minute``: ``minute, instance, lines, errors`` (the per-instance heat map).
- ``status_mix``: index ``status``; ``count, share`` (of responses with a status).
- ``templates``: ``template, count, share, example`` (top templates by count).
- ``spikes``: ``minute, series, count, baseline, factor`` (minutes far above the window's
  median for that series).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, UTC
from typing import TYPE_CHECKING, Any

import numpy as np

from .proxy_codes import PROXY_CODES

if TYPE_CHECKING:  # pandas is imported while the kernels run (see analysis.analyze)
    import pandas as pd

CATEGORY_DEFINITIONS = {
    "errors": "error|exception|failed",
    "auth": "auth|unauthorized|401",
    "database": "database|connection|query",
}
SEVERITY_RANK = {"critical": 0, "warning": 1, "ok": 2}
# the seed's Monitoring & Alerts table: error rate warning > 1 %, critical > 5 %
ERROR_RATE_WARNING = 0.01
ERROR_RATE_CRITICAL = 0.05


def _iso(ts: Any) -> str | None:
    if ts is None or ts != ts:  # None, NaN, NaT
        return None
    if isinstance(ts, datetime):  # pandas' Timestamp is one too
        if hasattr(ts, "to_pydatetime"):
            ts = ts.to_pydatetime()
        return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return datetime.fromtimestamp(float(ts), tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class LogReport:
    """Everything one analysis found. ``parsed + unparsed == lines_read`` always."""

    source: str
    format: str
    lines_read: int
    parsed: int
    unparsed: int
    filtered_out: int
    window: tuple[pd.Timestamp | None, pd.Timestamp | None]
    categories: dict[str, int]
    signals: list[dict[str, Any]]
    per_minute: pd.DataFrame
    by_instance: pd.DataFrame
    by_region: pd.DataFrame
    instance_minute: pd.DataFrame
    status_mix: pd.DataFrame
    http: dict[str, Any]
    templates: pd.DataFrame
    spikes: pd.DataFrame
    unparsed_examples: list[str]
    suppressed: dict[str, int] = field(default_factory=dict)
    other_templates: int = 0
    notes: list[str] = field(default_factory=list)

    def signal(self, signal_id: str) -> dict[str, Any] | None:
        """The signal with this id, or None if it was not raised."""
        return next((s for s in self.signals if s["id"] == signal_id), None)

    def to_dict(self, per_minute: bool = True) -> dict[str, Any]:
        """JSON-able summary (``schema`` 1).

        Keys: ``schema, source, format, lines_read, parsed, unparsed, filtered_out, window
        {first,last}, categories, category_definitions, signals[] {id, title, runbook,
        severity, count, first_seen, last_seen, instances, regions, examples, details},
        http {responses, by_class, error_rate}, status_mix {code: count}, templates[]
        {template, count, example}, other_templates, by_instance[], by_region[], spikes[],
        per_minute[] {minute, lines, errors, auth, database, http_5xx, <signal ids>},
        unparsed_examples, suppressed, notes``.
        """
        def records(df: pd.DataFrame, index_name: str) -> list[dict[str, Any]]:
            out = []
            for idx, row in df.iterrows():
                rec: dict[str, Any] = {index_name: _iso(idx) if isinstance(idx, datetime) else idx}
                for k, v in row.items():
                    rec[str(k)] = _jsonable(v)
                out.append(rec)
            return out

        d: dict[str, Any] = {
            "schema": 1,
            "source": self.source,
            "format": self.format,
            "lines_read": self.lines_read,
            "parsed": self.parsed,
            "unparsed": self.unparsed,
            "filtered_out": self.filtered_out,
            "window": {"first": _iso(self.window[0]), "last": _iso(self.window[1])},
            "categories": dict(self.categories),
            "category_definitions": dict(CATEGORY_DEFINITIONS),
            "signals": [{k: _jsonable(v) for k, v in s.items()} for s in self.signals],
            "http": {k: _jsonable(v) for k, v in self.http.items()},
            "status_mix": {str(int(k)): int(v) for k, v in self.status_mix["count"].items()},
            "templates": [
                {"template": r.template, "count": int(r.count), "example": r.example}
                for r in self.templates.itertuples()
            ],
            "other_templates": self.other_templates,
            "by_instance": records(self.by_instance, "instance"),
            "by_region": records(self.by_region, "region"),
            "spikes": [
                {"minute": _iso(r.minute), "series": r.series, "count": int(r.count),
                 "baseline": float(r.baseline), "factor": _jsonable(r.factor)}
                for r in self.spikes.itertuples()
            ],
            "unparsed_examples": list(self.unparsed_examples),
            "suppressed": dict(self.suppressed),
            "notes": list(self.notes),
        }
        if per_minute:
            d["per_minute"] = records(self.per_minute, "minute")
        return d

    def summary_text(self, width: int = 120) -> str:
        """A readable one-screen summary (signals most severe first, then in time order)."""
        out: list[str] = []
        out.append(f"Log analysis of {self.source} ({self.format}): {self.lines_read:,} lines, "
                   f"{self.parsed:,} parsed, {self.unparsed:,} unparsed"
                   + (f", {self.filtered_out:,} outside --since/--until" if self.filtered_out else ""))
        first, last = self.window
        if first is not None and last is not None:
            out.append(f"Window: {_iso(first)} -> {_iso(last)} ({_duration(last - first)})")
        else:
            out.append("Window: no timestamps")
        c = self.categories
        out.append(f"Seed greps (grep -ci): errors {c['errors']:,} | auth {c['auth']:,} | database {c['database']:,}")
        if self.http.get("responses"):
            rate = self.http["error_rate"]
            out.append(f"HTTP: {self.http['responses']:,} responses with a status, 5xx {rate:.2%} "
                       f"(seed thresholds: warning > 1%, critical > 5%)")
        out.append("")
        if self.signals:
            out.append("Signals (what happened -> runbook):")
            multi_day = first is not None and last is not None and first.date() != last.date()

            def clock(iso: str) -> str:
                # times alone are ambiguous once the window crosses midnight
                return iso[5:16].replace("T", " ") if multi_day else iso[11:19]

            for s in self.signals[:20]:
                inst = s["instances"]
                where = (inst[0] + (f" (+{len(inst) - 1})" if len(inst) > 1 else "")) if inst else ""
                span = ""
                if s["first_seen"]:
                    span = clock(s["first_seen"])
                    end = clock(s["last_seen"]) if s["last_seen"] else span
                    if end != span:
                        same_day = multi_day and end[:5] == span[:5]
                        span += "-" + (end[6:] if same_day else end)
                line = (f"  {s['severity'].upper():8} {s['count']:>7,}x {s['id']:<28} -> {s['runbook']:<14} "
                        f"{span:<{23 if multi_day else 17}} {where}")
                out.append(line.rstrip()[:width])
            if len(self.signals) > 20:
                out.append(f"  … and {len(self.signals) - 20} more (see --json)")
        else:
            out.append("Signals: none (no incident evidence in these lines)")
        if self.suppressed:
            out.append(("Recognised and not raised: "
                        + ", ".join(f"{k} {v}" for k, v in sorted(self.suppressed.items())))[:width])
        if len(self.spikes):
            sp = self.spikes.sort_values("factor", ascending=False).head(3)
            out.append(("Spikes: " + "; ".join(
                f"{r.series} {int(r.count)} at {_iso(r.minute)[5:16].replace('T', ' ')} (baseline {r.baseline:g})"
                for r in sp.itertuples()))[:width])
        if len(self.templates):
            out.append("")
            out.append("Top message templates:")
            for r in self.templates.head(8).itertuples():
                out.append(f"  {int(r.count):>9,}  {r.template}"[:width])
        for note in self.notes:
            out.append(f"Note: {note}")
        return "\n".join(out)


def _duration(delta: pd.Timedelta) -> str:
    s = int(delta.total_seconds())
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s"


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(v, datetime):
        return _iso(v)
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def proxy_meaning(signal_id: str) -> str | None:
    """The Fly error-code page's meaning for a ``proxy_xxnn`` signal."""
    if signal_id.startswith("proxy_"):
        pc = PROXY_CODES.get(signal_id[6:].upper())
        return pc.meaning if pc else None
    return None
