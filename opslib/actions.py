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
import re
import shlex
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


# Fly's formats for values that end up in printed commands and API paths. A value from an
# API answer that does not match is not planned (the action is listed as refused, saying why).
MACHINE_ID = re.compile(r"[0-9a-f]{14}")
HOSTNAME = re.compile(r"(?=.{1,253}$)(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
                      r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def command(*words: Any) -> str:
    """A command line that runs as printed when pasted into a POSIX shell: each word quoted."""
    return " ".join(shlex.quote(str(w)) for w in words)


def _refuse_unless(action: Action, value: str, pattern: re.Pattern[str], what: str) -> Action:
    if not pattern.fullmatch(value):
        action.status = "refused"
        action.result = {"reason": f"{what} {value!r} from the API is not in Fly's format: not "
                                   "planned (check the answer by hand before acting on it)"}
    return action


# `fly machine <verb>` needs no prompt for these; `update` prompts unless --yes.
_MACHINE_VERBS = {"machine.start": "start", "machine.restart": "restart",
                  "machine.stop": "stop"}


def machine_action(kind: str, app: str, machine_id: str, *, title: str, basis: dict[str, Any],
                   reason: str, id: str | None = None, flags: tuple[Any, ...] = (),
                   config_patch: dict[str, Any] | None = None, body: Any = None,
                   shown: str | None = None) -> Action:
    """One action on one Machine: its ``fly machine …`` command (quoted), the Machines API call
    and the params its executor reads. ``machine.update`` takes ``config_patch`` (merged into
    the current config) and ``flags`` for the printed command; ``shown`` replaces the printed
    command where the engineer's usual command differs (e.g. ``fly scale memory``)."""
    path = f"/v1/apps/{app}/machines/{machine_id}"
    params: dict[str, Any] = {"machine_id": machine_id}
    if kind == "machine.update":
        verb = "update"
        api = {"method": "POST", "path": path,
               "body": body if body is not None else {"config": config_patch}}
        params["config_patch"] = config_patch
        # an update boots a stopped machine unless told not to (the executor sends skip_launch)
        keep = ("--skip-start",) if basis.get("state") in ("stopped", "suspended") else ()
        printed = command("fly", "machine", "update", machine_id, *flags, *keep, "-a", app,
                          "--yes")
    else:
        verb = _MACHINE_VERBS[kind]
        api = {"method": "POST", "path": f"{path}/{verb}"}
        printed = command("fly", "machine", verb, machine_id, *flags, "-a", app)
    action = Action(id=id or f"{verb}-{machine_id}", kind=kind, title=title,
                    command=shown or printed, api=api, params=params, basis=basis,
                    reason=reason)
    return _refuse_unless(action, machine_id, MACHINE_ID, "machine id")


def cert_action(kind: str, app: str, host: str, *, title: str, basis: dict[str, Any],
                reason: str) -> Action:
    """``cert.check`` (re-run validation) or ``cert.readd`` (remove, then add again) for one
    hostname of the app. ``fly certs remove`` prompts unless ``--yes``."""
    base = f"/v1/apps/{app}/certificates"
    if kind == "cert.check":
        printed = command("fly", "certs", "check", host, "-a", app)
        api: dict[str, Any] = {"method": "POST", "path": f"{base}/{host}/check"}
    else:
        printed = (command("fly", "certs", "remove", host, "-a", app, "--yes") + " && "
                   + command("fly", "certs", "add", host, "-a", app))
        api = {"method": "DELETE", "path": f"{base}/{host}",
               "then": {"method": "POST", "path": f"{base}/acme", "json": {"hostname": host}}}
    action = Action(id=f"{kind.replace('.', '-')}-{host}", kind=kind, title=title,
                    command=printed, api=api, params={"hostname": host}, basis=basis,
                    reason=reason)
    return _refuse_unless(action, host, HOSTNAME, "hostname")


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
        if actions:
            why = (f"confirmation {confirm!r} does not match the current plan {digest}: the "
                   "target changed since the plan was made, or the digest is wrong — nothing "
                   "was applied; review the current plan and confirm its digest")
        else:  # e.g. the same apply run again after it worked
            why = (f"nothing to apply: the target no longer needs plan {confirm!r} (already "
                   "applied, or fixed another way); nothing was changed")
        for a in actions:
            a.status = "refused"
            a.result = {"reason": why}
            ctx.session.event(source="actions", operation=f"refused {a.kind}", target=a.id,
                              outcome="refused", duration_ms=0, size=0)
        record.update(outcome="refused", reason=why)
        return record
    if not actions:
        record["outcome"] = "nothing to apply"
        return record
    failed = False
    for a in actions:
        if a.status == "refused":  # not planned (see _refuse_unless): never applied
            continue
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
