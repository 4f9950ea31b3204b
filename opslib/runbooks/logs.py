"""Log Analysis (seed "Log Analysis"), and the recent-logs section other runbooks reuse.

``fetch`` reads the app's logs for a window through the Fly logs API (each page recorded
under ``raw/``, so a replay re-reads exactly the same lines); ``analyze`` runs the log engine
(:mod:`opslib.logscan`) on them; ``findings`` turns its signals into findings, optionally for
one runbook: signals that belong to another runbook become context pointing at it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable

import pandas as pd

from ..config import Target
from ..errors import NotConfigured, SourceError
from ..findings import Finding
from ..logscan import CATEGORY_DEFINITIONS, LogReport, analyze as _analyze_entries, findings_from_logs
from ..session import Session
from ..sources.fly_platform import FlyPlatform

DEFAULT_WINDOW_MIN = 30
DEFAULT_MAX_PAGES = 20


@dataclass
class LogFetch:
    """What was fetched: entries, paging facts, and why it stopped or failed."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    pages: int = 0
    truncated: bool = False
    stop_reason: str = ""
    error: SourceError | None = None
    skipped: NotConfigured | None = None


def fetch(session: Session, target: Target, *, window_minutes: float = DEFAULT_WINDOW_MIN,
          max_pages: int = DEFAULT_MAX_PAGES, until: datetime | None = None) -> LogFetch:
    """The app's log lines of the last ``window_minutes`` (at most ``max_pages`` pages).

    ``until`` ends the window earlier than the run's now: the logs around a past event
    (Fly keeps about 7 days of logs)."""
    out = LogFetch()
    token = target.env("FLY_API_TOKEN")
    if not session.configured("FLY_API_TOKEN", bool(token)):
        out.skipped = NotConfigured("Fly logs API", "FLY_API_TOKEN",
                                    hint="create one with `fly tokens create readonly`")
        return out
    platform = FlyPlatform(session, target.app, token=token,
                           base_url=target.env("FLY_API_BASE_URL"))
    end = until or session.now()
    stream = platform.logs(since=end - timedelta(minutes=window_minutes), until=end,
                           max_pages=max_pages)
    try:
        for entry in stream:
            out.entries.append(entry)
    except SourceError as exc:  # keep what arrived before the failing page
        out.error = exc
    out.pages, out.truncated, out.stop_reason = stream.pages, stream.truncated, stream.stop_reason
    return out


def fetch_into(session: Session, target: Target, data: Any, *,
               window_minutes: float = DEFAULT_WINDOW_MIN,
               max_pages: int = DEFAULT_MAX_PAGES) -> None:
    """``fetch`` for a runbook's ``collect``: sets ``data.logs``; a skip joins ``data.skipped``."""
    data.logs = fetch(session, target, window_minutes=window_minutes, max_pages=max_pages)
    if data.logs.skipped is not None:
        data.skipped.append(data.logs.skipped)


def analyze(fetched: LogFetch) -> LogReport:
    """Run the log engine on fetched entries (the logs-API layout)."""
    return _analyze_entries(fetched.entries, fmt="api")


def fetch_findings(fetched: LogFetch) -> list[Finding]:
    """Findings about the fetch itself: failed, truncated by the page cap, or empty."""
    if fetched.skipped is not None:
        return []
    out = []
    if fetched.error is not None:
        e = fetched.error
        out.append(Finding("logs-fetch-failed", "unknown",
                           f"could not read the app's logs: {e.message}",
                           f"{e.hint} ({len(fetched.entries)} lines read before the failure)",
                           source="fly-api"))
    if fetched.truncated:
        out.append(Finding("logs-truncated", "info",
                           f"log window not fully covered: {fetched.stop_reason}",
                           f"{len(fetched.entries)} lines in {fetched.pages} pages were analysed; "
                           "raise max_pages or shorten window_minutes for the rest"))
    if not fetched.entries and fetched.error is None:
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
                           source="logs"))
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


def report_of(fetched: LogFetch | None) -> LogReport | None:
    """The analysis of a runbook's recent logs; None when they were not read (not asked for,
    or FLY_API_TOKEN not configured)."""
    if fetched is None or fetched.skipped is not None:
        return None
    return analyze(fetched)


def recent_findings(fetched: LogFetch | None, report: LogReport | None,
                    runbook: str) -> list[Finding]:
    """A runbook's "Recent logs" findings: the fetch's own (failed, truncated, empty), then
    the signals, those of other runbooks as info pointing at them. Nothing about signals
    when no line was read: "no signals" would claim more than was seen."""
    if fetched is None or fetched.skipped is not None:
        return []
    out = fetch_findings(fetched)
    if report is not None and fetched.entries:
        out += findings(report, runbook=runbook)
    return out
