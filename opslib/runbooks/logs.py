"""Log Analysis (seed "Log Analysis"): the app's logs for a window, through the log engine.

``collect`` reads the window through the Fly logs API (every page recorded under ``raw/``,
so a replay re-reads exactly the same lines); the analysis is :mod:`opslib.logscan`'s, and
its findings are phrased by :mod:`opslib.assess.recent_logs`, which the other runbooks use
for their own recent logs.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from ..assess import recent_logs
from ..config import Target
from ..findings import Finding
from ..logscan import LogReport
from ..reads import Readings, gather, measured
from ..session import Session
from ..sources.fly_platform import LogWindow
from ..thresholds import classify


@dataclass(frozen=True)
class LogsData:
    readings: Readings

    window = measured("logs")  # LogWindow | None

    @cached_property
    def report(self) -> LogReport:
        """The analysis of the lines read (of none, when the logs could not be read)."""
        return recent_logs.analyze(self.window or LogWindow())


def collect(session: Session, target: Target, *,
            window_minutes: float = recent_logs.DEFAULT_WINDOW_MIN,
            max_pages: int = 100) -> LogsData:
    """The app's log lines of the last ``window_minutes`` (at most ``max_pages`` pages)."""
    return LogsData(gather(session, target, [
        recent_logs.read(session, window_minutes=window_minutes, max_pages=max_pages)]))


def summary_line(data: LogsData) -> str:
    """How much was read, and why the reading stopped."""
    window, report = data.window, data.report
    if window is None:
        return "No log line could be read (see the findings)."
    return (f"Read **{report.lines_read:,}** lines in {window.pages} page(s) "
            f"({window.stop_reason or 'nothing fetched'}); {report.parsed:,} parsed, "
            f"{report.unparsed:,} unparsed (kept, not dropped).")


def findings(data: LogsData, limits: dict[str, tuple[float, float]] | None = None
             ) -> list[Finding]:
    """The read's own findings, then one per signal (an explicit "no signals" only when
    lines were read: it would claim more than was seen otherwise). The access logs' 5xx rate
    is judged against ``limits["error_rate_pct"]`` (the run's thresholds)."""
    reading = data.readings["logs"]
    out = recent_logs.fetch_findings(reading)
    if data.window is not None and data.window.entries:
        report = data.report
        if limits is not None and report is not None:
            report = with_error_rate_limits(report, *limits["error_rate_pct"])
        out += recent_logs.findings(report)
    return out


def with_error_rate_limits(report: LogReport, warn_pct: float, crit_pct: float) -> LogReport:
    """``report`` with its ``http_5xx`` signal judged against (warning, critical) in %."""
    import dataclasses

    signals = []
    for s in report.signals:
        if s["id"] == "http_5xx" and "error_rate" in s:
            pct = 100.0 * float(s["error_rate"])
            s = {**s, "severity": classify(pct, (warn_pct, crit_pct))}
        signals.append(s)
    return dataclasses.replace(report, signals=signals)
