"""Triage: every read-only runbook into one incident, concurrently, and the next step.

``triage`` prepares one run per read-only runbook present in this checkout (the others are
listed as skipped), executes them with at most ``os.cpu_count()`` at a time — each execution
is a papermill child process, so threads here only wait — and returns their outcomes. The
incident page then shows which runbooks found what, worst first, and :func:`next_step`.

Exit code: the worst of the runs by the ``run`` contract — 1 (a runbook failed to execute)
over 3 (severity reached ``--fail-on``) over 0.

:func:`next_step` reads only the evidence, in this order:

1. any run escalating to level 3 → escalate to Security now (the seed: immediately);
2. the worst completed run at warning or critical (by severity, then escalation level, then
   whether it planned an action):
   a. escalation level 2 → escalate to the Platform team, with its reason;
   b. a planned action → review and apply that plan (the exact command and digest);
   c. its worst finding names another runbook (a ``runbook`` field), or any of its findings
      hands a cause to a runbook that has not run in this incident → run that runbook;
   d. otherwise → follow that runbook's remediation for its worst finding;
3. a run that did not complete → re-run it (its checks are missing);
4. a check that could not run (severity ``unknown``) → check it by hand;
5. nothing found → no action.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import UsageError
from .scan import RunSummary, badness, sev_rank

READ_ONLY = ("health", "not-responding", "database", "memory", "tls", "auth", "monitoring",
             "logs")


# --------------------------------------------------------------------------- next step
@dataclass
class NextStep:
    text: str
    run: RunSummary | None = None
    command: str = ""


def latest_per_runbook(runs: list[RunSummary]) -> list[RunSummary]:
    """The newest run of each runbook, worst first.

    A run that fails verification or cannot be read stands for its runbook only when the
    runbook has no intact run: tampered evidence must not hide the intact one.
    """
    latest: dict[str, RunSummary] = {}
    for r in sorted(runs, key=lambda r: (r.verified and not r.problems, r.sort_time, r.name)):
        latest[r.runbook or r.name] = r
    return sorted(latest.values(), key=lambda r: (badness(r), r.runbook), reverse=True)


def _worst_finding(run: RunSummary) -> dict | None:
    ranked = [f for f in run.findings if f.get("severity") in ("critical", "warning")]
    return max(ranked, key=lambda f: sev_rank(f.get("severity", "")), default=None)


def next_step(runs: list[RunSummary]) -> NextStep:
    """The single next step the evidence points to (rules in the module docstring)."""
    current = latest_per_runbook(runs)
    for r in current:
        if r.escalation_level >= 3:
            return NextStep(f"Escalate to Level 3 ({r.escalation.get('team') or 'Security Team'}) "
                            f"now: {r.escalation.get('reason', '')}", r)
    done = [r for r in current if r.status == "ok" and r.severity in ("critical", "warning")]
    if done:
        # among equally bad runs, the one with a plan: a concrete fix beats general advice
        w = max(done, key=lambda r: (badness(r), any(a.get("status") == "planned"
                                                     for a in r.actions)))
        if w.escalation_level == 2:
            return NextStep(f"Escalate to Level 2 ({w.escalation.get('team') or 'Platform Team'}):"
                            f" {w.escalation.get('reason', '')}", w)
        planned = [a for a in w.actions if a.get("status") == "planned"]
        if planned:
            # one command per action, once: `fly scale vm` shown for each machine it resizes
            cmd = "; ".join(dict.fromkeys(a.get("command", "") for a in planned))
            if w.target == "live" and w.plan_digest:
                how = (f"make run issue={w.runbook} app={w.app} apply=true "
                       f"confirm={w.plan_digest}")
                return NextStep(f"Review {w.runbook}'s plan ({cmd}) and apply it: {how}", w, how)
            return NextStep(f"Review {w.runbook}'s plan: {cmd} (planned on the {w.target} "
                            "target; on the live app, plan it again there and apply it with "
                            "its digest)", w, cmd)
        f = _worst_finding(w)
        other = (f or {}).get("runbook")
        if not other or other == w.runbook:
            # a cause its logs handed to a runbook that has not run in this incident yet
            ran = {r.runbook for r in current}
            f = next((x for x in w.findings if x.get("runbook") not in (None, "", w.runbook)
                      and x["runbook"] not in ran), f)
            other = (f or {}).get("runbook")
        if other and other != w.runbook:
            return NextStep(f"Run the {other} runbook: {w.runbook} found “{f.get('title')}”",
                            w, f"make run issue={other}")
        return NextStep(f"Follow the {w.runbook} runbook's remediation for: "
                        f"{(f or {}).get('title', w.severity)}", w)
    broken = [r for r in current if r.status != "ok"]
    if broken:
        r = broken[0]
        err = r.error.get("evalue") or r.error.get("ename") or "; ".join(r.problems)
        return NextStep(f"Re-run {r.runbook}: it did not complete ({r.status}"
                        f"{': ' + err if err else ''}), so its checks are missing", r,
                        f"make run issue={r.runbook}")
    for r in current:
        unknown = [f for f in r.findings if f.get("severity") == "unknown"]
        if unknown:
            return NextStep(f"Check by hand what {r.runbook} could not: "
                            f"{unknown[0].get('title', '')}", r)
    if not current:
        return NextStep("No runs in this incident yet: run make triage.")
    return NextStep(f"No action: {len(current)} runbook(s) found nothing at warning or above.",
                    current[0])


# --------------------------------------------------------------------------- orchestration
@dataclass
class TriageResult:
    incident: str
    reports: Path
    outcomes: list  # runner.RunOutcome, in READ_ONLY order
    skipped: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # runbook → why it could not run
    jobs: int = 1

    @property
    def exit_code(self) -> int:
        from ..runner import EXIT_FAILED, EXIT_OK, EXIT_SEVERITY

        codes = {o.exit_code for o in self.outcomes}
        if self.errors or EXIT_FAILED in codes:
            return EXIT_FAILED
        return EXIT_SEVERITY if EXIT_SEVERITY in codes else EXIT_OK


def available(names: tuple[str, ...] = READ_ONLY) -> tuple[list[str], list[str]]:
    """(present, skipped) read-only runbooks, discovered with ``opslib.catalog.runbooks()``."""
    from ..catalog import runbooks

    books = runbooks()
    return [n for n in names if n in books], [n for n in names if n not in books]


def plan(*, app: str = "", app_url: str = "", incident: str = "", target: str = "",
         scenario: str = "", fail_on: str = "never", allow_unknown: bool = False,
         timeout: float | None = None, reports: Path | None = None, names: tuple[str, ...] = READ_ONLY) -> tuple[list, list[str]]:
    """Prepare one run per present read-only runbook, all into one incident.

    Raises ``UsageError`` (nothing written) when no runbook is present or any is misused.
    """
    from ..context import demo_scenarios
    from ..runner import DEFAULT_TIMEOUT_S, RunRequest, default_incident, prepare

    present, skipped = available(names)
    if not present:
        raise UsageError("none of the read-only runbooks is in this checkout: "
                         + ", ".join(names), hint="make list shows the runbooks there are")
    if scenario and not any(scenario in demo_scenarios(n) for n in present):
        raise UsageError(f"no read-only runbook has a demo scenario {scenario!r}")
    incident = incident or default_incident(app, app_url, "live" if app_url else "")
    preps = []
    for name in present:
        scen = scenario if scenario and scenario in demo_scenarios(name) else ""
        preps.append(prepare(RunRequest(
            runbook=name, app=app, app_url=app_url, incident=incident, target=target,
            scenario=scen, fail_on=fail_on, allow_unknown=allow_unknown,
            timeout=timeout if timeout is not None else DEFAULT_TIMEOUT_S, reports=reports)))
    return preps, skipped


def default_jobs() -> int:
    return max(1, os.cpu_count() or 1)


def execute_all(preps: list, *, jobs: int | None = None,
                on_done: Callable[[object], None] | None = None) -> tuple[list, dict[str, str]]:
    """Execute prepared runs, at most ``jobs`` (≤ cores) at a time; outcomes in input order."""
    from ..runner import execute

    jobs = max(1, min(jobs or default_jobs(), default_jobs(), len(preps) or 1))
    outcomes: list = [None] * len(preps)
    errors: dict[str, str] = {}
    lock = threading.Lock()

    def one(i: int) -> None:
        try:
            outcomes[i] = execute(preps[i])
        except Exception as exc:  # a runbook that cannot start must not sink the others
            errors[preps[i].runbook.name] = f"{type(exc).__name__}: {exc}"
            return
        if on_done:
            with lock:
                on_done(outcomes[i])

    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="triage")
    try:
        futures = [pool.submit(one, i) for i in range(len(preps))]
        for f in futures:
            f.result()
    except KeyboardInterrupt:
        # The runs' executions are our children: stop them, so their threads end and nothing
        # keeps running after the command returns.
        _kill_children()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return [o for o in outcomes if o is not None], errors


def _kill_children() -> None:
    from ..runner import kill_tree

    kill_tree(os.getpid(), including=False)


def triage(*, jobs: int | None = None, on_done: Callable[[object], None] | None = None,
           **kwargs) -> TriageResult:
    """Plan and execute the triage (see :func:`plan` for the keyword arguments)."""
    from ..runner import reports_dir

    preps, skipped = plan(**kwargs)
    outcomes, errors = execute_all(preps, jobs=jobs, on_done=on_done)
    reports = preps[0].reports if preps else (kwargs.get("reports") or reports_dir())
    return TriageResult(preps[0].incident, Path(reports), outcomes, skipped, errors,
                        max(1, min(jobs or default_jobs(), default_jobs())))


__all__ = ["READ_ONLY", "NextStep", "next_step", "latest_per_runbook", "TriageResult", "plan",
           "execute_all", "triage", "available", "default_jobs"]
