"""``review``, ``compare`` and ``triage`` on the command line (registered by ``opslib.cli``).

Exit codes:

* ``review``: 0 the site was built (runs failing verification are flagged in it and listed
  here; ``make verify`` is the gate for integrity); with ``--check-replay`` 0 the replayed
  findings equal the saved ones, 1 they differ or the replay failed; 2 bad usage.
* ``compare``: 0 compared; 2 bad usage (a path that is not a run).
* ``triage``: the worst of the runs by the ``run`` contract — 1 a runbook failed to execute,
  3 severity reached ``--fail-on``, 0 otherwise; 2 bad usage (nothing run).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from ..errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the review, compare and triage subcommands to ``python -m opslib``."""
    rv = sub.add_parser("review", help="build the static evidence site reports/index.html")
    rv.add_argument("--reports", default="", help="evidence folder (default reports/)")
    rv.add_argument("--full", action="store_true",
                    help="ignore the cache: re-read and re-verify every run")
    rv.add_argument("--check-replay", metavar="RUN", default="",
                    help="replay RUN against its own capture and check the findings are equal")
    rv.set_defaults(handler=cmd_review)

    cp = sub.add_parser("compare", help="compare two runs: findings added/resolved/changed")
    cp.add_argument("run_a", metavar="RUN_A", help="the earlier run (e.g. before a fix)")
    cp.add_argument("run_b", metavar="RUN_B", help="the later run")
    cp.add_argument("--reports", default="",
                    help="reports tree for the page (default: the one holding both runs)")
    cp.set_defaults(handler=cmd_compare)

    tr = sub.add_parser("triage", help="run every read-only runbook into one incident")
    tr.add_argument("--app", default="", help="Fly app name (implies --target live)")
    tr.add_argument("--app-url", default="", help="app base URL")
    tr.add_argument("--incident", default="", help="incident id (default <app>-<date>)")
    tr.add_argument("--target", default="", help="demo | live | replay:PATH")
    tr.add_argument("--scenario", default="",
                    help="demo scenario, for the runbooks that have one of that name")
    tr.add_argument("--jobs", type=int, default=None,
                    help="runbooks at a time (default and maximum: the number of cores)")
    tr.add_argument("--fail-on", default="never", choices=["never", "warning", "critical"],
                    help="exit 3 when a run's severity reaches this level (`unknown` too)")
    tr.add_argument("--allow-unknown", action="store_true",
                    help="with --fail-on: do not fail on `unknown` (checks that could not run)")
    tr.add_argument("--timeout", type=float, default=None, help="deadline per runbook (s)")
    tr.add_argument("--reports", default="", help="evidence folder (default reports/)")
    tr.set_defaults(handler=cmd_triage)


def _reports(value: str) -> Path:
    from ..runner import reports_dir

    return Path(value) if value else reports_dir()


def cmd_review(args: argparse.Namespace) -> int:
    if args.check_replay:
        from .replay import check_replay

        result = check_replay(Path(args.check_replay))
        print(result.text())
        return 0 if result.equal and result.replay_status == "ok" else 1
    from .site import build_site

    reports = _reports(args.reports)
    if not reports.is_dir():
        raise UsageError(f"no evidence folder {reports}",
                         hint="give --reports DIR, or run a runbook first: make run issue=health")
    report = build_site(reports, use_cache=not args.full)
    print(report.text())
    return 0


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:120]


def cmd_compare(args: argparse.Namespace) -> int:
    from ..evidence import atomic_write_text
    from . import compare as cmp
    from .scan import SITE_DIR, read_run
    from .site import run_page

    runs = []
    for given in (args.run_a, args.run_b):
        path = Path(given)
        if not path.is_dir():
            raise UsageError(f"{given} is not a run folder", hint="give reports/<incident>/<run>")
        run = read_run(path)
        if any("not a run folder" in p for p in run.problems):
            raise UsageError(f"{given} is not a run folder (no manifest, findings.json or "
                             "parameters.json)", hint="give reports/<incident>/<run>")
        runs.append((path, run))
    (pa, a), (pb, b) = runs
    c = cmp.compare(a, b)
    print(cmp.text(c))
    # The page goes into the reports tree the runs are in (so it links to their pages).
    trees = {pa.resolve().parent.parent, pb.resolve().parent.parent}
    reports = Path(args.reports) if args.reports else \
        (trees.pop() if len(trees) == 1 else _reports(""))
    page_path = (f"{SITE_DIR}/compare/{_safe(a.incident)}.{_safe(a.name)}--"
                 f"{_safe(b.incident)}.{_safe(b.name)}.html")

    def page_of(path: Path, run) -> str | None:
        try:
            inside = path.resolve().parent.parent == reports.resolve()
        except OSError:
            inside = False
        return run_page(run) if inside and (reports / run_page(run)).is_file() else None

    pages = (page_of(pa, a), page_of(pb, b))
    html = cmp.html_page(c, page_path, run_pages=pages if all(pages) else None)
    atomic_write_text(reports / page_path, html)
    print(f"page: {reports / page_path}")
    return 0


def cmd_triage(args: argparse.Namespace) -> int:
    from ..runner import install_sigterm_handler
    from .site import build_site, incident_page
    from .scan import badness, read_run, sev_rank
    from .triage import TriageResult, default_jobs, execute_all, next_step, plan

    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be 1 or more, got {args.jobs}",
                         hint="leave it out to run as many as there are cores")
    preps, skipped = plan(app=args.app, app_url=args.app_url, incident=args.incident,
                          target=args.target, scenario=args.scenario, fail_on=args.fail_on,
                          allow_unknown=args.allow_unknown, timeout=args.timeout,
                          reports=Path(args.reports) if args.reports else None)
    jobs = max(1, min(args.jobs or default_jobs(), default_jobs()))
    incident = preps[0].incident
    names = [p.runbook.name for p in preps]
    print(f"triage of incident {incident}: {len(names)} read-only runbook(s) "
          f"({', '.join(names)}), at most {min(jobs, len(names))} at a time")
    if skipped:
        print(f"skipped (not in this checkout): {', '.join(skipped)}")
    if args.jobs and args.jobs > default_jobs():
        print(f"note: --jobs {args.jobs} capped at {default_jobs()} (the number of cores)")
    sys.stdout.flush()
    install_sigterm_handler()

    def done(outcome) -> None:
        print(f"  done {outcome.findings.get('runbook', '?'):<15} {outcome.status:<11} "
              f"{outcome.severity.upper():<9} {outcome.path}")
        sys.stdout.flush()

    outcomes, errors = execute_all(preps, jobs=jobs, on_done=done)
    for name, why in errors.items():
        print(f"  error {name}: {why}")
    reports = preps[0].reports
    report = build_site(reports)
    runs = [read_run(o.path) for o in outcomes]
    print()
    for r in sorted(runs, key=badness, reverse=True):
        top = next((f for f in sorted(r.findings, key=lambda f: -sev_rank(f.get("severity", "")))
                    if f.get("severity") not in ("info", "ok")), None)
        print(f"{r.severity.upper():<9} {r.runbook:<15} status {r.status:<11} "
              f"L{r.escalation_level}" + (f"  {top.get('title')}" if top else ""))
    step = next_step(runs)
    print(f"\nnext step: {step.text}")
    if step.command:
        print(f"  {step.command}")
    print(f"incident page: {reports / incident_page(incident)}")
    if report.failing:
        print(f"({len(report.failing)} run(s) under {reports} fail verification; see the index)")
    code = TriageResult(incident, reports, outcomes, skipped, errors, jobs).exit_code
    print(f"exit: {code}")
    return code


__all__ = ["register", "cmd_review", "cmd_compare", "cmd_triage"]
