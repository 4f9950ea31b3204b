"""Fly.io log analysis: the seed's grep categories, incident signals, series and templates.

    >>> from opslib.logscan import analyze, findings_from_logs
    >>> report = analyze("fly.log")            # or "-", a binary file, or logs-API entries
    >>> print(report.summary_text())
    >>> findings_from_logs(report)             # feed the runbooks

See `analyze` for inputs and `LogReport` for what comes back.
"""

from .analysis import analyze, warm
from .signal_findings import findings_from_logs
from .proxy_codes import PROXY_CODES, ProxyCode
from .report import CATEGORY_DEFINITIONS, LogReport
from .signals import SIGNALS, SignalDef
from .inputs import FORMATS

__all__ = [
    "CATEGORY_DEFINITIONS",
    "FORMATS",
    "PROXY_CODES",
    "SIGNALS",
    "LogReport",
    "ProxyCode",
    "SignalDef",
    "analyze",
    "findings_from_logs",
    "warm",
]
