"""The app's recent logs, as any runbook reads them: a window of the Fly logs API (each page
recorded under ``raw/``, so a replay re-reads the same lines), analysed by
:mod:`opslib.logscan`, and phrased as findings — for one runbook, signals that belong to
another become context pointing at it.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Iterable

import pandas as pd

from ..findings import Finding
from ..logscan import CATEGORY_DEFINITIONS, LogReport, analyze as _analyze_entries, findings_from_logs
from ..reads import Read, Reading
from ..session import Session
from ..sources.fly_platform import LOGS, LogWindow

DEFAULT_WINDOW_MIN = 30
DEFAULT_MAX_PAGES = 20


def read(session: Session, *, window_minutes: float = DEFAULT_WINDOW_MIN,
         max_pages: int = DEFAULT_MAX_PAGES, until: datetime | None = None,
         key: str = "logs", context: bool = False) -> Read:
    """The read of the app's log lines for the last ``window_minutes`` (at most ``max_pages``
    pages). ``until`` ends the window before the run's now: the logs around a past event (Fly
    keeps about 7 days of logs)."""
    end = until or session.now()
    since = end - timedelta(minutes=window_minutes)
    what = (f"the app's logs {since:%Y-%m-%d %H:%M}–{end:%H:%M} UTC "
            f"(at most {max_pages} pages)")
    return Read(key, what, lambda api: api.read_logs(since=since, until=end, max_pages=max_pages),
                LOGS, context=context)


def recent(session: Session, window_minutes: float, max_pages: int) -> list[Read]:
    """The runbook's "recent logs" read, or none when ``window_minutes`` is 0 (turned off).
    Context: the runbook's verdict rests on its own checks, the logs add the story."""
    return [read(session, window_minutes=window_minutes, max_pages=max_pages, context=True)] \
        if window_minutes > 0 else []


def analyze(window: LogWindow) -> LogReport:
    """Run the log engine on a window's entries (the logs-API layout)."""
    return _analyze_entries(list(window.entries), fmt="api")


def report_of(reading: Reading | None) -> LogReport | None:
    """The analysis of a runbook's recent logs; None when no line could be read (not asked
    for, not configured, or the read failed)."""
    if reading is None or not reading.measured:
        return None
    return analyze(reading.value)


def fetch_findings(reading: Reading | None) -> list[Finding]:
    """Findings about the read itself: failed (wholly or part-way), truncated, or empty."""
    if reading is None or reading.skipped:
        return []
    window: LogWindow | None = reading.value
    error = reading.error or (window.error if window is not None else None)
    lines = len(window.entries) if window is not None else 0
    out = []
    if error is not None:
        out.append(Finding("logs-fetch-failed", "unknown",
                           f"could not read the app's logs: {error.message}",
                           f"{error.hint} ({lines} lines read before the failure)",
                           source="fly-api"))
    if window is not None and window.truncated:
        out.append(Finding("logs-truncated", "warning",
                           f"log window not fully read: {window.stop_reason}",
                           f"{lines} lines in {window.pages} pages were analysed; what happened "
                           "in the unread span is not in this verdict: raise max_pages or "
                           "shorten window_minutes",
                           [f"not read: {a.isoformat()} → {b.isoformat()}"
                            for a, b in window.unread], source="fly-api"))
    if window is not None and not window.entries and error is None:
        out.append(Finding("logs-empty", "info", "no log lines in the window",
                           "the app printed nothing, or the window is too short"))
    return out


def findings(report: LogReport, runbook: str | None = None) -> list[Finding]:
    """Findings from log signals. With ``runbook``, signals routed elsewhere become info
    findings that name the runbook handling them."""
    out = []
    for f in findings_from_logs(report, include_ok=runbook is None):
        owner = f.get("runbook") or ""
        sev = f["severity"]
        title = f["title"]
        # "no signals" is the answer of the logs themselves, not a pointer elsewhere
        if runbook is not None and owner and owner != runbook and f["id"] != "logs.no_signals":
            sev = "info"
            title = f"{title} → see the {owner} runbook"
        out.append(Finding(f["id"], sev, title, f.get("detail", ""), list(f.get("evidence", [])),
                           source="logs", runbook=owner if owner != runbook else ""))
    return out


def categories_table(report: LogReport) -> pd.DataFrame:
    """What the seed's three grep pipelines would have counted, with their patterns."""
    rows = [{"category": name, "seed grep": f"grep -i \"{pattern}\"",
             "lines": int(report.categories.get(name, 0))}
            for name, pattern in CATEGORY_DEFINITIONS.items()]
    return pd.DataFrame(rows, columns=["category", "seed grep", "lines"])


def signals_table(report: LogReport) -> pd.DataFrame:
    """One row per signal: what happened, how often, when, where, and which runbook handles it."""
    rows = [{"signal": s["id"], "severity": s["severity"], "count": s["count"],
             "first_seen": s["first_seen"], "last_seen": s["last_seen"],
             "instances": ", ".join(s.get("instances", [])[:4]),
             "runbook": s.get("runbook", ""), "what": s.get("title", "")}
            for s in report.signals]
    return pd.DataFrame(rows, columns=["signal", "severity", "count", "first_seen", "last_seen",
                                       "instances", "runbook", "what"])


def count(report: LogReport, *signal_ids: str) -> int:
    """Occurrences of these signals in the report (0 for a signal not raised)."""
    return sum(int((report.signal(sid) or {}).get("count", 0)) for sid in signal_ids)


def raised(report: LogReport, signal_ids: Iterable[str], *,
           severities: tuple[str, ...] = ("warning", "critical")) -> list[dict[str, Any]]:
    """The signals among ``signal_ids`` raised at one of ``severities``, in report order."""
    wanted = set(signal_ids)
    return [s for s in report.signals if s["id"] in wanted and s["severity"] in severities]


def signal_evidence(s: dict[str, Any], lines: int = 2) -> list[str]:
    """One signal as evidence lines: count, when, where, then a few example lines."""
    where = ", ".join(s.get("instances", [])[:4]) or "-"
    return ([f"logs: {s['id']} x{s['count']} {s.get('first_seen') or '?'} → "
             f"{s.get('last_seen') or '?'} on {where}"] + list(s.get("examples", []))[:lines])


def span(s: dict[str, Any]) -> str:
    """When a signal was seen, in words: "at 14:02 UTC" or "between 14:02 and 14:31 UTC"."""
    first, last = (s.get("first_seen") or "?")[11:16], (s.get("last_seen") or "?")[11:16]
    return f"at {first} UTC" if first == last else f"between {first} and {last} UTC"


def signals_finding(fid: str, severity: str, lead: str, signals: list[dict[str, Any]],
                    detail: str) -> Finding:
    """One finding over several raised signals: "<lead>: id xN (when), …", one example each."""
    return Finding(fid, severity,
                   lead + ": " + ", ".join(f"{s['id']} x{s['count']} {span(s)}" for s in signals),
                   detail, [line for s in signals for line in signal_evidence(s, 1)],
                   source="logs")


def recent_findings(reading: Reading | None, report: LogReport | None,
                    runbook: str) -> list[Finding]:
    """A runbook's "Recent logs" findings: the read's own (failed, truncated, empty), then
    the signals, those of other runbooks as info pointing at them. Nothing about signals
    when no line was read: "no signals" would claim more than was seen."""
    if reading is None or reading.skipped:
        return []
    out = fetch_findings(reading)
    if report is not None and reading.measured and reading.value.entries:
        out += findings(report, runbook=runbook)
    return out
