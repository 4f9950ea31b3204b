"""Findings and severities: what a run found, and the findings.json contract.

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
    runbook: str = ""  # another runbook that handles what this finding saw (logs hand-offs)

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
        if not self.runbook:
            d.pop("runbook")
        return d
