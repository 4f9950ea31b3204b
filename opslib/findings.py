"""Findings, severities, the seed's thresholds, and escalation.

``findings.json`` (schema 1) is the contract CI parses::

    {"schema": 1, "runbook", "target", "app", "incident", "scenario",
     "status": "ok|failed|timeout|kernel_died|incomplete",
     "severity": "ok|warning|critical|unknown",
     "started_at", "finished_at", "exit_code",
     "findings": [{"id", "severity", "title", "detail", "evidence": [...], ...}],
     "escalation": {"level": 0-3, "team", "reason"},
     "actions": [{"id", "title", "command", "api", "status", ...}],
     "plan_digest"}

A finding's severity is one of ``info`` (context, never raises the run's severity), ``ok``,
``unknown`` (the check could not run), ``warning`` or ``critical``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from .errors import UsageError

FINDINGS_SCHEMA = 1
SEVERITIES = ("info", "ok", "unknown", "warning", "critical")
_RANK = {s: i for i, s in enumerate(SEVERITIES)}
RUN_STATUSES = ("ok", "failed", "timeout", "kernel_died", "incomplete")


def rank(severity: str) -> int:
    return _RANK[severity]


def worst(severities: Iterable[str]) -> str:
    """The run's severity: the worst finding, ``ok`` when nothing (but info) was found."""
    ranked = [s for s in severities if s != "info"]
    return max(ranked, key=rank) if ranked else "ok"


# --------------------------------------------------------------------------- thresholds
# The seed's "Key Metrics to Monitor" table, the one place these numbers live.
THRESHOLDS: dict[str, tuple[float, float]] = {
    "response_time_ms": (500, 2000),
    "error_rate_pct": (1, 5),
    "memory_pct": (70, 90),
    "cpu_pct": (70, 90),
    "connections_pct": (80, 95),
}
THRESHOLD_LABELS = {
    "response_time_ms": "Response time",
    "error_rate_pct": "Error rate",
    "memory_pct": "Memory usage",
    "cpu_pct": "CPU usage",
    "connections_pct": "Active connections (of pool)",
}


def thresholds(overrides: dict[str, Any] | None = None) -> dict[str, tuple[float, float]]:
    """The seed's thresholds with per-run overrides ``{"memory_pct": [60, 85]}`` applied."""
    out = dict(THRESHOLDS)
    for key, value in (overrides or {}).items():
        if key not in THRESHOLDS:
            raise UsageError(f"unknown threshold {key!r}; known: {', '.join(THRESHOLDS)}")
        try:
            warn, crit = (float(v) for v in value)
        except (TypeError, ValueError):
            raise UsageError(f"threshold {key!r} must be [warning, critical], got {value!r}") from None
        if warn > crit:
            raise UsageError(f"threshold {key!r}: warning {warn} is above critical {crit}")
        out[key] = (warn, crit)
    return out


def classify(value: float | None, limits: tuple[float, float]) -> str:
    """``ok``/``warning``/``critical`` for a value against (warning, critical); > is breach."""
    if value is None or value != value:
        return "unknown"
    warn, crit = limits
    if value > crit:
        return "critical"
    if value > warn:
        return "warning"
    return "ok"


# --------------------------------------------------------------------------- findings
@dataclass
class Finding:
    id: str
    severity: str
    title: str
    detail: str = ""
    evidence: list[str] = field(default_factory=list)
    escalate: int = 0  # seed escalation level this finding calls for beyond L1 (2 or 3)
    escalate_reason: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        if self.severity not in _RANK:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not self.escalate:
            d.pop("escalate")
            d.pop("escalate_reason")
        if not self.source:
            d.pop("source")
        return d


# --------------------------------------------------------------------------- escalation
# The seed's Escalation Procedures.
TEAMS = {0: "none", 1: "On-Call Engineer", 2: "Platform Team", 3: "Security Team"}


def escalation(findings: Iterable[Finding], *, persisted_after_restart: bool = False) -> dict:
    """Escalation level from findings, following the seed's Escalation Procedures.

    L1 on-call handles restarts, basic troubleshooting and rollbacks; escalate to L2 platform
    for Supabase or Fly.io platform issues, database problems, infrastructure changes or when
    the issue persists after a restart; L3 security immediately for a suspected breach,
    unauthorised access or data exposure.
    """
    findings = list(findings)
    actionable = [f for f in findings if rank(f.severity) >= rank("warning")]
    top = max((f for f in findings if f.escalate), key=lambda f: f.escalate, default=None)
    if top is not None and top.escalate >= 2:
        return {"level": top.escalate, "team": TEAMS[top.escalate],
                "reason": top.escalate_reason or top.title}
    if persisted_after_restart and actionable:
        return {"level": 2, "team": TEAMS[2], "reason": "issue persists after restart"}
    if actionable:
        worst_f = max(actionable, key=lambda f: rank(f.severity))
        return {"level": 1, "team": TEAMS[1],
                "reason": f"{worst_f.severity}: {worst_f.title} — follow this runbook's remediation"}
    if any(f.severity == "unknown" for f in findings):
        return {"level": 1, "team": TEAMS[1],
                "reason": "some checks could not run; on-call to confirm by hand"}
    return {"level": 0, "team": TEAMS[0], "reason": "no findings need action"}
