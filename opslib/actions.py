"""Gated remediation: actions are planned by default and applied only against a confirmed plan.

A runbook builds :class:`Action` objects from what it observed. Each carries the exact
``fly …`` command an engineer would type, the API call opslib would make, its inputs
(``params``) and the observed state it depends on (``basis``: machine state and image, a
backend's pid and transaction start, …). The plan's digest covers all of that, so:

* without ``apply=True`` nothing is executed: actions are listed with status ``planned`` and
  the plan's digest is written to ``findings.json``;
* with ``apply=True`` the run re-reads the target (the notebook diagnoses afresh), rebuilds
  the plan and executes it only if its digest equals ``confirm``. Any change in the target
  since the plan was made changes the digest, so a stale plan is refused — with **zero**
  mutating requests. It never prompts: CI has no terminal.

Every action ``kind`` is one of :data:`KINDS`; :mod:`opslib.executors` maps each kind to the
function that applies it, given only what it needs (:class:`ApplyContext`: the session and
the target), and returning a JSON-able result or raising :class:`~opslib.errors.SourceError`.
Applied, refused and failed actions are recorded in the findings and the timeline.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .errors import ApplyRefused, OpsError, SourceError

if TYPE_CHECKING:  # pragma: no cover
    from .config import Target
    from .session import Session

STATUSES = ("planned", "applied", "refused", "failed", "skipped")
DIGEST_LEN = 16
# What a plan can ask for; each has an executor in opslib.executors.
KINDS = ("machine.start", "machine.restart", "machine.stop", "machine.update", "cert.check",
         "cert.readd", "secrets.set", "pg.terminate", "pg.cancel")


@dataclass
class Action:
    id: str
    kind: str
    title: str
    command: str
    api: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)
    basis: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    status: str = "planned"
    result: Any = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"action kind {self.kind!r} is not one of {KINDS}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["result"] is None:
            d.pop("result")
        return d


@dataclass(frozen=True)
class ApplyContext:
    """What an executor needs to apply an action: the run's session and its live target."""

    session: "Session"
    target: "Target"


Executor = Callable[[ApplyContext, Action], Any]


def plan_digest(runbook: str, app: str, actions: list[Action]) -> str:
    """SHA-256 (first 16 hex digits) over the canonical plan: what, on what, given what state."""
    canonical = json.dumps(
        {"runbook": runbook, "app": app,
         "actions": [{"id": a.id, "kind": a.kind, "params": a.params, "basis": a.basis,
                      "api": a.api} for a in actions]},
        sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:DIGEST_LEN]


def apply_plan(ctx: ApplyContext, runbook: str, actions: list[Action], *, apply: bool,
               confirm: str) -> dict[str, Any]:
    """Apply ``actions`` if ``apply`` and ``confirm`` equals the plan digest; record everything.

    Returns the apply record written to findings.json under ``"apply"``.
    """
    from .executors import EXECUTORS

    digest = plan_digest(runbook, ctx.target.app, actions)
    record: dict[str, Any] = {"requested": bool(apply), "plan_digest": digest,
                              "confirm": confirm or None, "outcome": "planned"}
    if not apply:
        return record
    if ctx.target.kind != "live":
        raise ApplyRefused("actions can only be applied to a live target",
                           hint="run with app=<your app> (target live)")
    if confirm.strip().lower() != digest:
        for a in actions:
            a.status = "refused"
            a.result = {"reason": f"confirmation {confirm!r} does not match the current plan "
                                  f"{digest}: the target changed since the plan was made, or the "
                                  "digest is wrong"}
            ctx.session.event(source="actions", operation=f"refused {a.kind}", target=a.id,
                              outcome="refused", duration_ms=0, size=0)
        record["outcome"] = "refused"
        return record
    if not actions:
        record["outcome"] = "nothing to apply"
        return record
    failed = False
    for a in actions:
        if failed:
            a.status = "skipped"
            a.result = {"reason": "an earlier action failed"}
            continue
        try:
            a.result = EXECUTORS[a.kind](ctx, a)
            a.status = "applied"
        except (SourceError, OpsError) as exc:
            a.status = "failed"
            a.result = {"error": str(exc)}
            failed = True
        ctx.session.event(source="actions", operation=f"{a.status} {a.kind}", target=a.id,
                          outcome=a.status, duration_ms=0, size=0)
    record["outcome"] = "failed" if failed else "applied"
    return record
