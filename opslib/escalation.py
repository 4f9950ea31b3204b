"""The seed's Escalation Procedures: which level (and team) a run's findings call for."""
from __future__ import annotations

from typing import Iterable

from .findings import Finding, rank

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
    unknown = [f for f in findings if f.severity == "unknown"]
    if unknown:
        return {"level": 1, "team": TEAMS[1],
                "reason": "confirm by hand — "
                          + "; ".join(f.title for f in unknown[:3])
                          + (f" (+{len(unknown) - 3} more)" if len(unknown) > 3 else "")}
    return {"level": 0, "team": TEAMS[0], "reason": "no findings need action"}
